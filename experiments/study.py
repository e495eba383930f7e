"""The single- vs multi-frame study (the paper's Table 5 question) as one table from trained runs.

    python -m experiments.study --run single_frame=runs/study/single_frame \
        --run B+D+MF+FO+HO=runs/study/mf_full --out runs/study/study.md

Evaluates every run's best checkpoint on the same split (`experiments.evaluate`, default the whole
test split; reports go to `<workdir>/study/`) and writes a markdown file with, per run and per
ground-truth occlusion category of frame 0 (all / none / some fingers / whole hand): the errors of
Tables 1-3 (PA-J-PE, PA-V-PE, J-PE, V-PE in mm; AUCs and F-scores in percent), the training
wall-clock time of each run (from its metrics.jsonl), and for models with an occlusion classifier
its per-finger precision / recall and the fusion weights on occluded vs visible fingers
(`experiments/occlusion_stats.py`). `--offset-ablation` adds, per fusion model, a row with its
offset head zeroed: frame 0's mesh is then the network's own single-frame mesh, so the difference
is what the multi-frame fusion adds. The same numbers go to a JSON file beside the markdown.
A run may be scored with other inference switches of its network (no retraining):
`--run "MF copy=runs/study/mf_full@enquiry_rotation=copy,gate_logit_offset=2"`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

GROUPS = (("all", None), ("no occlusion", "none"), ("some fingers", "fingers"), ("whole hand", "hand"))
ERROR_COLUMNS = (("PA-J-PE", "pa_j_pe_mm"), ("PA-V-PE", "pa_v_pe_mm"), ("J-PE", "j_pe_mm"), ("V-PE", "v_pe_mm"))
SCORE_COLUMNS = (("PA-J-AUC", "pa_j_auc"), ("PA-V-AUC", "pa_v_auc"), ("J-AUC", "j_auc"), ("V-AUC", "v_auc"),
                 ("PA-F@5", "pa_f5"), ("PA-F@15", "pa_f15"), ("F@5", "f5"), ("F@15", "f15"))


def training_seconds(workdir: str) -> float | None:
    """Wall-clock seconds a run trained, from its metrics.jsonl: the first logged step's duration
    (compilation included, 1 / steps_per_s) plus the time from that record to the last one.
    None without records. A resumed run's pause between sessions would count: none here."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as file:
        records = [json.loads(line) for line in file if line.strip()]
    train = [r for r in records if r.get("split") == "train"]
    if not train:
        return None
    first_step_s = 1.0 / train[0]["steps_per_s"] if train[0].get("steps_per_s") else 0.0
    return max(r["time"] for r in records) - train[0]["time"] + first_step_s


def _group(report: dict[str, Any], key: str | None) -> dict[str, Any] | None:
    return report["overall"] if key is None else report.get("by_occlusion", {}).get(key)


