"""Training loop: data-parallel jitted steps, orbax checkpoints with exact resume, metrics.

    python -m experiments.train --config experiments/configs/synthetic.py:cpu --workdir runs/synthetic_cpu
    python -m experiments.train --config experiments/configs/dexycb.py --workdir runs/dexycb_s1 \
        --config.model.topology=mano:/path/MANO_RIGHT.pkl

`train_and_evaluate(config, workdir, train_source, eval_source)` is the library entry: the
sources are random-access sources of triplet samples following data_loaders/features.py (a
`data_loaders.pipeline.SampleSource`, which is augmented and gap-jittered, or any list of ready
samples). Resuming from `<workdir>/checkpoints/latest` restores the train state and the
data-iterator position, so a killed run continues exactly where its last checkpoint left it.
Multi-host: set `--config.distributed=True` and the usual JAX coordinator environment; every
process then calls `jax.distributed.initialize()` before touching devices.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_loaders.pipeline import SampleSource, make_train_dataset
from data_loaders.validation import EveryNth, SpreadSamples, hold_out_sequences
from experiments.baselines import baseline_constants, evaluate_baselines
from experiments.checkpointing import Checkpoints
from experiments.curves import write_curves_png
from experiments.compile_cache import enable_compilation_cache
from experiments.common import UserError, model_config_from, restore_variables, sample_source, training_topology, write_run_config
from experiments.writers import MetricWriter, StepTimer, every, format_eta
from h2o_jax.config import LossConfig
from h2o_jax.hand.topology import load_topology
from h2o_jax.metrics import MetricAccumulator, root_align, sample_metrics
from h2o_jax.nn import H2ONet
from h2o_jax.sharding import batch_sharded, check_global_batch_size, make_data_mesh, replicated
from h2o_jax.training import OptimConfig, TrainState, init_train_state, make_optimizer, make_predict_step, make_train_step

log = logging.getLogger("h2o_jax.train")


class _ReadySamples:
    """A list of ready samples behind the `SampleSource.load` interface (no jitter, no augmentation)."""

    def __init__(self, samples: Sequence[dict]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int, rng=None) -> dict:
        del rng
        return self.samples[index]


def train_iterator(source, config: ml_collections.ConfigDict):
    """Seeded, shuffled, repeated, per-process sharded (augmented) batches with a checkpointable state."""
    augment = isinstance(source, SampleSource) and bool(config.data.get("augment", True))
    if not isinstance(source, SampleSource):
        source = _ReadySamples(source)
    return iter(make_train_dataset(source, config.data.batch_size, config.seed, augment=augment,
                                   worker_count=int(config.data.get("workers", 0))))


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


class TrainingStopped(Exception):
    """Raised by `train_and_evaluate` after SIGTERM/SIGINT, once the step it interrupted is
    finished and checkpointed (with the data-iterator position) and the writers are closed."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__(f"stopped at step {step}: rerun the same command to resume")
        self.step, self.signum = step, signum


