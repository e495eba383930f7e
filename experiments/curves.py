"""`curves.png`: a run's learning curves (loss terms and evaluation metrics vs step), drawn from
its `metrics.jsonl`; the training loop rewrites it at every evaluation."""

from __future__ import annotations

import json
import os

import numpy as np

# Evaluation metrics plotted (mm), in the paper's order.
EVAL_KEYS = ("j_pe_mm", "pa_j_pe_mm", "v_pe_mm", "pa_v_pe_mm")
SKIP_TRAIN_KEYS = ("total", "steps_per_s", "eta_s", "grad_norm")


def _read(path: str) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: the rest of the file still plots
    return records


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` points (shorter at the start)."""
    values = np.asarray(values, np.float64)
    if window <= 1 or len(values) < 2:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (cumulative[1:] - cumulative[starts]) / (np.arange(1, len(values) + 1) - starts)


_BASELINE_STYLES = {"mean_hand": "--", "mean_pose_hand": "-.", "rest_hand": ":"}


def write_curves_png(workdir: str, baselines: dict | None = None, eval_label: str = "evaluation") -> str | None:
    """Writes `<workdir>/curves.png` (left: train loss terms, log scale, smoothed; right: the
    evaluation metrics in mm, with the constant-hand baselines' J-PE / PA-J-PE as dashed lines
    when given: {name: {"overall": {...}}}; `eval_label` names the evaluated samples). Returns the
    path, or None when nothing is logged."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    records = _read(path)
    train = [r for r in records if r.get("split") == "train"]
    evals = [r for r in records if r.get("split") == "eval"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    keys = sorted({k for r in train for k in r if k not in ("step", "split", "time") + SKIP_TRAIN_KEYS})
    window = max(1, len(train) // 30)
    for key in keys:
        points = [(r["step"], r[key]) for r in train if key in r and np.isfinite(r[key]) and r[key] > 0]
        if points:
            steps, values = np.array(points).T
            ax_loss.plot(steps, smoothed(values, window), label=key, lw=1.2)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss terms (weighted, smoothed)")
    # A fixed corner: loc="best" searches the plotted points and, on a slow or busy CPU, warns
    # (an error under the test suite's warning filter) once that search takes over a second.
    ax_loss.legend(fontsize=6, ncol=2, loc="upper right")
    if evals:
        for key in EVAL_KEYS:
            points = [(r["step"], r[key]) for r in evals if key in r]
            if points:
                steps, values = np.array(points).T
                ax_eval.plot(steps, values, marker="o", ms=3, label=key)
        colours = {"j_pe_mm": "C0", "pa_j_pe_mm": "C1"}
        for name, report in (baselines or {}).items():
            for key, colour in colours.items():
                value = report["overall"].get(key)
                if value is not None:
                    ax_eval.axhline(value, ls=_BASELINE_STYLES.get(name, ":"), color=colour, lw=0.9,
                                    label=f"{key}, constant {name.replace('_', ' ')}")
        ax_eval.set_yscale("log")
        ax_eval.set_xlabel("step")
        ax_eval.set_title(f"{eval_label}: errors in mm")
        ax_eval.legend(fontsize=6, loc="upper right")
    else:
        ax_eval.set_axis_off()
    fig.tight_layout()
    out = os.path.join(workdir, "curves.png")
    fig.savefig(out)
    plt.close(fig)
    return out
