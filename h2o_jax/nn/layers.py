"""Building blocks of the DenseStack encoder (architecture.md section 3), NHWC.

Parameter names follow the official PyTorch state dict: a PyTorch `Sequential` index `X.i`
becomes the Flax name `X_i`; `conv_layer`'s `.0` / `.1` become `conv` / `bn`; `linear_layer`'s
become `linear` / `bn` (see h2o_jax/nn/__init__.py for the full correspondence).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# PyTorch's default Conv/Linear init: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# Kaiming-uniform with ReLU gain, used by the official rot_reg, OccPredNet and OffsetPredNet.
kaiming_relu_init = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


class TorchBatchNorm(nn.Module):
    """BatchNorm over the last axis exactly as PyTorch's BatchNorm{1,2}d trains and infers.

    Normalises with the biased batch variance, but updates the running variance with the
    unbiased one (n / (n - 1)), as PyTorch does and flax.linen.BatchNorm does not; momentum in
    PyTorch's convention (running = (1 - m) running + m batch). Variables as flax's BatchNorm:
    params `scale`, `bias`; batch_stats `mean`, `var`. The variance is two-pass: the one-pass
    E[x^2] - E[x]^2 loses digits to cancellation and then depends on how a batch is sharded.
    """

    use_running_average: bool
    momentum: float = 0.1
    epsilon: float = 1e-5
    scale_init: Callable = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            count = int(np.prod(x.shape[:-1]))
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean
                running_var.value = (1 - m) * running_var.value + m * var * (count / max(count - 1, 1))
        return (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


def batch_norm(train: bool, name: str, zero_scale: bool = False) -> TorchBatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5) and running-variance rule;
    `zero_scale` starts its scale (gamma) at 0 instead of 1."""
    scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
    return TorchBatchNorm(use_running_average=not train, scale_init=scale_init, name=name)


def relu4(x: jax.Array) -> jax.Array:
    """The official linear_layer activation: Hardtanh(0, 4), i.e. clip(x, 0, 4)."""
    return jnp.clip(x, 0.0, 4.0)


class PointwiseConv(nn.Module):
    """1 x 1 convolution, no bias, written as a matrix product over the channel axis.

    Same parameter (`kernel` [1, 1, C_in, C_out]) and init as `nn.Conv(features, (1, 1))`, the
    same arithmetic, but XLA on CPU runs it as a dot, faster than its convolution (BENCHMARKS.md,
    "1 x 1 convolutions as matrix products").
    """

    features: int
    kernel_init: Any = torch_default_init
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features), jnp.float32)
        return jnp.dot(x.astype(self.dtype), kernel[0, 0].astype(self.dtype))


def _shift_w(x: jax.Array, offset: int) -> jax.Array:
    """y[:, :, w] = x[:, :, w + offset] for offset in {-1, 0, 1}, zero outside the image."""
    if offset == 0:
        return x
    zeros = jnp.zeros_like(x[:, :, :1])
    return jnp.concatenate([x[:, :, 1:], zeros], 2) if offset > 0 else jnp.concatenate([zeros, x[:, :, :-1]], 2)


def _shift_h(x: jax.Array, offset: int) -> jax.Array:
    """y[:, h] = x[:, h + offset] for offset in {-1, 0, 1}, zero outside the image."""
    if offset == 0:
        return x
    zeros = jnp.zeros_like(x[:, :1])
    return jnp.concatenate([x[:, 1:], zeros], 1) if offset > 0 else jnp.concatenate([zeros, x[:, :-1]], 1)


