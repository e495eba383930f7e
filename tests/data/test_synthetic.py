"""The synthetic dataset: built through the real TFDS builder, read through the grain pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_loaders.features import check_batch
from data_loaders.pipeline import SampleSource, make_train_dataset
from data_loaders.records import check_record
from data_loaders.synthetic import motion
from data_loaders.synthetic.rig import make_rig
from data_loaders.synthetic.scene import SceneConfig, generate_sequence
from h2o_jax.hand import builtin, builtin_topology
from h2o_jax.render import occlusion_labels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import tensorflow_datasets as tfds

    import data_loaders.synthetic  # noqa: F401  (registers the builder)

    builder = tfds.builder("synthetic/tiny", data_dir=str(tmp_path_factory.mktemp("tfds")), num_workers=1)
    builder.download_and_prepare()
    return builder


@pytest.fixture(scope="module")
def rig():
    return make_rig()


def test_records_follow_the_contract_and_splits_are_by_sequence(tiny):
    config = tiny.builder_config
    for split, num_sequences in (("train", config.train_sequences), ("test", config.test_sequences)):
        source = tiny.as_data_source(split)
        assert len(source) == num_sequences * config.frames_per_sequence
        records = [source[i] for i in range(len(source))]
        for i, record in enumerate(records):
            check_record(record, 719, 10, where=f"{split}[{i}]")
        pairs = sorted((int(r["sequence_index"]), int(r["frame_number"])) for r in records)
        assert pairs == [(s, t) for s in range(num_sequences) for t in range(config.frames_per_sequence)]
    # Train and test scenes differ (disjoint seeds), even at equal sequence index.
    train0, test0 = tiny.as_data_source("train")[0], tiny.as_data_source("test")[0]
    assert not np.allclose(train0["verts_cam_m"], test0["verts_cam_m"])


def test_labels_are_consistent(tiny, rig):
    source = tiny.as_data_source("train")
    topology = builtin_topology()
    for i in range(0, len(source), 5):
        r = source[i]
        joints, verts = r["joints_cam_m"].astype(np.float64), r["verts_cam_m"].astype(np.float64)
        # 2D joints are the projection of the 3D joints with the crop camera.
        projected = r["focal_px"] * joints[:, :2] / joints[:, 2:] + r["principal_px"]
        np.testing.assert_allclose(projected, r["joints_img_px"], atol=0.01)
        # The mesh is the hand model at the stored pose and shape, moved rigidly.
        model_verts, model_joints = rig.forward(r["pose"][None], r["shape"][None])
        np.testing.assert_allclose(verts - joints[0], model_verts[0] - model_joints[0, 0], atol=2e-5)
        np.testing.assert_allclose(topology.joint_regressor @ verts, joints, atol=1e-3)
        # Occlusion labels are the paper's procedure on the stored mesh and hand mask.
        occ = occlusion_labels(verts, topology.faces, topology.vertex_part, r["focal_px"], r["principal_px"],
                               (128, 128), r["hand_mask"].astype(bool))
        np.testing.assert_array_equal(r["occ_labels"], np.append(occ.fingers, occ.hand).astype(np.int32))
        assert r["hand_mask"].sum() > 0 or r["occ_labels"][5] == 1


def test_generation_is_deterministic(rig):
    config = SceneConfig(frames_per_sequence=3)
    a = generate_sequence(rig, config, (7, 0), 2)
    b = generate_sequence(rig, config, (7, 0), 2)
    c = generate_sequence(rig, config, (7, 0), 3)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_wrist_orientations_keep_the_forearm_away_from_the_camera(rig):
    """Every frame (not only the keyframes) keeps the forearm within the cone about +z, the
    forearm directions fill that hemisphere, and without the cone they cover the whole sphere."""
    forearm = motion.forearm_direction(rig.rest_joints16_m)
    # The forearm leaves the rest hand through the wrist, away from the fingers.
    assert forearm @ (rig.rest_joints16_m[4] - rig.rest_joints16_m[0]) < 0
    np.testing.assert_allclose(np.linalg.norm(forearm), 1.0, atol=1e-12)
    rng = np.random.default_rng(3)
    for max_angle_deg in (90.0, 50.0):
        cos_min = np.cos(np.radians(max_angle_deg))
        z = np.concatenate([
            Rotation.from_rotvec(motion.wrist_rotations(rng, 60, forearm_rest=forearm,
                                                        max_forearm_angle_rad=np.radians(max_angle_deg))).apply(forearm)[:, 2]
            for _ in range(40)])
        assert z.min() >= cos_min - 1e-9
        if max_angle_deg == 90.0:  # the generator's default spreads over its hemisphere, not
            # bunched at the axis (z of a uniform direction on it would be uniform on [0, 1])
            assert np.quantile(z, 0.2) < 0.35 and np.quantile(z, 0.8) > 0.65
    free = np.concatenate([Rotation.from_rotvec(motion.wrist_rotations(rng, 60)).apply(forearm)[:, 2]
                           for _ in range(40)])
    assert free.min() < -0.8 and free.max() > 0.8
    records = generate_sequence(rig, SceneConfig(frames_per_sequence=30), (5, 0), 1)
    rest_forearm_z = [Rotation.from_rotvec(r["pose"][:3].astype(np.float64)).apply(forearm)[2] for r in records]
    assert min(rest_forearm_z) >= -1e-6
    # ... and the stored camera-space joints agree: the elbow side of the wrist is farther away.
    for r in records:
        joints = r["joints_cam_m"].astype(np.float64)
        assert (joints[0] - joints[4])[2] >= -1e-4
    with pytest.raises(ValueError, match="max_forearm_angle_rad"):
        motion.wrist_rotations(rng, 10, forearm_rest=forearm, max_forearm_angle_rad=-0.1)


def test_flexion_axes_agree_with_the_generator_of_the_builtin_hand(rig):
    from_joints = motion.flexion_axes_from_joints(rig.rest_joints16_m)
    # Bone directions (from joints) and the generator's finger directions agree within ~1 degree.
    np.testing.assert_allclose(from_joints[1:], builtin.flexion_axes()[1:], atol=0.02)
    # Curling every joint brings each fingertip towards the palm side (-y in the rest frame).
    pose = np.zeros((1, 16, 3))
    pose[0, 1:] = 1.0 * from_joints[1:]
    verts, _ = rig.forward(pose.reshape(1, 48), np.zeros((1, 10)))
    rest, _ = rig.forward(np.zeros((1, 48)), np.zeros((1, 10)))
    tips = builtin_topology().fingertip_vertices
    assert np.all(verts[0, tips, 1] < rest[0, tips, 1] - 0.02)


def test_read_through_the_grain_pipeline_with_augmentation(tiny):
    source = SampleSource(tiny.as_data_source("train"), gap=2)
    batches = iter(make_train_dataset(source, batch_size=4, seed=0, augment=True, shard_index=0, shard_count=1))
    for _ in range(2):
        batch = next(batches)
        check_batch(batch, 719, 10)
        joints = batch["joints_cam_m"].astype(np.float64)
        projected = batch["focal_px"][..., None, :] * joints[..., :2] / joints[..., 2:] + batch["principal_px"][..., None, :]
        np.testing.assert_allclose(projected, batch["joints_img"] * 128, atol=0.5)
        frames = batch["frame_index"]
        assert np.all((frames[:, 0] >= frames[:, 1]) & (frames[:, 1] >= frames[:, 2]))


def test_network_recomposition_of_the_pipeline_targets_gives_the_camera_mesh(tiny):
    """The label convention end to end (issue 13): the network recomposes its camera-orientation
    mesh as R (v_c - r) + r with r = its own regressed root (`_rotate_about_root`). Fed the
    pipeline's canonical mesh and rotation (augmented, as in training), that recomposition must
    give the pipeline's root-relative camera-orientation targets; a transposed R, a root taken
    from elsewhere or canonical targets in another frame would all break it."""
    import jax

    from data_loaders import augment
    from h2o_jax.nn.h2onet import _rotate_about_root

    topology = builtin_topology()
    source = SampleSource(tiny.as_data_source("train"), gap=3)
    rng = np.random.default_rng()
    for index in rng.choice(len(source), 6, replace=False):
        sample = augment.augment_sample(source[int(index)], augment.sample_augment_params(rng))
        verts_c, rot = sample["verts_c_m"].astype(np.float64), sample["rot_mat"].astype(np.float64)
        joints_c = np.einsum("jv,tvk->tjk", topology.joint_regressor.astype(np.float64), verts_c)
        # The regressed joints are the network's; the stored ones the hand model's skeleton
        # (as MANO's): they agree to a fraction of a millimetre, the roots to ~10 micrometres.
        np.testing.assert_allclose(joints_c, sample["joints_c_m"], atol=5e-4)
        np.testing.assert_allclose(joints_c[:, 0], sample["joints_c_m"][:, 0], atol=3e-5)
        with jax.enable_x64(True):
            verts_r = np.asarray(_rotate_about_root(verts_c, rot, joints_c[:, 0]))
            joints_r = np.asarray(_rotate_about_root(joints_c, rot, joints_c[:, 0]))
        # Root-relative on both sides, as the losses and the metrics compare them.
        np.testing.assert_allclose(verts_r - joints_r[:, :1], sample["verts_r_m"], atol=3e-5)
        np.testing.assert_allclose(joints_r - joints_r[:, :1], sample["joints_r_m"], atol=5e-4)
        # A transposed rotation would not pass (unless the hand happened to be unrotated).
        wrong = np.asarray(_rotate_about_root(verts_c, np.swapaxes(rot, -1, -2), joints_c[:, 0]))
        assert np.abs(wrong - joints_r[:, :1] - sample["verts_r_m"]).max() > 1e-3
