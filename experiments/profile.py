"""Where the time goes: per-part timing of H2ONet on this machine (issue 12's profile).

Each part of the network is jitted on its own, fed the inputs the whole network gives it, and
timed as the median of many calls after compilation; next to it, XLA's FLOP count of that part
and the kinds of op in its optimised HLO (fusions, convolutions, dots, gathers, ...). With
`--train`, each part is timed forward + backward (gradients of its parameters and inputs) in
training mode, as the train step runs it. Run whole, XLA overlaps independent parts on the
cores (dense_stack2 and dense_stack3), so the parts add up to more than the whole.

    python -m experiments.profile                                        # inference, batch 1
    python -m experiments.profile --train --width-divisor 4 --batch 8    # the main job's step
    python -m experiments.profile --trace-config experiments/configs/synthetic.py:cpu   # per XLA op

With `--trace-config`, the whole train step of that training config runs under
`jax.profiler.trace`; the time of every XLA operation (fused loop, library fusion, dot, ...) is
summed by its kind and by the model code that produced it (its HLO `op_name`, layer indices
collapsed to `*`), over the traced steps. The two cores run operations side by side, so the
summed times exceed the step's wall time.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.config import model_config_for
from h2o_jax.hand import builtin_topology
from h2o_jax.hand.random_topology import OFFICIAL_LEVEL_SIZES, random_topology
from h2o_jax.nn import H2ONet
from h2o_jax.nn.encoder import Backbone, DenseStack
from h2o_jax.nn.layers import ConvBN, MobileUnit, reorg

IMAGE_SIZE = 128
_OP_KINDS = ("fusion", "convolution", "dot", "gather", "scatter", "reduce", "copy", "transpose")


def op_kinds(compiled_text: str) -> dict[str, int]:
    """Counts of the entry computation's instructions by kind in an optimised HLO module."""
    entry = compiled_text[compiled_text.index("\nENTRY"):]
    counts: collections.Counter = collections.Counter()
    for line in entry.splitlines()[1:]:
        match = re.search(r"=\s*\S+\s+([a-z\-]+)\(", line)
        if match and match.group(1) not in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast"):
            kind = match.group(1)
            counts[kind if kind in _OP_KINDS else "other"] += 1
    return dict(counts)


def time_compiled(fn: Callable, args: tuple, iters: int) -> dict[str, Any]:
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, list) else cost) or {}
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return {"ms": statistics.median(times), "gflop": float(cost.get("flops", 0.0)) / 1e9,
            "ops": op_kinds(compiled.as_text())}


def _backward(fn: Callable) -> Callable:
    """fn(variables, *inputs) -> forward + gradient of a scalar of all outputs w.r.t. the params
    and the float inputs (what backpropagation through this part costs)."""

    def scalar(params, batch_stats, *inputs):
        out = fn({"params": params, "batch_stats": batch_stats}, *inputs)
        return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(out))

    def run(variables, *inputs):
        return jax.grad(scalar, argnums=(0, *range(2, 2 + len(inputs))))(
            variables["params"], variables["batch_stats"], *inputs)

    return run


