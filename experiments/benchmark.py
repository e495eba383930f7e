"""Inference and training speed of H2ONet: the paper's protocol and batched throughput.

Protocol (paper Sec. 4.3): batch 1, data loading excluded (inputs already on the device),
timing after compilation, median over many frames, `block_until_ready` around each call.
Cases: single-frame, three-frame (one output frame per call), streaming (one new frame per
call, earlier frames from the cache), batched throughput of both models, float32 and bfloat16,
and the jitted train step on three-frame samples. Prints a markdown table and writes JSON.

    python -m experiments.benchmark                      # full-size network, default cases
    python -m experiments.benchmark --preset tiny        # seconds on a CPU (used by the tests)
    python -m experiments.benchmark --workdir models/synthetic/multi_frame --skip-train   # a trained model
    python -m experiments.benchmark --skip-inference --train-config experiments/configs/synthetic.py:cpu  # the main job's step
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from h2o_jax.config import LossConfig, model_config_for
from h2o_jax.hand.random_topology import OFFICIAL_LEVEL_SIZES, random_topology
from h2o_jax.hand.topology import MeshTopology, load_topology
from h2o_jax.losses import h2onet_loss
from h2o_jax.nn import H2ONet
from h2o_jax.nn.streaming import init_stream, stream_step

IMAGE_SIZE = 128


@dataclasses.dataclass
class Result:
    case: str
    dtype: str
    batch: int
    frames_per_call: int
    compile_s: float
    ms_per_call: float
    peak_memory_mb: float | None

    @property
    def ms_per_frame(self) -> float:
        return self.ms_per_call / self.frames_per_call

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms_per_frame


def peak_memory_mb() -> float | None:
    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def time_calls(fn: Callable[[], Any], iters: int) -> tuple[float, float]:
    """(compile-and-first-call seconds, median ms per later call)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1000.0)
    return compile_s, statistics.median(times)


def resolve_topology(spec: str) -> tuple[MeshTopology, str]:
    if spec == "random":
        return random_topology(OFFICIAL_LEVEL_SIZES), "random tables, official sizes 778/389/195/98/49"
    if spec == "tiny":
        return random_topology((48, 24, 12, 6, 3)), "random tables, tiny 48/24/12/6/3"
    return load_topology(spec), spec


def init_variables(model: H2ONet, frames: int, key: jax.Array) -> Any:
    images = jnp.zeros((1, frames, IMAGE_SIZE, IMAGE_SIZE, 3))
    return jax.jit(lambda k: model.init(k, images))(key)


def bench_inference(topology: MeshTopology, args: argparse.Namespace, dtype: str, run=None) -> list[Result]:
    """Single-frame, three-frame and streaming cases of random-weight networks, or with `run`
    = (model, variables) of a trained run (`--workdir`) the cases of that run's network."""
    results = []
    rng = np.random.default_rng(0)
    key = jax.random.key(0, impl="unsafe_rbg")  # fast to compile; weights are irrelevant here
    if run is None:
        networks = [(H2ONet(topology, model_config_for(variant, width_divisor=args.width_divisor, dtype=dtype)), None)
                    for variant in ("single_frame", "B+D+MF+FO+HO")]
    else:
        model, variables = run
        networks = [(H2ONet(model.topology, dataclasses.replace(model.config, dtype=dtype)), variables)]
    for model, variables in networks:
        frames = model.config.num_frames
        if variables is None:
            variables = init_variables(model, frames, key)
        forward = jax.jit(lambda v, x, m=model: m.apply(v, x))
        for batch in sorted({1, args.batch}):
            images = jnp.asarray(rng.random((batch, frames, IMAGE_SIZE, IMAGE_SIZE, 3)), jnp.float32)
            compile_s, ms = time_calls(lambda: forward(variables, images), args.iters if batch == 1 else args.batch_iters)
            name = "single-frame" if frames == 1 else "three-frame"
            results.append(Result(name, dtype, batch, batch, compile_s, ms, peak_memory_mb()))
        if frames == 3:
            state = init_stream(model, variables, batch_size=1, frame_gap=args.frame_gap)
            step = jax.jit(lambda s, x, m=model, v=variables: stream_step(m, v, s, x))
            frame = jnp.asarray(rng.random((1, IMAGE_SIZE, IMAGE_SIZE, 3)), jnp.float32)
            holder = {"state": state}

            def one_step():
                outputs, holder["state"] = step(holder["state"], frame)
                return outputs

            compile_s, ms = time_calls(one_step, args.iters)
            results.append(Result("streaming", dtype, 1, 1, compile_s, ms, peak_memory_mb()))
    return results


