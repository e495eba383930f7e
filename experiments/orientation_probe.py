"""How learnable is the global hand rotation from a dataset's images? (issue 13's diagnosis)

Trains a plain CNN (strided 3x3 conv + BatchNorm + ReLU blocks, one hidden dense layer) to
regress frame 0's rotation (6D, the network's representation) and 2D joints from the crops alone,
on `--samples` training samples without augmentation, and reports on the run config's validation
slice (held-out training sequences) the rotation MSE (the `glob_rot_loss` of the losses) and the
mean geodesic angle, next to the best constant (the training samples' mean rotation), so a data
change or a schedule can be judged in minutes, without H2ONet itself.

    python -m experiments.orientation_probe --samples 6000 --steps 1500

Nothing is saved; the printed table is the result.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.baselines import mean_rotation
from h2o_jax.ops import geodesic_distance, rot6d_to_rotmat


class PlainCNN(nn.Module):
    """[N, 128, 128, 3] -> (6D rotation [N, 6], 2D joints / crop size [N, 21, 2])."""

    width: int = 16

    @nn.compact
    def __call__(self, images: jax.Array, train: bool):
        x = images
        for i, channels in enumerate((1, 2, 4, 8, 8)):
            for stride in (2, 1):
                x = nn.Conv(self.width * channels, (3, 3), strides=stride)(x)
                x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
        return nn.Dense(6)(x), nn.Dense(42)(x).reshape(-1, 21, 2) + 0.5


def rotation_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MSE over the 9 entries (as `glob_rot_loss`) and mean geodesic angle in degrees."""
    return {"rot_mse": float(np.mean((pred - target) ** 2)),
            "angle_deg": float(np.degrees(np.mean(np.asarray(geodesic_distance(pred, target)))))}


def _frame0(samples) -> dict[str, np.ndarray]:
    return {"image": np.stack([s["image"][0] for s in samples]).astype(np.float32),
            "rot_mat": np.stack([s["rot_mat"][0] for s in samples]).astype(np.float32),
            "joints_img": np.stack([s["joints_img"][0] for s in samples]).astype(np.float32)}


def probe(train: dict[str, np.ndarray], val: dict[str, np.ndarray], steps: int, batch_size: int = 32,
          width: int = 16, learning_rate: float = 1e-3, eval_every: int = 100, seed: int = 0) -> list[dict]:
    """Trains PlainCNN on `train` (frame-0 arrays of `_frame0`); returns one row per evaluation
    on `val`: step, seconds, rot_mse, angle_deg, uv_l1."""
    rng = np.random.default_rng(seed)
    model = PlainCNN(width)
    variables = model.init(jax.random.key(seed), train["image"][:2], True)
    optimizer = optax.adam(optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(50, steps // 10),
                                                              steps, learning_rate * 0.01))
    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = optimizer.init(params)

    @jax.jit
    def step_fn(params, batch_stats, opt_state, images, rot, joints):
        def loss_fn(p):
            (rot6d, uv), updates = model.apply({"params": p, "batch_stats": batch_stats}, images, True,
                                               mutable=["batch_stats"])
            loss = jnp.mean((rot6d_to_rotmat(rot6d) - rot) ** 2) + jnp.mean(jnp.abs(uv - joints))
            return loss, updates["batch_stats"]

        (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state

    @jax.jit
    def predict(params, batch_stats, images):
        rot6d, uv = model.apply({"params": params, "batch_stats": batch_stats}, images, False)
        return rot6d_to_rotmat(rot6d), uv

    rows, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        pick = rng.choice(len(train["image"]), batch_size)
        params, batch_stats, opt_state = step_fn(params, batch_stats, opt_state, train["image"][pick],
                                                 train["rot_mat"][pick], train["joints_img"][pick])
        if step % eval_every == 0 or step == steps:
            rot, uv = (np.asarray(a) for a in predict(params, batch_stats, val["image"]))
            rows.append({"step": step, "seconds": time.perf_counter() - start,
                         **rotation_errors(rot, val["rot_mat"]),
                         "uv_l1": float(np.mean(np.abs(uv - val["joints_img"])))})
            print("step {step:5d}  {seconds:6.0f} s  rot MSE {rot_mse:.3f}  angle {angle_deg:5.1f} deg  "
                  "uv L1 {uv_l1:.3f}".format(**rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
    from experiments.common import UserError
    from experiments.train import _load_config_flags, training_sources

    parser = argparse.ArgumentParser(prog="python -m experiments.orientation_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/configs/synthetic.py:cpu",
                        help="FILE[:PRESET] whose data and validation slice to use")
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        config, _, _ = _load_config_flags([parser.prog, "--config", args.config])
        train_source, val_source = training_sources(config)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    if val_source is None:
        raise SystemExit("error: the config has no evaluation source (train.eval_every = 0)")
    rng = np.random.default_rng(0)
    picked = rng.choice(len(train_source), min(args.samples, len(train_source)), replace=False)
    train = _frame0([train_source[int(i)] for i in picked])
    val = _frame0([val_source[i] for i in range(len(val_source))])
    constant = np.broadcast_to(mean_rotation(train["rot_mat"]), val["rot_mat"].shape)
    errors = rotation_errors(constant, val["rot_mat"])
    print(f"{len(train['image'])} training samples, {len(val['image'])} validation samples; the constant "
          f"mean rotation: rot MSE {errors['rot_mse']:.3f}, angle {errors['angle_deg']:.1f} deg; the constant "
          f"mean 2D joints: uv L1 {np.mean(np.abs(val['joints_img'] - train['joints_img'].mean(0))):.3f}", flush=True)
    return probe(train, val, args.steps, args.batch_size, args.width, eval_every=args.eval_every)


if __name__ == "__main__":
    main()