class _Stem(nn.Module):
    """The backbone's layers before dense_stack1, with the backbone's names (its params bind)."""

    width_divisor: int

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        d = self.width_divisor
        x = ConvBN(64 // d, 3, stride=2, name="pre_layer_0")(images, train)
        x = reorg(MobileUnit(128 // d, name="pre_layer_1")(x, train))
        return ConvBN(128 // d, 1, name="thrink")(x, train)


def _op_sources(hlo_text: str) -> dict[str, str]:
    """{instruction name: its op_name metadata, layer indices collapsed} of an optimised HLO."""
    sources = {}
    for match in re.finditer(r"^\s*%?(\S+) = .*?metadata=\{op_name=\"([^\"]+)\"", hlo_text, re.M):
        source = re.sub(r"^jit\([^)]*\)/", "", match.group(2))
        sources[match.group(1)] = re.sub(r"(?<=[a-z])_?\d+(?=/|$)", "*", source)
    return sources


def trace_train_step(config_spec: str, steps: int, top: int) -> dict[str, list[tuple[str, float, int]]]:
    """Per-operation profile of a training config's step (module docstring): {"by kind": [...],
    "by source": [...]}, rows (name, ms per step, operations per step), largest first."""
    import glob
    import gzip
    import json
    import tempfile

    from experiments.benchmark import config_train_step
    from experiments.train import load_config_file

    one_step, _, hlo_text = config_train_step(load_config_file(config_spec))
    jax.block_until_ready(one_step())  # compile and warm up outside the trace
    sources = _op_sources(hlo_text())
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(steps):
                jax.block_until_ready(one_step())
        (path,) = glob.glob(os.path.join(trace_dir, "**", "*perfetto_trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    tables = {"by kind": collections.defaultdict(lambda: [0.0, 0]),
              "by source": collections.defaultdict(lambda: [0.0, 0])}
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name not in sources:
            continue
        kind = re.sub(r"\.\d+$", "", name)
        for table, key in ((tables["by kind"], kind), (tables["by source"], f"{kind} | {sources[name]}")):
            table[key][0] += event.get("dur", 0) / 1e3 / steps
            table[key][1] += 1
    return {title: sorted(((key, ms, count // steps) for key, (ms, count) in table.items()),
                          key=lambda row: -row[1])[:top] for title, table in tables.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default=None, help="default: single_frame (inference), the main job's "
                        "B+D+MF+FO+HO (--train)")
    parser.add_argument("--width-divisor", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--topology", choices=("random", "builtin"), default="random",
                        help="random tables of the official sizes (the benchmark's) or the built-in hand")
    parser.add_argument("--train", action="store_true", help="forward + backward in training mode")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--trace-config", default=None,
                        help="trace this training config's whole train step per XLA operation "
                             "(e.g. experiments/configs/synthetic.py:cpu); the other options are ignored")
    parser.add_argument("--top", type=int, default=25, help="rows of each --trace-config table")
    args = parser.parse_args(argv)
    if args.trace_config:
        tables = trace_train_step(args.trace_config, steps=3, top=args.top)
        for title, rows in tables.items():
            total = sum(ms for _, ms, _ in rows)
            print(f"\n| {title} (top {len(rows)}) | ms / step | % of these | ops / step |\n|---|---|---|---|")
            for key, ms, count in rows:
                print(f"| {key} | {ms:.1f} | {100 * ms / total:.1f} | {count} |")
        return
    variant = args.variant or ("B+D+MF+FO+HO" if args.train else "single_frame")
    topology = builtin_topology() if args.topology == "builtin" else random_topology(OFFICIAL_LEVEL_SIZES)
    model = H2ONet(topology, model_config_for(variant, width_divisor=args.width_divisor))
    frames = model.config.num_frames
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.random((args.batch, frames, IMAGE_SIZE, IMAGE_SIZE, 3)), jnp.float32)
    variables = jax.jit(lambda k: model.init(k, images, train=True))(jax.random.key(0))
    flat = images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
    train = args.train
    mutable = ["batch_stats"] if train else False

    def method(body):
        def fn(v, *inputs):
            out = model.apply(v, *inputs, method=body, mutable=mutable)
            return out[0] if train else out
        return fn

    def standalone(module, *path):  # `module` on the weights at variables[...][path]
        def fn(v, x):
            sub = {}
            for kind in ("params", "batch_stats"):
                sub[kind] = v[kind]
                for key in path:
                    sub[kind] = sub[kind][key]
            out = module.apply(sub, x, train, mutable=mutable)
            return out[0] if train else out
        return fn

    d = args.width_divisor
    out_c = 24 // d
    backbone = method(lambda m, x: m.backbone(x, train))
    encoder_only = standalone(Backbone(d, dual_branch=False), "backbone")  # without dense_stack3
    stem = standalone(_Stem(d), "backbone")
    decoder = method(lambda m, lat, uv: m.decoder3d(lat, uv))
    enc = jax.jit(backbone)(variables, flat)
    joint_features, d3 = jax.jit(decoder)(variables, enc["latent"], enc["uv"])
    heads = method(lambda m, d3, j, r: (m.decoder3d.apply_head(d3),
                                        m.rot_reg.rotation_6d(m.rot_reg.global_features(j, r))))

    def stack(kind, name):
        return standalone(DenseStack(kind, out_c, d), "backbone", name), (feat_t,)

    # dense_stack2/3 read F_I, which has the stem output's shape [N, 32, 32, c]: timed on that.
    feat_t = jax.jit(stem)(variables, flat)
    parts = [("backbone, all (stem, dense_stack1-3, uv head)", backbone, (flat,))]
    if model.config.dual_branch:
        parts.append(("  of which without dense_stack3", encoder_only, (flat,)))
    parts += [("  stem (pre_layer_0/1, reorg, thrink)", stem, (flat,)),
              ("  dense_stack1", *stack("stack1", "dense_stack1")),
              ("  dense_stack2", *stack("stack2", "dense_stack2"))]
    if model.config.dual_branch:
        parts.append(("  dense_stack3", *stack("encoder", "dense_stack3")))
    parts += [("mesh decoder (grid-sample, lifting, 4 spiral levels)", decoder, (enc["latent"], enc["uv"])),
              ("mesh head + orientation MLP", heads, (d3, enc["j_latent"], enc.get("rot_latent")))]
    if model.config.uses_occlusion_classifier:
        parts.append(("occlusion classifier", method(lambda m, f: m.occ_pred(f, train)), (joint_features,)))
    whole = method(lambda m, x: m(x, train))
    parts.append(("whole network" + (" (all frames)" if train else ""), whole, (images,)))
    mode = "forward + backward, training mode" if train else "forward, inference mode"
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}; {variant}, width divisor "
          f"{args.width_divisor}, batch {args.batch} x {frames} frames, {mode}; median of {args.iters} calls")
    print("| part | ms | GFLOP | GFLOP/s | HLO ops (kind: count) |")
    print("|---|---|---|---|---|")
    for name, fn, inputs in parts:
        result = time_compiled(_backward(fn) if train else fn, (variables, *inputs), args.iters)
        ops = ", ".join(f"{k} {v}" for k, v in sorted(result["ops"].items(), key=lambda kv: -kv[1]))
        rate = result["gflop"] / result["ms"] * 1e3 if result["ms"] else 0.0
        print(f"| {name} | {result['ms']:.2f} | {result['gflop']:.3f} | {rate:.0f} | {ops} |", flush=True)


if __name__ == "__main__":
    main()