def bench_train_step(topology: MeshTopology, args: argparse.Namespace) -> Result:
    config = model_config_for("B+D+MF+FO+HO", width_divisor=args.width_divisor)
    model = H2ONet(topology, config)
    batch_size = args.train_batch
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.random((batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images, train=True))(jax.random.key(0, impl="unsafe_rbg"))
    num_vertices = topology.num_vertices
    targets = {
        "verts_c_m": jnp.zeros((batch_size, 3, num_vertices, 3)), "verts_r_m": jnp.zeros((batch_size, 3, num_vertices, 3)),
        "joints_c_m": jnp.zeros((batch_size, 3, 21, 3)), "joints_r_m": jnp.zeros((batch_size, 3, 21, 3)),
        "rot_mat": jnp.broadcast_to(jnp.eye(3), (batch_size, 3, 3, 3)), "joints_img": jnp.zeros((batch_size, 3, 21, 2)),
        "occ_labels": jnp.zeros((batch_size, 3, 6), jnp.int32), "occ_label_mask": jnp.ones((batch_size, 3)),
        "mask": jnp.ones((batch_size,)),
    }
    optimizer = optax.chain(optax.clip_by_global_norm(0.1), optax.adam(1e-4))
    loss_config = LossConfig(stage=2)

    def loss_fn(params, batch_stats):
        outputs, updates = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                                       mutable=["batch_stats"])
        return h2onet_loss(outputs, targets, topology.faces, loss_config, True)["total"], updates["batch_stats"]

    @jax.jit
    def step(params, batch_stats, opt_state):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    holder = {"state": (variables["params"], variables["batch_stats"], optimizer.init(variables["params"]))}

    def one_step():
        *state, loss = step(*holder["state"])
        holder["state"] = tuple(state)
        return loss

    compile_s, ms = time_calls(one_step, args.train_iters)
    return Result("train step (3-frame samples)", "float32", batch_size, batch_size, compile_s, ms, peak_memory_mb())


