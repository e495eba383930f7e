"""The batch contract: every key a training/evaluation batch holds, in one place.

A dataset record is ONE frame; the pipeline assembles triplets [t, t-k, t-2k] (frame axis T = 3
right after the batch axis, frame 0 = current) and batches them. Shape letters: B batch, T frames,
V vertices of the dataset's hand topology, J = 21 joints (common order, data_formats.md 0.2),
H = W = 128 crop size.

Conventions: camera frame of OpenCV (x right, y down, z forward), metres (`_m`), pixels (`_px`);
"rotated" targets = the camera-frame mesh and joints minus the frame's own root joint (global
rotation kept, translation removed); "canonical" targets = the rotated ones with the global
rotation undone (v_c = R^T v_r), so both are root-relative and joints_r = joints_c R^T exactly.
The network rotates its canonical prediction about its predicted root joint (architecture.md 11),
which these targets match. Occlusion labels 1 = occluded, heads
[thumb, index, middle, ring, little, global].
"""

from __future__ import annotations

import dataclasses

import numpy as np

CROP_SIZE_PX = 128
NUM_FRAMES = 3
NUM_JOINTS = 21
NUM_OCC_HEADS = 6


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One batch key: per-sample shape (symbols 'T', 'V', or ints), dtype, meaning."""

    shape: tuple[int | str, ...]
    dtype: type
    doc: str


# Per-sample shapes (a batch prepends B).
BATCH_FEATURES: dict[str, FeatureSpec] = {
    "image": FeatureSpec(("T", CROP_SIZE_PX, CROP_SIZE_PX, 3), np.float32, "RGB crop in [0, 1]"),
    "joints_img": FeatureSpec(("T", NUM_JOINTS, 2), np.float32, "2D joints / crop size (x=col, y=row)"),
    "joints_cam_m": FeatureSpec(("T", NUM_JOINTS, 3), np.float32, "3D joints, camera frame"),
    "verts_cam_m": FeatureSpec(("T", "V", 3), np.float32, "mesh vertices, camera frame"),
    "verts_c_m": FeatureSpec(("T", "V", 3), np.float32, "canonical mesh (no global rotation)"),
    "joints_c_m": FeatureSpec(("T", NUM_JOINTS, 3), np.float32, "canonical joints"),
    "verts_r_m": FeatureSpec(("T", "V", 3), np.float32, "rotated mesh (global rotation, no translation)"),
    "joints_r_m": FeatureSpec(("T", NUM_JOINTS, 3), np.float32, "rotated joints"),
    "rot_mat": FeatureSpec(("T", 3, 3), np.float32, "global hand rotation, v' = R v"),
    "pose": FeatureSpec(("T", 48), np.float32, "hand model pose, axis-angle, root first"),
    "shape": FeatureSpec(("T", "S"), np.float32, "hand model shape parameters"),
    "occ_labels": FeatureSpec(("T", NUM_OCC_HEADS), np.int32, "1 = occluded; heads thumb..little, global"),
    "occ_label_mask": FeatureSpec(("T",), np.float32, "1 where occlusion labels exist"),
    "focal_px": FeatureSpec(("T", 2), np.float32, "crop-camera focal length (fx, fy)"),
    "principal_px": FeatureSpec(("T", 2), np.float32, "crop-camera principal point (cx, cy)"),
    "frame_index": FeatureSpec(("T",), np.int32, "frame number within its sequence"),
    "sequence_index": FeatureSpec((), np.int32, "dense index of the sequence within the split"),
    "mask": FeatureSpec((), np.float32, "1 for real samples, 0 for padding (eval batches)"),
}


def check_batch(batch: dict[str, np.ndarray], num_vertices: int, num_shape: int) -> None:
    """Raises ValueError naming the first key whose shape or dtype breaks the contract."""
    dims = {"T": NUM_FRAMES, "V": num_vertices, "S": num_shape}
    for key, spec in BATCH_FEATURES.items():
        if key not in batch:
            raise ValueError(f"batch lacks the key {key!r} ({spec.doc})")
        value = np.asarray(batch[key])
        expected = tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)
        if value.shape[1:] != expected:
            raise ValueError(
                f"batch[{key!r}] has per-sample shape {value.shape[1:]}, expected {expected}"
            )
        if value.dtype != spec.dtype:
            raise ValueError(f"batch[{key!r}] has dtype {value.dtype}, expected {np.dtype(spec.dtype)}")
