"""Training loop: data-parallel jitted steps, orbax checkpoints with exact resume, metrics.

    python -m experiments.train --config experiments/configs/default.py --workdir runs/default

`train_and_evaluate(config, workdir, train_source, eval_source)` is the library entry: the
sources are random-access sequences of per-sample dicts following data_loaders/features.py
(any TFDS `as_data_source` split of the project's builders, or an in-memory list). Resuming from
`<workdir>/checkpoints/latest` restores the train state and the data-iterator position, so a
killed run continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.checkpointing import Checkpoints
from experiments.writers import MetricWriter, StepTimer, every, format_eta
from h2o_jax.config import LossConfig, model_config_for
from h2o_jax.hand.random_topology import random_topology
from h2o_jax.hand.topology import MeshTopology, load_topology
from h2o_jax.metrics import MetricAccumulator, root_align, sample_metrics
from h2o_jax.nn import H2ONet
from h2o_jax.sharding import batch_sharded, check_global_batch_size, make_data_mesh, replicated
from h2o_jax.training import OptimConfig, TrainState, create_train_state, make_optimizer, make_predict_step, make_train_step

log = logging.getLogger("h2o_jax.train")


def build_topology(spec: str) -> MeshTopology:
    if spec.startswith("random:"):
        return random_topology(tuple(int(n) for n in spec.split(":", 1)[1].split(",")))
    if spec == "random":
        return random_topology()
    return load_topology(spec)


def train_iterator(source: Sequence[dict], batch_size: int, seed: int) -> grain.DatasetIterator:
    """Seeded, shuffled, repeated, per-process sharded batches with a checkpointable state."""
    dataset = grain.MapDataset.source(source).seed(seed)
    dataset = dataset[jax.process_index()::jax.process_count()]
    local_batch = batch_size // jax.process_count()
    return iter(dataset.shuffle().repeat().batch(local_batch, drop_remainder=True).to_iter_dataset())


def evaluate(predict, state: TrainState, source: Sequence[dict], batch_size: int, mesh) -> dict:
    """The paper's metrics on frame 0 of every sample (root-aligned as the Dex-YCB protocol)."""
    accumulator = MetricAccumulator()
    for start in range(0, len(source), batch_size):
        items = [source[i] for i in range(start, min(start + batch_size, len(source)))]
        valid = len(items)
        items += [items[-1]] * (batch_size - valid)  # pad: fixed shapes, no recompiles
        batch = {k: np.stack([item[k] for item in items]) for k in items[0]}
        outputs = predict(state, jax.device_put(batch, batch_sharded(mesh)))
        pred_j, pred_v = root_align(outputs["joints_r_m"][:, 0], outputs["verts_r_m"][:, 0])
        gt_j, gt_v = root_align(jnp.asarray(batch["joints_r_m"][:, 0]), jnp.asarray(batch["verts_r_m"][:, 0]))
        mask = np.arange(batch_size) < valid
        accumulator.add(sample_metrics(pred_j, pred_v, gt_j, gt_v), mask=mask,
                        occ_labels=batch["occ_labels"][:, 0] if "occ_labels" in batch else None)
    return accumulator.results()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, train_source: Sequence[dict],
                       eval_source: Sequence[dict] | None = None, stop_after_steps: int | None = None) -> TrainState:
    """Trains `config.train.num_steps` steps (resuming from `workdir` if it holds checkpoints).

    `stop_after_steps` ends this call after that many steps of the run (used to emulate a kill).
    """
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2))
    topology = build_topology(config.model.topology)
    model_config = model_config_for(config.model.variant, width_divisor=config.model.width_divisor)
    model = H2ONet(topology, model_config)
    mesh = make_data_mesh()
    check_global_batch_size(config.data.batch_size, mesh)
    steps_per_epoch = max(len(train_source) // config.data.batch_size, 1)
    optimizer = make_optimizer(OptimConfig(
        learning_rate=config.optim.learning_rate, milestones_epochs=tuple(config.optim.milestones_epochs),
        decay=config.optim.decay, grad_clip_norm=config.optim.grad_clip_norm), steps_per_epoch)
    loss_config = LossConfig(stage=config.loss.stage)
    key = jax.random.key(config.seed)
    state = jax.jit(lambda k: create_train_state(model, optimizer, k, config.data.batch_size),
                    out_shardings=replicated(mesh))(key)
    iterator = train_iterator(train_source, config.data.batch_size, config.seed)
    checkpoints = Checkpoints(workdir, keep=config.train.keep_checkpoints)
    start_step = 0
    if checkpoints.latest_step() is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        state, data_state = checkpoints.restore(abstract)
        if data_state:
            iterator.set_state(data_state)
        start_step = int(state.step)
        log.info("resumed from step %d", start_step)
    train_step = jax.jit(make_train_step(model, optimizer, loss_config),
                         in_shardings=(replicated(mesh), batch_sharded(mesh)),
                         out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)
    predict = jax.jit(make_predict_step(model))
    writer = MetricWriter(workdir)
    total = config.train.num_steps
    timer = StepTimer(start_step, total)
    last_good_step = start_step
    pending: list[dict] = []
    for step in range(start_step + 1, total + 1):
        batch = next(iterator)
        state, metrics = train_step(state, jax.device_put(batch, batch_sharded(mesh)))
        pending.append(metrics)
        log_now = every(step, config.train.log_every, total, first=True)
        ckpt_now = every(step, config.train.checkpoint_every, total)
        if log_now or ckpt_now:
            fetched = jax.device_get(pending)
            pending = []
            if not all(np.isfinite(m["total"]) for m in fetched):
                writer.close()
                checkpoints.wait()
                raise FloatingPointError(
                    f"loss became NaN/Inf between steps {last_good_step + 1} and {step}; the last good "
                    f"checkpoint (step {checkpoints.latest_step()}) is kept in {workdir}")
            last_good_step = step
            if log_now:
                scalars = {k: float(v) for k, v in fetched[-1].items()}
                speed = timer.report(step)
                writer.write_scalars(step, {**scalars, **speed})
                print(f"step {step}/{total}  loss {scalars['total']:.4f}  {speed['steps_per_s']:.2f} steps/s  "
                      f"ETA {format_eta(speed['eta_s'])}", flush=True)
            if ckpt_now:
                checkpoints.save(step, state, iterator.get_state())
        if eval_source is not None and every(step, config.train.eval_every, total):
            results = evaluate(predict, state, eval_source, config.data.batch_size, mesh)
            writer.write_scalars(step, results["overall"], split="eval")
            score = results["overall"]["pa_j_pe_mm"] + results["overall"]["pa_v_pe_mm"]
            checkpoints.save_best(step, state, score)
            with open(os.path.join(workdir, f"eval_{step}.json"), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
        if stop_after_steps is not None and step - start_step >= stop_after_steps:
            break
    checkpoints.wait()
    checkpoints.close()
    writer.close()
    return state


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import importlib.util

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/configs/default.py")
    parser.add_argument("--workdir", default="runs/default")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("train_config", args.config)
    if spec is None or not os.path.exists(args.config):
        sys.exit(f"config file {args.config!r} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    sys.exit(f"dataset {config.data.name!r} is not available in this version of h2o_jax: the synthetic "
             "dataset and the Dex-YCB/HO3D builders are still to be written (see README 'Status'); "
             "train_and_evaluate() accepts any source that follows data_loaders/features.py")


if __name__ == "__main__":
    main()
