"""Frame triplets: brute-force references for both policies, the documented early-frame rule, jitter."""

import numpy as np
import pytest

from data_loaders.triplets import HO3D_JITTER, TripletIndex


def random_index_arrays(rng, num_sequences=4, max_frames=40, drop=0.25):
    """Sequences with random lengths, random missing frames, records in a random order."""
    seq, frame = [], []
    for s in range(num_sequences):
        n = int(rng.integers(1, max_frames))
        kept = [f for f in range(n) if f == n - 1 or rng.random() > drop]
        seq += [s * 3 + 1] * len(kept)  # sparse, non-zero sequence ids
        frame += kept
    order = rng.permutation(len(seq))
    return np.array(seq)[order], np.array(frame)[order]


def by_frame_reference(seq, frame, i, g):
    """Brute force: the wanted frame, else the nearest earlier recorded one, else the first one."""
    wanted = frame[i] - g
    same = [j for j in range(len(seq)) if seq[j] == seq[i]]
    earlier = [j for j in same if frame[j] <= wanted]
    if earlier:
        return max(earlier, key=lambda j: frame[j])
    return min(same, key=lambda j: frame[j])


def documented_gaps(t, k):
    return (t // 2, t) if t < 2 * k else (k, 2 * k)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_by_frame_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    seq, frame = random_index_arrays(rng)
    index = TripletIndex(seq, frame, gap=k)
    triplets = index.all_triplets()
    for i in range(len(seq)):
        g1, g2 = documented_gaps(frame[i], k)
        expected = [i, by_frame_reference(seq, frame, i, g1), by_frame_reference(seq, frame, i, g2)]
        np.testing.assert_array_equal(triplets[i], expected)
        np.testing.assert_array_equal(index.triplet(i), expected)
        assert (seq[triplets[i]] == seq[i]).all()  # never crosses sequences


def test_by_frame_documented_examples():
    # One complete sequence 0..29 and a second one lacking frames 18 and 19.
    frames = list(range(30)) + [f for f in range(30) if f not in (18, 19)]
    seq = [0] * 30 + [1] * 28
    index = TripletIndex(seq, frames, gap=5)
    frame_of = np.array(frames)
    got = lambda i: frame_of[index.triplet(i)].tolist()  # noqa: E731
    assert got(0) == [0, 0, 0]  # t = 0: all three coincide
    assert got(7) == [7, 4, 0]  # t < 2k: g1 = t // 2 = 3, g2 = t (frame 0)
    assert got(9) == [9, 5, 0]
    assert got(10) == [10, 5, 0]
    assert got(23) == [23, 18, 13]
    i23 = 30 + frames[30:].index(23)
    assert got(i23) == [23, 17, 13]  # frame 18 missing -> nearest earlier frame 17
    assert (np.array(seq)[index.triplet(i23)] == 1).all()


def test_by_frame_sequence_without_early_frames_uses_its_first_frame():
    index = TripletIndex([4, 4, 4], [6, 7, 12], gap=5)
    frames = np.array([6, 7, 12])
    assert frames[index.triplet(1)].tolist() == [7, 6, 6]  # t=7 < 10: wants 3 and 0 -> first frame 6
    assert frames[index.triplet(2)].tolist() == [12, 7, 6]  # wants 7 and 2


@pytest.mark.parametrize("seed", [0, 1])
def test_h2onet_list_offsets_match_python_list_indexing(seed):
    rng = np.random.default_rng(seed)
    seq, frame = random_index_arrays(rng, drop=0.3)
    k = 3
    index = TripletIndex(seq, frame, gap=k, policy="h2onet")
    records = list(range(len(seq)))  # the official code indexes a Python list: negative ids wrap
    crossed = 0
    for i in range(len(seq)):
        g1, g2 = documented_gaps(frame[i], k)
        expected = [i, records[i - g1], records[i - g2]]
        np.testing.assert_array_equal(index.triplet(i), expected)
        crossed += int(seq[expected[2]] != seq[i])
    assert crossed > 0  # random order + missing frames: offsets do land in other sequences


def test_h2onet_differs_from_by_frame_when_frames_are_missing():
    frames = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]  # frame 4 missing
    by_frame = TripletIndex([0] * 12, frames, gap=3)
    h2onet = TripletIndex([0] * 12, frames, gap=3, policy="h2onet")
    f = np.array(frames)
    i = frames.index(9)
    assert f[by_frame.triplet(i)].tolist() == [9, 6, 3]
    assert f[h2onet.triplet(i)].tolist() == [9, 6, 2]  # the list offset skips over the missing frame


