"""The grain input pipeline: stored frame records -> triplet samples -> augmented, batched batches.

`SampleSource` is a random-access source (``len``, ``[i]``) over any records source (a TFDS
``as_data_source`` split of the project's builders, or a list of record dicts following
`data_loaders.records`); item i is the sample of record i: frames [t, t - g1, t - g2]
(`data_loaders.triplets`) stacked on a leading T = 3 axis, with exactly the keys, shapes and
dtypes of `data_loaders.features.BATCH_FEATURES`:
- image = uint8 crop / 255 (float32 in [0, 1]); joints_img = joints_img_px / 128;
- rot_mat = Rodrigues(pose[:3]) (the global rotation, v' = R v);
- ROOT-RELATIVE rotated targets: verts_r_m = verts_cam_m - joints_cam_m[0], joints_r_m likewise
  (each frame about its own joint 0);
- canonical targets: R^T applied to the rotated ones (row-vector form ``verts_r_m @ R``), so
  ``joints_r_m == joints_c_m @ R^T`` holds exactly (up to float32 rounding);
- occ_label_mask = occ_label_valid; mask = label_valid of frame 0; sequence_index of frame 0;
  frame_index = the three frame numbers.

`make_train_dataset` builds the training stream (seed -> per-process shard -> shuffle -> repeat
-> random map (gap jitter + augmentation) -> iter dataset with a bounded read-ahead -> batch ->
optional worker processes);
its iterator has ``get_state``/``set_state`` for checkpoints. `make_eval_dataset` gives fixed-order
batches padded to full size with mask = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import grain
import numpy as np

from data_loaders import augment as augment_lib
from data_loaders.features import BATCH_FEATURES, CROP_SIZE_PX
from data_loaders.triplets import DEXYCB_JITTER, Policy, TripletIndex

_STACKED_KEYS = ("joints_cam_m", "verts_cam_m", "pose", "shape", "occ_labels", "focal_px", "principal_px")


def _axis_angle_to_rotmat(axis_angle: np.ndarray) -> np.ndarray:
    """``[3] -> [3, 3]`` float64 (OpenCV's Rodrigues; exact identity at zero angle)."""
    rotmat, _ = cv2.Rodrigues(np.asarray(axis_angle, np.float64).reshape(3, 1))
    return rotmat


def assemble_sample(frames: Sequence[dict[str, Any]], include_hand_mask: bool = False) -> dict[str, np.ndarray]:
    """Stacks T frame records (current frame first) into one sample of the batch contract.

    Args:
      frames: T record dicts (`data_loaders.records.FRAME_FEATURES`).
      include_hand_mask: also emit ``hand_mask`` ``[T, H, W]`` uint8 (not part of the contract;
        for previews and augmentation checks).

    Returns:
      Per-sample arrays following `data_loaders.features.BATCH_FEATURES` (T = len(frames)).
    """
    if len(frames) == 0:
        raise ValueError("assemble_sample needs at least one frame record")
    required = _STACKED_KEYS + ("image", "joints_img_px", "occ_label_valid", "frame_number", "sequence_index",
                                "label_valid") + (("hand_mask",) if include_hand_mask else ())
    for key in required:
        if key not in frames[0]:
            raise KeyError(f"frame record lacks {key!r}; expected the keys of data_loaders.records.FRAME_FEATURES")
    sample = {key: np.stack([np.asarray(f[key]) for f in frames]) for key in _STACKED_KEYS}
    sample["image"] = np.stack([np.asarray(f["image"], np.float32) for f in frames]) / np.float32(255.0)
    joints_px = np.stack([np.asarray(f["joints_img_px"], np.float32) for f in frames])
    sample["joints_img"] = joints_px / np.float32(CROP_SIZE_PX)
    rot = np.stack([_axis_angle_to_rotmat(np.asarray(f["pose"])[:3]) for f in frames])
    joints_cam = sample["joints_cam_m"].astype(np.float64)
    root = joints_cam[:, :1]
    joints_r = joints_cam - root
    verts_r = sample["verts_cam_m"].astype(np.float64) - root
    sample["rot_mat"] = rot
    sample["joints_r_m"], sample["verts_r_m"] = joints_r, verts_r
    # Row vectors: (R^T x)^T = x^T R.
    sample["joints_c_m"], sample["verts_c_m"] = joints_r @ rot, verts_r @ rot
    sample["occ_label_mask"] = np.array([f["occ_label_valid"] for f in frames], np.float32)
    sample["frame_index"] = np.array([f["frame_number"] for f in frames], np.int32)
    sample["sequence_index"] = np.int32(frames[0]["sequence_index"])
    sample["mask"] = np.float32(frames[0]["label_valid"])
    out = {key: np.asarray(sample[key]).astype(spec.dtype) for key, spec in BATCH_FEATURES.items()}
    if include_hand_mask:
        out["hand_mask"] = np.stack([np.asarray(f["hand_mask"], np.uint8) for f in frames])
    return out


def scan_frame_ids(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``([N], [N])`` int64 sequence_index and frame_number of every record (reads every record once)."""
    sequence_index = np.empty(len(records), np.int64)
    frame_number = np.empty(len(records), np.int64)
    for i in range(len(records)):
        record = records[i]
        sequence_index[i], frame_number[i] = int(record["sequence_index"]), int(record["frame_number"])
    return sequence_index, frame_number


class SampleSource:
    """Random-access source of triplet samples over a records source (grain-compatible).

    Args:
      records: random-access records (``len`` and ``[i]``), e.g.
        ``tfds.builder(name).as_data_source(split)`` or a list of record dicts.
      gap: k, the nominal short-term gap (5 for Dex-YCB, 30 for HO3D-v2).
      policy: "by_frame" or "h2onet" (`data_loaders.triplets`).
      train_jitter: jitter the gaps in :meth:`load` when given an ``rng`` (training).
      jitter: (j1, j2) of the jitter formula (`triplets.DEXYCB_JITTER`, `triplets.HO3D_JITTER`).
      frame_ids: optional ``(sequence_index [N], frame_number [N])``; without it every record is
        read once here to find them (slow for a full Dex-YCB split: pass them when known).
      include_hand_mask: add ``hand_mask`` ``[T, H, W]`` uint8 to each sample.
    """

    def __init__(self, records: Sequence[dict[str, Any]], gap: int, policy: Policy = "by_frame",
                 train_jitter: bool = False, jitter: tuple[int, int] = DEXYCB_JITTER,
                 frame_ids: tuple[np.ndarray, np.ndarray] | None = None, include_hand_mask: bool = False):
        if not hasattr(records, "__len__") or not hasattr(records, "__getitem__"):
            raise ValueError(f"records must be random-access (len and [i]); got {type(records).__name__}")
        self.records = records
        sequence_index, frame_number = scan_frame_ids(records) if frame_ids is None else frame_ids
        if len(sequence_index) != len(records):
            raise ValueError(f"frame_ids describe {len(sequence_index)} records but the source has {len(records)}")
        self.index = TripletIndex(sequence_index, frame_number, gap, policy=policy,
                                  train_jitter=train_jitter, jitter=jitter)
        self.include_hand_mask = include_hand_mask

    def __len__(self) -> int:
        return len(self.index)

    def load(self, index: int, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Sample of record `index`; with ``train_jitter`` the gaps are drawn from `rng`."""
        index = int(index)
        if self.index.train_jitter and rng is not None:
            ids = self.index.triplet(index, rng)
        else:
            ids = self.index.fixed_triplet(index)
        return assemble_sample([self.records[int(i)] for i in ids], include_hand_mask=self.include_hand_mask)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        return self.load(index)

    def __repr__(self) -> str:
        return (f"SampleSource({len(self)} samples, gap={self.index.gap}, policy={self.index.policy!r}, "
                f"train_jitter={self.index.train_jitter})")


class TrainSampleTransform(grain.transforms.RandomMap):
    """Record index -> sample with jittered gaps (if the source has them) and one augmentation.

    The per-element generator grain passes in is seeded from the dataset seed and the element's
    position in the (shuffled, repeated) stream, so every epoch differs and reruns are identical.
    """

    def __init__(self, source: SampleSource, augment: bool = True, augment_options: dict[str, float] | None = None):
        self.source = source
        self.augment = augment
        self.augment_options = dict(augment_options or {})

    def random_map(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        sample = self.source.load(int(index), rng)
        if self.augment:
            sample = augment_lib.augment_sample(sample, augment_lib.sample_augment_params(rng, **self.augment_options))
        return sample


def _shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax  # only for the process layout; the pipeline itself never touches devices

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} must lie in [0, shard_count={shard_count})")
    return int(shard_index), int(shard_count)


def _worker_init(worker_index: int, worker_count: int) -> None:
    del worker_index, worker_count
    cv2.setNumThreads(0)  # one OpenCV thread per worker process: workers already parallelise


def _absl_flags_parsed() -> None:
    # grain 0.2.18's worker start reads an absl flag and raises UnparsedFlagAccessError in scripts
    # that do not run absl.app (google/grain#1355, fixed upstream by #1362): flag defaults are
    # what we want, so declare the flags parsed when nobody has parsed them.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_train_dataset(sample_source: SampleSource, batch_size: int, seed: int, augment: bool = True,
                       worker_count: int = 0, shard_index: int | None = None, shard_count: int | None = None,
                       augment_options: dict[str, float] | None = None, read_threads: int = 4,
                       prefetch_samples: int | None = None) -> grain.IterDataset:
    """Endless shuffled, augmented training batches for THIS process.

    Args:
      sample_source: the training `SampleSource` (use ``train_jitter=True`` for the official jitter).
      batch_size: GLOBAL batch size; each of the `shard_count` processes emits
        ``batch_size // shard_count`` samples per batch (it must divide evenly).
      seed: seeds the shuffle (reshuffled every epoch), gap jitter and augmentation.
      augment: apply `augment.augment_sample` with `augment.sample_augment_params`.
      worker_count: worker processes (grain ``mp_prefetch``); 0 runs in this process.
      shard_index, shard_count: this process's data shard; default jax.process_index/count.
      augment_options: keyword overrides for `augment.sample_augment_params` (ranges, rot_prob).
      read_threads: threads assembling samples (per worker process).
      prefetch_samples: samples prepared ahead per worker (default two local batches; grain's own
        default of 500 would hold ~300 MB of float32 triplets per worker).

    Returns:
      A grain IterDataset of batches ``{key: [B_local, ...]}``; ``iter(...)`` gives an iterator
      whose ``get_state()``/``set_state()`` resume the stream exactly.
    """
    shard_index, shard_count = _shard(shard_index, shard_count)
    if batch_size < 1 or batch_size % shard_count:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of the process count {shard_count}")
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0; got {worker_count}")
    local_batch = batch_size // shard_count
    dataset = grain.MapDataset.range(len(sample_source)).seed(seed)
    dataset = dataset[shard_index::shard_count]
    if len(dataset) < local_batch:
        raise ValueError(f"shard {shard_index} holds {len(dataset)} samples, fewer than one batch of {local_batch}")
    dataset = dataset.shuffle().repeat()
    dataset = dataset.random_map(TrainSampleTransform(sample_source, augment, augment_options))
    if read_threads < 1:
        raise ValueError(f"read_threads must be >= 1; got {read_threads}")
    prefetch = 2 * local_batch if prefetch_samples is None else prefetch_samples
    iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch))
    iter_dataset = iter_dataset.batch(local_batch, drop_remainder=True)
    if worker_count > 0:
        _absl_flags_parsed()
        iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count),
                                                worker_init_fn=_worker_init)
    return iter_dataset


