"""Metrics against hand-computed values and an independent float64 transcription of the scorer."""

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from h2o_jax.metrics import (
    MetricAccumulator,
    auc,
    f_scores,
    occlusion_category,
    pck_curve,
    root_align,
    sample_metrics,
)


def test_constant_offsets_give_known_mean_errors():
    rng = np.random.default_rng(0)
    target_j = rng.normal(size=(2, 21, 3)) * 0.05
    target_v = rng.normal(size=(2, 30, 3)) * 0.05
    # Sample 0 is off by 3 mm along x, sample 1 by 4 mm along z: J-PE = V-PE = 3.5 mm.
    offsets = np.array([[0.003, 0, 0], [0, 0, 0.004]])[:, None]
    metrics = jax.jit(sample_metrics)(target_j + offsets, target_v + offsets, target_j, target_v)
    acc = MetricAccumulator()
    acc.add(metrics)
    report = acc.results()["overall"]
    assert report["j_pe_mm"] == pytest.approx(3.5, abs=1e-4)
    assert report["v_pe_mm"] == pytest.approx(3.5, abs=1e-4)
    # A translation is removed by Procrustes entirely.
    assert report["pa_j_pe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert report["pa_f5"] == pytest.approx(1.0)


def test_auc_hand_computed_cases():
    # Every error in (0, 0.505 mm]: only the threshold 0 fails, losing half a step of 99.
    assert auc(np.full((4, 21), 0.0004)) == pytest.approx(1 - 0.5 / 99, abs=1e-12)
    assert auc(np.zeros((3, 5))) == pytest.approx(1.0)
    assert auc(np.full((2, 5), 0.06)) == pytest.approx(0.0)
    # Per-point areas averaged: half the points perfect, half beyond 50 mm -> 0.5.
    assert auc(np.concatenate([np.zeros((3, 4)), np.full((3, 4), 0.2)], 1)) == pytest.approx(0.5)
    # The rule of thumb of metrics.md: AUC ~ 1 - mean(min(e, 50 mm)) / 50 mm.
    errors = np.random.default_rng(1).uniform(0, 0.03, (200, 21))
    assert auc(errors) == pytest.approx(1 - errors.mean() / 0.05, abs=0.01)
    thresholds_mm, pck = pck_curve(errors)
    assert thresholds_mm[0] == 0 and thresholds_mm[-1] == pytest.approx(50.0) and len(pck) == 100


def test_f_score_cases():
    rng = np.random.default_rng(2)
    target = rng.uniform(0, 1, (1, 50, 3))  # sparse cloud: neighbours are > 15 mm apart
    shifted = target + np.array([0.004, 0, 0])  # every point 4 mm away
    np.testing.assert_allclose(f_scores(shifted, target), [[1.0, 1.0]], atol=1e-6)
    far = target + np.array([0.010, 0, 0])
    np.testing.assert_allclose(f_scores(far, target), [[0.0, 1.0]], atol=1e-6)
    # Half the predicted points collapse far away: precision 0.5, recall 0.5 -> F = 0.5.
    half = shifted.copy()
    half[0, :25] = 5.0
    a = 0.5
    b = np.mean(np.min(np.linalg.norm(target[0][:, None] - half[0][None], axis=-1), axis=1) < 0.005)
    np.testing.assert_allclose(f_scores(half, target)[0, 0], 2 * a * b / (a + b), atol=1e-6)


def scorer_f(pred, gt, t):
    """float64 transcription of the official per-sample F-score."""
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    a, b = (d.min(1) < t).mean(), (d.min(0) < t).mean()
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def test_against_float64_scorer_on_random_inputs():
    rng = np.random.default_rng(3)
    gt_j, gt_v = rng.normal(size=(5, 21, 3)) * 0.04, rng.normal(size=(5, 40, 3)) * 0.04
    pred_j, pred_v = gt_j + rng.normal(size=gt_j.shape) * 0.01, gt_v + rng.normal(size=gt_v.shape) * 0.01
    with jax.enable_x64(True):
        metrics = sample_metrics(pred_j, pred_v, gt_j, gt_v)
    acc = MetricAccumulator()
    acc.add(metrics)
    report = acc.results()["overall"]
    assert report["j_pe_mm"] == pytest.approx(np.linalg.norm(pred_j - gt_j, axis=-1).mean() * 1000, rel=1e-9)
    expected_f5 = np.mean([scorer_f(p, g, 0.005) for p, g in zip(pred_v, gt_v)])
    assert report["f5"] == pytest.approx(expected_f5, abs=1e-9)
    assert report["pa_j_pe_mm"] < report["j_pe_mm"]


def test_mirrored_prediction_is_nearly_invisible_after_pa():
    """metrics.md: the scorer does no reflection correction, so a mirrored hand aligns well."""
    rng = np.random.default_rng(4)
    target = rng.normal(size=(1, 21, 3)) * 0.04
    mirrored = target * np.array([-1.0, 1.0, 1.0]) + 0.01
    with jax.enable_x64(True):
        metrics = sample_metrics(mirrored, mirrored, target, target)
    assert np.asarray(metrics["pa_joint_err"]).max() < 1e-7  # the scorer's +1e-8 in the norms
    assert np.asarray(metrics["joint_err"]).mean() > 0.01


def test_similarity_transformed_copy_has_zero_pa_error():
    rng = np.random.default_rng(5)
    target = rng.normal(size=(2, 21, 3)) * 0.04
    rotation = Rotation.random(random_state=5).as_matrix()
    pred = 1.3 * target @ rotation.T + 0.1
    with jax.enable_x64(True):
        metrics = sample_metrics(pred, pred, target, target)
    assert np.asarray(metrics["pa_joint_err"]).max() < 1e-7  # the scorer's +1e-8 in the norms


def test_categories_masks_and_root_alignment():
    labels = np.array([[0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(occlusion_category(labels), [0, 1, 2, 2])
    rng = np.random.default_rng(6)
    gt = rng.normal(size=(4, 21, 3)) * 0.05
    pred = gt + np.array([0.002, 0, 0])
    pred[3] += 1.0  # a padded sample with garbage
    acc = MetricAccumulator()
    acc.add(sample_metrics(pred, pred, gt, gt), mask=np.array([1, 1, 1, 0]), occ_labels=labels)
    results = acc.results()
    assert results["overall"]["num_samples"] == 3
    assert results["overall"]["j_pe_mm"] == pytest.approx(2.0, abs=1e-4)
    assert {k: v["num_samples"] for k, v in results["by_occlusion"].items()} == {"none": 1, "fingers": 1, "hand": 1}
    joints, verts = root_align(gt, gt[:, :5])
    np.testing.assert_allclose(joints[:, 0], 0.0, atol=1e-7)
    np.testing.assert_allclose(verts, gt[:, :5] - gt[:, :1], atol=1e-7)
    with pytest.raises(ValueError, match="no samples"):
        MetricAccumulator().results()