def config_train_step(config) -> tuple[Callable[[], jax.Array], int, Callable[[], str]]:
    """(one_step, batch size, optimised HLO text): a closure running one train step of a training config (e.g.
    `experiments/configs/synthetic.py:cpu`, the main job) exactly as `experiments.train` jits it
    (`h2o_jax.training.make_train_step`: its network, optimiser, loss terms, batch size and
    topology) on a fixed random three-frame batch, returning the loss."""
    from experiments.common import build_topology, model_config_from
    from experiments.train import loss_config_from, optim_config
    from h2o_jax.training import init_train_state, make_optimizer, make_train_step

    topology = build_topology(config.model.topology)
    model = H2ONet(topology, model_config_from(config))
    batch_size = int(config.data.batch_size)
    optimizer = make_optimizer(optim_config(config), steps_per_epoch=100)
    state = init_train_state(model, optimizer, jax.random.key(config.seed), batch_size)
    rng = np.random.default_rng(1)
    frames, num_vertices = 3, topology.num_vertices

    def normal(*shape):
        return rng.normal(size=(batch_size, frames, *shape)).astype(np.float32) * 0.05

    batch = jax.device_put({
        "image": rng.random((batch_size, frames, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32),
        "verts_c_m": normal(num_vertices, 3), "verts_r_m": normal(num_vertices, 3),
        "joints_c_m": normal(21, 3), "joints_r_m": normal(21, 3),
        "rot_mat": np.broadcast_to(np.eye(3, dtype=np.float32), (batch_size, frames, 3, 3)).copy(),
        "joints_img": rng.random((batch_size, frames, 21, 2)).astype(np.float32),
        "occ_labels": rng.integers(0, 2, (batch_size, frames, 6)).astype(np.int32),
        "occ_label_mask": np.ones((batch_size, frames), np.float32), "mask": np.ones(batch_size, np.float32),
    })
    step = jax.jit(make_train_step(model, optimizer, loss_config_from(config)), donate_argnums=0)
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["total"]

    return one_step, batch_size, lambda: step.lower(holder["state"], batch).compile().as_text()


def bench_config_train_step(config, config_spec: str, iters: int) -> Result:
    """`config_train_step` timed like the other cases."""
    one_step, batch_size, _ = config_train_step(config)
    compile_s, ms = time_calls(one_step, iters)
    name = f"train step ({config_spec.rsplit('/', 1)[-1]}: {config.model.variant}, 1/{config.model.width_divisor} width)"
    return Result(name, "float32", batch_size, batch_size, compile_s, ms, peak_memory_mb())


def format_table(results: list[Result]) -> str:
    lines = ["| case | dtype | batch | ms / call | ms / frame | frames/s | compile s | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        memory = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "n/a"
        lines.append(f"| {r.case} | {r.dtype} | {r.batch} | {r.ms_per_call:.2f} | {r.ms_per_frame:.3f} | "
                     f"{r.fps:,.0f} | {r.compile_s:.1f} | {memory} |")
    return "\n".join(lines)


PRESETS = {
    "default": dict(width_divisor=1, topology="random", batch=256, iters=50, batch_iters=5, train_batch=32,
                    train_iters=5, dtypes="float32,bfloat16"),
    "cpu": dict(width_divisor=1, topology="random", batch=16, iters=20, batch_iters=3, train_batch=4,
                train_iters=2, dtypes="float32"),
    "tiny": dict(width_divisor=8, topology="tiny", batch=4, iters=3, batch_iters=2, train_batch=2,
                 train_iters=2, dtypes="float32"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="default on accelerators, cpu on a CPU (smaller batches), tiny for tests")
    parser.add_argument("--topology", help="'random' (official sizes), 'tiny', or a topology .npz path")
    parser.add_argument("--workdir", help="a trained run (or a published model folder): time its own network, "
                                          "weights and topology in the inference cases instead of random "
                                          "ones (the train-step case stays the random multi-frame network "
                                          "at the run's width and topology)")
    parser.add_argument("--width-divisor", type=int)
    parser.add_argument("--batch", type=int, help="batch of the throughput cases")
    parser.add_argument("--iters", type=int, help="timed calls at batch 1")
    parser.add_argument("--batch-iters", type=int)
    parser.add_argument("--train-batch", type=int, help="three-frame samples per train step")
    parser.add_argument("--train-iters", type=int)
    parser.add_argument("--dtypes", help="comma-separated: float32,bfloat16")
    parser.add_argument("--frame-gap", type=int, default=None,
                        help="k of the streaming ring buffer (default: the run's data.gap, else 5)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--train-config", default=None,
                        help="time this training config's own train step (e.g. "
                             "experiments/configs/synthetic.py:cpu, the main job) instead of the "
                             "generic multi-frame step at --train-batch")
    parser.add_argument("--out", default="benchmark_results.json", help="JSON output path")
    args = parser.parse_args(argv)
    preset = args.preset or ("cpu" if jax.default_backend() == "cpu" else "default")
    for key, value in PRESETS[preset].items():
        if getattr(args, key) is None and not (key == "topology" and args.workdir):  # a run brings its own
            setattr(args, key, value)
    args.preset = preset
    return args


def check_args(args: argparse.Namespace) -> None:
    """Raises ValueError naming the first option a benchmark cannot run with."""
    for dtype in args.dtypes.split(","):
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"--dtypes: {dtype!r} is not float32 or bfloat16")
    model_config_for("B+D+MF+FO+HO", width_divisor=args.width_divisor)  # checks --width-divisor
    for name in ("batch", "iters", "batch_iters", "train_batch", "train_iters", "frame_gap"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    run = train_config = None
    try:
        check_args(args)
        if args.train_config:
            from experiments.common import UserError
            from experiments.train import load_config_file

            try:
                train_config = load_config_file(args.train_config)
            except UserError as err:
                raise ValueError(f"--train-config: {err}") from None
        if args.workdir:
            from experiments.common import UserError, restore_run

            if args.topology:
                raise ValueError("--topology and --workdir exclude each other: a run brings its own topology")
            try:
                run_config, model, variables, step = restore_run(args.workdir)
            except UserError as err:
                raise ValueError(str(err)) from None
            run = (model, variables)
            args.frame_gap = args.frame_gap or int(run_config.data.gap)
            topology, args.width_divisor = model.topology, model.config.width_divisor
            topology_note = (f"the run's ({args.workdir}: {run_config.model.variant}, step {step}, "
                             f"{topology.num_vertices} vertices)")
        else:
            topology, topology_note = resolve_topology(args.topology)
        args.frame_gap = args.frame_gap or 5
    except (ValueError, KeyError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}, preset {args.preset}, "
          f"topology: {topology_note}, width divisor {args.width_divisor}", flush=True)
    results: list[Result] = []
    for dtype in [] if args.skip_inference else args.dtypes.split(","):
        results += bench_inference(topology, args, dtype, run)
        print(format_table(results), flush=True)
    if not args.skip_train and args.train_config:
        results.append(bench_config_train_step(train_config, args.train_config, args.train_iters))
    elif not args.skip_train:
        results.append(bench_train_step(topology, args))
    table = format_table(results)
    print(table)
    report = {
        "date": datetime.date.today().isoformat(), "device": device.device_kind, "backend": jax.default_backend(),
        "jax": jax.__version__, "preset": args.preset, "topology": topology_note,
        "width_divisor": args.width_divisor, "cpu_count": os.cpu_count(), "workdir": args.workdir,
        "results": [dict(dataclasses.asdict(r), ms_per_frame=r.ms_per_frame, fps=r.fps) for r in results],
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
