"""Streaming inference: one encoder pass per new frame, earlier frames' features from a cache.

In a live stream frames t-k and t-2k were encoded when they arrived, so their per-frame
features (decoder feature D3, occlusion logits, orientation features G, uv) are kept in a ring
of the last 2k frames. A step encodes the new frame, picks t-k and t-2k from the ring with the
same sequence-start rule as the data pipeline (frame number f < 2k: offsets (f // 2, f), so at
f = 0 all three frames are the current one), and runs the fusion heads. Its outputs equal the
three-frame forward on the same frames (tested).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from h2o_jax.nn.h2onet import IMAGE_SIZE_PX, H2ONet


@struct.dataclass
class StreamState:
    """Ring of per-frame features, newest first: each leaf [B, 2k, ...]; `count` [B] int32
    frames seen so far (the frame number of the next frame)."""

    history: dict[str, jax.Array]
    count: jax.Array
    frame_gap: int = struct.field(pytree_node=False)


def init_stream(model: H2ONet, variables: Any, batch_size: int, frame_gap: int) -> StreamState:
    """An empty stream state for `batch_size` independent streams with gap k = frame_gap."""
    if frame_gap < 1:
        raise ValueError(f"frame_gap must be >= 1, got {frame_gap}")
    probe = jax.eval_shape(
        lambda x: model.apply(variables, x, method=H2ONet.encode),
        jax.ShapeDtypeStruct((batch_size, IMAGE_SIZE_PX, IMAGE_SIZE_PX, 3), jnp.float32))
    history = {k: jnp.zeros((batch_size, 2 * frame_gap, *v.shape[1:]), v.dtype) for k, v in probe.items()}
    return StreamState(history, jnp.zeros((batch_size,), jnp.int32), frame_gap)


def stream_step(model: H2ONet, variables: Any, state: StreamState, images: jax.Array
                ) -> tuple[dict[str, jax.Array], StreamState]:
    """Consumes one frame per stream, images [B, H, W, 3]; returns (outputs, new state).

    Outputs are those of `H2ONet.__call__` in inference mode (frame 0 only).
    """
    k = state.frame_gap
    current = model.apply(variables, images, method=H2ONet.encode)
    f = state.count
    offset_short = jnp.where(f < 2 * k, f // 2, k)
    offset_long = jnp.where(f < 2 * k, f, 2 * k)
    frames = {}
    for key, value in current.items():
        # Index 0 = the current frame, index o = the frame o steps back.
        timeline = jnp.concatenate([value[:, None], state.history[key]], axis=1)
        picks = jnp.stack([jnp.zeros_like(f), offset_short, offset_long], axis=1)  # [B, 3]
        index = picks.reshape(picks.shape + (1,) * (timeline.ndim - 2))
        frames[key] = jnp.take_along_axis(timeline, index, axis=1)
    outputs = model.apply(variables, frames, method=H2ONet.fuse)
    history = {key: jnp.concatenate([value[:, None], state.history[key][:, :-1]], axis=1)
               for key, value in current.items()}
    return outputs, StreamState(history, f + 1, k)
