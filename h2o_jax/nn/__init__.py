"""Thin Flax linen modules of H2ONet over the ops of `h2o_jax.ops`.

Parameter-name correspondence with the official PyTorch state dict (used by the converter):
* the model's top level holds `backbone`, `decoder3d` (de_layer_conv, upsample, de_layer_i,
  head), `occ_pred`, `offset_pred`, `rot_reg` (official: all three under `decoder3d.`) and
  `mano_joint_reg`;
* a PyTorch Sequential/ModuleList index `X.i` becomes `X_i` (`pre_layer.0` -> `pre_layer_0`,
  `dense_stack2.thrink1.1` -> `thrink1_1`, `de_layer.2` -> `de_layer_2`, `uv_reg.1.0` -> `uv_reg_1`);
* conv_layer `.0`/`.1` -> `conv`/`bn`; linear_layer (SE fc1/fc2) `.0`/`.1` -> `linear`/`bn`;
  mobile_unit `conv3x3.i` -> `conv3x3_i`, `conv1x1` -> `conv1x1`; SpiralConv `.layer` -> `layer`;
* leaves: Conv `weight` O x I x kh x kw -> `kernel` kh x kw x I x O (depthwise: 3 x 3 x 1 x C);
  Linear / Conv1d(k=1) `weight` O x I (x 1) -> `kernel` I x O; `bias` -> `bias`; BatchNorm
  `weight`/`bias` -> params `scale`/`bias`, `running_mean`/`running_var` -> batch_stats
  `mean`/`var`; `num_batches_tracked` has no counterpart; `decoder3d.upsample` -> `upsample`.
* `backbone.dense_stack1.senet3.*` is built but never executed by the official network: it has
  no parameters here (the official totals minus its 526,848 are matched exactly, see tests).
* `decoder3d.occ_pred.finger_cls_layer.*` is an alias of `finger_cls_layer_list.4.*`.
"""

from h2o_jax.nn.h2onet import IMAGE_SIZE_PX, H2ONet

__all__ = ["IMAGE_SIZE_PX", "H2ONet"]
