"""Procrustes (HO3D routine), root-relative points and pinhole projection."""

import jax
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from h2o_jax.ops import procrustes_align, project_points, root_relative


def ho3d_procrustes_numpy(pred, target):
    """float64 transcription of metrics.md section 3, written independently of the op."""
    pred_mean, target_mean = pred.mean(0), target.mean(0)
    pred_c, target_c = pred - pred_mean, target - target_mean
    pred_norm = np.linalg.norm(pred_c) + 1e-8
    target_norm = np.linalg.norm(target_c) + 1e-8
    u, s, vt = np.linalg.svd((target_c / target_norm).T @ (pred_c / pred_norm))
    rotation = u @ vt
    return s.sum() * (pred_c / pred_norm) @ rotation.T * target_norm + target_mean


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_procrustes_recovers_similarity_transform(seed):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(21, 3)) * 0.05
    rotation = Rotation.random(random_state=seed).as_matrix()
    pred = 1.7 * target @ rotation.T + rng.normal(size=3)
    aligned = jax.jit(procrustes_align)(pred.astype(np.float32), target.astype(np.float32))
    np.testing.assert_allclose(aligned, target, atol=2e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_procrustes_matches_reference_routine(seed):
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(4, 30, 3))
    target = pred + rng.normal(size=pred.shape) * 0.3
    pred[0] = pred[0] * np.array([-1.0, 1.0, 1.0])  # a mirrored sample: no reflection fix-up
    expected = np.stack([ho3d_procrustes_numpy(p, t) for p, t in zip(pred, target)])
    with jax.enable_x64(True):
        got = procrustes_align(pred, target)
        np.testing.assert_allclose(got, expected, atol=1e-10)
        np.testing.assert_allclose(jax.vmap(procrustes_align)(pred, target), expected, atol=1e-10)
    # A mirrored copy is aligned perfectly: the routine accepts the improper (reflecting) fit.
    pred_m = target[0] * np.array([-1.0, 1.0, 1.0])
    with jax.enable_x64(True):
        aligned_m = procrustes_align(pred_m, target[0])
    assert np.abs(np.asarray(aligned_m) - target[0]).max() < 1e-7


def test_procrustes_shape_error():
    with pytest.raises(ValueError, match="target"):
        procrustes_align(np.zeros((5, 3)), np.zeros((4, 3)))


def test_root_relative():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2, 21, 3))
    np.testing.assert_allclose(root_relative(points), points - points[:, :1], atol=1e-6)  # float32
    np.testing.assert_allclose(root_relative(points, 4), points - points[:, 4:5], atol=1e-6)
    with pytest.raises(ValueError, match="root_index"):
        root_relative(points, 21)


def test_project_points_matches_pinhole_formula():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(size=(3, 10, 2)) * 0.1, rng.uniform(0.3, 1.0, (3, 10, 1))], -1)
    focal = rng.uniform(300, 600, (3, 2))
    principal = rng.uniform(50, 80, (3, 2))
    expected = points[..., :2] / points[..., 2:] * focal[:, None] + principal[:, None]
    np.testing.assert_allclose(jax.jit(project_points)(points, focal, principal), expected, rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(project_points)(points, focal, principal), expected, rtol=1e-5)
    with jax.enable_x64(True):
        check_grads(lambda p: project_points(p, focal[0], principal[0]), (points[0],), order=2, modes=["rev"])
    behind = project_points(np.array([[0.1, 0.1, -1.0]]), focal[0], principal[0])
    assert np.isfinite(np.asarray(behind)).all()
    with pytest.raises(ValueError, match="focal_px"):
        project_points(points, np.ones(3), principal)
