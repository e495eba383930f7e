"""Tiny Dex-YCB (data_formats.md 2.10) and HO3D-v2 (3.9) trees in the official on-disk formats.

The writers build consistent labels from a (fake) MANO file through `h2o_jax.hand.mano`: joints
are the layer joints of a random pose placed at a random wrist position, 2D joints their
projection, and they return the expected values per sample, in *record space* computed
independently of the builders (no crop/mirror code of `data_loaders` is used here).

Public API:
  ``write_dexycb_tree(root, mano_path, *, seed=0) -> dict[file_name, dict]``
  ``write_ho3d_tree(root, mano_path, *, seed=0) -> dict[sample_id, dict]``
Image size of both trees: ``IMAGE_W`` x ``IMAGE_H`` (deliberately not 640 x 480).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import sys

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

IMAGE_W, IMAGE_H = 128, 96
_FOCAL = np.array([110.0, 112.0])
_PRINCIPAL = np.array([58.5, 47.2])  # off-centre: mirroring moves it

DEXYCB_STREAMS = {
    # stream -> (hand side, split, frame numbers)
    "20200709-subject-01/20200709_141841/836212060125": ("right", "train", [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]),
    "20200813-subject-02/20200813_145612/840412060917": ("left", "train", [0, 1, 2]),
    "20200820-subject-03/20200820_135508/839512060362": ("left", "test", [0, 1, 2, 3, 4]),
}
# Samples whose joints lie entirely right of the image: dropped in train, whole image in test.
DEXYCB_OFF_IMAGE = {
    "20200709-subject-01/20200709_141841/836212060125/color_000011.jpg",
    "20200820-subject-03/20200820_135508/839512060362/color_000004.jpg",
}
# Frames with a labels_XXXXXX.npz (seg) / an occlusion JSON (name in the value).
DEXYCB_SEG = {("20200709-subject-01/20200709_141841/836212060125", 0),
              ("20200709-subject-01/20200709_141841/836212060125", 1),
              ("20200820-subject-03/20200820_135508/839512060362", 0),
              ("20200820-subject-03/20200820_135508/839512060362", 1)}
DEXYCB_OCC = {("20200709-subject-01/20200709_141841/836212060125", 2): "occ_v2_000002.json",
              ("20200709-subject-01/20200709_141841/836212060125", 3): "occ_000003.json",
              ("20200820-subject-03/20200820_135508/839512060362", 2): "occ_v2_000002.json"}
OCC_KEYS = ("thumb", "index", "middle", "ring", "little", "palm", "global")


def _model(mano_path):
    from h2o_jax.hand import mano

    return mano.load_hand_model(mano_path)


@functools.cache
def _jitted_forward(flat_hand_mean):
    import jax

    from h2o_jax.hand import mano

    return jax.jit(functools.partial(mano.hand_forward, flat_hand_mean=flat_hand_mean))


def mano_layer(model, pose, betas, *, flat_hand_mean):
    """`hand_forward` of one sample (pose [48], betas [10]) as float64 numpy arrays.

    Jitted once per flag and process: eager JAX compiles every op of a new shape, which costs
    seconds per distinct batch size on a loaded 2-core machine.
    """
    out = _jitted_forward(flat_hand_mean)(model, np.asarray(pose, np.float32), np.asarray(betas, np.float32))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _project(points, focal, principal):
    return points[:, :2] / points[:, 2:] * focal + principal


def _write_jpeg(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write {path}")


def _pattern_image(rng, height=IMAGE_H, width=IMAGE_W):
    """Blocky random RGB image: edges survive JPEG well enough for crop comparisons."""
    blocks = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]


def _hand_seg(joints_img, height=IMAGE_H, width=IMAGE_W):
    """uint8 seg: 255 on the convex hull of the joints, an object (id 5) over its lower-left quarter."""
    seg = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(joints_img).astype(np.int32))
    cv2.fillConvexPoly(seg, hull, 255)
    x0, y0 = joints_img.min(0)
    x1, y1 = joints_img.max(0)
    seg[int((y0 + y1) / 2):, : int((x0 + x1) / 2)][seg[int((y0 + y1) / 2):, : int((x0 + x1) / 2)] == 255] = 5
    return seg


def _random_pose(rng, finger_sigma=0.25):
    root = Rotation.random(random_state=int(rng.integers(1 << 31))).as_rotvec()
    return np.concatenate([root, rng.normal(0.0, finger_sigma, 45)])


def write_dexycb_tree(root, mano_path, *, seed=0):
    """Writes the Dex-YCB fixture under ``root`` (the manual dir); returns expectations per file name.

    Each value holds the JSON fields (`pose_rel`, `betas`, `hand_type`, `joints_cam`, `joints_img`,
    `focal`, `principal`), the split, `frame`, `stream`, and `occ` (the JSON labels or None) and
    `has_seg`; plus the record-space expectations `rec_joints_cam`, `rec_joints_img_full`,
    `rec_principal`, `rec_pose_rel` (mirrored for left hands).
    """
    rng = np.random.default_rng(seed)
    model = _model(mano_path)
    root = os.fspath(root)
    data = {"train": {"images": [], "annotations": []}, "test": {"images": [], "annotations": []}}
    expected = {}
    samples = []
    for stream, (side, split, frame_numbers) in DEXYCB_STREAMS.items():
        for frame in frame_numbers:
            pose_rel = _random_pose(rng)
            # Left hands are built in mirrored space: the right layer at the mirrored pose
            # (what a left MANO layer with mirrored bases gives, data_formats 2.7).
            rec_pose_rel = pose_rel if side == "right" else (pose_rel.reshape(16, 3) * [1, -1, -1]).reshape(48)
            samples.append((stream, side, split, frame, pose_rel, rec_pose_rel, rng.normal(0.0, 0.5, 10)))
    layers = [mano_layer(model, sample[5], sample[6], flat_hand_mean=False)["joints_m"] for sample in samples]
    next_id = 0
    for (stream, side, split, frame, pose_rel, rec_pose_rel, betas), layer in zip(samples, layers):
        file_name = f"{stream}/color_{frame:06d}.jpg"
        wrist = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(0.5, 0.6)])
        if file_name in DEXYCB_OFF_IMAGE:
            wrist[0] += 1.2  # ~260 px right of the principal point: the whole hand is off the image
        rec_joints = layer - layer[0] + (wrist if side == "right" else wrist * [-1, 1, 1])
        joints_cam = rec_joints if side == "right" else rec_joints * [-1, 1, 1]
        joints_img = _project(joints_cam, _FOCAL, _PRINCIPAL)
        rec_principal = _PRINCIPAL if side == "right" else np.array([IMAGE_W - 1 - _PRINCIPAL[0], _PRINCIPAL[1]])
        rec_joints_img = joints_img if side == "right" else joints_img * [-1, 1] + [IMAGE_W - 1, 0]

        folder = os.path.join(root, stream)
        _write_jpeg(os.path.join(root, file_name), _pattern_image(rng))
        has_seg = (stream, frame) in DEXYCB_SEG
        if has_seg:
            seg = _hand_seg(joints_img)
            np.savez(os.path.join(folder, f"labels_{frame:06d}.npz"), seg=seg,
                     pose_y=np.zeros((0, 3, 4), np.float32),
                     pose_m=np.zeros((1, 51), np.float32), joint_3d=joints_cam[None].astype(np.float32),
                     joint_2d=joints_img[None].astype(np.float32))
        occ = None
        if (stream, frame) in DEXYCB_OCC:
            values = rng.integers(0, 2, len(OCC_KEYS))
            with open(os.path.join(folder, DEXYCB_OCC[(stream, frame)]), "w", encoding="utf-8") as f:
                json.dump({k: int(v) for k, v in zip(OCC_KEYS, values)}, f)
            occ = np.array([values[OCC_KEYS.index(k)] for k in
                            ("thumb", "index", "middle", "ring", "little", "global")])

        data[split]["images"].append({"id": next_id, "file_name": file_name, "width": IMAGE_W, "height": IMAGE_H})
        data[split]["annotations"].append({
            "id": next_id, "image_id": next_id,
            "joints_coord_cam": joints_cam.tolist(),
            "joints_img": joints_img.tolist(),
            "cam_param": {"focal": _FOCAL.tolist(), "princpt": _PRINCIPAL.tolist()},
            "mano_param": {"pose": pose_rel.tolist(), "shape": betas.tolist()},
            "hand_type": side,
        })
        next_id += 1
        expected[file_name] = {
            "split": split, "stream": stream, "frame": frame, "hand_type": side,
            "pose_rel": pose_rel, "betas": betas, "joints_cam": joints_cam, "joints_img": joints_img,
            "focal": _FOCAL, "principal": _PRINCIPAL, "occ": occ, "has_seg": has_seg,
            "rec_joints_cam": rec_joints, "rec_joints_img_full": rec_joints_img,
            "rec_principal": rec_principal, "rec_pose_rel": rec_pose_rel,
        }
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split in ("train", "test"):
        with open(os.path.join(root, "annotations", f"DEX_YCB_s0_{split}_data.json"), "w", encoding="utf-8") as f:
            json.dump(data[split], f)
    return expected


# HO3D-v2 -------------------------------------------------------------------------------------

_F_GL = np.diag([1.0, -1.0, -1.0])
_NATIVE_FROM_COMMON = np.array([0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20])  # Q
HO3D_TRAIN = {"ABF10": ["0000", "0001", "0002", "0004", "0005"], "MC1": ["0000", "0001"]}
HO3D_TRAIN_LINES = ["MC1/0001", "ABF10/0002", "ABF10/0000", "MC1/0000", "ABF10/0005", "ABF10/0001", "ABF10/0004"]
HO3D_OFF_IMAGE = {"MC1/0001"}
HO3D_SEG = {"ABF10/0000", "ABF10/0001"}
HO3D_OCC = {"ABF10/0002"}
HO3D_EVAL_LINES = ["SM1/0002", "SM1/0000", "SM1/0001"]
_HO3D_FOCAL = np.array([115.0, 115.0])
_HO3D_PRINCIPAL = np.array([64.0, 48.0])


def _cam_mat(focal, principal):
    return np.array([[focal[0], 0.0, principal[0]], [0.0, focal[1], principal[1]], [0.0, 0.0, 1.0]])


def _object_keys(rng):
    return {
        "objName": "021_bleach_cleanser",
        "objRot": rng.normal(size=(3, 1)),
        "objTrans": rng.normal(size=3),
        "objCorners3D": rng.normal(size=(8, 3)),
        "objCorners3DRest": rng.normal(size=(8, 3)),
    }


def _write_pickle(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def write_ho3d_tree(root, mano_path, *, seed=0):
    """Writes the HO3D-v2 fixture under ``root``; returns expectations per sample id (image path).

    Training values: `pose_cv` (flat-hand-mean pose, root in the OpenCV frame), `betas`,
    `joints_cam` (OpenCV, common order), `joints_img`, `focal`, `principal`, `occ`, `has_seg`.
    Evaluation values: `root_cam` (OpenCV), `bbox_xyxy`. Both: `split`, `seq`, `frame`.
    """
    rng = np.random.default_rng(seed)
    model = _model(mano_path)
    root = os.fspath(root)
    expected = {}
    for seq, frame in ((seq, frame) for seq, frames in HO3D_TRAIN.items() for frame in frames):
        name = f"{seq}/{frame}"
        pose_cv = _random_pose(rng)  # flat-hand-mean pose, root in the OpenCV frame
        betas = rng.normal(0.0, 0.5, 10)
        wrist = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(0.5, 0.6)])
        if name in HO3D_OFF_IMAGE:
            wrist[0] += 1.2
        out = mano_layer(model, pose_cv, betas, flat_hand_mean=True)
        joints_cv = out["joints_m"] - out["joints_m"][0] + wrist
        rest_wrist = mano_layer(model, np.zeros(48), betas, flat_hand_mean=True)["joints16_m"][0]  # J_0
        trans_cv = wrist - out["joints_m"][0]
        root_gl = Rotation.from_matrix(_F_GL @ Rotation.from_rotvec(pose_cv[:3]).as_matrix()).as_rotvec()
        meta = {
            "handPose": np.concatenate([root_gl, pose_cv[3:]]).astype(np.float32),
            "handBeta": betas.astype(np.float32),
            "handTrans": (_F_GL @ (trans_cv + rest_wrist) - rest_wrist).astype(np.float32),
            "handJoints3D": (joints_cv[_NATIVE_FROM_COMMON] * [1.0, -1.0, -1.0]).astype(np.float64),
            "camMat": _cam_mat(_HO3D_FOCAL, _HO3D_PRINCIPAL),
            **_object_keys(rng),
        }
        folder = os.path.join(root, "train", seq)
        _write_pickle(os.path.join(folder, "meta", f"{frame}.pkl"), meta)
        os.makedirs(os.path.join(folder, "rgb"), exist_ok=True)  # HO3D-v2 frames are PNGs
        cv2.imwrite(os.path.join(folder, "rgb", f"{frame}.png"), _pattern_image(rng)[:, :, ::-1])
        joints_img = _project(joints_cv, _HO3D_FOCAL, _HO3D_PRINCIPAL)
        has_seg = name in HO3D_SEG
        if has_seg:
            # Half-resolution JPEG with the hand in pure red (as RGB), the object in green.
            seg = _hand_seg(joints_img)
            rgb = np.zeros((IMAGE_H, IMAGE_W, 3), np.uint8)
            rgb[seg == 255] = (255, 0, 0)
            rgb[seg == 5] = (0, 255, 0)
            small = cv2.resize(rgb, (IMAGE_W // 2, IMAGE_H // 2), interpolation=cv2.INTER_NEAREST)
            _write_jpeg(os.path.join(folder, "seg", f"{frame}.jpg"), small)
        occ = None
        if name in HO3D_OCC:
            values = rng.integers(0, 2, len(OCC_KEYS))
            os.makedirs(os.path.join(folder, "occ_v2"), exist_ok=True)
            with open(os.path.join(folder, "occ_v2", f"{frame}.json"), "w", encoding="utf-8") as f:
                json.dump({k: int(v) for k, v in zip(OCC_KEYS, values)}, f)
            occ = np.array([values[OCC_KEYS.index(k)] for k in
                            ("thumb", "index", "middle", "ring", "little", "global")])
        expected[f"train/{seq}/rgb/{frame}.png"] = {
            "split": "train", "seq": seq, "frame": int(frame), "pose_cv": pose_cv, "betas": betas,
            "joints_cam": joints_cv, "joints_img": joints_img, "focal": _HO3D_FOCAL,
            "principal": _HO3D_PRINCIPAL, "occ": occ, "has_seg": has_seg,
        }
    for line in HO3D_EVAL_LINES:
        seq, frame = line.split("/")
        root_cv = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.45, 0.6)])
        centre = _project(root_cv[None], _HO3D_FOCAL, _HO3D_PRINCIPAL)[0]
        half = rng.uniform(12, 20, 2)
        bbox_xyxy = np.concatenate([centre - half, centre + half])
        meta = {"handJoints3D": (_F_GL @ root_cv).astype(np.float64), "handBoundingBox": bbox_xyxy,
                "camMat": _cam_mat(_HO3D_FOCAL, _HO3D_PRINCIPAL), **_object_keys(rng)}
        folder = os.path.join(root, "evaluation", seq)
        _write_pickle(os.path.join(folder, "meta", f"{frame}.pkl"), meta)
        os.makedirs(os.path.join(folder, "rgb"), exist_ok=True)
        cv2.imwrite(os.path.join(folder, "rgb", f"{frame}.png"), _pattern_image(rng)[:, :, ::-1])
        expected[f"evaluation/{seq}/rgb/{frame}.png"] = {
            "split": "evaluation", "seq": seq, "frame": int(frame), "root_cam": root_cv, "bbox_xyxy": bbox_xyxy,
            "focal": _HO3D_FOCAL, "principal": _HO3D_PRINCIPAL,
        }
    with open(os.path.join(root, "train.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(HO3D_TRAIN_LINES) + "\n")
    with open(os.path.join(root, "evaluation.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(HO3D_EVAL_LINES) + "\n")
    return expected


def as_record(example):
    """A TFDS data-source example with its scalar features cast back to the record dtypes.

    `as_data_source` returns scalar Tensor features as Python ints (and `sample_id` as bytes), so
    `records.check_record` needs them as numpy scalars of the declared dtype first.
    """
    from data_loaders.records import FRAME_FEATURES

    out = dict(example)
    for key, spec in FRAME_FEATURES.items():
        if spec.shape == () and spec.dtype is not np.object_:
            value = out[key]
            if not isinstance(value, (int, np.integer)):
                raise TypeError(f"{key}: expected an integer scalar, got {type(value).__name__}")
            out[key] = spec.dtype(value)
    return out


@contextlib.contextmanager
def without_tensorflow():
    """Proves a build needs no TensorFlow: nothing inside the block may import it (installed or not)."""
    if "tensorflow" in sys.modules:
        raise AssertionError("tensorflow was imported before the build; this check needs a process without it")
    yield
    assert "tensorflow" not in sys.modules, "the build imported tensorflow"
