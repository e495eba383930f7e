"""Hand-level occlusion (paper Eq. 5) and the frame-by-frame enquiry of Eq. 6, branchless.

Shape letters: T frames (frame 0 = current t, then t-k, t-2k), H heads (>= 5), D feature size.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from h2o_jax.ops._checks import check_rank_at_least, check_shape

NUM_FINGERS = 5


def hand_usable(finger_logits: ArrayLike, reading: Literal["A", "B"] = "A",
                occluded_logit_offset: float = 0.0) -> jax.Array:
    """Whether each frame's orientation evidence is usable (1) or the hand is occluded (0).

    o_d = argmax over classes of finger head d (1 = occluded), d = 0..4 (a global 6th head is
    ignored, as in the official code).

    * Reading "A" (official code, the paper's text): ``u = 1 - prod_d o_d`` -- usable unless all
      five fingers are predicted occluded.
    * Reading "B" (Eq. 5 literally with per-finger visibility): ``u = prod_d (1 - o_d)`` --
      usable only when all five fingers are visible.

    The argmax makes this piecewise constant: it carries no gradient. `occluded_logit_offset`
    is added to each finger's occluded logit before the argmax (0 = official): a decision
    threshold, for a classifier whose scores rank well but lean to "visible".

    Args:
      finger_logits: ``[..., T, H>=5, 2]``.

    Returns:
      ``[..., T]`` float, values in {0, 1}.
    """
    check_rank_at_least("finger_logits", finger_logits, 2, "[..., H>=5, 2]")
    check_shape("finger_logits", finger_logits, (None, 2), "[..., H>=5, 2]")
    if np.shape(finger_logits)[-2] < NUM_FINGERS:
        raise ValueError(f"finger_logits must have >= 5 heads, got {np.shape(finger_logits)}")
    logits = jax.lax.stop_gradient(jnp.asarray(finger_logits)[..., :NUM_FINGERS, :])
    occluded = (logits[..., 1] + occluded_logit_offset > logits[..., 0]).astype(logits.dtype)  # ties -> visible
    if reading == "A":
        return 1.0 - jnp.prod(occluded, axis=-1)
    if reading == "B":
        return jnp.prod(1.0 - occluded, axis=-1)
    raise ValueError(f"reading must be 'A' or 'B', got {reading!r}")


def enquiry_weights(usable: ArrayLike) -> jax.Array:
    """Eq. 6 coefficients: select the first usable frame in the order t, t-k, t-2k, else t.

    ``a_i = u_i * prod_{j<i} (1 - u_j)`` and ``a_0 += prod_j (1 - u_j)`` (the fallback to the
    current frame when every frame is occluded). For binary u exactly one a_i is 1; for soft u
    the weights still sum to 1.

    Args:
      usable: ``[..., T]`` with T >= 1, values in [0, 1].

    Returns:
      ``[..., T]``.
    """
    check_rank_at_least("usable", usable, 1, "[..., T]")
    u = jnp.asarray(usable)
    not_usable = 1.0 - u
    # Exclusive cumulative product: prod_{j<i} (1 - u_j).
    before = jnp.cumprod(
        jnp.concatenate([jnp.ones_like(u[..., :1]), not_usable[..., :-1]], axis=-1), axis=-1
    )
    weights = u * before
    fallback = jnp.prod(not_usable, axis=-1, keepdims=True)
    return weights.at[..., :1].add(fallback)


def enquire(global_features: ArrayLike, usable: ArrayLike) -> jax.Array:
    """G' of Eq. 6: the usable-frame-selected global feature.

    Args:
      global_features: ``[..., T, D]`` per-frame global features G_i.
      usable: ``[..., T]`` from :func:`hand_usable`.

    Returns:
      ``[..., D]`` = ``sum_i a_i G_i``.
    """
    check_rank_at_least("global_features", global_features, 2, "[..., T, D]")
    num_frames = np.shape(global_features)[-2]
    check_shape("usable", usable, (num_frames,), f"[..., T = {num_frames}]")
    weights = enquiry_weights(usable)
    return jnp.sum(weights[..., None] * jnp.asarray(global_features), axis=-2)
