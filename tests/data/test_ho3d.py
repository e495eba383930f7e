"""The `ho3d_v2` TFDS builder on a fixture tree in the official formats (data_formats.md 3.9)."""

import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy.spatial.transform import Rotation

from data_loaders import crop
from h2o_jax.hand.mano_parts import mano_face_part, mano_vertex_part
from data_loaders.ho3d import HO3DV2, NATIVE_TO_COMMON, load_meta
from data_loaders.records import check_record
from hand.mano_fixtures import write_fake_mano_pkl
from real_fixtures import (
    HO3D_EVAL_LINES,
    HO3D_OFF_IMAGE,
    HO3D_TRAIN_LINES,
    IMAGE_H,
    IMAGE_W,
    as_record,
    mano_layer,
    without_tensorflow,
    write_ho3d_tree,
)

from h2o_jax.hand import mano
from h2o_jax.render.occlusion_labels import occlusion_labels


def _build(manual, data_dir, mano_path):
    builder = HO3DV2(data_dir=os.fspath(data_dir), mano_path=None if mano_path is None else os.fspath(mano_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    return builder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ho3d")
    mano_path = tmp / "MANO_RIGHT.pkl"
    write_fake_mano_pkl(mano_path, seed=5)
    manual = tmp / "manual"
    expected = write_ho3d_tree(manual, mano_path, seed=1)
    with without_tensorflow():
        builder = _build(manual, tmp / "data", mano_path)
    records = {split: [as_record(ex) for ex in builder.as_data_source(split)] for split in ("train", "evaluation")}
    return {"records": records, "expected": expected, "manual": manual, "mano_path": mano_path,
            "model": mano.load_hand_model(mano_path)}


def test_splits_order_and_contract(built):
    train_ids = [r["sample_id"].decode() for r in built["records"]["train"]]
    # train.txt re-sorted by line text, the off-image frame dropped.
    want = [f"train/{line.split('/')[0]}/rgb/{line.split('/')[1]}.png"
            for line in sorted(HO3D_TRAIN_LINES) if line not in HO3D_OFF_IMAGE]
    assert train_ids == want
    eval_ids = [r["sample_id"].decode() for r in built["records"]["evaluation"]]
    assert eval_ids == [f"evaluation/{line.split('/')[0]}/rgb/{line.split('/')[1]}.png" for line in HO3D_EVAL_LINES]
    for records in built["records"].values():
        for record in records:
            check_record(record, 778, 10, where=record["sample_id"].decode())
    for record in built["records"]["train"]:
        exp = built["expected"][record["sample_id"].decode()]
        assert record["frame_number"] == exp["frame"]
        assert record["sequence_index"] == ["ABF10", "MC1"].index(exp["seq"])
        assert record["label_valid"] == 1 and record["is_mirrored"] == 0
    assert {r["sequence_index"] for r in built["records"]["evaluation"]} == {0}


def test_opengl_to_opencv_and_joint_order(built):
    """Joints = the fixture's OpenCV common-order joints (made before the flip/reorder); crop camera reprojects."""
    for record in built["records"]["train"]:
        name = record["sample_id"].decode()
        exp = built["expected"][name]
        np.testing.assert_allclose(record["joints_cam_m"], exp["joints_cam"], atol=1e-6, err_msg=name)
        joints = record["joints_cam_m"].astype(np.float64)
        projected = joints[:, :2] / joints[:, 2:] * record["focal_px"] + record["principal_px"]
        np.testing.assert_allclose(projected, record["joints_img_px"], atol=0.5, err_msg=name)
        box = crop.process_bbox(crop.bbox_from_joints(exp["joints_img"]), IMAGE_W, IMAGE_H)
        np.testing.assert_allclose(record["joints_img_px"],
                                   crop.transform_points(exp["joints_img"], crop.crop_affine(box)), atol=1e-3)
    # Hand-made check of the two conversions on one meta file: z < 0 in OpenGL, P of data_formats 0.3.
    meta = load_meta(os.fspath(built["manual"] / "train" / "ABF10" / "meta" / "0000.pkl"))
    native = np.asarray(meta["handJoints3D"])
    assert np.all(native[:, 2] < 0)
    want = built["expected"]["train/ABF10/rgb/0000.png"]["joints_cam"]
    # (common index, HO3D native index) by joint name: Thumb_1, Thumb_4, Middle_1, Ring_1, Pinky_1, Index_4.
    for common, native_index in [(1, 13), (4, 16), (9, 4), (13, 10), (17, 7), (8, 17), (0, 0)]:
        np.testing.assert_allclose(native[native_index] * [1, -1, -1], want[common], atol=1e-9)
    np.testing.assert_array_equal(NATIVE_TO_COMMON[[1, 4, 9, 13, 17, 8]], [13, 16, 4, 10, 7, 17])


def test_pose_and_ground_truth_mesh(built):
    """Root rotation back in the OpenCV frame, fingers unchanged; verts = MANO (flat mean) at the wrist."""
    for record in built["records"]["train"]:
        name = record["sample_id"].decode()
        exp = built["expected"][name]
        np.testing.assert_allclose(Rotation.from_rotvec(record["pose"][:3]).as_matrix(),
                                   Rotation.from_rotvec(exp["pose_cv"][:3]).as_matrix(), atol=1e-5)
        np.testing.assert_allclose(record["pose"][3:], exp["pose_cv"][3:], atol=1e-6)
        np.testing.assert_allclose(record["shape"], exp["betas"], atol=1e-6)
        out = mano_layer(built["model"], exp["pose_cv"], exp["betas"], flat_hand_mean=True)
        shift = exp["joints_cam"][0] - out["joints_m"][0]
        np.testing.assert_allclose(record["verts_cam_m"], out["vertices_m"] + shift, atol=2e-5, err_msg=name)


def test_evaluation_records_keep_what_the_submission_needs(built):
    for record in built["records"]["evaluation"]:
        name = record["sample_id"].decode()
        exp = built["expected"][name]
        assert record["label_valid"] == 0 and record["occ_label_valid"] == 0
        np.testing.assert_allclose(record["joints_cam_m"][0], exp["root_cam"], atol=1e-6)
        assert not record["joints_cam_m"][1:].any() and not record["verts_cam_m"].any() and not record["pose"].any()
        # Box = handBoundingBox (xyxy) as xywh through process_bbox with expansion 1.5 (hand derivation).
        x0, y0, x1, y1 = exp["bbox_xyxy"]
        w, h = min(IMAGE_W - 1, x0 + (x1 - x0) - 1) - x0, min(IMAGE_H - 1, y0 + (y1 - y0) - 1) - y0
        side = 1.5 * max(w, h)
        centre = np.array([x0 + w / 2, y0 + h / 2])
        s = 128.0 / side
        np.testing.assert_allclose(record["focal_px"], s * exp["focal"], rtol=1e-6)
        np.testing.assert_allclose(record["principal_px"], s * (exp["principal"] - centre) + 64.0, atol=1e-4)
        root_px = exp["root_cam"][:2] / exp["root_cam"][2] * record["focal_px"] + record["principal_px"]
        np.testing.assert_allclose(record["joints_img_px"][0], root_px, atol=1e-3)
        # The crop is of the PNG as stored.
        photo = cv2.imread(os.fspath(built["manual"] / name))[:, :, ::-1]
        affine = np.array([[s, 0, 64 - s * centre[0]], [0, s, 64 - s * centre[1]]])
        np.testing.assert_array_equal(record["image"], cv2.warpAffine(np.ascontiguousarray(photo), affine, (128, 128)))


def test_seg_mask_and_occlusion_labels(built):
    counts = {"json": 0, "computed": 0, "none": 0}
    for record in built["records"]["train"]:
        name = record["sample_id"].decode()
        exp = built["expected"][name]
        if exp["has_seg"]:
            seg_path = built["manual"] / "train" / exp["seq"] / "seg" / f"{exp['frame']:04d}.jpg"
            seg = cv2.resize(cv2.imread(os.fspath(seg_path)), (IMAGE_W, IMAGE_H))[:, :, 2] > 200  # red = BGR 2
            box = crop.process_bbox(crop.bbox_from_joints(exp["joints_img"]), IMAGE_W, IMAGE_H)
            want = cv2.warpAffine(seg.astype(np.uint8), crop.crop_affine(box), (128, 128), flags=cv2.INTER_NEAREST)
            assert want.any()
            np.testing.assert_array_equal(record["hand_mask"], want)
        else:
            assert not record["hand_mask"].any()
        if exp["occ"] is not None:
            counts["json"] += 1
            assert record["occ_label_valid"] == 1
            np.testing.assert_array_equal(record["occ_labels"], exp["occ"])
        elif exp["has_seg"]:
            counts["computed"] += 1
            labels = occlusion_labels(record["verts_cam_m"].astype(np.float64), np.asarray(built["model"].faces),
                                      mano_vertex_part(), tuple(exp["focal"]), tuple(exp["principal"]),
                                      (IMAGE_H, IMAGE_W), seg, face_part=mano_face_part())
            assert record["occ_label_valid"] == 1
            np.testing.assert_array_equal(record["occ_labels"], [*labels.fingers.astype(int), int(labels.hand)])
        else:
            counts["none"] += 1
            assert record["occ_label_valid"] == 0
    assert counts == {"json": 1, "computed": 2, "none": 3}


# Errors ---------------------------------------------------------------------------------------

@pytest.fixture
def tree_copy(built, tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(built["manual"], manual)
    return manual


def test_missing_image_names_its_path(built, tree_copy, tmp_path):
    path = tree_copy / "train" / "ABF10" / "rgb" / "0000.png"
    os.remove(path)
    with pytest.raises(FileNotFoundError) as info:
        _build(tree_copy, tmp_path / "data", built["mano_path"])
    assert os.fspath(path) in str(info.value)


def test_corrupt_image_names_its_path(built, tree_copy, tmp_path):
    path = tree_copy / "train" / "ABF10" / "rgb" / "0000.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="corrupt") as info:
        _build(tree_copy, tmp_path / "data", built["mano_path"])
    assert os.fspath(path) in str(info.value)


def test_meta_pickle_refuses_foreign_globals(built, tree_copy, tmp_path):
    path = tree_copy / "train" / "ABF10" / "meta" / "0000.pkl"
    path.write_bytes(pickle.dumps({"handPose": os.getcwd}, protocol=2))  # a global outside numpy
    with pytest.raises(ValueError, match="refusing") as info:
        _build(tree_copy, tmp_path / "data", built["mano_path"])
    assert os.fspath(path) in str(info.value)


def test_missing_meta_key_names_file_and_key(built, tree_copy, tmp_path):
    path = tree_copy / "train" / "ABF10" / "meta" / "0000.pkl"
    meta = load_meta(os.fspath(path))
    del meta["handBeta"]
    path.write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(KeyError, match="handBeta") as info:
        _build(tree_copy, tmp_path / "data", built["mano_path"])
    assert os.fspath(path) in str(info.value)


def test_wrong_manual_dir_names_the_missing_file(built, tmp_path):
    wrong = tmp_path / "not_ho3d"
    (wrong / "train").mkdir(parents=True)
    (wrong / "notes.txt").write_text("something else")
    with pytest.raises(FileNotFoundError, match="train.txt"):
        _build(wrong, tmp_path / "data", built["mano_path"])
    with pytest.raises(AssertionError, match="evaluation.txt"):
        _build(tmp_path / "does_not_exist", tmp_path / "data", built["mano_path"])


def test_missing_mano_says_what_to_set(built, tmp_path):
    with pytest.raises(ValueError, match="mano_path"):
        _build(built["manual"], tmp_path / "data", None)
