"""Rotation representations: 6D (pytorch3d row convention), matrices, axis-angle, geodesics.

All matrices act on column vectors, ``v' = R v``. Everything is jit/vmap/grad-safe, including
the gradient of :func:`axis_angle_to_rotmat` at exactly zero angle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from h2o_jax.ops._checks import check_shape

_NORM_EPS = 1e-12
_SMALL_ANGLE_SQ = 1e-8  # below this theta^2 the Taylor series is exact to float64 precision


def _normalize(v: jax.Array) -> jax.Array:
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), _NORM_EPS)


def rot6d_to_rotmat(rot6d: ArrayLike) -> jax.Array:
    """6D rotation (Zhou et al.) to a matrix, ROW convention of pytorch3d.

    ``b1 = n(a1)``, ``b2 = n(a2 - (b1.a2) b1)``, ``b3 = b1 x b2`` and ``R = [b1; b2; b3]`` as
    ROWS (``n`` divides by ``max(|.|, 1e-12)``), as the official H2ONet code builds it.

    Args:
      rot6d: ``[..., 6]``.

    Returns:
      ``[..., 3, 3]``.
    """
    check_shape("rot6d", rot6d, (6,), "[..., 6]")
    rot6d = jnp.asarray(rot6d)
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = jnp.cross(b1, b2)
    return jnp.stack([b1, b2, b3], axis=-2)


def rotmat_to_rot6d(rotmat: ArrayLike) -> jax.Array:
    """Inverse of :func:`rot6d_to_rotmat` on rotations: the first two rows. ``[..., 3, 3] -> [..., 6]``."""
    check_shape("rotmat", rotmat, (3, 3), "[..., 3, 3]")
    rotmat = jnp.asarray(rotmat)
    return rotmat[..., :2, :].reshape(*rotmat.shape[:-2], 6)


def _skew(v: jax.Array) -> jax.Array:
    zero = jnp.zeros_like(v[..., 0])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return jnp.stack(
        [jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)],
        axis=-2,
    )


def axis_angle_to_rotmat(axis_angle: ArrayLike) -> jax.Array:
    """Rodrigues' formula: ``R = I + sin(t)/t K + (1 - cos t)/t^2 K^2`` with ``K = skew(v)``, t = |v|.

    Near t = 0 both coefficients switch to their Taylor series, so value and gradient stay
    finite (and exact) at exactly zero rotation.

    Args:
      axis_angle: ``[..., 3]``, rotation axis times angle in radians.

    Returns:
      ``[..., 3, 3]``.
    """
    check_shape("axis_angle", axis_angle, (3,), "[..., 3]")
    v = jnp.asarray(axis_angle)
    theta_sq = jnp.sum(v * v, axis=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = jnp.where(small, 1.0, theta_sq)
    theta = jnp.sqrt(safe_sq)
    sin_over_t = jnp.where(small, 1.0 - theta_sq / 6.0, jnp.sin(theta) / theta)
    one_minus_cos_over_t_sq = jnp.where(small, 0.5 - theta_sq / 24.0, (1.0 - jnp.cos(theta)) / safe_sq)
    k = _skew(v)
    eye = jnp.eye(3, dtype=v.dtype)
    return eye + sin_over_t[..., None, None] * k + one_minus_cos_over_t_sq[..., None, None] * (k @ k)


def rotmat_to_quaternion(rotmat: ArrayLike) -> jax.Array:
    """Rotation matrix to a unit quaternion ``(w, x, y, z)`` with ``w >= 0``. ``[..., 3, 3] -> [..., 4]``.

    Branchless Shepperd method: the four candidate formulas are evaluated with safe square
    roots and the best-conditioned one is selected.
    """
    check_shape("rotmat", rotmat, (3, 3), "[..., 3, 3]")
    r = jnp.asarray(rotmat)
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # 4 * q_i^2 for i = w, x, y, z; the largest is >= 1 for a rotation.
    four_sq = jnp.stack(
        [1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], -1
    )
    # Each candidate: the quaternion scaled by 4 * q_i, from the i-th formula.
    candidates = jnp.stack(
        [
            jnp.stack([four_sq[..., 0], r21 - r12, r02 - r20, r10 - r01], -1),
            jnp.stack([r21 - r12, four_sq[..., 1], r10 + r01, r02 + r20], -1),
            jnp.stack([r02 - r20, r10 + r01, four_sq[..., 2], r12 + r21], -1),
            jnp.stack([r10 - r01, r20 + r02, r21 + r12, four_sq[..., 3]], -1),
        ],
        axis=-2,
    )
    denom = 2.0 * jnp.sqrt(jnp.maximum(four_sq, 0.1))  # 0.1: never selected below 1, keeps grads finite
    candidates = candidates / denom[..., None]
    best = jnp.argmax(four_sq, axis=-1)
    quat = jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    return quat * jnp.where(quat[..., :1] < 0, -1.0, 1.0)


def rotmat_to_axis_angle(rotmat: ArrayLike) -> jax.Array:
    """Rotation matrix to axis-angle with angle in [0, pi]. ``[..., 3, 3] -> [..., 3]``.

    Exact inverse of :func:`axis_angle_to_rotmat` for angles below pi; at exactly pi the axis
    sign is ambiguous and either sign may be returned.
    """
    quat = rotmat_to_quaternion(rotmat)
    w, xyz = quat[..., 0], quat[..., 1:]
    norm_sq = jnp.sum(xyz * xyz, axis=-1)
    small = norm_sq < _SMALL_ANGLE_SQ
    norm = jnp.sqrt(jnp.where(small, 1.0, norm_sq))
    # angle / |xyz| = 2 atan2(n, w) / n; for n -> 0 (w -> 1): 2 / w (1 - n^2 / (3 w^2)).
    scale = jnp.where(
        small, 2.0 / w * (1.0 - norm_sq / (3.0 * w * w)), 2.0 * jnp.arctan2(norm, w) / norm
    )
    return xyz * scale[..., None]


def geodesic_distance(rotmat_a: ArrayLike, rotmat_b: ArrayLike) -> jax.Array:
    """Angle in radians of the relative rotation ``A^T B``. ``[..., 3, 3] x2 -> [...]``.

    Computed as ``atan2(|axis part|, trace part)``, which is accurate near 0 and pi (unlike
    arccos) and has a finite gradient everywhere (zero at identical inputs).
    """
    check_shape("rotmat_a", rotmat_a, (3, 3), "[..., 3, 3]")
    check_shape("rotmat_b", rotmat_b, (3, 3), "[..., 3, 3]")
    rel = jnp.swapaxes(jnp.asarray(rotmat_a), -1, -2) @ jnp.asarray(rotmat_b)
    cos_twice = jnp.trace(rel, axis1=-2, axis2=-1) - 1.0  # 2 cos(angle)
    axis = jnp.stack(
        [rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]],
        -1,
    )  # 2 sin(angle) * unit axis
    sin_sq = jnp.sum(axis * axis, axis=-1)
    sin_twice = jnp.sqrt(jnp.maximum(sin_sq, 1e-30))
    return jnp.arctan2(sin_twice, cos_twice)
