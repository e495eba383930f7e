"""One stored frame record from a full image and its labels; shared by the Dex-YCB and HO3D-v2 builders.

The builders bring every input into *record space* first (left hands mirrored to right hands:
image flipped, u -> W - 1 - u, X -> -X, principal point x -> W - 1 - cx, MANO pose y/z negated)
and then call :func:`make_record`, which crops to the 128 x 128 record (data_formats.md 4) and
casts to the dtypes of :data:`data_loaders.records.FRAME_FEATURES`.

Also here: reading images with errors that name the file, the MANO runner that makes
ground-truth meshes, and occlusion labels (H2ONet's ``occ_v2`` JSON files, or computed with
:func:`h2o_jax.render.occlusion_labels.occlusion_labels` from the hand segmentation).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np

from data_loaders import crop
from h2o_jax.hand.mano_parts import MANO_NUM_FACES, MANO_NUM_VERTICES, mano_face_part, mano_vertex_part
from data_loaders.features import CROP_SIZE_PX, NUM_OCC_HEADS
from data_loaders.records import FRAME_FEATURES, check_record

# Keys of an occlusion-label JSON file in the order of the record's occ_labels heads.
OCC_JSON_KEYS = ("thumb", "index", "middle", "ring", "little", "global")
NUM_BETAS = 10


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an image file as [H, W, 3] uint8 RGB; missing or undecodable files raise naming the path."""
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"image file {path!r} is corrupt or not an image (OpenCV could not decode it)")
    return image[:, :, ::-1].copy()  # OpenCV decodes BGR; the record stores RGB


def read_occlusion_json(path: str | os.PathLike[str]) -> np.ndarray:
    """[6] int32 labels thumb, index, middle, ring, little, global (1 = occluded) from an occ_v2 JSON."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"occlusion label file {path!r} is not valid JSON: {e}") from None
    if not isinstance(content, dict):
        raise ValueError(f"occlusion label file {path!r} must hold a JSON object with keys {OCC_JSON_KEYS}")
    labels = []
    for key in OCC_JSON_KEYS:
        if key not in content:
            raise KeyError(f"occlusion label file {path!r} lacks the key {key!r}")
        value = content[key]
        if value not in (0, 1):
            raise ValueError(f"occlusion label file {path!r}: {key!r} must be 0 or 1, got {value!r}")
        labels.append(int(value))
    return np.asarray(labels, dtype=np.int32)


class HandModelRunner:
    """MANO loaded from the user's file, with a jitted forward pass for ground-truth meshes.

    Uses `h2o_jax.hand.mano` (`load_hand_model`, `hand_forward`). The record stores the pose in
    the flat-hand-mean convention, so :meth:`forward` takes that pose directly.
    """

    def __init__(self, mano_path: str | os.PathLike[str]):
        from h2o_jax.hand import mano

        self.mano_path = os.fspath(mano_path)
        self.model = mano.load_hand_model(self.mano_path)
        num_vertices = int(np.asarray(self.model.v_template_m).shape[0])
        num_betas = int(np.asarray(self.model.shapedirs).shape[-1])
        num_faces = int(np.asarray(self.model.faces).shape[0])
        if (num_vertices, num_faces, num_betas) != (MANO_NUM_VERTICES, MANO_NUM_FACES, NUM_BETAS):
            raise ValueError(
                f"MANO file {self.mano_path!r} has {num_vertices} vertices, {num_faces} faces and {num_betas} "
                f"shape components; the dataset records need MANO_RIGHT.pkl ({MANO_NUM_VERTICES}, "
                f"{MANO_NUM_FACES}, {NUM_BETAS})"
            )
        self.hands_mean = np.asarray(self.model.hands_mean, dtype=np.float64)
        self.faces = np.asarray(self.model.faces, dtype=np.int64)
        self.vertex_part = mano_vertex_part()
        self.face_part = mano_face_part()

    def forward(self, pose_flat: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MANO at a flat-hand-mean pose [48] and betas [10] -> (vertices [778, 3], joints [21, 3]) float64, metres."""
        out = _jitted_flat_forward()(self.model, np.asarray(pose_flat, np.float32), np.asarray(betas, np.float32))
        return np.asarray(out["vertices_m"], np.float64), np.asarray(out["joints_m"], np.float64)

    def mesh_at_root(self, pose_flat: np.ndarray, betas: np.ndarray, root_cam_m: np.ndarray) -> np.ndarray:
        """[778, 3] mesh translated so that its wrist joint lies at the annotated root [3].

        The annotations carry joints in the camera frame but no usable MANO translation (Dex-YCB's
        JSON has none; HO3D's moves with the frame change), so the mesh is placed by its wrist, as
        H2ONet's evaluation root-aligns GT meshes on the MANO joint 0.
        """
        verts, joints = self.forward(pose_flat, betas)
        return verts - joints[0] + np.asarray(root_cam_m, np.float64)

    def occlusion(self, verts_cam_m, focal_px, principal_px, image_hw, hand_mask) -> np.ndarray:
        """[6] int32 labels (thumb..little, global; 1 = occluded) by the released rule (data_formats 2.8)."""
        from h2o_jax.render.occlusion_labels import occlusion_labels

        labels = occlusion_labels(
            verts_cam_m, self.faces, self.vertex_part, tuple(focal_px), tuple(principal_px), tuple(image_hw),
            np.asarray(hand_mask, bool), face_part=self.face_part,
        )
        return np.concatenate([labels.fingers.astype(np.int32), [np.int32(labels.hand)]]).astype(np.int32)


