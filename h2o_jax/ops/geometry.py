"""Geometry helpers: Procrustes alignment (HO3D scorer), root-relative points, pinhole projection.

Shape letter N: points. Lengths in metres unless a name says otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from h2o_jax.ops._checks import check_rank_at_least, check_shape

PROCRUSTES_EPS = 1e-8


def procrustes_align(pred: ArrayLike, target: ArrayLike) -> jax.Array:
    """Aligns `pred` to `target` with the similarity fit of the HO3D/FreiHAND scorer.

    Per sample: centre each set on its centroid, divide by its Frobenius norm + 1e-8, take the
    SVD ``target_n^T pred_n = U S V^T``, rotation ``R = U V^T`` (NO reflection correction: an
    improper R is used as is, as the official scorer does), scale ``s = sum(S)``; the aligned
    prediction is ``s * pred_n R^T * (|target_c| + 1e-8) + centroid(target)``. The target is
    never moved.

    Args:
      pred: ``[..., N, 3]``.
      target: ``[..., N, 3]``.

    Returns:
      ``[..., N, 3]`` aligned prediction.
    """
    check_rank_at_least("pred", pred, 2, "[..., N, 3]")
    check_shape("pred", pred, (None, 3), "[..., N, 3]")
    if jnp.shape(pred) != jnp.shape(target):
        raise ValueError(
            f"target must have the shape of pred {jnp.shape(pred)}, got {jnp.shape(target)}"
        )
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    pred_mean = jnp.mean(pred, axis=-2, keepdims=True)
    target_mean = jnp.mean(target, axis=-2, keepdims=True)
    pred_c, target_c = pred - pred_mean, target - target_mean
    pred_norm = jnp.linalg.norm(pred_c, axis=(-2, -1), keepdims=True) + PROCRUSTES_EPS
    target_norm = jnp.linalg.norm(target_c, axis=(-2, -1), keepdims=True) + PROCRUSTES_EPS
    pred_n, target_n = pred_c / pred_norm, target_c / target_norm
    u, s, vt = jnp.linalg.svd(jnp.swapaxes(target_n, -1, -2) @ pred_n)
    rotation = u @ vt
    scale = jnp.sum(s, axis=-1)[..., None, None]
    return scale * (pred_n @ jnp.swapaxes(rotation, -1, -2)) * target_norm + target_mean


def root_relative(points: ArrayLike, root_index: int = 0) -> jax.Array:
    """Subtracts point `root_index` (the wrist for 21 joints). ``[..., N, 3] -> [..., N, 3]``."""
    check_rank_at_least("points", points, 2, "[..., N, 3]")
    points = jnp.asarray(points)
    if not -points.shape[-2] <= root_index < points.shape[-2]:
        raise ValueError(f"root_index {root_index} out of range for {points.shape[-2]} points")
    return points - points[..., root_index : root_index + 1, :]


def project_points(
    points_cam_m: ArrayLike,
    focal_px: ArrayLike,
    principal_px: ArrayLike,
    min_depth_m: float = 1e-4,
) -> jax.Array:
    """Pinhole projection in the OpenCV frame: ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``.

    Depths below `min_depth_m` (points at or behind the camera) are clamped to it so the result
    stays finite; callers that may see such points should mask them by ``Z``.

    Args:
      points_cam_m: ``[..., N, 3]`` camera-frame points.
      focal_px: ``[..., 2]`` (fx, fy), broadcastable against the leading dims.
      principal_px: ``[..., 2]`` (cx, cy).

    Returns:
      ``[..., N, 2]`` pixel coordinates.
    """
    check_rank_at_least("points_cam_m", points_cam_m, 2, "[..., N, 3]")
    check_shape("points_cam_m", points_cam_m, (None, 3), "[..., N, 3]")
    check_shape("focal_px", focal_px, (2,), "[..., 2]")
    check_shape("principal_px", principal_px, (2,), "[..., 2]")
    points = jnp.asarray(points_cam_m)
    depth = jnp.maximum(points[..., 2:], min_depth_m)
    focal = jnp.asarray(focal_px)[..., None, :]
    principal = jnp.asarray(principal_px)[..., None, :]
    return points[..., :2] / depth * focal + principal
