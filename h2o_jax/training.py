"""Train state, optimiser and the jitted train/eval steps (no loop, no I/O).

The state is a pytree (params, batch_stats, opt_state, step) that orbax saves and
`jax.sharding` replicates; batches follow data_loaders/features.py (B samples x T frames).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from h2o_jax.config import LossConfig
from h2o_jax.losses import h2onet_loss
from h2o_jax.nn import IMAGE_SIZE_PX, H2ONet


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam with global-norm clipping and a step-wise (official: clip 0.1, MultiStepLR) or a
    warm-up + cosine learning-rate schedule (short CPU runs).

    Attributes:
      learning_rate: initial (multistep) or peak (cosine) rate (official MF DexYCB: 1e-4; SF
        stage 1: 1e-3).
      milestones_epochs: multistep: epochs after which the rate is multiplied by `decay`.
      decay: multistep: the factor (0.1).
      grad_clip_norm: global L2 norm clip (0.1); 0 disables it.
      schedule: "multistep" (official) or "cosine" (linear warm-up, then cosine to
        `learning_rate * final_fraction` at `total_steps`).
      warmup_steps, total_steps, final_fraction: the cosine schedule's shape.
      rotation_lr_scale: multiplies the learning rate of the orientation head (`rot_reg`): its
        un-normalised ReLU MLP feeds a scale-free 6D rotation, so Adam steps that suit the
        encoder grow its features and turn its output mostly at random (issue 13).
      joint_regressor_lr_scale: multiplies the learning rate of the learnable joint regressor
        (`mano_joint_reg`, official: trained with everything else); 0 freezes it. Trained from
        scratch, Adam moves each of its 21 x V entries by about the learning rate per step, so
        the rows drift far from summing to one while the mesh is still wrong. The built-in
        hand's regressor reproduces its ground-truth joints (0.15 mm).
      backbone_lr_scale: multiplies the learning rate of the encoder (`backbone`: stem, the three
        hourglasses, the uv head), for runs from scratch where a whole-network rate of 5e-3
        kills the mesh decoder's ReLUs. On the main job's validation slice, x4 was within seed
        noise over two seeds (issue 13).
    """

    learning_rate: float = 1e-4
    milestones_epochs: tuple[int, ...] = (10, 20)
    decay: float = 0.1
    grad_clip_norm: float = 0.1
    schedule: Literal["multistep", "cosine"] = "multistep"
    warmup_steps: int = 0
    total_steps: int = 0
    final_fraction: float = 0.01
    rotation_lr_scale: float = 1.0
    joint_regressor_lr_scale: float = 1.0
    backbone_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in ("multistep", "cosine"):
            raise ValueError(f"schedule must be 'multistep' or 'cosine', got {self.schedule!r}")
        if self.schedule == "cosine" and self.total_steps <= self.warmup_steps:
            raise ValueError(f"the cosine schedule needs total_steps ({self.total_steps}) > warmup_steps "
                             f"({self.warmup_steps})")


def learning_rate_schedule(config: OptimConfig, steps_per_epoch: int) -> optax.Schedule:
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, config.warmup_steps, config.total_steps,
            end_value=config.learning_rate * config.final_fraction)
    return optax.piecewise_constant_schedule(
        config.learning_rate, {int(m * steps_per_epoch): config.decay for m in config.milestones_epochs})


def _scale_subtree(name: str, factor: float) -> optax.GradientTransformation:
    """Multiplies the updates of the top-level parameter subtree (or leaf) `name` by `factor`."""

    def update(updates, state, params=None):
        del params
        if name in updates:
            updates = {**updates, name: jax.tree.map(lambda u: u * factor, updates[name])}
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config: OptimConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    parts = [optax.adam(learning_rate_schedule(config, steps_per_epoch))]
    if config.grad_clip_norm > 0:
        parts.insert(0, optax.clip_by_global_norm(config.grad_clip_norm))
    subtree_scales = {"rot_reg": config.rotation_lr_scale, "mano_joint_reg": config.joint_regressor_lr_scale,
                      "backbone": config.backbone_lr_scale}
    parts += [_scale_subtree(name, scale) for name, scale in subtree_scales.items() if scale != 1.0]
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def create_train_state(model: H2ONet, optimizer: optax.GradientTransformation, key: jax.Array,
                       batch_size: int) -> TrainState:
    """Initialises the model (train mode) and the optimiser; returns step 0."""
    images = jnp.zeros((batch_size, model.config.num_frames, IMAGE_SIZE_PX, IMAGE_SIZE_PX, 3))
    occ_labels = jnp.zeros((batch_size, model.config.num_frames, 6), jnp.int32)
    variables = model.init(key, images, train=True, occ_labels=occ_labels)
    return TrainState(jnp.zeros((), jnp.int32), variables["params"], variables["batch_stats"],
                      optimizer.init(variables["params"]))


# The init program runs once, so it is compiled without LLVM's optimisations, which take about
# half of its compile time. That time is the threefry code of ~600 initialisers; XLA drops the
# forward pass, whose shapes are all init needs. The values differ from an optimised build of the
# same program by float rounding in a few of them (tests/test_training.py).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_train_state(model: H2ONet, optimizer: optax.GradientTransformation, key: jax.Array,
                     batch_size: int, out_shardings: Any = None) -> TrainState:
    """`create_train_state` compiled as one program with `INIT_COMPILER_OPTIONS` and run."""
    init = jax.jit(lambda k: create_train_state(model, optimizer, k, batch_size), out_shardings=out_shardings)
    return init.lower(key).compile(compiler_options=INIT_COMPILER_OPTIONS)(key)


def _model_inputs(model: H2ONet, batch: dict[str, jax.Array]):
    """(images, occ_labels, occ_label_mask) for the model's own frame count: a single-frame model
    trained or evaluated on triplet batches sees frame 0 only (the losses slice their targets the
    same way)."""
    frames = model.config.num_frames
    labels, mask = batch.get("occ_labels"), batch.get("occ_label_mask")
    return (batch["image"][:, :frames], None if labels is None else labels[:, :frames],
            None if mask is None else mask[:, :frames])


def make_train_step(model: H2ONet, optimizer: optax.GradientTransformation, loss_config: LossConfig
                    ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """A pure (state, batch) -> (state, metrics) step; metrics are the loss terms + grad norm."""
    faces = model.topology.faces
    multi_frame = model.config.multi_frame

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        def loss_fn(params):
            images, occ_labels, occ_label_mask = _model_inputs(model, batch)
            outputs, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, images, train=True,
                occ_labels=occ_labels, occ_label_mask=occ_label_mask, mutable=["batch_stats"])
            terms = h2onet_loss(outputs, batch, faces, loss_config, multi_frame)
            return terms["total"], (terms, updates["batch_stats"])

        (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(terms, grad_norm=optax.tree.norm(grads))
        return TrainState(state.step + 1, params, batch_stats, opt_state), metrics

    return train_step


def make_predict_step(model: H2ONet) -> Callable[[TrainState, dict[str, jax.Array]], dict[str, jax.Array]]:
    """Inference outputs (frame 0) with running BatchNorm statistics."""

    def predict_step(state: TrainState, batch: dict[str, jax.Array]):
        images, occ_labels, _ = _model_inputs(model, batch)
        return model.apply({"params": state.params, "batch_stats": state.batch_stats}, images,
                           occ_labels=occ_labels)

    return predict_step
