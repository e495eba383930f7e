"""The dual-branch DenseStack encoder (`H2ONet_Backnone`, architecture.md section 4), NHWC.

Shape letters: N images (batch x frames), J = 21 joints. Channel counts are the official ones
divided by `width_divisor` (1 = the paper's network).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from h2o_jax.nn.layers import (
    ConvBN,
    DenseBlock,
    MobileUnit,
    PointwiseConv,
    SEBlock,
    avg_pool2,
    relu4,
    reorg,
    torch_default_init,
    upsample_bilinear2_align_corners,
    upsample_nearest2,
)


class DenseStack(nn.Module):
    """One hourglass. kind "stack1" (dense_stack1: no senet3, no d4, final bilinear x2),
    "stack2" (dense_stack2: returns (u3, d4)), "encoder" (dense_stack3: down path, returns d4).
    """

    kind: str
    out_channels: int
    width_divisor: int = 1
    dtype: Any = jnp.float32
    shortcuts: bool = False
    constant_se_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool):
        c = x.shape[-1]
        max_se = 256 // self.width_divisor
        kw = dict(dtype=self.dtype)
        unit = dict(kw, shortcut=self.shortcuts)
        se = dict(kw, constant_gate_init=self.constant_se_init)
        d1 = avg_pool2(SEBlock(max_se, **se, name="senet1")(
            DenseBlock("dense2", **unit, name="dense1")(x, train), train))
        d2 = avg_pool2(SEBlock(max_se, **se, name="senet2")(
            DenseBlock("dense4", **unit, name="dense2")(d1, train), train))
        d3 = DenseBlock("dense4", **unit, name="dense3")(d2, train)
        if self.kind != "stack1":  # stack1 builds senet3 but never applies it (official quirk)
            d3 = SEBlock(max_se, **se, name="senet3")(d3, train)
        d3 = avg_pool2(d3)
        if self.kind == "stack1":
            bottleneck = d3
        else:
            d4 = DenseBlock("no_expand", **unit, name="dense4")(d3, train)
            bottleneck = DenseBlock("no_expand", **unit, name="dense5")(d4, train)
            if self.kind == "encoder":
                return bottleneck
        y = MobileUnit(4 * c, **unit, name="thrink1_0")(bottleneck, train)
        y = MobileUnit(4 * c, num3x3=2, **unit, name="thrink1_1")(y, train)
        us1 = d2 + upsample_nearest2(SEBlock(max_se, **se, name="senet4")(y, train))
        y = MobileUnit(2 * c, **unit, name="thrink2_0")(us1, train)
        y = MobileUnit(2 * c, num3x3=2, **unit, name="thrink2_1")(y, train)
        us2 = d1 + upsample_nearest2(SEBlock(max_se, **se, name="senet5")(y, train))
        y = MobileUnit(2 * c, **unit, name="thrink3_0")(us2, train)
        y = MobileUnit(self.out_channels, num3x3=2, **unit, name="thrink3_1")(y, train)
        u3 = SEBlock(max_se, **se, name="senet6")(y, train)
        if self.kind == "stack1":
            return upsample_bilinear2_align_corners(u3)
        return u3, bottleneck


class Backbone(nn.Module):
    """The encoder. Input [N, 128, 128, 3] RGB in [0, 1]. Returns a dict:

    latent [N, 4, 4, 256/d] (mesh features), j_latent [N, 4, 4, 1024/d] (stack2 bottleneck),
    rot_latent [N, 4, 4, 1024/d] (orientation encoder, dual branch only), uv [N, 21, 2].
    """

    width_divisor: int = 1
    dual_branch: bool = True
    dtype: Any = jnp.float32
    # Not official (ModelConfig.scratch_encoder, ModelConfig.stack_out_channels).
    shortcuts: bool = False
    constant_se_init: bool = False
    stack_out_channels: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
        d = self.width_divisor
        c, out_c = 128 // d, self.stack_out_channels or 24 // d
        kw = dict(dtype=self.dtype)
        stack_kw = dict(kw, shortcuts=self.shortcuts, constant_se_init=self.constant_se_init)
        x = ConvBN(64 // d, 3, stride=2, **kw, name="pre_layer_0")(images, train)
        x = MobileUnit(c, **kw, shortcut=self.shortcuts, name="pre_layer_1")(x, train)
        x = reorg(x)  # [N, 32, 32, 4c]
        feat_t = ConvBN(c, 1, **kw, name="thrink")(x, train)
        stack1 = DenseStack("stack1", out_c, d, **stack_kw, name="dense_stack1")(feat_t, train)
        stack1 = ConvBN(out_c, 1, **kw, name="stack1_remap")(stack1, train)
        feat_i = ConvBN(c, 1, **kw, name="thrink2")(jnp.concatenate([stack1, feat_t], -1), train)
        stack2_out, stack2_mid = DenseStack("stack2", out_c, d, **stack_kw, name="dense_stack2")(feat_i, train)
        latent = PointwiseConv(256 // d, **kw, name="mid_proj")(stack2_mid)
        heatmaps = PointwiseConv(21, **kw, name="reduce")(stack2_out)  # [N, 16, 16, 21]
        n, h, w, j = heatmaps.shape
        uv = heatmaps.transpose(0, 3, 1, 2).reshape(n, j, h * w)  # per joint, index 16 h + w
        dense = dict(use_bias=False, kernel_init=torch_default_init, **kw)
        uv = relu4(nn.Dense(128, **dense, name="uv_reg_0")(uv))
        uv = relu4(nn.Dense(64, **dense, name="uv_reg_1")(uv))
        uv = nn.Dense(2, **dense, name="uv_reg_2")(uv)
        outputs = {"latent": latent, "j_latent": stack2_mid, "uv": uv}
        if self.dual_branch:  # the orientation encoder never trains the shared stem
            outputs["rot_latent"] = DenseStack("encoder", out_c, d, **stack_kw, name="dense_stack3")(
                jax.lax.stop_gradient(feat_i), train)
        return {k: v.astype(jnp.float32) for k, v in outputs.items()}
