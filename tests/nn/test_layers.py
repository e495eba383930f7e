"""Building blocks against numpy references built from the modules' own params."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from h2o_jax.nn.decoder import SpiralConv
from h2o_jax.nn.layers import (
    DepthwiseConv3x3,
    depthwise_conv3x3,
    PointwiseConv,
    grid_sample_align_corners,
    reorg,
    torch_default_init,
    upsample_bilinear2_align_corners,
    upsample_nearest2,
)


def test_reorg_is_pixel_unshuffle():
    x = np.random.default_rng(0).normal(size=(2, 6, 4, 3)).astype(np.float32)
    out = np.asarray(jax.jit(reorg)(x))
    # out[b, i, j, 4c + 2dy + dx] = in[b, 2i + dy, 2j + dx, c]  (architecture.md 3.6, NHWC)
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                np.testing.assert_array_equal(out[..., 4 * c + 2 * dy + dx], x[:, dy::2, dx::2, c])


def numpy_bilinear_align_corners(x, out_h, out_w):
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c))
    for oy in range(out_h):
        for ox in range(out_w):
            sy, sx = oy * (h - 1) / (out_h - 1), ox * (w - 1) / (out_w - 1)
            y0, x0 = min(int(np.floor(sy)), h - 2), min(int(np.floor(sx)), w - 2)
            fy, fx = sy - y0, sx - x0
            out[:, oy, ox] = ((1 - fy) * (1 - fx) * x[:, y0, x0] + (1 - fy) * fx * x[:, y0, x0 + 1]
                              + fy * (1 - fx) * x[:, y0 + 1, x0] + fy * fx * x[:, y0 + 1, x0 + 1])
    return out


def test_bilinear_upsample_align_corners():
    x = np.random.default_rng(1).normal(size=(2, 5, 4, 3))
    got = jax.jit(upsample_bilinear2_align_corners)(x.astype(np.float32))
    np.testing.assert_allclose(got, numpy_bilinear_align_corners(x, 10, 8), rtol=1e-5, atol=1e-5)
    # Corners are copied exactly (align_corners=True).
    np.testing.assert_allclose(np.asarray(got)[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]], atol=1e-6)


def test_nearest_upsample():
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(upsample_nearest2(x)[0, :, :, 0], [[0, 0, 2, 2], [0, 0, 2, 2], [4, 4, 6, 6], [4, 4, 6, 6]])


def test_grid_sample_matches_bilinear_reference():
    rng = np.random.default_rng(2)
    feature_map = rng.normal(size=(2, 4, 4, 5))
    uv = rng.uniform(-0.3, 1.3, size=(2, 21, 2))
    got = jax.jit(grid_sample_align_corners)(feature_map.astype(np.float32), uv.astype(np.float32))
    expected = np.zeros((2, 21, 5))
    for b in range(2):
        for j in range(21):
            g = np.clip(2 * uv[b, j] - 1, -1, 1)
            px, py = (g + 1) / 2 * 3  # x indexes width, y height
            x0, y0 = min(int(np.floor(px)), 2), min(int(np.floor(py)), 2)
            fx, fy = px - x0, py - y0
            m = feature_map[b]
            expected[b, j] = ((1 - fy) * ((1 - fx) * m[y0, x0] + fx * m[y0, x0 + 1])
                              + fy * ((1 - fx) * m[y0 + 1, x0] + fx * m[y0 + 1, x0 + 1]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda u: jnp.sum(grid_sample_align_corners(jnp.asarray(feature_map, jnp.float32), u)))(
        jnp.asarray(uv, jnp.float32))
    assert np.isfinite(np.asarray(grad)).all()


def _depthwise_reference_f64(x, kernel):
    """Direct float64 loop: out[n, h, w, c] = sum_dy,dx xpad[n, h + dy, w + dx, c] k[dy, dx, 0, c]."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + height, dx:dx + width, :] * kernel[dy, dx, 0]
    return out


