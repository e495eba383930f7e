"""Constant-hand baselines against hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest

from scipy.spatial.transform import Rotation

from experiments.baselines import (
    BaselineCollectors,
    baseline_constants,
    evaluate_baselines,
    mean_rotation,
    rest_hand,
    training_mean_hand,
    training_mean_pose_hand,
)


def _records(rng, count, num_vertices=30):
    records = []
    for i in range(count):
        joints = rng.normal(size=(21, 3)) * 0.05 + [0, 0, 0.5]
        verts = rng.normal(size=(num_vertices, 3)) * 0.05 + [0, 0, 0.5]
        records.append({"joints_cam_m": joints, "verts_cam_m": verts, "label_valid": np.int32(i % 4 != 3)})
    return records


def test_training_mean_hand_is_the_mean_root_relative_hand_of_labelled_records():
    rng = np.random.default_rng()
    records = _records(rng, 12)
    joints, verts = training_mean_hand(records)
    labelled = [r for r in records if r["label_valid"]]
    np.testing.assert_allclose(joints, np.mean([r["joints_cam_m"] - r["joints_cam_m"][0] for r in labelled], 0))
    np.testing.assert_allclose(verts, np.mean([r["verts_cam_m"] - r["joints_cam_m"][0] for r in labelled], 0))
    np.testing.assert_allclose(joints[0], 0.0)
    with pytest.raises(ValueError, match="label_valid"):
        training_mean_hand([dict(r, label_valid=np.int32(0)) for r in records])


def test_training_mean_pose_hand_undoes_each_rotation_then_turns_by_the_mean_rotation():
    rng = np.random.default_rng()
    count, num_vertices = 10, 30
    # Canonical hands (root at 0) and rotations drawn independently; records hold R v_c + root.
    canonical_j = rng.normal(size=(count, 21, 3)) * 0.05
    canonical_j[:, 0] = 0.0
    canonical_v = rng.normal(size=(count, num_vertices, 3)) * 0.05
    rotations = Rotation.random(count, random_state=int(rng.integers(1 << 31)))
    matrices = rotations.as_matrix()
    records = []
    for i in range(count):
        root = rng.normal(size=3) * 0.1 + [0, 0, 0.5]
        pose = np.concatenate([rotations[i].as_rotvec(), rng.normal(size=45)])
        records.append({"joints_cam_m": np.einsum("ij,pj->pi", matrices[i], canonical_j[i]) + root,
                        "verts_cam_m": np.einsum("ij,pj->pi", matrices[i], canonical_v[i]) + root,
                        "pose": pose.astype(np.float32), "label_valid": np.int32(i != 4)})
    joints, verts = training_mean_pose_hand(records)
    keep = np.arange(count) != 4
    mean_rot = mean_rotation(matrices[keep])
    # float32 poses: rotation entries to ~1e-7, positions of ~0.1 m to ~1e-8 m.
    np.testing.assert_allclose(joints, canonical_j[keep].mean(0) @ mean_rot.T, atol=1e-6)
    np.testing.assert_allclose(verts, canonical_v[keep].mean(0) @ mean_rot.T, atol=1e-6)
    with pytest.raises(ValueError, match="label_valid"):
        training_mean_pose_hand([dict(r, label_valid=np.int32(0)) for r in records])


def test_baseline_constants_read_each_record_once_and_equal_the_separate_means():
    rng = np.random.default_rng()
    records = [dict(r, pose=np.concatenate([Rotation.random(random_state=int(rng.integers(1 << 31))).as_rotvec(),
                                            np.zeros(45)]).astype(np.float32)) for r in _records(rng, 9)]
    reads = []

    class Counting(list):
        def __getitem__(self, i):
            reads.append(i)
            return list.__getitem__(self, i)

    template, regressor = rng.normal(size=(30, 3)), rng.dirichlet(np.ones(30), size=21)
    constants = baseline_constants(Counting(records), template, regressor)
    assert sorted(reads) == list(range(9))
    for got, expected in ((constants["mean_hand"], training_mean_hand(records)),
                          (constants["mean_pose_hand"], training_mean_pose_hand(records)),
                          (constants["rest_hand"], rest_hand(template, regressor))):
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, atol=1e-12)


def test_mean_rotation_is_the_scipy_chordal_mean():
    rng = np.random.default_rng()
    spread = Rotation.from_rotvec(rng.normal(size=(20, 3)) * 0.5) * Rotation.random(random_state=int(rng.integers(1 << 31)))
    np.testing.assert_allclose(mean_rotation(spread.as_matrix()), spread.mean().as_matrix(), atol=1e-9)


def test_rest_hand_is_root_relative_template():
    rng = np.random.default_rng()
    template = rng.normal(size=(30, 3))
    regressor = rng.dirichlet(np.ones(30), size=21)
    joints, verts = rest_hand(template, regressor)
    np.testing.assert_allclose(joints, regressor @ template - regressor[0] @ template, atol=1e-12)
    np.testing.assert_allclose(verts, template - regressor[0] @ template, atol=1e-12)


def test_baseline_errors_equal_hand_computed_ones():
    rng = np.random.default_rng()
    gt_joints = rng.normal(size=(5, 21, 3)) * 0.05
    gt_verts = rng.normal(size=(5, 30, 3)) * 0.05
    constant_j, constant_v = rng.normal(size=(21, 3)) * 0.05, rng.normal(size=(30, 3)) * 0.05
    occ = np.zeros((5, 6), np.int32)
    occ[1, 2] = 1          # some fingers
    occ[2, 5] = 1          # whole hand
    collectors = BaselineCollectors({"c": (constant_j, constant_v), "exact": (gt_joints[0], gt_verts[0])})
    keep = np.array([1, 1, 1, 1, 0])
    collectors.add(gt_joints, gt_verts, occ, np.ones(5), keep=keep)
    results = collectors.results()
    # J-PE after root alignment of both sides: mean over kept samples and joints.
    rel = lambda a: a - a[..., :1, :]  # noqa: E731
    expected = np.linalg.norm(rel(constant_j)[None] - rel(gt_joints[:4]), axis=-1).mean() * 1000
    assert results["c"]["overall"]["j_pe_mm"] == pytest.approx(expected, rel=1e-9)
    assert results["c"]["overall"]["num_samples"] == 4
    assert results["c"]["by_occlusion"]["hand"]["num_samples"] == 1
    expected_hand = np.linalg.norm(rel(constant_j) - rel(gt_joints[2]), axis=-1).mean() * 1000
    assert results["c"]["by_occlusion"]["hand"]["j_pe_mm"] == pytest.approx(expected_hand, rel=1e-9)
    # The constant equal to sample 0 scores zero there and not elsewhere.
    assert results["exact"]["by_occlusion"]["none"]["num_samples"] == 2
    assert results["exact"]["overall"]["j_pe_mm"] > 0


def test_evaluate_baselines_reads_frame_zero_of_samples():
    rng = np.random.default_rng()
    samples = []
    for _ in range(3):
        samples.append({"joints_r_m": rng.normal(size=(3, 21, 3)) * 0.05, "verts_r_m": rng.normal(size=(3, 30, 3)) * 0.05,
                        "occ_labels": np.zeros((3, 6), np.int32), "occ_label_mask": np.ones(3, np.float32),
                        "mask": np.float32(1)})
    results = evaluate_baselines({"first": (samples[0]["joints_r_m"][0], samples[0]["verts_r_m"][0])}, samples,
                                 chunk_size=2)
    rel = lambda a: a - a[..., :1, :]  # noqa: E731
    expected = np.mean([np.linalg.norm(rel(samples[0]["joints_r_m"][0]) - rel(s["joints_r_m"][0]), axis=-1).mean()
                        for s in samples]) * 1000
    assert results["first"]["overall"]["j_pe_mm"] == pytest.approx(expected, rel=1e-9)
