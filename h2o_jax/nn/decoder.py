"""Mesh branch: joint-feature sampling, lifting (Eq. 1), spiral decoder and head (section 5);
the multi-frame occlusion classifier (C.2) and vertex-offset head (C.3).

Shape letters: N images, J = 21 joints, V_l vertices at level l, C channels.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.hand.topology import MeshTopology
from h2o_jax.nn.layers import (
    PointwiseConv,
    batch_norm,
    grid_sample_align_corners,
    kaiming_relu_init,
)
from h2o_jax.ops import resample_vertices, spiral_conv

# OccPredNet joint groups (indices into the 21-joint axis). The official lists are written in
# MANO-native numbering but applied to thumb-first features (architecture.md C.2): to load
# official weights they must be used literally.
OFFICIAL_FINGER_GROUPS = ((13, 14, 15, 16), (1, 2, 3, 17), (4, 5, 6, 18), (10, 11, 12, 19), (7, 8, 9, 20))
OFFICIAL_PALM_GROUP = (0, 1, 4, 10, 7)
ANATOMICAL_FINGER_GROUPS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
ANATOMICAL_PALM_GROUP = (0, 5, 9, 13, 17)


def _lifting_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """The lifting matrix P [V_L, J]: the official constant 0.01 plus N(0, 0.01^2) noise.

    With the constant alone every coarse vertex gets the same feature, so all decoded vertices
    coincide at initialisation; the normal loss then normalises zero-length edges and its
    gradient on P alone reaches ~1e7, which under global-norm clipping silences every other
    gradient for the first hundreds of steps (issue 13). The noise separates the vertices."""
    return 0.01 + 0.01 * jax.random.normal(key, shape, dtype)


class _LinearParams(nn.Module):
    """Holds a dense layer's `kernel` [in, out] and `bias` [out] (applied by an op elsewhere)."""

    in_features: int
    features: int
    kernel_init: Any

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", self.kernel_init, (self.in_features, self.features), jnp.float32)
        return kernel, self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)


class SpiralConv(nn.Module):
    """Gather-based spiral convolution on a fixed [V, S] table; params `layer/{kernel,bias}`."""

    features: int
    spiral_indices: np.ndarray
    kernel_init: Any = nn.initializers.xavier_uniform()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = self.spiral_indices.shape[1] * x.shape[-1]
        kernel, bias = _LinearParams(in_features, self.features, self.kernel_init, name="layer")()
        return spiral_conv(x.astype(self.dtype), self.spiral_indices, kernel.astype(self.dtype),
                           bias.astype(self.dtype))