def depthwise_conv3x3(x: jax.Array, kernel: jax.Array, for_training: bool = False) -> jax.Array:
    """Depthwise 3x3 cross-correlation, stride 1, zero padding 1: x [N, H, W, C], kernel
    [3, 3, 1, C] (nn.Conv's layout) -> [N, H, W, C].

    The same products as a grouped convolution, which XLA on CPU runs several times slower, in
    one of two summation orders (equal to float32 rounding), whichever is faster on this CPU
    (BENCHMARKS.md, "Depthwise convolution for training"):
    - inference: nine shifted slices of the padded input, one fused loop;
    - `for_training`: three column shifts, weighted and summed per kernel row, then the three
      row sums shifted by rows. It makes the whole train step 1.1-1.3x faster (BENCHMARKS.md):
      autodiff of the nine slices keeps each slice as a residual, copied out by a slow pad-slice
      loop.
    """
    if not for_training:
        height, width = x.shape[1:3]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = jnp.zeros_like(x)
        for dy in range(3):
            for dx in range(3):
                out = out + padded[:, dy:dy + height, dx:dx + width, :] * kernel[dy, dx, 0]
        return out
    columns = [_shift_w(x, offset) for offset in (-1, 0, 1)]
    out = None
    for dy in range(3):
        row = columns[0] * kernel[dy, 0, 0] + columns[1] * kernel[dy, 1, 0] + columns[2] * kernel[dy, 2, 0]
        row = _shift_h(row, dy - 1)
        out = row if out is None else out + row
    return out


class DepthwiseConv3x3(nn.Module):
    """Depthwise 3x3 conv, stride 1, zero padding 1, no bias; kernel [3, 3, 1, C] as nn.Conv
    (computed by `depthwise_conv3x3`, in its training form when `train`)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", torch_default_init, (3, 3, 1, channels), jnp.float32)
        return depthwise_conv3x3(x.astype(self.dtype), kernel.astype(self.dtype), for_training=train)


class ConvBN(nn.Module):
    """conv_layer: Conv (no bias, symmetric padding) -> BatchNorm -> optional ReLU."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    relu: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        pad = self.kernel_size // 2
        depthwise = self.groups == x.shape[-1] == self.features and self.kernel_size == 3
        if depthwise and self.stride == 1:
            x = DepthwiseConv3x3(self.dtype, name="conv")(x, train)
            x = batch_norm(train, "bn")(x.astype(jnp.float32))
            return nn.relu(x) if self.relu else x
        if self.kernel_size == 1 and self.stride == 1 and self.groups == 1:
            x = PointwiseConv(self.features, dtype=self.dtype, name="conv")(x)
        else:
            x = nn.Conv(self.features, (self.kernel_size,) * 2, strides=self.stride,
                        padding=((pad, pad), (pad, pad)), feature_group_count=self.groups,
                        use_bias=False, kernel_init=torch_default_init, dtype=self.dtype, name="conv")(x)
        x = batch_norm(train, "bn")(x.astype(jnp.float32))
        return nn.relu(x) if self.relu else x


class LinearBN(nn.Module):
    """linear_layer: Dense (no bias) -> BatchNorm1d -> optional clip(0, 4)."""

    features: int
    relu: bool = True
    dtype: Any = jnp.float32
    zero_scale: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(self.features, use_bias=False, kernel_init=torch_default_init,
                     dtype=self.dtype, name="linear")(x)
        x = batch_norm(train, "bn", self.zero_scale)(x.astype(jnp.float32))
        return relu4(x) if self.relu else x


class MobileUnit(nn.Module):
    """Depthwise 3x3 conv(s) + pointwise 1x1; residual (after the ReLU) iff cin == cout.

    `shortcut` (not official) also gives the units with cin != cout a parameter-free identity
    path: the input's first cout channels (cin > cout) or the input zero-padded to cout channels.
    """

    features: int
    num3x3: int = 1
    dtype: Any = jnp.float32
    shortcut: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        y = x
        for i in range(self.num3x3):
            y = ConvBN(channels, 3, groups=channels, dtype=self.dtype, name=f"conv3x3_{i}")(y, train)
        y = ConvBN(self.features, 1, dtype=self.dtype, name="conv1x1")(y, train)
        if channels == self.features:
            return y + x
        if not self.shortcut:
            return y
        if channels > self.features:
            return y + x[..., :self.features]
        return y + jnp.pad(x, ((0, 0),) * (x.ndim - 1) + ((0, self.features - channels),))


