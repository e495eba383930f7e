"""The stored frame record: what every dataset builder (synthetic, Dex-YCB, HO3D-v2) writes.

A record is ONE frame of one sequence, already cropped to the 128 x 128 crop of the dataset's
crop convention (data_formats.md section 4). The pipeline (`data_loaders.pipeline`) looks frames
up by (sequence, frame number), assembles triplets [t, t-k, t-2k], augments them and emits the
batch contract of `data_loaders.features`. Builders store only `tfds.features.Tensor` features
(no TensorFlow needed to build or read), declared from :data:`FRAME_FEATURES`.

Conventions (as `features.py`): OpenCV camera frame, metres, crop pixels; `pose` holds the 16
absolute axis-angle rotations actually applied by the hand model (the flat-hand-mean convention,
root first, root expressed in the camera frame); occlusion labels 1 = occluded, heads
[thumb, index, middle, ring, little, global]. Records of left hands are stored mirrored to right
hands (`is_mirrored` = 1). V is the vertex count of the dataset's hand model (778 for MANO), S its
number of shape parameters.
"""

from __future__ import annotations

import numpy as np

from data_loaders.features import CROP_SIZE_PX, NUM_JOINTS, NUM_OCC_HEADS, FeatureSpec


RecordSpec = FeatureSpec  # one (shape, dtype, doc) spec type for records and batches

FRAME_FEATURES: dict[str, RecordSpec] = {
    "image": RecordSpec((CROP_SIZE_PX, CROP_SIZE_PX, 3), np.uint8, "RGB crop"),
    "hand_mask": RecordSpec((CROP_SIZE_PX, CROP_SIZE_PX), np.uint8, "1 where the visible hand is"),
    "joints_img_px": RecordSpec((NUM_JOINTS, 2), np.float32, "2D joints in crop pixels (x=col, y=row)"),
    "joints_cam_m": RecordSpec((NUM_JOINTS, 3), np.float32, "3D joints, camera frame"),
    "verts_cam_m": RecordSpec(("V", 3), np.float32, "mesh vertices, camera frame"),
    "pose": RecordSpec((48,), np.float32, "absolute axis-angle pose, root (camera frame) first"),
    "shape": RecordSpec(("S",), np.float32, "hand model shape parameters"),
    "focal_px": RecordSpec((2,), np.float32, "crop-camera focal length (fx, fy)"),
    "principal_px": RecordSpec((2,), np.float32, "crop-camera principal point (cx, cy)"),
    "occ_labels": RecordSpec((NUM_OCC_HEADS,), np.int32, "1 = occluded; thumb..little, global"),
    "occ_label_valid": RecordSpec((), np.uint8, "1 if occ_labels exist for this frame"),
    "label_valid": RecordSpec((), np.uint8, "1 if the 3D labels exist (0 on HO3D evaluation)"),
    "is_mirrored": RecordSpec((), np.uint8, "1 if a left hand was mirrored to a right hand"),
    "sequence_index": RecordSpec((), np.int32, "dense index of the sequence within the split"),
    "frame_number": RecordSpec((), np.int32, "frame number within its sequence"),
    "sample_id": RecordSpec((), np.object_, "dataset-native id (image path), bytes"),
}


def frame_feature_shapes(num_vertices: int, num_shape: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Concrete (shape, dtype) per record key for a hand model with V and S fixed."""
    dims = {"V": num_vertices, "S": num_shape}
    return {
        key: (tuple(dims[d] if isinstance(d, str) else d for d in spec.shape), spec.dtype)
        for key, spec in FRAME_FEATURES.items()
    }


def tfds_features(num_vertices: int, num_shape: int):
    """A `tfds.features.FeaturesDict` of Tensor features for the record (imports tfds lazily)."""
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict({
        key: tfds.features.Tensor(shape=shape, dtype=dtype)
        for key, (shape, dtype) in frame_feature_shapes(num_vertices, num_shape).items()
    })


def check_record(record: dict, num_vertices: int, num_shape: int, where: str = "record") -> None:
    """Raises ValueError naming the first key whose shape or dtype breaks the record contract."""
    for key, (shape, dtype) in frame_feature_shapes(num_vertices, num_shape).items():
        if key not in record:
            raise ValueError(f"{where} lacks the key {key!r} ({FRAME_FEATURES[key].doc})")
        if dtype is np.object_:
            continue
        value = np.asarray(record[key])
        # TFDS hands scalar Tensor features back as Python ints: accept the same kind of number.
        scalar_ok = shape == () and value.shape == () and {value.dtype.kind, np.dtype(dtype).kind} <= set("iu")
        if not scalar_ok and (value.shape != shape or value.dtype != dtype):
            raise ValueError(
                f"{where}[{key!r}] has shape {value.shape} dtype {value.dtype}; expected {shape} {np.dtype(dtype)}"
            )
