"""Train step: the sharded (4 forced CPU devices) step equals the 1-device step; schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from h2o_jax.config import LossConfig, model_config_for
from h2o_jax.nn import H2ONet
from h2o_jax.sharding import batch_sharded, check_global_batch_size, make_data_mesh, replicated
from h2o_jax.training import OptimConfig, create_train_state, init_train_state, make_optimizer, make_train_step
from topology_helpers import init_variables, random_topology


def make_batch(rng, batch_size, topology, frames=1):
    v = topology.num_vertices
    return {
        "image": rng.random((batch_size, frames, 128, 128, 3)).astype(np.float32),
        "verts_c_m": rng.normal(size=(batch_size, frames, v, 3)).astype(np.float32) * 0.05,
        "verts_r_m": rng.normal(size=(batch_size, frames, v, 3)).astype(np.float32) * 0.05,
        "joints_c_m": rng.normal(size=(batch_size, frames, 21, 3)).astype(np.float32) * 0.05,
        "joints_r_m": rng.normal(size=(batch_size, frames, 21, 3)).astype(np.float32) * 0.05,
        "rot_mat": np.broadcast_to(np.eye(3, dtype=np.float32), (batch_size, frames, 3, 3)).copy(),
        "joints_img": rng.random((batch_size, frames, 21, 2)).astype(np.float32),
        "occ_labels": rng.integers(0, 2, (batch_size, frames, 6)).astype(np.int32),
        "occ_label_mask": np.ones((batch_size, frames), np.float32),
        "mask": np.ones(batch_size, np.float32),
    }


def test_sharded_train_step_equals_single_device_step():
    assert jax.device_count() == 4  # forced by tests/conftest.py
    topology = random_topology((48, 24, 12, 6, 3))
    model = H2ONet(topology, model_config_for("single_frame", width_divisor=8))
    optimizer = optax.sgd(1.0)  # the update is the gradient itself: easy to compare
    state = jax.jit(lambda k: create_train_state(model, optimizer, k, batch_size=8))(jax.random.key(0, impl="unsafe_rbg"))
    flat_params = np.concatenate([np.ravel(a) for a in jax.tree.leaves(state.params)])
    # Triplet batches, as the pipeline makes them: the single-frame model must use frame 0 only.
    batch = make_batch(np.random.default_rng(0), 8, topology, frames=3)
    # No normal loss here: at initialisation the decoder's vertices lie close together, where the
    # unit-edge gradients of the normal loss are large and amplify round-off (this test compares
    # raw gradients).
    step = make_train_step(model, optimizer, LossConfig(stage=2, normal_weight=0.0))

    single_device = jax.devices()[0]
    state_1 = jax.device_put(state, single_device)
    new_1, metrics_1 = jax.jit(step)(state_1, jax.device_put(batch, single_device))

    mesh = make_data_mesh()
    check_global_batch_size(8, mesh)
    state_4 = jax.device_put(state, replicated(mesh))
    batch_4 = jax.device_put(batch, batch_sharded(mesh))
    sharded_step = jax.jit(step, in_shardings=(replicated(mesh), batch_sharded(mesh)),
                           out_shardings=(replicated(mesh), replicated(mesh)))
    new_4, metrics_4 = sharded_step(state_4, batch_4)
    assert len(batch_4["image"].sharding.device_set) == 4
    # Float32 round-off (per-shard convolutions block differently) is amplified by ~100
    # BatchNorms over 8 samples of a 1/8-width model to ~1e-3 relative, so compare at that
    # level; per-shard BatchNorm statistics (the classic sharding bug) change the loss by far more.
    np.testing.assert_allclose(metrics_4["total"], metrics_1["total"], rtol=5e-3)
    np.testing.assert_allclose(metrics_4["grad_norm"], metrics_1["grad_norm"], rtol=5e-2)
    grads_1 = np.concatenate([np.ravel(a) for a in jax.tree.leaves(new_1.params)]) - flat_params
    grads_4 = np.concatenate([np.ravel(a) for a in jax.tree.leaves(new_4.params)]) - flat_params
    cosine = grads_1 @ grads_4 / (np.linalg.norm(grads_1) * np.linalg.norm(grads_4))
    assert cosine > 0.99, cosine
    assert int(new_4.step) == int(new_1.step) == 1


def test_global_batch_must_split_over_devices():
    with pytest.raises(ValueError, match="not divisible"):
        check_global_batch_size(6, make_data_mesh())


def test_learning_rate_schedule_steps_down_at_milestones():
    optimizer = make_optimizer(OptimConfig(learning_rate=1.0, milestones_epochs=(2, 3), grad_clip_norm=1e9),
                               steps_per_epoch=5)
    params = {"w": jnp.zeros(())}
    state = optimizer.init(params)
    # Adam's first update has magnitude ~lr for a constant gradient: read the lr off the updates.
    rates = []
    for _ in range(20):
        updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
        rates.append(-float(updates["w"]))
    np.testing.assert_allclose(rates[:10], 1.0, rtol=1e-4)
    np.testing.assert_allclose(rates[10:15], 0.1, rtol=1e-4)
    np.testing.assert_allclose(rates[15:], 0.01, rtol=1e-4)


def test_cosine_schedule_warms_up_then_decays_to_the_final_fraction():
    config = OptimConfig(learning_rate=2.0, grad_clip_norm=0.0, schedule="cosine", warmup_steps=4,
                         total_steps=14, final_fraction=0.1)
    optimizer = make_optimizer(config, steps_per_epoch=3)
    params = {"w": jnp.zeros(())}
    state = optimizer.init(params)
    rates = []
    for _ in range(14):
        updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
        rates.append(-float(updates["w"]))
    # Hand formula: linear 0 -> peak over the warm-up, then peak * (f + (1 - f)(1 + cos(pi t / T)) / 2).
    expected = [2.0 * s / 4 for s in range(4)]
    for s in range(4, 14):
        t = (s - 4) / 10
        expected.append(2.0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t))))
    np.testing.assert_allclose(rates, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="total_steps"):
        OptimConfig(schedule="cosine", warmup_steps=10, total_steps=10)


def test_rotation_lr_scale_scales_only_the_orientation_head():
    grads = {"rot_reg": {"w": jnp.full((3,), 2.0)}, "backbone": {"w": jnp.full((2,), -1.0)}}
    params = jax.tree.map(jnp.zeros_like, grads)
    plain = make_optimizer(OptimConfig(learning_rate=0.5, grad_clip_norm=0.0), 1)
    scaled = make_optimizer(OptimConfig(learning_rate=0.5, grad_clip_norm=0.0, rotation_lr_scale=0.1), 1)
    u_plain, _ = plain.update(grads, plain.init(params), params)
    u_scaled, _ = scaled.update(grads, scaled.init(params), params)
    np.testing.assert_allclose(u_scaled["rot_reg"]["w"], 0.1 * np.asarray(u_plain["rot_reg"]["w"]), rtol=1e-6)
    np.testing.assert_allclose(u_scaled["backbone"]["w"], u_plain["backbone"]["w"], rtol=1e-6)
    np.testing.assert_allclose(u_plain["rot_reg"]["w"], -0.5, rtol=1e-4)  # Adam's first step: lr * sign


@pytest.mark.parametrize("field,subtree", [("joint_regressor_lr_scale", "mano_joint_reg"),
                                           ("backbone_lr_scale", "backbone")])
def test_subtree_lr_scales_scale_only_their_subtree(field, subtree):
    grads = {subtree: {"w": jnp.full((2, 3), 0.7)}, "decoder3d": {"w": jnp.full((4,), -1.5)}}
    params = jax.tree.map(jnp.zeros_like, grads)
    for scale in (0.0, 0.25, 4.0):  # 0 freezes
        optimizer = make_optimizer(OptimConfig(learning_rate=0.5, grad_clip_norm=1.0, **{field: scale}), 1)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        # Adam's first step is lr * sign(g) after clipping
        np.testing.assert_allclose(updates[subtree]["w"], -0.5 * scale, rtol=1e-4, atol=1e-12)
        np.testing.assert_allclose(updates["decoder3d"]["w"], 0.5, rtol=1e-4)


def test_lifting_init_keeps_the_normal_loss_gradient_moderate():
    """With the official constant lifting matrix every decoded vertex coincides at initialisation
    and the normal loss's gradient explodes (~1e7), which under global-norm clipping silenced
    every other loss term (issue 13); the noisy init keeps it moderate."""
    from h2o_jax.losses import normal_per_row

    topology = random_topology((48, 24, 12, 6, 3))
    model = H2ONet(topology, model_config_for("single_frame", width_divisor=8))
    batch = make_batch(np.random.default_rng(1), 4, topology, frames=1)
    variables = init_variables(model, batch["image"], train=True)

    @jax.jit
    def grad_norm(params):
        def normal_loss(params):
            outputs, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, batch["image"],
                                     train=True, mutable=["batch_stats"])
            return jnp.mean(normal_per_row(outputs["verts_c_m"], batch["verts_c_m"], topology.faces))

        return optax.tree.norm(jax.grad(normal_loss)(params))

    lifting = np.asarray(variables["params"]["decoder3d"]["upsample"])
    assert np.std(lifting) > 1e-3 and abs(np.mean(lifting) - 0.01) < 5e-3
    constant = jax.tree.map(lambda x: x, variables["params"])
    constant["decoder3d"]["upsample"] = jnp.full(lifting.shape, 0.01, jnp.float32)
    noisy_norm, constant_norm = float(grad_norm(variables["params"])), float(grad_norm(constant))
    assert noisy_norm < 1e4 and constant_norm > 1e6, (noisy_norm, constant_norm)


def test_init_train_state_is_create_train_state_up_to_float_rounding():
    """The unoptimised init build (what experiments.train runs) against the optimised one: the
    same tree and the same values to float rounding, bit-identical from one call to the next."""
    topology = random_topology((48, 24, 12, 6, 3))
    model = H2ONet(topology, model_config_for("single_frame", width_divisor=8))
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-3), steps_per_epoch=1)
    key = jax.random.key(3)
    reference = jax.jit(lambda k: create_train_state(model, optimizer, k, batch_size=2))(key)
    state = init_train_state(model, optimizer, key, batch_size=2)
    again = init_train_state(model, optimizer, key, batch_size=2)
    assert jax.tree.structure(state) == jax.tree.structure(reference)
    for got, want, repeat in zip(jax.tree.leaves(state), jax.tree.leaves(reference), jax.tree.leaves(again)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(repeat))
        np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=1e-4, atol=1e-7)
    assert float(jnp.std(state.params["decoder3d"]["upsample"])) > 1e-3  # random, not a constant