@functools.cache
def _jitted_flat_forward():
    """`hand_forward(model, pose, betas, flat_hand_mean=True)` jitted once per process (the model is
    an argument, so every builder instance and MANO file of the same shapes reuses the compile)."""
    import jax

    from h2o_jax.hand import mano

    return jax.jit(functools.partial(mano.hand_forward, flat_hand_mean=True))


def make_record(
    *,
    image_rgb: np.ndarray,
    bbox: np.ndarray,
    mirror_width_px: int | None,
    focal_px: np.ndarray,
    principal_px: np.ndarray,
    joints_img_px: np.ndarray,
    joints_cam_m: np.ndarray,
    verts_cam_m: np.ndarray,
    pose: np.ndarray,
    shape: np.ndarray,
    hand_mask: np.ndarray | None,
    occ_labels: np.ndarray | None,
    label_valid: bool,
    sequence_index: int,
    frame_number: int,
    sample_id: str,
) -> dict[str, Any]:
    """Crops one frame (already in record space) and returns the record dict of `records.FRAME_FEATURES`.

    Args:
      image_rgb: [H, W, 3] uint8 full image, already flipped for a mirrored sample.
      bbox: [4] crop box [x, y, w, h] from the *unmirrored* joints (data_formats 4.3).
      mirror_width_px: the image width W for a mirrored sample (its box centre is mirrored), else None.
      focal_px, principal_px: [2] full-image camera (principal already mirrored).
      joints_img_px: [21, 2] full-image 2D joints (already mirrored).
      joints_cam_m: [21, 3] camera-frame joints, metres (already mirrored).
      verts_cam_m: [V, 3] camera-frame mesh, metres.
      pose: [48] flat-hand-mean axis-angle pose, root in the camera frame.
      shape: [S] shape parameters.
      hand_mask: [H, W] bool hand segmentation (already mirrored), or None when the dataset has none
        for this frame (the record then stores zeros: the record has no mask-validity flag).
      occ_labels: [6] int labels, or None (occ_label_valid = 0).
      label_valid: whether the 3D labels are real (False on the HO3D evaluation split).
      sequence_index, frame_number, sample_id: identity of the frame.
    """
    affine = crop.crop_affine(bbox, CROP_SIZE_PX, mirror_width_px=mirror_width_px)
    focal_crop, principal_crop = crop.crop_intrinsics(focal_px, principal_px, affine)
    if hand_mask is None:
        mask_crop = np.zeros((CROP_SIZE_PX, CROP_SIZE_PX), np.uint8)
    else:
        mask_crop = crop.crop_image(np.asarray(hand_mask, np.uint8), affine, CROP_SIZE_PX, nearest=True)
    record = {
        "image": crop.crop_image(image_rgb, affine, CROP_SIZE_PX),
        "hand_mask": mask_crop,
        "joints_img_px": crop.transform_points(joints_img_px, affine),
        "joints_cam_m": joints_cam_m,
        "verts_cam_m": verts_cam_m,
        "pose": pose,
        "shape": shape,
        "focal_px": focal_crop,
        "principal_px": principal_crop,
        "occ_labels": np.zeros(NUM_OCC_HEADS, np.int32) if occ_labels is None else occ_labels,
        "occ_label_valid": occ_labels is not None,
        "label_valid": label_valid,
        "is_mirrored": mirror_width_px is not None,
        "sequence_index": sequence_index,
        "frame_number": frame_number,
        "sample_id": sample_id.encode("utf-8"),
    }
    for key, spec in FRAME_FEATURES.items():
        if spec.dtype is not np.object_:
            record[key] = np.asarray(record[key]).astype(spec.dtype)
    check_record(record, np.asarray(verts_cam_m).shape[0], np.asarray(shape).shape[0], where=f"record {sample_id!r}")
    return record