class MeshDecoder(nn.Module):
    """de_layer_conv -> grid-sample at uv -> lifting P -> 4 SpiralDeblocks -> head.

    __call__(latent [N, 4, 4, L], uv [N, J, 2]) returns joint features F_J [N, J, L] and the
    per-vertex feature D3 [N, V_0, C_0] (input of the head); `head(D3)` gives vertices [N, V_0, 3].
    """

    topology: MeshTopology
    channels: tuple[int, ...] = (32, 64, 128, 256)
    dtype: Any = jnp.float32
    template_residual: bool = False

    def setup(self) -> None:
        topo = self.topology
        latent = self.channels[-1]
        self.de_layer_conv = PointwiseConv(latent, dtype=self.dtype)
        self.upsample = self.param("upsample", _lifting_init, (topo.level_num_vertices[-1], 21), jnp.float32)
        num_deblocks = len(topo.spirals)
        if len(self.channels) != num_deblocks:
            raise ValueError(f"channels {self.channels} must have one width per spiral level ({num_deblocks})")
        # de_layer[i] works at level L - 1 - i (coarse to fine) with width channels[L - 1 - i].
        self.de_layer = [
            SpiralConv(self.channels[num_deblocks - 1 - i], np.asarray(topo.spirals[num_deblocks - 1 - i]),
                       dtype=self.dtype, name=f"de_layer_{i}")
            for i in range(num_deblocks)
        ]
        # As a residual the head starts at zero (the mesh starts as the template); the official
        # Xavier init gives vertices of ~0.5 m noise at the start.
        head_init = nn.initializers.zeros if self.template_residual else nn.initializers.xavier_uniform()
        self.head = SpiralConv(3, np.asarray(topo.spirals[0]), head_init, dtype=self.dtype)

    def __call__(self, latent: jax.Array, uv: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = self.de_layer_conv(latent).astype(jnp.float32)
        joint_features = grid_sample_align_corners(features, uv)  # F_J [N, J, L]
        x = jnp.einsum("vj,njc->nvc", self.upsample, joint_features)  # F_V at the coarsest level
        num_deblocks = len(self.de_layer)
        for i, layer in enumerate(self.de_layer):
            level = num_deblocks - 1 - i
            x = resample_vertices(x, self.topology.up_indices[level], self.topology.up_weights[level])
            x = nn.relu(layer(x)).astype(jnp.float32)
        return joint_features, x

    def apply_head(self, d3: jax.Array) -> jax.Array:
        """[..., V, C0] -> canonical vertices [..., V, 3] (head output, plus the root-relative
        template when `template_residual`)."""
        verts = self.head(d3).astype(jnp.float32)
        if self.template_residual:
            template = np.asarray(self.topology.template_vertices_m, np.float64)
            root = np.asarray(self.topology.joint_regressor, np.float64)[0] @ template
            verts = verts + jnp.asarray(template - root, jnp.float32)
        return verts


def _channel_major(x: jax.Array) -> jax.Array:
    """[..., K, C] -> [..., C * K] with flat index c * K + k (PyTorch's N x C x K flatten)."""
    return jnp.swapaxes(x, -1, -2).reshape(*x.shape[:-2], -1)


def _mlp(prefix: str, x: jax.Array, widths: tuple[int, ...], train: bool,
         dtype: Any, final_plain: bool) -> jax.Array:
    """Official Sequential of (Linear, BN, ReLU) triples; names `{prefix}_{3i}` / `{prefix}_{3i+1}`.

    When `final_plain`, the last width is a plain Linear (the 2-way logit layer).
    """
    for i, width in enumerate(widths):
        last = final_plain and i == len(widths) - 1
        # Created inside the caller's compact method, so Flax binds them to that module.
        x = nn.Dense(width, kernel_init=kaiming_relu_init, dtype=dtype,
                     name=f"{prefix}_{3 * i}")(x).astype(jnp.float32)
        if not last:
            x = nn.relu(batch_norm(train, f"{prefix}_{3 * i + 1}")(x))
    return x


class OcclusionClassifier(nn.Module):
    """OccPredNet: per-joint pre-MLP, base MLP, five finger heads and the global head.

    Input sg(F_J) [N, 21, L]; output logits [N, H, 2] (H = 6: thumb, index, middle, ring,
    little, global; class 0 = visible, 1 = occluded).
    """

    width_divisor: int = 1
    joint_groups: str = "official"
    num_heads: int = 6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, joint_features: jax.Array, train: bool) -> jax.Array:
        d = self.width_divisor
        fingers, palm = ((OFFICIAL_FINGER_GROUPS, OFFICIAL_PALM_GROUP) if self.joint_groups == "official"
                         else (ANATOMICAL_FINGER_GROUPS, ANATOMICAL_PALM_GROUP))
        # The shared per-joint Conv1d(k=1) MLP; its BatchNorms normalise over all joint positions.
        pre_modules = (
            nn.Dense(128 // d, kernel_init=kaiming_relu_init, dtype=self.dtype, name="pre_layer_0"),
            batch_norm(train, "pre_layer_1"),
            nn.Dense(64 // d, kernel_init=kaiming_relu_init, dtype=self.dtype, name="pre_layer_3"),
            batch_norm(train, "pre_layer_4"),
        )

        def pre_layer(x):
            x = nn.relu(pre_modules[1](pre_modules[0](x).astype(jnp.float32)))
            return nn.relu(pre_modules[3](pre_modules[2](x).astype(jnp.float32)))

        finger_joints = joint_features[:, np.asarray(fingers)]  # [N, 5, 4, L]
        finger_flat = _channel_major(pre_layer(finger_joints)).reshape(joint_features.shape[0], -1)
        hidden = _mlp("base_layer", finger_flat, (512 // d, 256 // d), train, self.dtype, False)
        logits = [
            _mlp(f"finger_cls_layer_list_{k}", hidden, (128 // d, 64 // d, 2), train, self.dtype, True)
            for k in range(5)
        ]
        if self.num_heads == 6:  # the palm joints pass through the same pre_layer a second time
            palm_flat = _channel_major(pre_layer(joint_features[:, np.asarray(palm)]))
            logits.append(_mlp("glob_cls_layer", jnp.concatenate([hidden, palm_flat], -1),
                               (256 // d, 128 // d, 2), train, self.dtype, True))
        return jnp.stack(logits, axis=-2)


class OffsetHead(nn.Module):
    """OffsetPredNet's q: three SpiralConv+ReLU and a SpiralConv head (64 -> 64 -> 32 -> 32 -> 3)
    on the level-0 spirals; input [N, V, C_in], output vertex offsets [N, V, 3]."""

    spiral_indices: np.ndarray
    width_divisor: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.width_divisor
        for i, width in enumerate((64 // d, 32 // d, 32 // d)):
            x = nn.relu(SpiralConv(width, self.spiral_indices, kaiming_relu_init, self.dtype,
                                   name=f"block_{2 * i}")(x))
        return SpiralConv(3, self.spiral_indices, kaiming_relu_init, self.dtype, name="head")(x).astype(jnp.float32)
