"""Rotations against scipy.spatial.transform.Rotation (float64) and hand derivations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from h2o_jax.ops import (
    axis_angle_to_rotmat,
    geodesic_distance,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_quaternion,
    rotmat_to_rot6d,
)


def random_axis_angles(rng, n, max_angle=np.pi * 0.999):
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return axes * rng.uniform(0, max_angle, size=(n, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_axis_angle_to_rotmat_matches_scipy(seed):
    aa = random_axis_angles(np.random.default_rng(seed), 64)
    got = jax.jit(axis_angle_to_rotmat)(aa.astype(np.float32))
    np.testing.assert_allclose(got, Rotation.from_rotvec(aa).as_matrix(), atol=2e-6)
    np.testing.assert_allclose(jax.vmap(axis_angle_to_rotmat)(aa.astype(np.float32)), got, atol=1e-6)


def test_axis_angle_small_and_zero_angles():
    aa = np.array([[0.0, 0.0, 0.0], [1e-5, -2e-5, 3e-6], [1e-3, 0.0, 0.0]])
    with jax.enable_x64(True):
        np.testing.assert_allclose(axis_angle_to_rotmat(aa), Rotation.from_rotvec(aa).as_matrix(), atol=1e-15)
        grad = jax.grad(lambda v: jnp.sum(axis_angle_to_rotmat(v) * jnp.arange(9.0).reshape(3, 3)))(jnp.zeros(3))
        # d/dv of sum(W * (I + skew(v))) at 0: W21 - W12, W02 - W20, W10 - W01.
        np.testing.assert_allclose(grad, [7.0 - 5.0, 2.0 - 6.0, 3.0 - 1.0])
        check_grads(axis_angle_to_rotmat, (np.zeros(3),), order=2, modes=["rev"])
        check_grads(axis_angle_to_rotmat, (random_axis_angles(np.random.default_rng(5), 4),), order=2, modes=["rev"])


@pytest.mark.parametrize("seed", [0, 1])
def test_rot6d_row_convention(seed):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(32, 6))
    r = np.asarray(jax.jit(rot6d_to_rotmat)(d.astype(np.float32)), np.float64)
    # Hand derivation of the row convention: R[0] = n(a1), R[1] = n(a2 - (R[0].a2) R[0]).
    b1 = d[:, :3] / np.linalg.norm(d[:, :3], axis=1, keepdims=True)
    b2 = d[:, 3:] - np.sum(b1 * d[:, 3:], 1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    np.testing.assert_allclose(r[:, 0], b1, atol=1e-6)
    np.testing.assert_allclose(r[:, 1], b2, atol=1e-6)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
    # Round trips: matrix -> 6D -> matrix, and 6D of a rotation -> the same rows.
    rotations = Rotation.random(16, random_state=seed).as_matrix()
    np.testing.assert_allclose(rot6d_to_rotmat(rotmat_to_rot6d(rotations.astype(np.float32))), rotations, atol=1e-6)
    with jax.enable_x64(True):
        check_grads(rot6d_to_rotmat, (d[:4],), order=2, modes=["rev"])


@pytest.mark.parametrize("seed", [0, 1])
def test_rotmat_to_axis_angle_round_trip(seed):
    rng = np.random.default_rng(seed)
    aa = np.concatenate([random_axis_angles(rng, 64), [[0, 0, 0], [1e-6, 0, 0], [0, 3.14, 0]]])
    with jax.enable_x64(True):
        matrices = Rotation.from_rotvec(aa).as_matrix()
        np.testing.assert_allclose(jax.jit(rotmat_to_axis_angle)(matrices), aa, atol=1e-9)
        quat = rotmat_to_quaternion(matrices)
        scipy_quat = Rotation.from_matrix(matrices).as_quat()  # (x, y, z, w)
        scipy_quat *= np.sign(scipy_quat[:, 3:] + 1e-300)
        np.testing.assert_allclose(quat, scipy_quat[:, [3, 0, 1, 2]], atol=1e-12)
        check_grads(rotmat_to_axis_angle, (matrices[:4],), order=1, modes=["rev"])
        grad_at_identity = jax.grad(lambda m: jnp.sum(rotmat_to_axis_angle(m)))(jnp.eye(3))
        assert np.isfinite(np.asarray(grad_at_identity)).all()


def test_axis_angle_at_pi_gives_a_valid_rotation():
    matrices = Rotation.from_rotvec([[np.pi, 0, 0], [0, 0, -np.pi]]).as_matrix()
    with jax.enable_x64(True):
        aa = rotmat_to_axis_angle(matrices)
        np.testing.assert_allclose(np.linalg.norm(aa, axis=1), np.pi, atol=1e-12)
        np.testing.assert_allclose(axis_angle_to_rotmat(aa), matrices, atol=1e-12)


def test_geodesic_distance_matches_scipy():
    rng = np.random.default_rng(7)
    a = Rotation.random(32, random_state=1)
    b = Rotation.random(32, random_state=2)
    expected = (a.inv() * b).magnitude()
    got = jax.jit(geodesic_distance)(a.as_matrix().astype(np.float32), b.as_matrix().astype(np.float32))
    np.testing.assert_allclose(got, expected, atol=2e-5)
    with jax.enable_x64(True):
        aa = random_axis_angles(rng, 4)
        check_grads(lambda v: geodesic_distance(jnp.eye(3), axis_angle_to_rotmat(v)), (aa,), order=1, modes=["rev"])
        np.testing.assert_allclose(geodesic_distance(np.eye(3), axis_angle_to_rotmat(aa)),
                                   np.linalg.norm(aa, axis=1), atol=1e-12)
        grad = jax.grad(lambda r: geodesic_distance(jnp.eye(3), r))(jnp.eye(3))
        assert np.isfinite(np.asarray(grad)).all()


def test_rotation_shape_errors():
    with pytest.raises(ValueError, match="rot6d"):
        rot6d_to_rotmat(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="axis_angle"):
        axis_angle_to_rotmat(np.zeros(4))
    with pytest.raises(ValueError, match="rotmat_b"):
        geodesic_distance(np.eye(3), np.zeros((3, 2)))
