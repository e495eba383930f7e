"""Validation slices held out of a train split by whole sequences."""

from __future__ import annotations

import numpy as np
import pytest

from data_loaders.pipeline import SampleSource
from data_loaders.validation import EveryNth, RecordSubset, SpreadSamples, hold_out_sequences, split_by_sequence
from record_fixtures import make_records


def test_split_by_sequence_holds_out_the_last_sequences_whole():
    rng = np.random.default_rng()
    sequence_index = rng.permutation(np.repeat(np.array([3, 7, 1, 9, 4]), rng.integers(2, 6, 5)))
    train, val = split_by_sequence(sequence_index, 2)
    assert set(sequence_index[val]) == {7, 9}  # the two largest ids
    assert not set(sequence_index[train]) & {7, 9}
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(sequence_index)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="num_sequences"):
            split_by_sequence(sequence_index, bad)


def test_record_subset_and_every_nth_index_the_right_items():
    items = [{"i": i} for i in range(10)]
    subset = RecordSubset(items, np.array([8, 2, 5]))
    assert len(subset) == 3 and [subset[k]["i"] for k in range(3)] == [8, 2, 5]
    with pytest.raises(ValueError, match="indices"):
        RecordSubset(items, np.array([10]))
    every = EveryNth(list(range(10)), 4)
    assert len(every) == 3 and [every[k] for k in range(3)] == [0, 4, 8]
    assert len(EveryNth(list(range(10)), 3, limit=2)) == 2
    with pytest.raises(IndexError):
        every[3]


def test_hold_out_sequences_keeps_triplets_inside_each_part():
    records = make_records(num_sequences=4, frames_per_sequence=10, missing=(), unlabelled=(), no_occ_labels=())
    source = SampleSource(records, gap=2, train_jitter=True)
    train, val = hold_out_sequences(source, 1)
    assert len(train) == 30 and len(val) == 10
    assert not val.index.train_jitter and train.index.train_jitter and train.index.gap == 2
    for part, sequences in ((train, {0, 1, 2}), (val, {3})):
        for i in range(len(part)):
            sample = part[i]
            assert int(sample["sequence_index"]) in sequences
            # All three frames of a triplet come from the sample's own sequence, the same
            # triplet the full source gives for that record.
            record_index = int(part.records.indices[i])
            np.testing.assert_array_equal(sample["frame_index"], source[record_index]["frame_index"])
            np.testing.assert_array_equal(sample["image"], source[record_index]["image"])


def test_spread_samples_visit_the_whole_source():
    items = list(range(100))
    assert list(SpreadSamples(items, 4)) == [0, 25, 50, 75]
    assert list(SpreadSamples(items, 3)) == [0, 33, 66]
    assert list(SpreadSamples(items[:5], 50)) == [0, 1, 2, 3, 4]  # a limit past the end keeps everything
    with pytest.raises(IndexError, match="out of range"):
        SpreadSamples(items, 4)[4]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        SpreadSamples(items, 0)
