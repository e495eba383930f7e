"""Validation slices of a training split, held out by whole sequences.

Settings are chosen on a slice of the train split, never on the test split: frames of one
sequence are near-duplicates, so the slice takes whole sequences (the last `num_sequences`
sequence ids), and the training view excludes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class RecordSubset:
    """The records at `indices` of a random-access records source (``len`` and ``[i]``)."""

    def __init__(self, records: Sequence[dict[str, Any]], indices: np.ndarray):
        self.records = records
        self.indices = np.asarray(indices, np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(records)):
            raise ValueError(f"indices must lie in [0, {len(records)}), got [{self.indices.min()}, "
                             f"{self.indices.max()}]")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[int(self.indices[index])]


def split_by_sequence(sequence_index: np.ndarray, num_sequences: int) -> tuple[np.ndarray, np.ndarray]:
    """(train record indices, validation record indices): validation = the records of the last
    `num_sequences` distinct sequence ids, training = all others; both in record order."""
    sequence_index = np.asarray(sequence_index)
    ids = np.unique(sequence_index)
    if not 0 < num_sequences < len(ids):
        raise ValueError(f"num_sequences must be in [1, {len(ids) - 1}] (the split has {len(ids)} sequences), "
                         f"got {num_sequences}")
    held_out = np.isin(sequence_index, ids[-num_sequences:])
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


class EveryNth:
    """Every `stride`-th item of a random-access source, at most `limit` of them (a spread-out
    evaluation subset: consecutive frames of a sequence are near-duplicates)."""

    def __init__(self, source, stride: int, limit: int | None = None):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.source, self.stride = source, stride
        count = (len(source) + stride - 1) // stride
        self.count = count if limit is None else min(count, limit)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if not 0 <= index < self.count:
            raise IndexError(f"sample index {index} out of range for {self.count} samples")
        return self.source[index * self.stride]


class SpreadSamples:
    """At most `limit` items spread evenly over a random-access source (item i is source item
    floor(i * len / limit)): an evaluation subset that visits every sequence of a split, where
    the first `limit` records would be the first few sequences only."""

    def __init__(self, source, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.source, self.count = source, min(limit, len(source))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if not 0 <= index < self.count:
            raise IndexError(f"sample index {index} out of range for {self.count} samples")
        return self.source[index * len(self.source) // self.count]


def hold_out_sequences(source, num_sequences: int):
    """(training source, validation source) from a `data_loaders.pipeline.SampleSource`: the
    last `num_sequences` sequences become a separate source without gap jitter, the training
    source keeps the others and the original's gap, policy and jitter."""
    from data_loaders.pipeline import SampleSource

    index = source.index
    train_ids, val_ids = split_by_sequence(index.sequence_index, num_sequences)

    def subset(ids, jitter: bool):
        return SampleSource(RecordSubset(source.records, ids), gap=index.gap, policy=index.policy,
                            train_jitter=jitter, jitter=index.jitter,
                            frame_ids=(index.sequence_index[ids], index.frame_number[ids]),
                            include_hand_mask=source.include_hand_mask)

    return subset(train_ids, index.train_jitter), subset(val_ids, False)