def official_jitter(u1, u2, k, j1, j2):
    """The official DEX_YCB_MF.py / HO3D_MF.py formulas with Python int() truncation."""
    return k + int((u1 - 0.5) * 2 * j1), 2 * k - int(u2 * j2)


@pytest.mark.parametrize(("k", "jitter", "set1", "set2"), [
    (5, (2, 2), {4: 0.25, 5: 0.5, 6: 0.25}, {9: 0.5, 10: 0.5}),
    (30, HO3D_JITTER, {**{g: 0.1 for g in range(26, 35)}, 30: 0.2}, {g: 0.2 for g in range(56, 61)}),
])
def test_train_jitter_follows_the_official_rule(k, jitter, set1, set2):
    t = 3 * k
    index = TripletIndex([0] * (t + 1), np.arange(t + 1), gap=k, train_jitter=True, jitter=jitter)
    rng, mirror = np.random.default_rng(7), np.random.default_rng(7)
    draws = []
    for _ in range(4000):
        g1, g2 = index.gaps(t, rng)
        assert (g1, g2) == official_jitter(mirror.random(), mirror.random(), k, *jitter)
        draws.append((g1, g2))
    draws = np.array(draws)
    for column, expected in ((0, set1), (1, set2)):
        values, counts = np.unique(draws[:, column], return_counts=True)
        assert set(values.tolist()) == set(expected)
        for v, c in zip(values, counts):
            assert abs(c / len(draws) - expected[v]) < 0.03  # ~4 binomial standard deviations
    # The jittered ids are the frames t - g (complete sequence, record id == frame number).
    rng = np.random.default_rng(3)
    for _ in range(20):
        state = rng.bit_generator.state
        ids = index.triplet(t, rng)
        rng_copy = np.random.default_rng()
        rng_copy.bit_generator.state = state
        g1, g2 = index.gaps(t, rng_copy)
        np.testing.assert_array_equal(ids, [t, t - g1, t - g2])


def test_jitter_leaves_early_frames_and_is_reproducible():
    index = TripletIndex([0] * 20, np.arange(20), gap=5, train_jitter=True)
    rng = np.random.default_rng(0)
    for t in range(10):
        assert index.gaps(t, rng) == (t // 2, t)
    a = [index.triplet(15, np.random.default_rng(s)).tolist() for s in range(10)]
    b = [index.triplet(15, np.random.default_rng(s)).tolist() for s in range(10)]
    assert a == b and len({tuple(x) for x in a}) > 1
    np.testing.assert_array_equal(index.fixed_triplet(15), [15, 10, 5])


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(sequence_index=[0, 0], frame_number=[0, 1, 2], gap=1), "2 entries but frame_number has 3"),
    (dict(sequence_index=[0, 0], frame_number=[0, 1], gap=0), "gap k must be an integer >= 1"),
    (dict(sequence_index=[0, 0], frame_number=[0, 1], gap=2.5), "gap k must be an integer >= 1"),
    (dict(sequence_index=[0, 0], frame_number=[0, 1], gap=1, policy="nearest"), "policy must be one of"),
    (dict(sequence_index=[0, 0], frame_number=[1, 1], gap=1), "both sequence 0 frame 1"),
    (dict(sequence_index=[0, 0], frame_number=[0.0, 1.0], gap=1), "frame_number must hold integers"),
    (dict(sequence_index=[0, 0], frame_number=[-1, 1], gap=1), "frame_number must be >= 0"),
    (dict(sequence_index=[[0, 0]], frame_number=[[0, 1]], gap=1), "1-D array"),
    (dict(sequence_index=[], frame_number=[], gap=1), "at least one record"),
    (dict(sequence_index=[0], frame_number=[0], gap=1, train_jitter=True, jitter=(3, 2)), "negative"),
])
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TripletIndex(**kwargs)


def test_jitter_needs_rng_and_index_in_range():
    index = TripletIndex([0, 0], [0, 1], gap=1, train_jitter=True)
    with pytest.raises(ValueError, match="needs a numpy Generator"):
        index.triplet(1)
    with pytest.raises(IndexError, match="out of range for 2 records"):
        index.triplet(2, np.random.default_rng(0))
    # Duplicates are fine for the list-offset policy (it never looks frames up by number).
    assert TripletIndex([0, 0], [1, 1], gap=1, policy="h2onet").triplet(1).tolist() == [1, 1, 0]
