"""What the Eq. 5-7 enquiry could give a multi-frame run, and what it gives: on a labelled split.

    python -m experiments.enquiry_oracle --workdir runs/study2/mf_full [--split validation]

The enquiry replaces the orientation evidence of frame t by that of the most recent frame whose
hand is visible. Whether that can pay depends on the data (is an earlier frame of an occluded
hand visible at all? is its own rotation closer to frame t's than frame t's own?) and on the
network (does the classifier flag the occluded hands? does the offset rotation Delta R move?).
From one pass over the split (all frames, inference mode), this prints:

* `gate`: per frame slot (t, t-k, t-2k), the share of frames the network's Eq. 5 gate calls
  usable, against the share the ground truth would (reading A on the finger labels: usable
  unless all five fingers are occluded);
* `delta_deg`: the angle of the network's offset rotation Delta R (mean, p50, p90, max);
* `own_rotation_deg`: the geodesic error against frame t's ground-truth rotation of each frame
  slot's own base rotation f(G) (frames t-k, t-2k: how far an earlier frame's estimate is from
  frame t's orientation, motion included), for frames whose hand is occluded (the ground-truth
  hand label of frame t) and the others;
* `oracle`: the error if frame t took the base rotation of the most recent frame whose hand the
  ground truth calls visible (frame t's own when none is): overall, on hand-occluded frames, and
  on those of them with a visible earlier frame (the only ones the enquiry can help).

Writes `enquiry_oracle.json` in `--out` (default: the workdir). `--split validation` (the train
sequences the run held out) is the place to choose settings; the test split is for reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

HAND_HEAD = 5  # the global head of the 6 occlusion labels


def oracle_choice(hand_occluded: np.ndarray) -> np.ndarray:
    """The frame slot the oracle enquiry takes for each sample: the first (most recent) slot
    whose hand is visible, else 0. `hand_occluded` [N, T] bool -> [N] int."""
    hand_occluded = np.asarray(hand_occluded, bool)
    if hand_occluded.ndim != 2:
        raise ValueError(f"hand_occluded must have shape [N, T]; got {hand_occluded.shape}")
    visible = ~hand_occluded
    return np.where(visible.any(axis=1), np.argmax(visible, axis=1), 0)


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if np.size(values) else None


def enquiry_report(own_error_deg: np.ndarray, hand_occluded: np.ndarray, usable: np.ndarray,
                   fingers_occluded: np.ndarray, delta_deg: np.ndarray) -> dict[str, Any]:
    """The report (module docstring) from per-sample arrays: `own_error_deg` [N, T] (each slot's
    base rotation against frame t's ground truth), `hand_occluded` [N, T] (ground-truth hand
    label), `usable` [N, T] (the network's gate), `fingers_occluded` [N, T, 5] (labels) and
    `delta_deg` [N] (the offset rotation's angle)."""
    own_error_deg = np.asarray(own_error_deg, np.float64)
    hand_occluded = np.asarray(hand_occluded, bool)
    count, frames = own_error_deg.shape
    for name, value, shape in (("hand_occluded", hand_occluded, (count, frames)),
                               ("usable", np.asarray(usable), (count, frames)),
                               ("fingers_occluded", np.asarray(fingers_occluded), (count, frames, 5)),
                               ("delta_deg", np.asarray(delta_deg), (count,))):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got {value.shape}")
    choice = oracle_choice(hand_occluded)
    oracle = own_error_deg[np.arange(count), choice]
    occluded = hand_occluded[:, 0]
    helped = occluded & (choice > 0)
    groups = {"all": np.ones(count, bool), "hand_occluded": occluded, "hand_visible": ~occluded}
    delta = np.asarray(delta_deg, np.float64)
    return {
        "num_samples": int(count),
        "num_hand_occluded": int(occluded.sum()),
        "num_with_visible_earlier_frame": int(helped.sum()),
        "gate": {"usable_share": np.mean(np.asarray(usable) > 0, axis=0).tolist(),
                 "ground_truth_usable_share": np.mean(~np.asarray(fingers_occluded, bool).all(-1), axis=0).tolist()},
        "delta_deg": {"mean": _mean(delta), "p50": float(np.quantile(delta, 0.5)) if count else None,
                      "p90": float(np.quantile(delta, 0.9)) if count else None,
                      "max": float(delta.max()) if count else None},
        "own_rotation_deg": {name: [_mean(own_error_deg[sel, t]) for t in range(frames)]
                             for name, sel in groups.items()},
        "oracle": {"all": [_mean(oracle), _mean(own_error_deg[:, 0])],
                   "hand_occluded": [_mean(oracle[occluded]), _mean(own_error_deg[occluded, 0])],
                   "with_visible_earlier_frame": [_mean(oracle[helped]), _mean(own_error_deg[helped, 0])]},
    }


def format_report(report: dict[str, Any]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    gate, delta, own, oracle = report["gate"], report["delta_deg"], report["own_rotation_deg"], report["oracle"]
    lines = [
        f"{report['num_samples']} samples, {report['num_hand_occluded']} with frame t's hand occluded, "
        f"{report['num_with_visible_earlier_frame']} of them with a visible earlier frame",
        "Eq. 5 gate, share usable per slot (t, t-k, t-2k): network "
        + " / ".join(f"{100 * v:.1f}" for v in gate["usable_share"]) + " %, ground truth (reading A) "
        + " / ".join(f"{100 * v:.1f}" for v in gate["ground_truth_usable_share"]) + " %",
        f"offset rotation Delta R (deg): mean {fmt(delta['mean'])}, p50 {fmt(delta['p50'])}, "
        f"p90 {fmt(delta['p90'])}, max {fmt(delta['max'])}",
        "each slot's own base rotation vs frame t's ground truth (deg, slots t / t-k / t-2k):",
    ]
    lines += [f"  {name:14s} " + " / ".join(fmt(v) for v in values) for name, values in own.items()]
    lines.append("oracle enquiry (most recent visible frame's own rotation) vs frame t's own (deg):")
    lines += [f"  {name:27s} {fmt(values[0])} vs {fmt(values[1])}" for name, values in oracle.items()]
    return "\n".join(lines)


def run_enquiry_oracle(workdir: str, split: str = "validation", checkpoint: str = "best", batch_size: int = 16,
                       out_dir: str | None = None, model_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One pass of the run's network over `split` (all frames); writes and returns the report."""
    import jax
    import jax.numpy as jnp

    from data_loaders.pipeline import make_eval_dataset
    from experiments.common import UserError, restore_run
    from experiments.evaluate import evaluation_source
    from h2o_jax.ops import geodesic_distance

    config, model, variables, step = restore_run(workdir, checkpoint, model_overrides=model_overrides)
    if not model.config.orientation_fusion:
        raise UserError(f"{workdir!r} is a {config.model.variant!r} run: the enquiry needs an HO variant "
                        "(B+D+MF+FO+HO)")
    source = evaluation_source(config.data, split)
    dataset = make_eval_dataset(source, batch_size, shard_index=0, shard_count=1)
    frames = model.config.num_frames
    forward = jax.jit(lambda images: model.apply(variables, images, train=False, all_frames=True))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("own", "hand", "usable", "fingers", "delta")}
    for number in range(len(dataset)):
        batch = dataset[number]
        outputs = jax.device_get(forward(jnp.asarray(batch["image"][:, :frames])))
        keep = (np.asarray(batch["mask"]) > 0) & (np.asarray(batch["occ_label_mask"])[:, :frames] > 0).all(1)
        target = np.asarray(batch["rot_mat"])[keep, 0]
        own = [np.degrees(np.asarray(geodesic_distance(np.asarray(outputs["rot_mat"])[keep, t], target)))
               for t in range(frames)]
        labels = np.asarray(batch["occ_labels"])[keep, :frames]
        delta = np.asarray(outputs["delta_rot_mat"])[keep]
        cosine = np.clip((np.trace(delta, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
        parts["own"].append(np.stack(own, 1))
        parts["hand"].append(labels[..., HAND_HEAD] == 1)
        parts["usable"].append(np.asarray(outputs["hand_usable"])[keep])
        parts["fingers"].append(labels[..., :5] == 1)
        parts["delta"].append(np.degrees(np.arccos(cosine)))
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    report = enquiry_report(joined["own"], joined["hand"], joined["usable"], joined["fingers"], joined["delta"])
    report.update(workdir=os.path.abspath(workdir), split=split, checkpoint=checkpoint, step=int(step),
                  model_overrides=dict(model_overrides or {}))
    print(format_report(report))
    out_dir = out_dir or workdir
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "enquiry_oracle.json")
    with open(path, "w") as file:
        json.dump(report, file, indent=1)
    print(f"report: {path}")
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m experiments.enquiry_oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a multi-frame (HO) training run or published model")
    parser.add_argument("--split", default="validation", help="'validation' (held-out train sequences) or a split")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=None, help="output folder (default: the workdir)")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an inference switch of the network (as in experiments.evaluate)")
    args = parser.parse_args(argv)
    from experiments.common import UserError, parse_model_overrides

    if args.batch_size < 1:
        sys.exit("error: --batch-size must be >= 1")
    try:
        return run_enquiry_oracle(args.workdir, args.split, args.checkpoint, args.batch_size, args.out,
                                  parse_model_overrides(args.model_set))
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