def format_study(rows: list[dict[str, Any]]) -> str:
    """Markdown tables of the study (see the module docstring) from `run_study`'s rows."""
    lines = ["| model | frames | N | " + " | ".join(t for t, _ in ERROR_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(ERROR_COLUMNS)]
    for title, key in GROUPS:
        for row in rows:
            group = _group(row["report"], key)
            if group is not None:
                lines.append(f"| {row['name']} | {title} | {group['num_samples']} | "
                             + " | ".join(f"{group[k]:.2f}" for _, k in ERROR_COLUMNS) + " |")
    lines += ["", "| model | frames | " + " | ".join(t for t, _ in SCORE_COLUMNS) + " |",
              "|---|---|" + "---|" * len(SCORE_COLUMNS)]
    for title, key in GROUPS:
        for row in rows:
            group = _group(row["report"], key)
            if group is not None:
                lines.append(f"| {row['name']} | {title} | " + " | ".join(f"{100 * group[k]:.1f}" for _, k in SCORE_COLUMNS)
                             + " |")
    lines += ["", "| model | workdir | best step | training wall-clock |", "|---|---|---|---|"]
    for row in rows:
        seconds = row["training_s"]
        lines.append(f"| {row['name']} | `{row['workdir']}` | {row['report']['step']} | "
                     + ("n/a" if seconds is None else f"{seconds / 60:.1f} min") + " |")
    classified = [row for row in rows if "occlusion" in row["report"]]
    if classified:
        heads = list(classified[0]["report"]["occlusion"]["classifier"])
        lines += ["", "Occlusion classifier on frame 0, precision / recall of 'occluded' (%), the occluded share, "
                  "and the ROC AUC of the occluded-minus-visible logit:",
                  "", "| model | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for row in classified:
            classifier = row["report"]["occlusion"]["classifier"]
            cells = []
            for head in heads:
                c = classifier[head]
                fmt = lambda v: "-" if v is None else f"{100 * v:.0f}"  # noqa: E731
                auc = "" if c.get("roc_auc") is None else f", AUC {c['roc_auc']:.2f}"
                cells.append(f"{fmt(c['precision'])} / {fmt(c['recall'])} ({c['num_occluded']}/{c['num_samples']}{auc})")
            lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
        lines += ["", "Fusion weight of a finger's feature in a frame (softmax over the 3 frames; uniform 0.333):", "",
                  "| model | visible fingers | occluded fingers | frame 0, finger occluded there but visible before |",
                  "|---|---|---|---|"]
        for row in classified:
            fusion = row["report"]["occlusion"]["fusion_weights"]
            cells = []
            for key in ("visible", "occluded", "frame0_occluded_seen_before"):
                s = fusion[key]
                cells.append("-" if not s["count"] else
                             f"{s['mean']:.3f} (p10 {s['p10']:.3f}, p90 {s['p90']:.3f}; n {s['count']})")
            lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def without_offset(variables: dict[str, Any]) -> dict[str, Any] | None:
    """The variables with the multi-frame offset head's last layer zeroed (its output is then 0:
    frame 0's mesh is the network's own single-frame mesh), or None for a model without one."""
    import jax
    import numpy as np

    if "offset_pred" not in variables["params"]:
        return None
    head = jax.tree.map(np.zeros_like, variables["params"]["offset_pred"]["head"])
    offset = {**variables["params"]["offset_pred"], "head": head}
    return {**variables, "params": {**variables["params"], "offset_pred": offset}}


def parse_run(item: str) -> tuple[str, str, dict[str, Any]]:
    """"NAME=WORKDIR" or "NAME=WORKDIR@KEY=VALUE,KEY=VALUE" (inference switches of the network,
    `experiments.common.INFERENCE_SWITCHES`) -> (name, workdir, overrides)."""
    from experiments.common import UserError, parse_model_overrides

    name, sep, rest = item.partition("=")
    workdir, _, settings = rest.partition("@")
    if not sep or not name or not workdir:
        raise UserError(f"--run must be NAME=WORKDIR[@KEY=VALUE,...], got {item!r}")
    return name, workdir, parse_model_overrides([s for s in settings.split(",") if s])


def run_study(runs: Sequence[tuple], split: str | None = None, limit: int = 0,
              batch_size: int = 16, offset_ablation: bool = False) -> list[dict[str, Any]]:
    """Evaluates each (name, workdir[, model overrides]) on the same split; returns one row per
    run, and with `offset_ablation` one more per multi-frame fusion model with its offset head
    zeroed. Outputs go to <workdir>/study (study_<overrides> for a run with overrides)."""
    from experiments.common import restore_run
    from experiments.evaluate import _predict_function, run_evaluation

    rows = []
    for name, workdir, *rest in runs:
        overrides = rest[0] if rest else {}
        suffix = "".join(f"_{k}-{v}" for k, v in sorted(overrides.items()))
        print(f"== {name}: {workdir}", flush=True)
        report = run_evaluation(workdir, split=split, limit=limit, batch_size=batch_size, spread=bool(limit),
                                out_dir=os.path.join(workdir, "study" + suffix), model_overrides=overrides)
        rows.append({"name": name, "workdir": workdir, "training_s": training_seconds(workdir), "report": report})
        if offset_ablation:
            _, model, variables, _ = restore_run(workdir, model_overrides=overrides)
            zeroed = without_offset(variables)
            if zeroed is not None:
                print(f"== {name} with its offset head zeroed", flush=True)
                report = run_evaluation(workdir, split=split, limit=limit, batch_size=batch_size, spread=bool(limit),
                                        out_dir=os.path.join(workdir, "study_no_offset" + suffix),
                                        predict_fn=_predict_function(model, zeroed), model_overrides=overrides)
                rows.append({"name": f"{name}, offset zeroed", "workdir": workdir, "training_s": None,
                             "report": report})
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m experiments.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=WORKDIR[@KEY=VALUE,...]",
                        help="a trained run and its name in the table (repeat); after @, inference switches "
                             "of its network (enquiry_rotation=copy, gate_logit_offset=2, hand_reading=B)")
    parser.add_argument("--split", default=None, help="dataset split (default: the runs' evaluation split)")
    parser.add_argument("--limit", type=int, default=0, help="N samples spread over the split (0 = all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", required=True, help="markdown output path (JSON beside it)")
    parser.add_argument("--offset-ablation", action="store_true",
                        help="also score each fusion model with its offset head zeroed (what the fusion adds)")
    args = parser.parse_args(argv)
    from experiments.common import UserError

    try:
        runs = [parse_run(item) for item in args.run]
    except UserError as err:
        sys.exit(f"error: {err}")
    try:
        rows = run_study(runs, args.split, args.limit, args.batch_size, args.offset_ablation)
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    text = format_study(rows)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as file:
        file.write(text + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as file:
        json.dump(rows, file, indent=1)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