class _StopRequests:
    """Turns the first SIGTERM/SIGINT into a request that the loop honours after its current step.

    The previous handlers come back on that first signal, so a second one acts as usual (aborts).
    Signal handlers can only be set from the main thread; elsewhere nothing is installed.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        del frame
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc_info) -> None:
        self._restore()


# The single-frame rotation head is the multi-frame per-frame head (official `fc_block` ->
# `fc_block1`, architecture.md C.4); the official code loads by name and would leave it untrained.
_RENAMED_FROM_SINGLE_FRAME = {"fc_block_": "fc_block1_"}


def _renamed_for(key: tuple[str, ...], target_keys) -> tuple[str, ...]:
    if key in target_keys:
        return key
    for old, new in _RENAMED_FROM_SINGLE_FRAME.items():
        renamed = tuple(part.replace(old, new, 1) if part.startswith(old) else part for part in key)
        if renamed in target_keys:
            return renamed
    return key


def _init_from_run(state: TrainState, run_dir: str) -> TrainState:
    """Starts from another run's best (else latest) weights: the official stage 1 -> stage 2, or
    a single-frame run -> a multi-frame run (architecture.md C.8: the multi-frame model starts from
    the single-frame stage; its own heads, the occlusion classifier, the offset heads, start from
    their initialisation). Every weight of the other run must fit one of this network's."""
    from flax import traverse_util

    variables, step = restore_variables(run_dir, "best", what=f"train.init_from={run_dir!r}")
    merged, fresh = {}, set()
    for name in ("params", "batch_stats"):
        target = traverse_util.flatten_dict(getattr(state, name))
        source = {_renamed_for(k, target): v for k, v in traverse_util.flatten_dict(variables[name]).items()}
        misfits = sorted("/".join(k) for k, v in source.items() if k not in target or np.shape(v) != target[k].shape)
        if misfits:
            raise UserError(f"train.init_from={run_dir!r}: its {name} do not fit this run's network "
                            f"(another variant, width or topology): {', '.join(misfits[:3])}"
                            + (f" and {len(misfits) - 3} more" if len(misfits) > 3 else ""))
        partly_loaded = {k[0] for k in source}
        fresh |= {k[0] if k[0] not in partly_loaded else f"{k[0]}/{re.sub(r'_[0-9]+$', '', k[1])}"
                  for k in target if k not in source}
        merged[name] = traverse_util.unflatten_dict({
            k: jax.device_put(jnp.asarray(source[k], ref.dtype), ref.sharding) if k in source else ref
            for k, ref in target.items()})
    print(f"initialised from {run_dir} (step {step})"
          + (f"; at initialisation: {', '.join(sorted(fresh))}" if fresh else ""), flush=True)
    return state.replace(params=merged["params"], batch_stats=merged["batch_stats"])


def optim_config(config: ml_collections.ConfigDict) -> OptimConfig:
    optim = config.optim
    return OptimConfig(
        learning_rate=optim.learning_rate, milestones_epochs=tuple(optim.milestones_epochs), decay=optim.decay,
        grad_clip_norm=optim.grad_clip_norm, schedule=optim.schedule, warmup_steps=optim.warmup_steps,
        total_steps=config.train.num_steps, final_fraction=optim.final_fraction,
        rotation_lr_scale=optim.rotation_lr_scale,
        joint_regressor_lr_scale=optim.get("joint_regressor_lr_scale", 1.0),
        backbone_lr_scale=optim.get("backbone_lr_scale", 1.0))


def loss_config_from(config: ml_collections.ConfigDict) -> LossConfig:
    return LossConfig(stage=config.loss.stage, normal_weight=config.loss.normal_weight,
                      rot_weight=config.loss.rot_weight, mesh_weight=float(config.loss.get("mesh_weight", 1.0)),
                      occ_positive_weight=float(config.loss.get("occ_positive_weight", 1.0)))


