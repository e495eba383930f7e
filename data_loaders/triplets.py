"""Frame triplets [t, t-k, t-2k]: which stored records make up one multi-frame sample.

A record is one frame (`data_loaders.records`); a sample is the current frame t plus a short-term
frame (gap g1, nominally k) and a long-term frame (gap g2, nominally 2k) of the same video, in the
order [t, t - g1, t - g2] of the batch contract (frame 0 = current). k = 5 for Dex-YCB, 30 for
HO3D-v2 (data_formats.md 2.9, 3.6).

Gap rule shared by both policies (official `DEX_YCB_MF.py` / `HO3D_MF.py`), t = frame number of the
current record:
- t < 2k: g1 = t // 2, g2 = t, so the long-term frame is frame 0 of the stream and at t = 0 all
  three frames coincide;
- otherwise g1 = k, g2 = 2k; with the training jitter (u1, u2 ~ U[0, 1) from the caller's
  generator, truncation toward zero as Python's `int`):
  g1 = k + trunc(2 j1 (u1 - 1/2)), g2 = 2k - trunc(j2 u2). The default (j1, j2) = (2, 2) is the
  Dex-YCB rule (g1 in {k-1, k, k+1} with probabilities 1/4, 1/2, 1/4; g2 in {2k-1, 2k});
  HO3D's loader uses (5, 5) (g1 in 26..34, g2 in 56..60 for k = 30).

Policies:
- "by_frame" (default, recommended by data_formats.md 2.9): the frames t - g are looked up by
  (sequence, frame number); a frame without a record is replaced by the nearest EARLIER recorded
  frame of the same sequence, or, when the sequence has none that early, by its first recorded
  frame (which is never later than t). Never crosses sequences; independent of record order.
- "h2onet": the official list-offset rule: record ids i - g1 and i - g2 in record order (so the
  frame numbers actually used depend on which frames are missing, and offsets may cross into the
  previous sequence). A negative id wraps to the end of the list exactly as the official Python
  list indexing does (ids below -N, impossible with real gaps, wrap modulo N).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Policy = Literal["by_frame", "h2onet"]
POLICIES = ("by_frame", "h2onet")
DEXYCB_JITTER = (2, 2)
HO3D_JITTER = (5, 5)


def _as_int_vector(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array [N]; got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers; got dtype {array.dtype}")
    return array.astype(np.int64)


class TripletIndex:
    """Record ids of the frames [t, t - g1, t - g2] for every record.

    Args:
      sequence_index: ``[N]`` int, the sequence of each record.
      frame_number: ``[N]`` int >= 0, the frame number of each record within its sequence.
      gap: k >= 1, the nominal short-term gap in frames.
      policy: "by_frame" or "h2onet" (module docstring).
      train_jitter: draw the official random gap jitter in :meth:`triplet` (needs an ``rng``).
      jitter: (j1, j2) of the jitter formula; (2, 2) for Dex-YCB, (5, 5) for HO3D.
    """

    def __init__(self, sequence_index: Sequence[int] | np.ndarray, frame_number: Sequence[int] | np.ndarray,
                 gap: int, policy: Policy = "by_frame", train_jitter: bool = False,
                 jitter: tuple[int, int] = DEXYCB_JITTER):
        self.sequence_index = _as_int_vector("sequence_index", sequence_index)
        self.frame_number = _as_int_vector("frame_number", frame_number)
        if self.sequence_index.shape != self.frame_number.shape:
            raise ValueError(f"sequence_index has {self.sequence_index.size} entries but frame_number has "
                             f"{self.frame_number.size}; expected one of each per record")
        if self.frame_number.size == 0:
            raise ValueError("TripletIndex needs at least one record; got empty sequence_index/frame_number")
        if np.any(self.frame_number < 0):
            raise ValueError(f"frame_number must be >= 0; got minimum {self.frame_number.min()}")
        if int(gap) != gap or gap < 1:
            raise ValueError(f"gap k must be an integer >= 1; got {gap!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}; got {policy!r}")
        if len(jitter) != 2 or any(int(j) != j or j < 1 for j in jitter):
            raise ValueError(f"jitter must be two integers >= 1 (j1, j2); got {jitter!r}")
        if train_jitter and (jitter[0] - 1 > gap or jitter[1] - 1 > 2 * gap):
            raise ValueError(f"jitter {tuple(jitter)} can make a gap negative (a future frame) for k={gap}")
        self.gap = int(gap)
        self.policy = policy
        self.train_jitter = bool(train_jitter)
        self.jitter = (int(jitter[0]), int(jitter[1]))
        # Per sequence: its record ids sorted by frame number, for "by_frame" look-ups.
        order = np.lexsort((self.frame_number, self.sequence_index))
        sorted_seq, sorted_frame = self.sequence_index[order], self.frame_number[order]
        duplicate = (sorted_seq[1:] == sorted_seq[:-1]) & (sorted_frame[1:] == sorted_frame[:-1])
        if policy == "by_frame" and np.any(duplicate):
            j = int(np.argmax(duplicate))
            raise ValueError(f"records {order[j]} and {order[j + 1]} are both sequence {sorted_seq[j]} frame "
                             f"{sorted_frame[j]}; 'by_frame' needs unique (sequence, frame) pairs")
        self._order = order
        self._frame_stride = int(self.frame_number.max()) + 1
        self._sorted_key = self._key(sorted_seq, sorted_frame)
        starts = np.flatnonzero(np.r_[True, sorted_seq[1:] != sorted_seq[:-1]])
        ends = np.r_[starts[1:], sorted_seq.size]
        # For every record: where its sequence starts inside the sorted arrays.
        span_of_sorted = np.repeat(np.arange(starts.size), ends - starts)
        self._span_start = np.empty_like(order)
        self._span_start[order] = starts[span_of_sorted]
        self._fixed = self._ids_for_gaps(np.arange(self.frame_number.size), *self._fixed_gaps())

    def _key(self, sequence: np.ndarray, frame: np.ndarray) -> np.ndarray:
        # Monotonic in (sequence, frame) for frames in [0, max frame]; smaller frames only move the
        # key into earlier sequences, which the clamp in _ids_for_gaps undoes.
        return sequence * self._frame_stride + frame

    def __len__(self) -> int:
        return int(self.frame_number.size)

    def _fixed_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        t, k = self.frame_number, self.gap
        early = t < 2 * k
        return np.where(early, t // 2, k), np.where(early, t, 2 * k)

    def _ids_for_gaps(self, ids: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
        """``[n] ids, [n] gaps -> [n, 3]`` record ids of frames (t, t - g1, t - g2)."""
        if self.policy == "h2onet":
            n = len(self)
            return np.stack([ids, (ids - g1) % n, (ids - g2) % n], axis=-1)
        out = [ids]
        for g in (g1, g2):
            # One binary search over (sequence, frame) keys; a wanted frame before the sequence's
            # first record lands in an earlier sequence (or at -1) and is clamped to that first record.
            wanted = self._key(self.sequence_index[ids], self.frame_number[ids] - g)
            pos = np.searchsorted(self._sorted_key, wanted, side="right") - 1
            out.append(self._order[np.maximum(pos, self._span_start[ids])])
        return np.stack(out, axis=-1)

    def gaps(self, index: int, rng: np.random.Generator | None = None) -> tuple[int, int]:
        """The gaps (g1, g2) in frames for record `index` (jittered when `train_jitter`)."""
        self._check_index(index)
        t, k = int(self.frame_number[index]), self.gap
        if not self.train_jitter:
            return (t // 2, t) if t < 2 * k else (k, 2 * k)
        if rng is None:
            raise ValueError("TripletIndex(train_jitter=True) needs a numpy Generator `rng` per call")
        # Both uniforms are drawn even for early frames so later draws from `rng` (augmentation)
        # do not depend on the frame number.
        u1, u2 = rng.random(), rng.random()
        if t < 2 * k:
            return t // 2, t
        return k + int((u1 - 0.5) * 2 * self.jitter[0]), 2 * k - int(u2 * self.jitter[1])

    def triplet(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``[3]`` int64 record ids of frames [t, t - g1, t - g2] for record `index`."""
        self._check_index(index)
        if not self.train_jitter:
            return self.fixed_triplet(index)
        g1, g2 = self.gaps(index, rng)
        return self._ids_for_gaps(np.array([index]), np.array([g1]), np.array([g2]))[0]

    def fixed_triplet(self, index: int) -> np.ndarray:
        """``[3]`` int64 record ids with the fixed (test-time) gaps, whatever `train_jitter` says."""
        self._check_index(index)
        return self._fixed[index].copy()

    def all_triplets(self) -> np.ndarray:
        """``[N, 3]`` int64 record ids with the fixed (test-time) gaps."""
        return self._fixed.copy()

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"record index {index} out of range for {len(self)} records")