class SEBlock(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(fc1(mean_hw(x)))), hidden = min(C/2, max_hidden).

    `constant_gate_init` (not official) starts fc2's BatchNorm scale at 0, so every gate begins
    at sigmoid(0) = 0.5 for every image instead of a random per-image factor per channel.
    """

    max_hidden: int = 256
    dtype: Any = jnp.float32
    constant_gate_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2))
        s = LinearBN(min(channels // 2, self.max_hidden), dtype=self.dtype, name="fc1")(s, train)
        s = LinearBN(channels, relu=False, dtype=self.dtype, zero_scale=self.constant_gate_init, name="fc2")(s, train)
        return x * jax.nn.sigmoid(s)[:, None, None, :]


class DenseBlock(nn.Module):
    """Dense concatenation of mobile units (architecture.md 3.5).

    kind "dense2": units c -> c/2 twice, out [x, u1, u2] (2c). kind "dense4": four units
    -> c/4, out [x, u1..u4] (2c). kind "no_expand": units c -> 3c/4 then -> c/4, out [u1, u2] (c).
    `shortcut` (not official): the units get `MobileUnit.shortcut` and "no_expand" adds x to its
    output, so every block has an identity path.
    """

    kind: str
    dtype: Any = jnp.float32
    shortcut: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        widths = {"dense2": (c // 2, c // 2), "dense4": (c // 4,) * 4, "no_expand": (3 * c // 4, c // 4)}[self.kind]
        parts = [x]
        for i, width in enumerate(widths):
            parts.append(MobileUnit(width, dtype=self.dtype, shortcut=self.shortcut, name=f"conv{i + 1}")(
                jnp.concatenate(parts, axis=-1), train))
        if self.kind != "no_expand":
            return jnp.concatenate(parts, axis=-1)
        out = jnp.concatenate(parts[1:], axis=-1)
        return out + x if self.shortcut else out


def avg_pool2(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def upsample_nearest2(x: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _align_corners_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] linear interpolation sampling o * (size_in - 1) / (size_out - 1)."""
    position = np.arange(size_out) * (size_in - 1) / max(size_out - 1, 1)
    lower = np.clip(np.floor(position).astype(int), 0, size_in - 2) if size_in > 1 else np.zeros(size_out, int)
    frac = position - lower
    matrix = np.zeros((size_out, size_in), np.float32)
    matrix[np.arange(size_out), lower] += 1.0 - frac
    if size_in > 1:
        matrix[np.arange(size_out), lower + 1] += frac
    return matrix


def upsample_bilinear2_align_corners(x: jax.Array) -> jax.Array:
    """Bilinear x2 with align_corners=True (PyTorch semantics): [N, H, W, C] -> [N, 2H, 2W, C]."""
    _, height, width, _ = x.shape
    rows = jnp.asarray(_align_corners_matrix(height, 2 * height), x.dtype)
    cols = jnp.asarray(_align_corners_matrix(width, 2 * width), x.dtype)
    return jnp.einsum("oh,nhwc,pw->nopc", rows, x, cols)


def reorg(x: jax.Array) -> jax.Array:
    """Space-to-depth x2 in PyTorch pixel_unshuffle channel order: out channel c*4 + 2*dy + dx."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, 4 * c)


def grid_sample_align_corners(feature_map: jax.Array, uv: jax.Array) -> jax.Array:
    """Bilinear sampling of `feature_map` [N, S, S, C] at normalised points uv [N, J, 2].

    Matches the official `grid_sample(..., align_corners=True)` after its clamp: the grid is
    g = clip(2 uv - 1, -1, 1), uv[..., 0] indexes width (x), uv[..., 1] height (y), and
    pixel = (g + 1) / 2 * (S - 1). Returns [N, J, C].
    """
    n, height, width, _ = feature_map.shape
    g = jnp.clip(2.0 * uv - 1.0, -1.0, 1.0)
    px = (g[..., 0] + 1.0) / 2.0 * (width - 1)
    py = (g[..., 1] + 1.0) / 2.0 * (height - 1)
    x0 = jnp.clip(jnp.floor(px), 0, width - 2).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(py), 0, height - 2).astype(jnp.int32)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    batch = jnp.arange(n)[:, None]

    def at(yy, xx):
        return feature_map[batch, yy, xx]

    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