def selection_score(overall: dict, loss_stage: int) -> float:
    """The best checkpoint's criterion (lower is better), in mm: PA-J-PE + PA-V-PE when only the
    canonical mesh is trained (stage 1: the rotation is untrained, its errors noise), plus
    J-PE + V-PE when the rotation is trained too (stage 2), so that the rotation counts."""
    score = overall["pa_j_pe_mm"] + overall["pa_v_pe_mm"]
    return score if loss_stage == 1 else score + overall["j_pe_mm"] + overall["v_pe_mm"]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, train_source: Sequence[dict],
                       eval_source: Sequence[dict] | None = None, stop_after_steps: int | None = None) -> TrainState:
    """Trains `config.train.num_steps` steps (resuming from `workdir` if it holds checkpoints).

    The run's topology is saved as `<workdir>/topology.npz` and its sha256 in config.json; a
    resumed run (or a stage-2 run with `train.init_from`) uses the saved file, never a rebuild.
    `stop_after_steps` ends this call after that many steps of the run (used to emulate a kill).
    SIGTERM/SIGINT end it after the current step with a checkpoint and raise `TrainingStopped`.
    """
    os.makedirs(workdir, exist_ok=True)
    topology, digest = training_topology(config, workdir)
    write_run_config(workdir, config, digest)
    model_config = model_config_from(config)
    model = H2ONet(topology, model_config)
    mesh = make_data_mesh()
    check_global_batch_size(config.data.batch_size, mesh)
    steps_per_epoch = max(len(train_source) // config.data.batch_size, 1)
    optimizer = make_optimizer(optim_config(config), steps_per_epoch)
    loss_config = loss_config_from(config)
    key = jax.random.key(config.seed)
    state = init_train_state(model, optimizer, key, config.data.batch_size, out_shardings=replicated(mesh))
    iterator = train_iterator(train_source, config)
    checkpoints = Checkpoints(workdir, keep=config.train.keep_checkpoints, repair=True)
    start_step = 0
    init_from = config.train.get("init_from", "")
    if init_from and checkpoints.latest_step() is None:
        state = _init_from_run(state, init_from)
    if checkpoints.latest_step() is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        state, data_state = checkpoints.restore(abstract)
        if data_state:
            iterator.set_state(data_state)
        start_step = int(state.step)
        print(f"resumed from step {start_step} ({os.path.join(workdir, 'checkpoints', 'latest')})", flush=True)
    train_step = jax.jit(make_train_step(model, optimizer, loss_config),
                         in_shardings=(replicated(mesh), batch_sharded(mesh)),
                         out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)
    predict = jax.jit(make_predict_step(model))
    baselines = None
    if eval_source is not None and hasattr(train_source, "records"):  # a SampleSource: constants to beat
        baselines = evaluate_baselines(baseline_constants(
            train_source.records, topology.template_vertices_m, topology.joint_regressor), eval_source)
    val_sequences = int(config.data.get("val_sequences", 0))
    eval_label = (f"validation ({val_sequences} held-out train sequences)" if val_sequences
                  else f"{config.data.eval_split} split")
    writer = MetricWriter(workdir, resume_step=start_step)
    total = config.train.num_steps
    timer = StepTimer(start_step, total)
    last_good_step = start_step
    pending: list[dict] = []
    stop = _StopRequests()
    try:
        with stop:
            for step in range(start_step + 1, total + 1):
                batch = next(iterator)
                state, metrics = train_step(state, jax.device_put(batch, batch_sharded(mesh)))
                pending.append(metrics)
                # Read once: a signal arriving later in this iteration is honoured after the next step.
                stopping = stop.signum is not None
                log_now = every(step, config.train.log_every, total, first=True)
                ckpt_now = every(step, config.train.checkpoint_every, total) or stopping
                if log_now or ckpt_now:
                    fetched = jax.device_get(pending)
                    pending = []
                    if not all(np.isfinite(m["total"]) for m in fetched):
                        checkpoints.wait()
                        raise FloatingPointError(
                            f"loss became NaN/Inf between steps {last_good_step + 1} and {step}; the last good "
                            f"checkpoint (step {checkpoints.latest_step()}) is kept in {workdir}")
                    last_good_step = step
                    if log_now:
                        scalars = {k: float(v) for k, v in fetched[-1].items()}
                        speed = timer.report(step)
                        writer.write_scalars(step, {**scalars, **speed})
                        print(f"step {step}/{total}  loss {scalars['total']:.4f}  {speed['steps_per_s']:.2f} "
                              f"steps/s  ETA {format_eta(speed['eta_s'])}", flush=True)
                    if ckpt_now:
                        checkpoints.save(step, state, iterator.get_state())
                if eval_source is not None and every(step, config.train.eval_every, total):
                    results = evaluate(predict, state, eval_source, config.data.batch_size, mesh)
                    writer.write_scalars(step, results["overall"], split="eval")
                    checkpoints.save_best(step, state, selection_score(results["overall"], loss_config.stage))
                    if baselines is not None:
                        results["baselines"] = baselines
                    with open(os.path.join(workdir, f"eval_{step}.json"), "w", encoding="utf-8") as f:
                        json.dump(results, f, indent=2)
                    if jax.process_index() == 0:
                        write_curves_png(workdir, baselines, eval_label)
                if stopping and step < total:
                    checkpoints.wait()
                    raise TrainingStopped(step, stop.signum)
                if stop_after_steps is not None and step - start_step >= stop_after_steps:
                    break
    finally:
        # Also on errors (NaN, unreadable data): finished checkpoint writes and logged lines stay.
        checkpoints.wait()
        checkpoints.close()
        writer.close()
    return state


SINGLE_FRAME_STAGE_DIR = "single_frame"


def single_frame_stage_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config of a run's first stage (`train.single_frame_steps` > 0): the official schedule's
    single-frame stage 1 (architecture.md C.8; mesh terms only: a single-frame network keeps the
    root joint's gradient, and the rotated terms from scratch drag its mesh, README), batch
    `train.single_frame_batch_size` (frame 0 of each triplet), validated once, at its end."""
    stage = ml_collections.ConfigDict(config.to_dict())
    stage.model.variant = "single_frame"
    stage.loss.stage = 1
    stage.data.batch_size = int(config.train.single_frame_batch_size)
    steps = int(config.train.single_frame_steps)
    stage.train.update(num_steps=steps, eval_every=steps if config.train.eval_every else 0,
                       single_frame_steps=0, init_from="", predictions_png=False)
    stage.lock()
    return stage


def _latest_step(workdir: str) -> int | None:
    checkpoints = Checkpoints(workdir, keep=1_000_000)  # reading only: no save prunes anything
    try:
        return checkpoints.latest_step()
    finally:
        checkpoints.close()


def train_in_stages(config: ml_collections.ConfigDict, workdir: str, train_source: Sequence[dict],
                    eval_source: Sequence[dict] | None = None, stop_after_steps: int | None = None
                    ) -> TrainState | None:
    """`train_and_evaluate`, preceded when `train.single_frame_steps` > 0 by the single-frame stage
    into `<workdir>/single_frame`, whose best weights then start the run (`train.init_from`).

    Each stage resumes from its own checkpoints; once the run itself has a checkpoint the first
    stage is not looked at again. Returns the run's state, or None when `stop_after_steps`
    (emulating a kill) ended the first stage before its last step.
    """
    steps = int(config.train.get("single_frame_steps", 0))
    if steps and _latest_step(workdir) is None:
        if config.train.get("init_from", ""):
            raise UserError("train.init_from and train.single_frame_steps both choose the starting weights; "
                            "set one of them")
        stage_dir = os.path.join(workdir, SINGLE_FRAME_STAGE_DIR)
        print(f"stage 1 of 2: single-frame, {steps} steps, into {stage_dir}", flush=True)
        stage_state = train_and_evaluate(single_frame_stage_config(config), stage_dir, train_source,
                                         eval_source, stop_after_steps=stop_after_steps)
        done = int(jax.device_get(stage_state.step))
        if done < steps:
            return None
        if stop_after_steps is not None:
            stop_after_steps -= done
        config = ml_collections.ConfigDict(config.to_dict())
        config.train.init_from = stage_dir
        print(f"stage 2 of 2: {config.model.variant}, {config.train.num_steps} steps", flush=True)
    return train_and_evaluate(config, workdir, train_source, eval_source, stop_after_steps=stop_after_steps)


def training_sources(config: ml_collections.ConfigDict):
    """(train source, periodic-evaluation source or None) of a config: with
    `data.val_sequences` > 0 the evaluation runs on that many sequences held out of the train
    split (every 4th sample), else on `data.eval_split`; `data.eval_limit` caps it (samples spread
    over the whole source)."""
    train_source = sample_source(config.data, "train", train=True)
    if not config.train.eval_every:
        return train_source, None
    if config.data.val_sequences:
        train_source, eval_source = hold_out_sequences(train_source, int(config.data.val_sequences))
        eval_source = EveryNth(eval_source, 4)
    else:
        eval_source = sample_source(config.data, config.data.eval_split, train=False)
    if config.data.eval_limit:
        eval_source = SpreadSamples(eval_source, int(config.data.eval_limit))
    return train_source, eval_source


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """The config of `FILE[:PRESET]` (a python file with `get_config(preset)`); UserError if the
    file or the preset does not exist."""
    import importlib.util

    path, _, preset = spec.partition(":")
    if not os.path.exists(path):
        raise UserError(f"bad config or flags: config file {path!r} not found")
    module_spec = importlib.util.spec_from_file_location("train_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        return module.get_config(preset) if preset else module.get_config()
    except ValueError as err:
        raise UserError(f"bad config or flags: {err}") from None


def _load_config_flags(argv):
    """(config, workdir, stop_after_steps) from `--config FILE[:PRESET]`, `--workdir DIR`,
    `--stop_after_steps N` and any `--config.a.b=VALUE` overrides (typed like the value they
    replace; the config is locked, so an unknown key is an error)."""
    import argparse
    import ast

    parser = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/configs/synthetic.py:cpu")
    parser.add_argument("--workdir", default="runs/synthetic_cpu")
    parser.add_argument("--stop_after_steps", type=int, default=None)
    args, rest = parser.parse_known_args(list(argv)[1:])
    config = load_config_file(args.config)
    for item in rest:
        key, eq, text = item.partition("=")
        if not key.startswith("--config.") or not eq:
            raise UserError(f"bad config or flags: unknown argument {item!r} (use --config.a.b=VALUE)")
        *parents, leaf = key[len("--config."):].split(".")
        node = config
        try:
            for name in parents:
                node = node[name]
            old = node[leaf]
        except (KeyError, AttributeError, TypeError):
            raise UserError(f"bad config or flags: the config has no field {key[2:]!r}") from None
        if isinstance(old, str):
            value = text
        else:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise UserError(f"bad config or flags: {key[2:]}={text!r} is not a {type(old).__name__}") from None
        try:
            node[leaf] = type(old)(value) if isinstance(old, (bool, int, float)) and not isinstance(value, type(old)) else value
        except (TypeError, ValueError) as err:
            raise UserError(f"bad config or flags: {key[2:]}: {err}") from None
    try:  # the network and loss settings, checked here so that a typo is a one-line error
        model_config_from(config)
        loss_config_from(config)
    except (ValueError, TypeError) as err:
        raise UserError(f"bad config or flags: {err}") from None
    return config, args.workdir, args.stop_after_steps


def main(argv: Sequence[str] | None = None) -> TrainState | None:
    argv = [sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config, workdir, stop_after_steps = _load_config_flags(argv)
        if config.distributed:
            jax.distributed.initialize()
        enable_compilation_cache()
        train_source, eval_source = training_sources(config)
        state = train_in_stages(config, workdir, train_source, eval_source, stop_after_steps=stop_after_steps)
    except TrainingStopped as stopped:
        print(stopped, flush=True)
        sys.exit(128 + stopped.signum)  # the shell's convention: 143 after SIGTERM, 130 after SIGINT
    except (UserError, FloatingPointError) as err:
        sys.exit(f"error: {err}")
    if state is None:
        return None  # stopped inside the single-frame stage (stop_after_steps)
    finished = int(jax.device_get(state.step)) >= config.train.num_steps
    if finished and config.data.val_sequences and config.train.eval_every:
        # Settings and the best checkpoint were chosen on the validation slice; the test split
        # is scored once, at the end (with the constant-hand baselines).
        from experiments.evaluate import run_evaluation

        try:
            run_evaluation(workdir, config.data.eval_split, "best", limit=int(config.data.eval_limit),
                           batch_size=config.data.batch_size, spread=True)
        except UserError as err:
            sys.exit(f"error: {err}")
    if config.train.predictions_png and jax.process_index() == 0:
        from experiments.visualize import write_prediction_png

        source = sample_source(config.data, config.data.eval_split, train=False) if config.train.eval_every \
            else train_source
        model = H2ONet(load_topology(os.path.join(workdir, "topology.npz")),
                       model_config_from(config))
        path = write_prediction_png(workdir, model, state, source)
        print(f"wrote {path}")
    print(f"done: checkpoints in {os.path.join(workdir, 'checkpoints')}, metrics in "
          f"{os.path.join(workdir, 'metrics.jsonl')}")
    return state


if __name__ == "__main__":
    main()