@pytest.mark.parametrize("for_training", [False, True])
@pytest.mark.parametrize("shape", [(2, 7, 6, 4), (3, 1, 5, 2), (1, 4, 1, 3)])
def test_depthwise_conv_equals_a_float64_loop_and_grouped_lax_conv(shape, for_training):
    """Output against a float64 loop and XLA's grouped convolution (edges included, images one
    pixel high or wide); gradients of input and kernel against the float64 adjoint."""
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    module = DepthwiseConv3x3()
    params = module.init(jax.random.key(0), x)
    kernel = np.asarray(params["params"]["kernel"])  # [3, 3, 1, C], the nn.Conv layout
    got = jax.jit(module.apply, static_argnums=2)(params, x, for_training)
    np.testing.assert_allclose(got, _depthwise_reference_f64(x, kernel), rtol=1e-5, atol=1e-6)
    grouped = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=shape[-1], precision=jax.lax.Precision.HIGHEST)
    np.testing.assert_allclose(got, grouped, rtol=1e-5, atol=1e-6)

    # loss = sum(out * weights): d/dx is the correlation's adjoint, d/dk a sum of shifted products.
    weights = rng.normal(size=shape)
    grad_x, grad_k = jax.jit(jax.grad(lambda xx, kk: jnp.sum(depthwise_conv3x3(xx, kk, for_training) * weights), (0, 1)))(
        jnp.asarray(x), jnp.asarray(kernel))
    height, width = shape[1:3]
    padded_x = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected_k = np.zeros((3, 3, 1, shape[-1]))
    expected_padded_grad = np.zeros_like(padded_x)
    for dy in range(3):
        for dx in range(3):
            expected_k[dy, dx, 0] = np.sum(padded_x[:, dy:dy + height, dx:dx + width] * weights, axis=(0, 1, 2))
            expected_padded_grad[:, dy:dy + height, dx:dx + width] += weights * kernel[dy, dx, 0]
    np.testing.assert_allclose(grad_k, expected_k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_x, expected_padded_grad[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    # A batch of images is the images one at a time.
    per_image = jax.vmap(lambda image: depthwise_conv3x3(image[None], jnp.asarray(kernel), for_training)[0])(jnp.asarray(x))
    np.testing.assert_allclose(per_image, got, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_pointwise_conv_is_the_1x1_convolution_it_replaces(seed):
    """Same param tree and init as nn.Conv(features, (1, 1), use_bias=False); output equals a
    float64 channel contraction and nn.Conv with those params; gradients equal nn.Conv's."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, 5, 3, 7)), jnp.float32)
    module = PointwiseConv(4)
    reference = nn.Conv(4, (1, 1), use_bias=False, kernel_init=torch_default_init)
    key = jax.random.key(seed)
    params, reference_params = module.init(key, x), reference.init(key, x)
    np.testing.assert_array_equal(params["params"]["kernel"], reference_params["params"]["kernel"])
    out = jax.jit(module.apply)(params, x)
    kernel = np.asarray(params["params"]["kernel"], np.float64)[0, 0]
    np.testing.assert_allclose(out, np.asarray(x, np.float64) @ kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, reference.apply(params, x), rtol=1e-5, atol=1e-6)
    batched = jax.vmap(module.apply, in_axes=(None, 0))(params, x[:, None])[:, 0]
    np.testing.assert_allclose(batched, out, rtol=1e-6, atol=1e-7)

    def loss(apply):
        return lambda p, x: jnp.sum(jnp.sin(apply(p, x)))

    grads = jax.jit(jax.grad(loss(module.apply), argnums=(0, 1)))(params, x)
    reference_grads = jax.grad(loss(reference.apply), argnums=(0, 1))(params, x)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_spiral_conv_module_uses_its_params_neighbour_major():
    rng = np.random.default_rng(4)
    spirals = rng.integers(0, 10, size=(10, 4)).astype(np.int32)
    spirals[:, 0] = np.arange(10)
    x = rng.normal(size=(3, 10, 2)).astype(np.float32)
    module = SpiralConv(5, spirals)
    params = module.init(jax.random.key(1), x)
    kernel = np.asarray(params["params"]["layer"]["kernel"], np.float64)
    bias = np.asarray(params["params"]["layer"]["bias"], np.float64)
    expected = np.stack([[np.concatenate([x[b, spirals[v, k]] for k in range(4)]) @ kernel + bias
                          for v in range(10)] for b in range(3)])
    np.testing.assert_allclose(module.apply(params, x), expected, rtol=1e-5, atol=1e-5)
    assert kernel.shape == (8, 5)


@pytest.mark.parametrize("seed", [0, 1])
def test_spiral_conv_init_is_xavier_uniform(seed):
    spirals = np.tile(np.arange(9, dtype=np.int32), (30, 1)) % 30
    params = SpiralConv(64, spirals).init(jax.random.key(seed), np.zeros((30, 16), np.float32))
    kernel = np.asarray(params["params"]["layer"]["kernel"])
    bound = np.sqrt(6.0 / (9 * 16 + 64))
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    np.testing.assert_array_equal(params["params"]["layer"]["bias"], 0.0)


def test_batch_norm_trains_and_infers_like_pytorch():
    from h2o_jax.nn.layers import batch_norm

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(4, 5, 6, 3)).astype(np.float32)
    variables = {"params": {"scale": rng.normal(size=3).astype(np.float32),
                            "bias": rng.normal(size=3).astype(np.float32)},
                 "batch_stats": {"mean": rng.normal(size=3).astype(np.float32),
                                 "var": rng.uniform(0.5, 2, 3).astype(np.float32)}}
    train = batch_norm(True, "bn")
    y, updates = jax.jit(lambda v, x: train.apply(v, x, mutable=["batch_stats"]))(variables, x)
    x64 = x.astype(np.float64).reshape(-1, 3)
    n = len(x64)
    mean, var = x64.mean(0), x64.var(0)  # PyTorch normalises with the biased variance ...
    expected = (x64 - mean) / np.sqrt(var + 1e-5) * variables["params"]["scale"] + variables["params"]["bias"]
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 3), expected, rtol=1e-5, atol=1e-5)
    stats = variables["batch_stats"]
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-5)
    # ... and keeps the unbiased one in its running average.
    np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 * stats["var"] + 0.1 * var * n / (n - 1), rtol=1e-5)
    infer = batch_norm(False, "bn")
    y_eval = infer.apply(variables, x)
    expected_eval = ((x64 - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * variables["params"]["scale"]
                     + variables["params"]["bias"])
    np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 3), expected_eval, rtol=1e-5, atol=1e-5)
    # Gradients flow through the batch statistics in training mode (as PyTorch's autograd does):
    # the per-channel sum of the output is n * bias whatever x is, so its gradient is exactly 0.
    grad = jax.grad(lambda x: jnp.sum(train.apply(variables, x, mutable=["batch_stats"])[0]))(x)
    np.testing.assert_allclose(grad, 0.0, atol=1e-5)
