"""ModelConfig.scratch_encoder / stack_out_channels: identity paths, constant SE gates, wider
hourglass outputs; no new parameters, and the official network untouched when off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from h2o_jax.config import ModelConfig
from h2o_jax.nn.encoder import Backbone
from h2o_jax.nn.layers import DenseBlock, MobileUnit, SEBlock


def _init_apply(module, x, train):
    variables = module.init(jax.random.key(1), x, train=train)
    out = jax.jit(lambda v, x: module.apply(v, x, train=train, mutable=["batch_stats"])[0])(variables, x)
    return variables, out


@pytest.mark.parametrize("cin,cout", [(8, 4), (4, 8)])
def test_mobile_unit_shortcut_adds_the_sliced_or_padded_input(cin, cout):
    rng = np.random.default_rng(cin * 10 + cout)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, cin)), jnp.float32)
    variables, with_shortcut = _init_apply(MobileUnit(cout, shortcut=True), x, train=True)
    plain = MobileUnit(cout).apply(variables, x, train=True, mutable=["batch_stats"])[0]
    x64 = np.asarray(x, np.float64)
    identity = x64[..., :cout] if cin > cout else np.concatenate([x64, np.zeros((2, 5, 6, cout - cin))], -1)
    np.testing.assert_allclose(np.asarray(with_shortcut) - np.asarray(plain), identity, atol=1e-5)
    # The gradient of sum(unit(x)) w.r.t. x gains exactly the identity path's Jacobian.
    g_short = jax.grad(lambda x: MobileUnit(cout, shortcut=True).apply(
        variables, x, train=True, mutable=["batch_stats"])[0].sum())(x)
    g_plain = jax.grad(lambda x: MobileUnit(cout).apply(variables, x, train=True, mutable=["batch_stats"])[0].sum())(x)
    expected = np.zeros((2, 5, 6, cin))
    expected[..., :min(cin, cout)] = 1.0
    np.testing.assert_allclose(np.asarray(g_short - g_plain), expected, atol=1e-5)


def test_residual_mobile_unit_is_unchanged_by_shortcut():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 6)), jnp.float32)
    variables, with_shortcut = _init_apply(MobileUnit(6, shortcut=True), x, train=False)
    official = jax.jit(lambda v, x: MobileUnit(6).apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(np.asarray(with_shortcut), np.asarray(official), atol=1e-6)


def test_no_expand_block_shortcut_adds_its_input():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 4, 16)), jnp.float32)
    variables, with_shortcut = _init_apply(DenseBlock("no_expand", shortcut=True), x, train=False)
    # Same parameters; the official block (units without identity paths) plus x.
    units = [MobileUnit(12, shortcut=True), MobileUnit(4, shortcut=True)]
    p = variables["params"]
    u1 = units[0].apply({"params": p["conv1"], "batch_stats": variables["batch_stats"]["conv1"]}, x, train=False)
    u2 = units[1].apply({"params": p["conv2"], "batch_stats": variables["batch_stats"]["conv2"]},
                        jnp.concatenate([x, u1], -1), train=False)
    expected = np.concatenate([np.asarray(u1), np.asarray(u2)], -1) + np.asarray(x, np.float64)
    np.testing.assert_allclose(np.asarray(with_shortcut), expected, atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_constant_se_gate_starts_at_one_half_for_every_image(train):
    x = jnp.asarray(np.random.default_rng(5).normal(size=(3, 4, 4, 8)) + 1.0, jnp.float32)
    _, out = _init_apply(SEBlock(constant_gate_init=True), x, train=train)
    np.testing.assert_allclose(np.asarray(out), 0.5 * np.asarray(x, np.float64), rtol=1e-6)
    _, official = _init_apply(SEBlock(), x, train=True)
    ratio = np.asarray(official) / np.asarray(x)
    assert np.ptp(ratio[..., 0]) > 1e-3  # the official gate differs per image: the test can fail


def _tree_shapes(variables):
    return {k: v.shape for k, v in traverse_util.flatten_dict(variables, sep="/").items()}


def test_scratch_encoder_adds_no_parameters_and_changes_the_forward():
    images = jnp.asarray(np.random.default_rng(7).uniform(size=(2, 64, 64, 3)), jnp.float32)
    official = Backbone(width_divisor=8, dual_branch=False)
    scratch = Backbone(width_divisor=8, dual_branch=False, shortcuts=True, constant_se_init=True)
    key = jax.random.key(0)
    assert _tree_shapes(jax.eval_shape(lambda: official.init(key, images, train=False))) == \
        _tree_shapes(jax.eval_shape(lambda: scratch.init(key, images, train=False)))
    variables = jax.jit(lambda k: official.init(k, images, train=False))(key)
    a = jax.jit(lambda v: official.apply(v, images, train=False))(variables)
    b = jax.jit(lambda v: scratch.apply(v, images, train=False))(variables)
    assert np.all(np.isfinite(np.asarray(b["uv"])))
    assert np.abs(np.asarray(a["uv"]) - np.asarray(b["uv"])).max() > 1e-4


def test_stack_out_channels_sets_the_joint_map_input_width():
    images = jnp.zeros((1, 64, 64, 3), jnp.float32)
    key = jax.random.key(0)
    default = jax.eval_shape(lambda: Backbone(width_divisor=4).init(key, images, train=False))
    wide = jax.eval_shape(lambda: Backbone(width_divisor=4, stack_out_channels=24).init(key, images, train=False))
    assert default["params"]["reduce"]["kernel"].shape[-2:] == (6, 21)
    assert wide["params"]["reduce"]["kernel"].shape[-2:] == (24, 21)
    assert wide["params"]["stack1_remap"]["conv"]["kernel"].shape[-1] == 24
    with pytest.raises(ValueError, match="stack_out_channels"):
        ModelConfig(stack_out_channels=-1)
