"""Finger-level occlusion-aware feature fusion (paper Eq. 2-3, as the official MF code does it).

Shape letters: T frames (frame 0 = current t, then t-k, t-2k), H occlusion heads (5 fingers, or
6 with the trailing global head, which fusion ignores), V vertices, C channels.

Occlusion logits are laid out ``[..., T, H, 2]``: class 0 = visible, class 1 = occluded.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from h2o_jax.ops._checks import check_exact_rank, check_rank_at_least, check_shape

NUM_FINGERS = 5
PALM_PART = 5

FusionScore = Literal["visible_prob", "occluded_prob", "visible_logit"]


def finger_scores(finger_logits: ArrayLike, score: FusionScore = "visible_prob") -> jax.Array:
    """Per-finger fusion score from occlusion logits.

    Args:
      finger_logits: ``[..., T, H, 2]`` with H >= 5; heads 0-4 (thumb..little) are used.
      score: ``"visible_prob"`` (official code: softmax over classes, class 0),
        ``"occluded_prob"`` (the paper's Eq. 2 read literally: class 1 probability), or
        ``"visible_logit"`` (logit margin ``l_visible - l_occluded``, i.e. the log-odds of being
        visible; unbounded, so the softmax over frames can become sharp).

    Returns:
      ``[..., T, 5]``.
    """
    check_rank_at_least("finger_logits", finger_logits, 3, "[..., T, H>=5, 2]")
    check_shape("finger_logits", finger_logits, (None, 2), "[..., T, H>=5, 2]")
    if np.shape(finger_logits)[-2] < NUM_FINGERS:
        raise ValueError(
            f"finger_logits must have shape [..., T, H>=5, 2], got {np.shape(finger_logits)}"
        )
    logits = jnp.asarray(finger_logits)[..., :NUM_FINGERS, :]
    if score == "visible_prob":
        return jax.nn.softmax(logits, axis=-1)[..., 0]
    if score == "occluded_prob":
        return jax.nn.softmax(logits, axis=-1)[..., 1]
    if score == "visible_logit":
        return logits[..., 0] - logits[..., 1]
    raise ValueError(
        f"score must be 'visible_prob', 'occluded_prob' or 'visible_logit', got {score!r}"
    )


def guidance_logits(
    predicted_logits: ArrayLike,
    labels: ArrayLike,
    label_mask: ArrayLike,
    margin: float = 8.0,
) -> jax.Array:
    """Occlusion logits that follow the ground-truth labels where they exist (not official).

    Where ``label_mask`` is 1 the logits of a fully confident classifier, ``(0, margin)`` for an
    occluded head and ``(margin, 0)`` for a visible one (with the default margin 8 the class
    probability is 0.9997); elsewhere ``predicted_logits`` unchanged. Training the fusion and the
    enquiry on these teaches the heads after them what the other frames are worth when a hand
    really is occluded, which the official training shows them only as often as its classifier
    fires. Carries no gradient to the labels.

    Args:
      predicted_logits: ``[..., T, H, 2]`` (class 1 = occluded).
      labels: ``[..., T, H']`` with H' >= H, values 0 (visible) / 1 (occluded); the first H used.
      label_mask: ``[..., T]``, 1 where the frame has labels.
      margin: the logit gap of a labelled head.

    Returns:
      ``[..., T, H, 2]``.
    """
    check_rank_at_least("predicted_logits", predicted_logits, 3, "[..., T, H, 2]")
    check_shape("predicted_logits", predicted_logits, (None, 2), "[..., T, H, 2]")
    predicted_logits = jnp.asarray(predicted_logits)
    heads = predicted_logits.shape[-2]
    expected = predicted_logits.shape[:-2]
    if np.shape(labels)[:-1] != expected or np.shape(labels)[-1] < heads:
        raise ValueError(f"labels must have shape {(*expected, f'>={heads}')}, got {np.shape(labels)}")
    if np.shape(label_mask) != expected:
        raise ValueError(f"label_mask must have shape {expected}, got {np.shape(label_mask)}")
    occluded = jnp.asarray(labels)[..., :heads].astype(predicted_logits.dtype)
    from_labels = margin * jnp.stack([1.0 - occluded, occluded], axis=-1)
    has_labels = (jnp.asarray(label_mask) > 0)[..., None, None]
    return jnp.where(has_labels, from_labels, predicted_logits)


def _check_vertex_part(vertex_part: ArrayLike) -> None:
    check_exact_rank("vertex_part", vertex_part, 1, "[V]")
    if isinstance(vertex_part, np.ndarray):  # values are checkable only when static
        if vertex_part.size and (vertex_part.min() < 0 or vertex_part.max() > PALM_PART):
            raise ValueError(
                "vertex_part values must lie in [0, 5] (0 thumb .. 4 little, 5 palm), got range "
                f"[{vertex_part.min()}, {vertex_part.max()}]"
            )


def occlusion_fusion_weights(
    finger_logits: ArrayLike,
    vertex_part: ArrayLike,
    score: FusionScore = "visible_prob",
    palm_score: float = 1.0,
) -> jax.Array:
    """Per-vertex fusion weights: a softmax over frames of each vertex's finger score.

    A vertex of finger d gets the score of head d in each frame; palm vertices (part 5) get the
    constant ``palm_score`` (official: 1), hence equal weights 1/T.

    Args:
      finger_logits: ``[..., T, H>=5, 2]``.
      vertex_part: ``[V]`` int part id per vertex (0 thumb .. 4 little, 5 palm).
      score: see :func:`finger_scores`.
      palm_score: score of palm vertices.

    Returns:
      ``[..., T, V]`` weights summing to 1 over T.
    """
    _check_vertex_part(vertex_part)
    scores = finger_scores(finger_logits, score)  # [..., T, 5]
    palm = jnp.full(scores.shape[:-1] + (1,), palm_score, scores.dtype)
    per_part = jnp.concatenate([scores, palm], axis=-1)  # [..., T, 6]
    per_vertex = jnp.take(per_part, jnp.asarray(vertex_part), axis=-1)  # [..., T, V]
    return jax.nn.softmax(per_vertex, axis=-2)


def occlusion_weighted_fusion(
    features: ArrayLike,
    finger_logits: ArrayLike,
    vertex_part: ArrayLike,
    score: FusionScore = "visible_prob",
    palm_score: float = 1.0,
) -> jax.Array:
    """Fuses per-vertex features over frames with occlusion-aware weights (Eq. 3).

    Args:
      features: ``[..., T, V, C]`` per-frame vertex features.
      finger_logits: ``[..., T, H>=5, 2]``.
      vertex_part: ``[V]``.
      score, palm_score: see :func:`occlusion_fusion_weights`.

    Returns:
      ``[..., V, C]`` = ``sum_T weights[..., T, V, None] * features``.
    """
    check_rank_at_least("features", features, 3, "[..., T, V, C]")
    num_frames, num_vertices = np.shape(features)[-3:-1]
    check_shape("vertex_part", vertex_part, (num_vertices,), f"[V = {num_vertices}]")
    if np.shape(finger_logits)[-3:-2] != (num_frames,):
        raise ValueError(
            f"finger_logits must have shape [..., T = {num_frames}, H>=5, 2] matching features, "
            f"got {np.shape(finger_logits)}"
        )
    weights = occlusion_fusion_weights(finger_logits, vertex_part, score, palm_score)
    return jnp.sum(weights[..., None] * jnp.asarray(features), axis=-3)
