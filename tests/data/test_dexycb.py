"""The `dexycb` TFDS builder on a fixture tree in the official formats (data_formats.md 2.10)."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_loaders import crop
from data_loaders.dexycb import DexYCB
from h2o_jax.hand.mano_parts import mano_face_part, mano_vertex_part
from data_loaders.records import check_record
from hand.mano_fixtures import write_fake_mano_pkl
from real_fixtures import (
    DEXYCB_OFF_IMAGE,
    IMAGE_H,
    IMAGE_W,
    as_record,
    mano_layer,
    without_tensorflow,
    write_dexycb_tree,
)

from h2o_jax.hand import mano
from h2o_jax.render.occlusion_labels import occlusion_labels


def _build(manual, data_dir, mano_path):
    builder = DexYCB(data_dir=os.fspath(data_dir), mano_path=None if mano_path is None else os.fspath(mano_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    return builder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dexycb")
    mano_path = tmp / "MANO_RIGHT.pkl"
    write_fake_mano_pkl(mano_path, seed=3)
    manual = tmp / "manual"
    expected = write_dexycb_tree(manual, mano_path, seed=0)
    with without_tensorflow():
        builder = _build(manual, tmp / "data", mano_path)
    records = {
        split: [as_record(ex) for ex in builder.as_data_source(split)] for split in ("train", "test")
    }
    return {"records": records, "expected": expected, "manual": manual, "mano_path": mano_path,
            "model": mano.load_hand_model(mano_path), "tmp": tmp}


def _by_id(built):
    return {r["sample_id"].decode(): r for split in ("train", "test") for r in built["records"][split]}


def test_records_follow_the_contract_and_json_order(built):
    for split, records in built["records"].items():
        want = [name for name, e in built["expected"].items()
                if e["split"] == split and not (split == "train" and name in DEXYCB_OFF_IMAGE)]
        assert [r["sample_id"].decode() for r in records] == want  # JSON order, dropped sample gone
        for record in records:
            check_record(record, 778, 10, where=record["sample_id"].decode())
    assert len(built["records"]["train"]) == 13 and len(built["records"]["test"]) == 5


def test_identity_fields(built):
    for split, records in built["records"].items():
        streams = sorted({built["expected"][r["sample_id"].decode()]["stream"] for r in records})
        for record in records:
            exp = built["expected"][record["sample_id"].decode()]
            assert record["frame_number"] == exp["frame"]
            assert record["sequence_index"] == streams.index(exp["stream"])
            assert record["is_mirrored"] == (exp["hand_type"] == "left")
            assert record["label_valid"] == 1


def test_crop_camera_reprojects_the_joints(built):
    """Projected 3D joints with the crop intrinsics equal the stored crop joints (< 0.5 px)."""
    for name, record in _by_id(built).items():
        exp = built["expected"][name]
        joints = record["joints_cam_m"].astype(np.float64)
        projected = joints[:, :2] / joints[:, 2:] * record["focal_px"] + record["principal_px"]
        np.testing.assert_allclose(projected, record["joints_img_px"], atol=0.5, err_msg=name)
        # Stored crop joints = the crop affine of the (mirrored) annotated 2D joints.
        box = crop.process_bbox(crop.bbox_from_joints(exp["joints_img"]), IMAGE_W, IMAGE_H)
        if box is None:
            box = np.array([0.0, 0.0, IMAGE_W - 1.0, IMAGE_H - 1.0])
        left = exp["hand_type"] == "left"
        affine = crop.crop_affine(box, 128, mirror_width_px=IMAGE_W if left else None)
        np.testing.assert_allclose(record["joints_img_px"], crop.transform_points(exp["rec_joints_img_full"], affine),
                                   atol=1e-3, err_msg=name)
        # Hand derivation of the crop camera: fx' = sx fx, c' = s (c - box centre) + 64.
        scale = 128.0 / box[2:]
        centre = box[:2] + box[2:] / 2
        if left:
            centre[0] = IMAGE_W - 1 - centre[0]
        np.testing.assert_allclose(record["focal_px"], scale * exp["focal"], rtol=1e-6)
        np.testing.assert_allclose(record["principal_px"], scale * (exp["rec_principal"] - centre) + 64.0, atol=1e-4)


def test_whole_image_fallback_in_test_split(built):
    name = next(n for n in DEXYCB_OFF_IMAGE if built["expected"][n]["split"] == "test")
    record = _by_id(built)[name]
    want = [110.0 * 128 / (IMAGE_W - 1), 112.0 * 128 / (IMAGE_H - 1)]  # not square: sx != sy
    np.testing.assert_allclose(record["focal_px"], want, rtol=1e-6)


def test_left_hand_is_mirrored(built):
    hands_mean = np.asarray(built["model"].hands_mean, np.float64)
    lefts = [n for n, e in built["expected"].items() if e["hand_type"] == "left" and n in _by_id(built)]
    assert len(lefts) == 8
    for name in lefts:
        record, exp = _by_id(built)[name], built["expected"][name]
        np.testing.assert_allclose(record["joints_cam_m"], exp["joints_cam"] * [-1, 1, 1], atol=1e-6)
        pose = (exp["pose_rel"].reshape(16, 3) * [1, -1, -1]).reshape(48) + np.concatenate([np.zeros(3), hands_mean])
        np.testing.assert_allclose(record["pose"], pose, atol=1e-6)
        np.testing.assert_allclose(record["shape"], exp["betas"], atol=1e-6)
    # The stored image is the crop of the horizontally flipped photo.
    name = lefts[0]
    exp = built["expected"][name]
    photo = cv2.imread(os.fspath(built["manual"] / name))[:, :, ::-1]
    box = crop.process_bbox(crop.bbox_from_joints(exp["joints_img"]), IMAGE_W, IMAGE_H)
    centre_x = IMAGE_W - 1 - (box[0] + box[2] / 2)  # mirrored box centre, data_formats 4.4
    s = 128.0 / box[2]
    affine = np.array([[s, 0, 64 - s * centre_x], [0, s, 64 - s * (box[1] + box[3] / 2)]])
    want = cv2.warpAffine(np.ascontiguousarray(photo[:, ::-1]), affine, (128, 128), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(_by_id(built)[name]["image"], want)


def test_ground_truth_mesh_is_the_mano_layer(built):
    """verts = MANO(JSON pose, mirrored for left hands) at the annotated wrist; its joints = annotation."""
    for name, record in _by_id(built).items():
        exp = built["expected"][name]
        out = mano_layer(built["model"], exp["rec_pose_rel"], exp["betas"], flat_hand_mean=False)
        shift = exp["rec_joints_cam"][0] - out["joints_m"][0]
        np.testing.assert_allclose(record["verts_cam_m"], out["vertices_m"] + shift, atol=2e-5, err_msg=name)
        np.testing.assert_allclose(out["joints_m"] + shift, exp["rec_joints_cam"], atol=2e-5, err_msg=name)


def test_hand_mask_and_occlusion_labels(built):
    counts = {"json": 0, "computed": 0, "none": 0}
    for name, record in _by_id(built).items():
        exp = built["expected"][name]
        left = exp["hand_type"] == "left"
        folder = built["manual"] / os.path.dirname(name)
        if exp["has_seg"]:
            seg = np.load(folder / f"labels_{exp['frame']:06d}.npz")["seg"] > 200
            seg = seg[:, ::-1] if left else seg
            box = crop.process_bbox(crop.bbox_from_joints(exp["joints_img"]), IMAGE_W, IMAGE_H)
            affine = crop.crop_affine(box, 128, mirror_width_px=IMAGE_W if left else None)
            want = cv2.warpAffine(np.ascontiguousarray(seg, dtype=np.uint8), affine, (128, 128),
                                  flags=cv2.INTER_NEAREST)
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
            assert record["occ_label_valid"] == 1
            labels = occlusion_labels(
                record["verts_cam_m"].astype(np.float64), np.asarray(built["model"].faces), mano_vertex_part(),
                tuple(exp["focal"]), tuple(exp["rec_principal"]), (IMAGE_H, IMAGE_W), seg,
                face_part=mano_face_part(),
            )
            np.testing.assert_array_equal(record["occ_labels"], [*labels.fingers.astype(int), int(labels.hand)])
        else:
            counts["none"] += 1
            assert record["occ_label_valid"] == 0 and not record["occ_labels"].any()
    assert counts == {"json": 3, "computed": 4, "none": 11}


def test_mano_part_tables_partition_the_mesh():
    """Part sizes of architecture.md 16.1 (vertices 100/122/119/124/122/191, faces 186/232/232/237/232/419)."""
    np.testing.assert_array_equal(np.bincount(mano_vertex_part(), minlength=6), [100, 122, 119, 124, 122, 191])
    np.testing.assert_array_equal(np.bincount(mano_face_part(), minlength=6), [186, 232, 232, 237, 232, 419])


# Errors ---------------------------------------------------------------------------------------

@pytest.fixture
def tree_copy(built, tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(built["manual"], manual)
    return manual


def test_missing_image_names_its_path(built, tree_copy, tmp_path):
    name = next(n for n, e in built["expected"].items() if e["split"] == "train" and n not in DEXYCB_OFF_IMAGE)
    os.remove(tree_copy / name)
    with pytest.raises(FileNotFoundError) as info:
        _build(tree_copy, tmp_path / "data", built["mano_path"])
    assert os.fspath(tree_copy / name) in str(info.value)


def test_corrupt_image_names_its_path(built, tree_copy, tmp_path):
    name = next(n for n, e in built["expected"].items() if e["split"] == "train")
    (tree_copy / name).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    with pytest.raises(ValueError, match="corrupt") as info:
        _build(tree_copy, tmp_path / "data", built["mano_path"])
    assert os.fspath(tree_copy / name) in str(info.value)


def test_wrong_manual_dir_names_the_missing_file(built, tmp_path):
    wrong = tmp_path / "not_dexycb"
    (wrong / "20200709-subject-01").mkdir(parents=True)
    (wrong / "README.txt").write_text("some other dataset")
    with pytest.raises(FileNotFoundError, match="annotations/DEX_YCB_s0_train_data.json"):
        _build(wrong, tmp_path / "data", built["mano_path"])
    # A missing/empty dir is refused by TFDS itself, with the instructions naming the files.
    with pytest.raises(AssertionError, match="DEX_YCB_s0_train_data.json"):
        _build(tmp_path / "does_not_exist", tmp_path / "data", built["mano_path"])


def test_missing_mano_says_what_to_set(built, tmp_path):
    with pytest.raises(ValueError, match="mano_path"):
        _build(built["manual"], tmp_path / "data", None)


def test_bad_annotation_names_the_file(built, tree_copy, tmp_path):
    path = tree_copy / "annotations" / "DEX_YCB_s0_train_data.json"
    content = json.loads(path.read_text())
    content["annotations"][0]["joints_coord_cam"] = [[0.0, 0.0, 0.5]] * 20
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="DEX_YCB_s0_train_data.json.*joints_coord_cam"):
        _build(tree_copy, tmp_path / "data", built["mano_path"])
