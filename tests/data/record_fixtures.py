"""In-memory fake frame records (data_loaders/records.py) with self-consistent geometry.

Every sequence has its own crop camera (fx == fy) and a rigid random "hand": root-relative
canonical joints/vertices (joint 0 at the origin) that each frame rotates by a random root
rotation R and translates in front of the camera, so for every record
``verts_cam_m = verts_c @ R^T + joints_cam_m[0]``, ``pose[:3]`` is R's axis-angle and
``joints_img_px`` is the exact projection of ``joints_cam_m``. Images are smooth random colour
fields (bilinear warps stay well defined), the hand mask marks discs around the projected joints.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from data_loaders.features import CROP_SIZE_PX, NUM_JOINTS, NUM_OCC_HEADS
from data_loaders.records import check_record

NUM_VERTICES = 40
NUM_SHAPE = 10


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.integers(0, 256, (9, 9, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (CROP_SIZE_PX, CROP_SIZE_PX), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth, 0, 255).astype(np.uint8)


def make_records(num_sequences: int = 3, frames_per_sequence: int = 14, seed: int = 0,
                 missing: tuple[tuple[int, int], ...] = ((1, 7),), num_vertices: int = NUM_VERTICES,
                 unlabelled: tuple[tuple[int, int], ...] = ((0, 3),),
                 no_occ_labels: tuple[tuple[int, int], ...] = ((2, 5),)) -> list[dict]:
    """Records of `num_sequences` sequences, ordered by (sequence, frame); `missing` lists
    (sequence, frame) pairs left out, `unlabelled` pairs get label_valid = 0 and `no_occ_labels`
    pairs occ_label_valid = 0."""
    rng = np.random.default_rng(seed)
    records = []
    for seq in range(num_sequences):
        focal = rng.uniform(170.0, 240.0)
        principal = 64.0 + rng.uniform(-6.0, 6.0, 2)
        joints_c = rng.uniform(-0.08, 0.08, (NUM_JOINTS, 3))
        joints_c[0] = 0.0
        verts_c = rng.uniform(-0.09, 0.09, (num_vertices, 3))
        shape = rng.normal(size=NUM_SHAPE).astype(np.float32)
        for frame in range(frames_per_sequence):
            if (seq, frame) in missing:
                continue
            rot = Rotation.random(random_state=rng.integers(2**31))
            depth = rng.uniform(0.45, 0.7)
            root_px = principal + rng.uniform(-8.0, 8.0, 2)
            root = np.r_[(root_px - principal) * depth / focal, depth]
            joints_cam = joints_c @ rot.as_matrix().T + root
            verts_cam = verts_c @ rot.as_matrix().T + root
            joints_cam32 = joints_cam.astype(np.float32)
            # The 2D labels are the projection of the stored (float32) 3D joints.
            joints_px = joints_cam32[:, :2].astype(np.float64) / joints_cam32[:, 2:] * focal + principal
            mask = np.zeros((CROP_SIZE_PX, CROP_SIZE_PX), np.uint8)
            for u, v in joints_px:
                cv2.circle(mask, (int(round(u)), int(round(v))), 4, 1, -1)
            pose = np.r_[rot.as_rotvec(), rng.normal(scale=0.3, size=45)]
            records.append({
                "image": _smooth_image(rng),
                "hand_mask": mask,
                "joints_img_px": joints_px.astype(np.float32),
                "joints_cam_m": joints_cam32,
                "verts_cam_m": verts_cam.astype(np.float32),
                "pose": pose.astype(np.float32),
                "shape": shape,
                "focal_px": np.full(2, focal, np.float32),
                "principal_px": principal.astype(np.float32),
                "occ_labels": rng.integers(0, 2, NUM_OCC_HEADS).astype(np.int32),
                "occ_label_valid": np.uint8((seq, frame) not in no_occ_labels),
                "label_valid": np.uint8((seq, frame) not in unlabelled),
                "is_mirrored": np.uint8(seq % 2),
                "sequence_index": np.int32(seq),
                "frame_number": np.int32(frame),
                "sample_id": f"seq{seq:02d}/frame{frame:04d}".encode(),
            })
            check_record(records[-1], num_vertices, NUM_SHAPE)
    return records
