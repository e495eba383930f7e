"""Orientation branch: per-frame global features G, the 6D rotation head(s), and the offset
rotation head of Eq. 7 (`H2ONet_GlobRotReg` / `GlobRotReg_MF`, architecture.md 6 and C.4).

Shape letters: N images, D = 1024 / width_divisor global-feature size.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from h2o_jax.nn.layers import kaiming_relu_init


class RotationRegressor(nn.Module):
    """Params: conv_block_{0,2}, pre_block_{0,2}, the rotation head `fc_block` (single-frame
    names) or `fc_block1` (multi-frame names), and `fc_block2` (offset head, Eq. 7)."""

    width_divisor: int = 1
    rotation_head_name: str = "fc_block"
    with_offset_head: bool = False
    dtype: Any = jnp.float32

    def setup(self) -> None:
        d = self.width_divisor

        def dense(width, name):
            return nn.Dense(width, kernel_init=kaiming_relu_init, dtype=self.dtype, name=name)

        self.conv_block = [dense(512 // d, "conv_block_0"), dense(256 // d, "conv_block_2")]
        self.pre_block = [dense(2048 // d, "pre_block_0"), dense(1024 // d, "pre_block_2")]
        head_widths = (1024 // d, 512 // d, 256 // d, 6)
        self.rotation_head = [dense(w, f"{self.rotation_head_name}_{2 * i}") for i, w in enumerate(head_widths)]
        if self.with_offset_head:
            self.offset_head = [dense(w, f"fc_block2_{2 * i}") for i, w in enumerate(head_widths)]

    @staticmethod
    def _mlp(layers, x: jax.Array, final_relu: bool) -> jax.Array:
        for i, layer in enumerate(layers):
            x = layer(x).astype(jnp.float32)
            if final_relu or i < len(layers) - 1:
                x = nn.relu(x)
        return x

    def global_features(self, j_latent: jax.Array, rot_latent: jax.Array | None) -> jax.Array:
        """G [N, D] from the stack2 bottleneck (detached in the dual-branch net) + the
        orientation encoder's bottleneck, both [N, 4, 4, C]."""
        if rot_latent is None:  # baseline B: orientation straight from the mesh encoder
            x = j_latent
        else:
            x = jax.lax.stop_gradient(j_latent) + rot_latent
        n, h, w, c = x.shape
        x = self._mlp(self.conv_block, x.reshape(n, h * w, c), final_relu=True)  # [N, 16, 256/d]
        x = jnp.swapaxes(x, 1, 2).reshape(n, -1)  # channel-major flatten: 16 c + (4 h + w)
        return self._mlp(self.pre_block, x, final_relu=True)

    def rotation_6d(self, global_features: jax.Array) -> jax.Array:
        """[..., D] -> [..., 6]."""
        return self._mlp(self.rotation_head, global_features, final_relu=False)

    def offset_6d(self, current: jax.Array, enquired: jax.Array) -> jax.Array:
        """fc_block2 on concat[G_t, G'] (the official order): [B, D] x2 -> [B, 6]."""
        return self._mlp(self.offset_head, jnp.concatenate([current, enquired], -1), final_relu=False)
