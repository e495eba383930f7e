"""Is a run learning? What the paper's metrics do not show, on the run's own evaluation samples.

    python -m experiments.diagnose --workdir runs/synthetic_cpu [--checkpoint latest] [--limit 64]

The samples are those the run evaluated on during training: the validation slice when it held
sequences out (`data.val_sequences`), else its `data.eval_split`, capped by `--limit` (spread over
the source). Frame 0 of every sample, inference mode. Each quantity is given next to what a
constant prediction (from the run's training records) scores, because the Procrustes-aligned
errors alone cannot tell a hand of average articulation from a learned one:

* `articulation`: the standard deviation over samples of the predicted canonical vertices (mm,
  mean over vertices and axes) against the ground truth's: near 0 means one hand for every image;
  and the mean per-vertex distance of the canonical mesh to its target against the constant
  mean canonical hand of the training records;
* `rotation`: the mean geodesic angle (degrees) of the global rotation against the constant mean
  rotation of the training records;
* `joints_2d`: the L1 of the crop-normalised 2D joints (the `joint_img_loss` measure) against the
  training records' mean 2D joints;
* `decoder`: per spiral layer of the mesh decoder (coarse to fine, before its ReLU), the fraction
  of units above 0 (the rest pass nothing and get no gradient) and the spread over samples
  relative to the mean magnitude (how much the image still moves the feature).

Writes `diagnose.json` in `--out` (default: the workdir) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_loaders.features import CROP_SIZE_PX


def spread_mm(points_m: np.ndarray) -> float:
    """Standard deviation over samples of [N, P, 3] points (metres), averaged over points and
    axes, in mm."""
    return float(np.mean(np.std(np.asarray(points_m, np.float64), axis=0)) * 1000.0)


def mean_distance_mm(pred_m: np.ndarray, target_m: np.ndarray) -> float:
    """Mean Euclidean distance of [N, P, 3] points to their targets, in mm."""
    diff = np.asarray(pred_m, np.float64) - np.asarray(target_m, np.float64)
    return float(np.mean(np.linalg.norm(diff, axis=-1)) * 1000.0)


def mean_angle_deg(pred_rot: np.ndarray, target_rot: np.ndarray) -> float:
    """Mean geodesic angle between [N, 3, 3] rotations (`h2o_jax.ops.geodesic_distance`), in degrees."""
    from h2o_jax.ops import geodesic_distance

    return float(np.degrees(np.mean(np.asarray(geodesic_distance(pred_rot, target_rot), np.float64))))


def activation_stats(pre_activations: np.ndarray) -> dict[str, float]:
    """{alive_fraction, relative_spread} of [N, ...] pre-ReLU features: the fraction of entries
    above 0, and the standard deviation over samples (mean over units) divided by the mean
    magnitude."""
    values = np.asarray(pre_activations, np.float64)
    magnitude = float(np.mean(np.abs(values)))
    spread = float(np.mean(np.std(values, axis=0)))
    return {"alive_fraction": float(np.mean(values > 0)),
            "relative_spread": spread / magnitude if magnitude > 0 else 0.0}


def training_constants(records) -> dict[str, np.ndarray]:
    """The constant predictions the diagnostics compare with, from training records: the mean
    canonical vertices [V, 3], the mean rotation [3, 3] and the mean 2D joints [21, 2] (crop-
    normalised), each over up to 4000 evenly spread labelled records (read once)."""
    from experiments.baselines import HAND_LABEL_KEYS, labelled_arrays, mean_canonical_hand_of

    labels = labelled_arrays(records, HAND_LABEL_KEYS + ("joints_img_px",), caller="training_constants")
    _, verts_c, rotation = mean_canonical_hand_of(labels)
    return {"verts_c_m": verts_c, "rot_mat": rotation,
            "joints_img": np.mean(labels["joints_img_px"], 0) / CROP_SIZE_PX}


_DECODER_LAYER = re.compile(r"de_layer_\d+")  # the spiral layers, not de_layer_conv


def _is_decoder_layer(module, method_name: str) -> bool:
    return method_name == "__call__" and _DECODER_LAYER.fullmatch(module.name or "") is not None


def _decoder_layers(intermediates: dict) -> list[tuple[str, np.ndarray]]:
    """The mesh decoder's spiral layers' outputs (pre-ReLU), coarse to fine, from flax's
    captured intermediates of one forward."""
    decoder = intermediates.get("decoder3d", {})
    names = sorted((k for k in decoder if _DECODER_LAYER.fullmatch(k)), key=lambda k: int(k.rsplit("_", 1)[1]))
    return [(name, np.asarray(decoder[name]["__call__"][0])) for name in names]


def diagnose(predictions: dict[str, np.ndarray], targets: dict[str, np.ndarray],
             constants: dict[str, np.ndarray], decoder_layers: Sequence[tuple[str, np.ndarray]] = ()) -> dict[str, Any]:
    """The report from frame-0 predictions and targets ({verts_c_m [N, V, 3], rot_mat [N, 3, 3],
    uv / joints_img [N, 21, 2]}) and `training_constants`."""
    count = len(targets["verts_c_m"])
    constant_verts = np.broadcast_to(constants["verts_c_m"], targets["verts_c_m"].shape)
    constant_rot = np.broadcast_to(constants["rot_mat"], targets["rot_mat"].shape)
    l1_2d = lambda pred: float(np.mean(np.abs(np.asarray(pred, np.float64) - targets["joints_img"])))  # noqa: E731
    return {
        "num_samples": int(count),
        "articulation": {
            "pred_spread_mm": spread_mm(predictions["verts_c_m"]),
            "target_spread_mm": spread_mm(targets["verts_c_m"]),
            "canonical_error_mm": mean_distance_mm(predictions["verts_c_m"], targets["verts_c_m"]),
            "constant_canonical_error_mm": mean_distance_mm(constant_verts, targets["verts_c_m"]),
        },
        "rotation": {
            "angle_deg": mean_angle_deg(predictions["rot_mat"], targets["rot_mat"]),
            "constant_angle_deg": mean_angle_deg(constant_rot, targets["rot_mat"]),
        },
        "joints_2d": {
            "l1": l1_2d(predictions["uv"]),
            "constant_l1": l1_2d(np.broadcast_to(constants["joints_img"], targets["joints_img"].shape)),
        },
        "decoder": {name: activation_stats(values) for name, values in decoder_layers},
    }


def format_report(report: dict[str, Any]) -> str:
    art, rot, uv = report["articulation"], report["rotation"], report["joints_2d"]
    lines = [
        f"{report['num_samples']} samples, frame 0 | model | constant / target",
        f"canonical mesh spread over samples (mm) | {art['pred_spread_mm']:.2f} | {art['target_spread_mm']:.2f} (target)",
        f"canonical mesh error (mm) | {art['canonical_error_mm']:.2f} | {art['constant_canonical_error_mm']:.2f} (mean canonical hand)",
        f"global rotation error (deg) | {rot['angle_deg']:.1f} | {rot['constant_angle_deg']:.1f} (mean rotation)",
        f"2D joints L1 (crop units) | {uv['l1']:.4f} | {uv['constant_l1']:.4f} (mean 2D joints)",
    ]
    for name, stats in report["decoder"].items():
        lines.append(f"decoder {name}: {100 * stats['alive_fraction']:.1f} % of units > 0, "
                     f"spread over samples / magnitude {stats['relative_spread']:.3f}")
    return "\n".join(lines)


def run_diagnosis(workdir: str, checkpoint: str = "best", limit: int = 64, batch_size: int = 16,
                  out: str | None = None) -> dict[str, Any]:
    from data_loaders.validation import SpreadSamples
    from experiments.common import UserError, restore_run
    from experiments.train import training_sources

    config, model, variables, step = restore_run(workdir, checkpoint)
    config.unlock()
    config.train.eval_every = max(int(config.train.eval_every), 1)  # the evaluation source, always
    config.data.eval_limit = 0
    train_source, eval_source = training_sources(config)
    if limit:
        eval_source = SpreadSamples(eval_source, limit)
    if len(eval_source) == 0:
        raise UserError(f"the run in {workdir!r} has no evaluation samples")
    records = getattr(train_source, "records", None)
    if records is None:
        raise UserError(f"the run in {workdir!r} trains on a source without records: no training constants")
    constants = training_constants(records)
    num_frames = model.config.num_frames

    @jax.jit
    def forward(images):
        outputs, captured = model.apply(variables, images, train=False, all_frames=False,
                                        capture_intermediates=_is_decoder_layer, mutable=["intermediates"])
        return outputs, captured["intermediates"]

    keys = ("verts_c_m", "rot_mat", "joints_img")
    predictions: dict[str, list] = {"verts_c_m": [], "rot_mat": [], "uv": []}
    targets: dict[str, list] = {k: [] for k in keys}
    layers: dict[str, list] = {}
    for start in range(0, len(eval_source), batch_size):
        items = [eval_source[i] for i in range(start, min(start + batch_size, len(eval_source)))]
        valid = len(items)
        items += [items[-1]] * (batch_size - valid)  # fixed shapes: one compile
        images = jnp.asarray(np.stack([item["image"][:num_frames] for item in items]))
        outputs, intermediates = forward(images)
        for key in predictions:
            predictions[key].append(np.asarray(outputs[key][:valid, 0]))
        for key in keys:
            targets[key].append(np.stack([item[key][0] for item in items[:valid]]))
        for name, values in _decoder_layers(intermediates):
            # Every frame of the valid samples (the encoder runs per frame).
            layers.setdefault(name, []).append(values.reshape(batch_size, num_frames, *values.shape[1:])[:valid])
    report = diagnose({k: np.concatenate(v) for k, v in predictions.items()},
                      {k: np.concatenate(v) for k, v in targets.items()}, constants,
                      [(name, np.concatenate(v).reshape(-1, *v[0].shape[2:])) for name, v in layers.items()])
    report.update(workdir=os.path.abspath(workdir), checkpoint=checkpoint, step=int(step))
    out_dir = out or workdir
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "diagnose.json"), "w") as file:
        json.dump(report, file, indent=1)
    print(f"{workdir} ({checkpoint} checkpoint, step {step})")
    print(format_report(report))
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m experiments.diagnose", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training run directory (config.json + checkpoints)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.add_argument("--limit", type=int, default=64, help="N samples spread over the evaluation source (0 = all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=None, help="output folder (default: the workdir)")
    args = parser.parse_args(argv)
    from experiments.common import UserError

    if args.limit < 0 or args.batch_size < 1:
        sys.exit("error: --limit must be >= 0 and --batch-size >= 1")
    try:
        return run_diagnosis(args.workdir, args.checkpoint, args.limit, args.batch_size, args.out)
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