class _EvalBatch:
    """Batch b of this shard: samples shard_index + shard_count * j, padded with mask = 0."""

    def __init__(self, source: SampleSource, batch_size: int, shard_index: int, shard_count: int):
        self.source, self.batch_size = source, batch_size
        self.ids = np.arange(shard_index, len(source), shard_count)

    def __call__(self, batch_number: int) -> dict[str, np.ndarray]:
        ids = self.ids[batch_number * self.batch_size:(batch_number + 1) * self.batch_size]
        samples = [self.source[int(i)] for i in ids]
        # Pads repeat a real sample (finite geometry for alignment metrics) but carry mask = 0.
        filler = dict(samples[-1] if samples else self.source[int(self.ids[-1] if self.ids.size else 0)])
        filler["mask"] = np.float32(0.0)
        samples += [filler] * (self.batch_size - len(samples))
        return {key: np.stack([s[key] for s in samples]) for key in samples[0]}


def make_eval_dataset(sample_source: SampleSource, batch_size: int, shard_index: int | None = None,
                      shard_count: int | None = None) -> grain.MapDataset:
    """Fixed-order, un-augmented batches of this process's shard; the last ones padded (mask = 0).

    Every process gets the same number of batches, ``ceil(ceil(N / shard_count) / batch_size)``
    (fixed shapes, no process waits for another), and the real samples over all processes are
    exactly the N samples once. `batch_size` is the per-process batch.
    """
    shard_index, shard_count = _shard(shard_index, shard_count)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    per_shard = -(-len(sample_source) // shard_count)
    num_batches = -(-per_shard // batch_size)
    return grain.MapDataset.range(num_batches).map(_EvalBatch(sample_source, batch_size, shard_index, shard_count))


def eval_batches(sample_source: SampleSource, batch_size: int, **kwargs) -> list[dict[str, np.ndarray]]:
    """All eval batches of `make_eval_dataset` as a list (small splits, tests)."""
    dataset = make_eval_dataset(sample_source, batch_size, **kwargs)
    return [dataset[i] for i in range(len(dataset))]


__all__ = ["SampleSource", "TrainSampleTransform", "assemble_sample", "make_eval_dataset", "make_train_dataset",
           "scan_frame_ids", "eval_batches"]


class FirstSamples:
    """The first `limit` items of a random-access source (evaluation subsets, previews)."""

    def __init__(self, source, limit: int):
        self.source, self.limit = source, min(limit, len(source))

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int):
        if not 0 <= index < self.limit:
            raise IndexError(f"sample index {index} out of range for {self.limit} samples")
        return self.source[index]
