"""What a reduced compute precision costs a trained model: bfloat16 against float32 on real images.

Runs a run's best (else latest) checkpoint twice on the same samples of its dataset: as trained
(float32) and with `ModelConfig.dtype="bfloat16"` (convolutions and dense layers compute in
bfloat16; parameters, BatchNorm statistics and outputs stay float32). Prints and returns how far
the bfloat16 mesh and joints are from the float32 ones (per vertex / joint Euclidean distance, mm:
max and mean over the samples), and the paper's metrics of both against the ground truth
(report keys "float32" and "reduced"). The
speed side is `python -m experiments.benchmark --dtypes float32,bfloat16` (BENCHMARKS.md).

    python -m experiments.precision --workdir runs/synthetic_cpu --split test --limit 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from data_loaders.validation import SpreadSamples
from experiments.common import UserError, restore_run, sample_source
from experiments.evaluate import MetricCollector, _predict_function

METRICS = ("pa_j_pe_mm", "pa_v_pe_mm", "j_pe_mm", "v_pe_mm")


def compare_precision(workdir: str, split: str | None = None, limit: int = 64, batch_size: int = 16,
                      dtype: str = "bfloat16") -> dict[str, Any]:
    """The report described in the module docstring, for `limit` samples spread over `split`
    (0: the whole split) of the run's own dataset."""
    from data_loaders.pipeline import make_eval_dataset
    from h2o_jax.nn import H2ONet

    if batch_size < 1 or limit < 0:
        raise UserError(f"--batch-size must be >= 1 and --limit >= 0; got {batch_size} and {limit}")
    config, model, variables, step = restore_run(workdir, "best")
    try:
        reduced = H2ONet(model.topology, dataclasses.replace(model.config, dtype=dtype))
    except ValueError as err:
        raise UserError(f"--dtype {dtype!r}: {err}") from None
    split = split or config.data.eval_split
    source = sample_source(config.data, split, train=False)
    if limit:
        source = SpreadSamples(source, limit)
    if len(source) == 0:
        raise UserError(f"split {split!r} of {config.data.name!r} holds no samples")
    predictors = {"float32": _predict_function(model, variables), "reduced": _predict_function(reduced, variables)}
    collectors = {name: MetricCollector() for name in predictors}
    distances_mm: dict[str, list[np.ndarray]] = {"verts": [], "joints": []}
    dataset = make_eval_dataset(source, batch_size, shard_index=0, shard_count=1)
    for number in range(len(dataset)):
        batch = dataset[number]
        real = number * batch_size + np.arange(batch_size) < len(source)
        outputs = {name: predict(batch) for name, predict in predictors.items()}
        for key in distances_mm:
            full, low = (np.asarray(outputs[name][f"{key}_r_m"], np.float64) for name in predictors)
            distances_mm[key].append(np.linalg.norm(low - full, axis=-1)[real] * 1000)
        labelled = real & (np.asarray(batch["mask"]) > 0)
        if labelled.any():
            for name, collector in collectors.items():
                collector.add(np.asarray(outputs[name]["joints_r_m"]), np.asarray(outputs[name]["verts_r_m"]),
                              batch["joints_r_m"][:, 0], batch["verts_r_m"][:, 0], batch["occ_labels"][:, 0],
                              batch["occ_label_mask"][:, 0], keep=labelled)
    report: dict[str, Any] = {"workdir": os.path.abspath(workdir), "dataset": config.data.name, "split": split,
                              "step": int(step), "variant": config.model.variant, "dtype": dtype,
                              "num_samples": int(sum(len(d) for d in distances_mm["verts"]))}
    for key, chunks in distances_mm.items():
        every = np.concatenate(chunks)
        report[f"{key}_diff_max_mm"] = float(every.max())
        report[f"{key}_diff_mean_mm"] = float(every.mean())
    if collectors["float32"].num_samples:
        overall = {name: collector.results()["overall"] for name, collector in collectors.items()}
        report["metrics"] = {name: {k: values[k] for k in METRICS} for name, values in overall.items()}
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['dtype']} against float32, {report['num_samples']} samples of {report['dataset']} "
             f"{report['split']} (step {report['step']}, {report['variant']}):",
             f"  vertices: max {report['verts_diff_max_mm']:.4f} mm, mean {report['verts_diff_mean_mm']:.4f} mm",
             f"  joints:   max {report['joints_diff_max_mm']:.4f} mm, mean {report['joints_diff_mean_mm']:.4f} mm"]
    for name, values in report.get("metrics", {}).items():
        label = report["dtype"] if name == "reduced" else name
        lines.append(f"  {label:>9}: " + "  ".join(f"{k} {v:.2f}" for k, v in values.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default=None, help="default: the run's evaluation split")
    parser.add_argument("--limit", type=int, default=64, help="samples spread over the split (0 = all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--out", default=None, help="JSON report (default: WORKDIR/precision_<dtype>.json)")
    args = parser.parse_args(argv)
    try:
        report = compare_precision(args.workdir, args.split, args.limit, args.batch_size, args.dtype)
    except UserError as err:
        sys.exit(f"error: {err}")
    print(format_report(report))
    path = args.out or os.path.join(args.workdir, f"precision_{args.dtype}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"report: {path}")
    return report


if __name__ == "__main__":
    main()
