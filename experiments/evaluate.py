"""The paper's evaluation (Tables 1-3, Fig. 4) of a trained run on one split of a prepared dataset.

    python -m experiments.evaluate --workdir runs/synthetic_cpu
    python -m experiments.evaluate --workdir runs/dexycb_s2 --split test --checkpoint best
    python -m experiments.evaluate --workdir runs/ho3d_s2 --split evaluation   # HO3D: writes pred.zip
    python -m experiments.evaluate --workdir runs/official_mf --dataset dexycb --data-dir ~/tfds
    python -m experiments.evaluate --workdir runs/synthetic_cpu --split validation   # for choosing settings

Restores the run (`<workdir>/config.json`, its `topology.npz` and its orbax checkpoint), predicts
frame 0 of every triplet of the split in fixed-shape padded batches (one compile), and computes
the metrics of the official benchmark on the frame-0 outputs `joints_r_m` / `verts_r_m`: both
sides root-centred on their own joint 0 (Dex-YCB protocol; equal to HO3D's wrist translation),
J-PE / V-PE (mean per-point error), their Procrustes-aligned versions (PA-, similarity
transform per sample), the AUC of each over 0-50 mm, and F@5 / F@15 before and after the vertex
Procrustes, in mm (`h2o_jax/metrics.py` documents each formula). Per-sample metrics run in
float64, as the official scorer does. Results are given overall and by the ground-truth
occlusion category of frame 0 (none / some fingers / whole hand; samples without occlusion
labels count only overall). A model with an occlusion classifier also gets the classifier's
per-finger precision / recall and its fusion weights on occluded vs visible fingers
(`experiments/occlusion_stats.py`, key "occlusion" of the report).

By default the run is scored on its own dataset (`data.name`, `data.data_dir` of its config);
`--dataset NAME` (and `--data-dir DIR`) score it on any other prepared dataset whose meshes
have the run's vertex count, with that dataset's frame gap. `--split validation` scores the
train sequences the run held out (`data.val_sequences`): the place to compare settings, since
the test split is for reporting.

Outputs in `--out` (default: the workdir): `eval_<split>.json` (`eval_<dataset>_<split>.json`
with `--dataset`), `auc_<split>.png` (3D PCK vs threshold, the paper's Fig. 4) and, for a split
without 3D labels (HO3D-v2 `evaluation`, label_valid = 0), the competition file `pred.zip`
instead of metrics.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from data_loaders.pipeline import FirstSamples
from data_loaders.validation import SpreadSamples
from experiments.common import DATASET_GAPS, UserError, parse_model_overrides, restore_run, sample_source
from experiments.occlusion_stats import OcclusionStats, format_occlusion_table
from h2o_jax.metrics import OCCLUSION_CATEGORIES, MetricAccumulator, root_align, sample_metrics

# Column name -> key of `MetricAccumulator` reports, in the paper's Table 1 order (PA first).
TABLE_COLUMNS = (
    ("PA-J-PE", "pa_j_pe_mm"), ("PA-J-AUC", "pa_j_auc"), ("PA-V-PE", "pa_v_pe_mm"), ("PA-V-AUC", "pa_v_auc"),
    ("PA-F@5", "pa_f5"), ("PA-F@15", "pa_f15"), ("J-PE", "j_pe_mm"), ("J-AUC", "j_auc"), ("V-PE", "v_pe_mm"),
    ("V-AUC", "v_auc"), ("F@5", "f5"), ("F@15", "f15"),
)


@jax.jit
def _batch_metrics(pred_joints, pred_verts, gt_joints, gt_verts):
    pred_joints, pred_verts = root_align(pred_joints, pred_verts)
    gt_joints, gt_verts = root_align(gt_joints, gt_verts)
    return sample_metrics(pred_joints, pred_verts, gt_joints, gt_verts)


class MetricCollector:
    """Adds batches of frame-0 predictions and ground truth; reports the paper's metrics.

    Lengths in metres. Both sides are root-centred here (on their own joint 0), so callers may
    pass camera-frame or root-relative coordinates.
    """

    def __init__(self) -> None:
        self.accumulator = MetricAccumulator()
        self.num_samples = 0

    def add(self, pred_joints_m: np.ndarray, pred_verts_m: np.ndarray, gt_joints_m: np.ndarray,
            gt_verts_m: np.ndarray, occ_labels: np.ndarray | None = None, occ_valid: np.ndarray | None = None,
            keep: np.ndarray | None = None) -> None:
        """One batch: joints [B, 21, 3], vertices [B, V, 3] (prediction and GT), `occ_labels` [B, 6]
        (1 = occluded; thumb..little, global), `occ_valid` [B] (0: no labels, the sample counts
        only overall), `keep` [B] (0: padding, ignored)."""
        pred_joints_m, gt_joints_m = np.asarray(pred_joints_m), np.asarray(gt_joints_m)
        pred_verts_m, gt_verts_m = np.asarray(pred_verts_m), np.asarray(gt_verts_m)
        batch = pred_joints_m.shape[0]
        if pred_joints_m.ndim != 3 or pred_joints_m.shape[1:] != (21, 3) or gt_joints_m.shape != pred_joints_m.shape:
            raise ValueError(f"pred/gt joints must both have shape [B, 21, 3]; got {pred_joints_m.shape} and "
                             f"{gt_joints_m.shape}")
        if pred_verts_m.ndim != 3 or pred_verts_m.shape[0] != batch or pred_verts_m.shape[2] != 3 \
                or gt_verts_m.shape != pred_verts_m.shape:
            raise ValueError(f"pred/gt vertices must both have shape [B={batch}, V, 3]; got {pred_verts_m.shape} "
                             f"and {gt_verts_m.shape}")
        keep = np.ones(batch, bool) if keep is None else np.asarray(keep) > 0
        if occ_labels is None:
            occ_labels, occ_valid = np.zeros((batch, 6), np.int32), np.zeros(batch, bool)
        occ_labels = np.asarray(occ_labels)
        if occ_labels.shape != (batch, 6):
            raise ValueError(f"occ_labels must have shape [B={batch}, 6]; got {occ_labels.shape}")
        occ_valid = np.ones(batch, bool) if occ_valid is None else np.asarray(occ_valid) > 0
        if keep.shape != (batch,) or occ_valid.shape != (batch,):
            raise ValueError(f"keep and occ_valid must have shape [B={batch}]; got {keep.shape}, {occ_valid.shape}")
        # float64 as the official scorer (it reads JSON): Procrustes of near-identical sets and the
        # AUC's threshold at exactly 0 are sensitive to float32 rounding.
        with jax.enable_x64(True):
            metrics = jax.device_get(_batch_metrics(*(np.asarray(a, np.float64) for a in (
                pred_joints_m, pred_verts_m, gt_joints_m, gt_verts_m))))
        # Samples without occlusion labels get no category (they would all read "none").
        self.accumulator.add(metrics, mask=keep & occ_valid, occ_labels=occ_labels)
        self.accumulator.add(metrics, mask=keep & ~occ_valid, occ_labels=None)
        self.num_samples += int(keep.sum())

    def results(self) -> dict[str, Any]:
        """{"overall": report, "by_occlusion": {none|fingers|hand: report}} (mm, fractions)."""
        return self.accumulator.results()

    def errors(self, key: str) -> np.ndarray:
        """Per-point errors [S, N] in metres of one kind (joint_err, vert_err, pa_joint_err, pa_vert_err)."""
        return self.accumulator.errors(key)


def evaluate_predictions(pred_joints_m: np.ndarray, pred_verts_m: np.ndarray, gt_joints_m: np.ndarray,
                         gt_verts_m: np.ndarray, occ_labels: np.ndarray | None = None,
                         occ_valid: np.ndarray | None = None, chunk_size: int = 16) -> dict[str, Any]:
    """The paper's metrics of S samples: joints [S, 21, 3], vertices [S, V, 3] in metres (prediction
    and ground truth, any common origin: both are root-centred), `occ_labels` [S, 6] of frame 0,
    `occ_valid` [S]. Computed in fixed chunks (padding masked) so that one compile serves all."""
    pred_joints_m = np.asarray(pred_joints_m)
    count = pred_joints_m.shape[0] if pred_joints_m.ndim == 3 else 0
    if count == 0:
        raise ValueError(f"pred_joints_m must have shape [S > 0, 21, 3]; got {pred_joints_m.shape}")
    arrays = [pred_joints_m, pred_verts_m, gt_joints_m, gt_verts_m]
    arrays += [np.zeros((count, 6), np.int32) if occ_labels is None else occ_labels,
               np.zeros(count) if occ_labels is None else (np.ones(count) if occ_valid is None else occ_valid)]
    arrays = [np.asarray(a) for a in arrays]
    for name, a in zip(("pred_verts_m", "gt_joints_m", "gt_verts_m", "occ_labels", "occ_valid"), arrays[1:]):
        if a.shape[:1] != (count,):
            raise ValueError(f"{name} must hold S={count} samples on its first axis; got shape {a.shape}")
    collector = MetricCollector()
    for start in range(0, count, chunk_size):
        stop = min(start + chunk_size, count)
        # Pads repeat the last sample (finite geometry) and are masked out.
        index = np.minimum(np.arange(start, start + chunk_size), stop - 1)
        chunk = [a[index] for a in arrays]
        collector.add(*chunk[:5], occ_valid=chunk[5], keep=np.arange(start, start + chunk_size) < stop)
    return collector.results()


def format_table(results: dict[str, Any]) -> str:
    """The metrics as a text table: one row per group (overall, then occlusion categories)."""
    rows = [("overall", results["overall"])] + [(f"occl. {name}", results["by_occlusion"][name])
                                                for name in OCCLUSION_CATEGORIES if name in results["by_occlusion"]]
    header = f"{'':15s}{'N':>7s}" + "".join(f"{title:>10s}" for title, _ in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for name, report in rows:
        # AUC and F as percentages, as the paper's tables print them.
        cells = [report[key] if key.endswith("_mm") else 100 * report[key] for _, key in TABLE_COLUMNS]
        lines.append(f"{name:15s}{report['num_samples']:7d}" + "".join(f"{c:10.2f}" for c in cells))
    lines.append("PE in mm; AUC (0-50 mm) and F-scores in percent; both sides root-centred on joint 0.")
    return "\n".join(lines)


def _predict_function(model, variables):
    """jitted batch -> frame-0 outputs; single-frame variants see only the current frame."""
    from h2o_jax.training import TrainState, make_predict_step

    num_frames = model.config.num_frames
    predict = make_predict_step(model)
    state = TrainState(np.zeros((), np.int32), variables["params"], variables["batch_stats"], None)

    @jax.jit
    def run(state, images, occ_labels):
        # occ_labels feed only the FS ablation (an oracle by design: it picks frames by GT labels).
        outputs = predict(state, {"image": images[:, :num_frames], "occ_labels": occ_labels[:, :num_frames]})
        frame0 = {key: outputs[key][:, 0] for key in ("joints_r_m", "verts_r_m")}
        if "occ_logits" in outputs:  # [B, T, H, 2], all frames: the classifier and fusion statistics
            frame0["occ_logits"] = outputs["occ_logits"]
        return frame0

    return lambda batch: jax.device_get(run(state, batch["image"], batch["occ_labels"]))


def dataset_config(run_data, dataset: str | None, data_dir: str | None):
    """The run's `data` config, or a copy pointing at another dataset (its gap, its default
    evaluation split) and/or data folder; returns (config, default split, file prefix)."""
    data = copy.deepcopy(run_data)
    prefix = ""
    with data.unlocked():
        if dataset and dataset != run_data.name:
            gap = DATASET_GAPS.get(dataset.split("/")[0])
            if gap is None:
                raise UserError(f"unknown dataset {dataset!r}: use synthetic/tiny, synthetic/small, "
                                "synthetic/default, dexycb or ho3d_v2")
            data.name, data.gap = dataset, gap
            data.eval_split = "evaluation" if dataset == "ho3d_v2" else "test"
            prefix = dataset.replace("/", "_") + "_"
        if data_dir:
            data.data_dir = data_dir
    return data, data.get("eval_split", "test"), prefix


VALIDATION_SPLIT = "validation"


def evaluation_source(data, split: str):
    """Triplets of `split`, or with split "validation" the sequences a run held out of its train
    split (`data.val_sequences`, the slice its periodic evaluation scored): where settings are
    chosen, never on test."""
    if split != VALIDATION_SPLIT:
        return sample_source(data, split, train=False)
    from data_loaders.validation import hold_out_sequences

    num_sequences = int(data.get("val_sequences", 0) or 0)
    if num_sequences <= 0:
        raise UserError(f"--split {VALIDATION_SPLIT} needs a run that held train sequences out "
                        f"(data.val_sequences > 0); this run's data.val_sequences is {num_sequences}")
    return hold_out_sequences(sample_source(data, "train", train=False), num_sequences)[1]


def _baseline_collectors(data, topology):
    """Collectors of the constant-hand baselines (mean hand of the dataset's train split, rest
    hand), or None when the dataset has no labelled train split or other meshes."""
    from experiments.baselines import BaselineCollectors, baseline_constants
    from experiments.common import open_records

    try:
        records = open_records(data, "train")
    except UserError:
        return None
    if len(records) == 0 or np.shape(records[0]["verts_cam_m"])[0] != len(topology.template_vertices_m):
        return None
    try:
        return BaselineCollectors(baseline_constants(records, topology.template_vertices_m,
                                                     topology.joint_regressor))
    except ValueError:  # no labelled training record
        return None


def run_evaluation(workdir: str, split: str | None = None, checkpoint: str = "best", limit: int = 0,
                   batch_size: int = 16, out_dir: str | None = None, predict_fn=None, dataset: str | None = None,
                   data_dir: str | None = None, topology: str | None = None, spread: bool = False,
                   model_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluates the run in `workdir` on `split` (default: the dataset's eval split) of its own
    dataset or of `dataset` in `data_dir`; writes the outputs (module docstring) and returns the
    JSON report. `topology`, when given, must be the run's own (else a UserError).
    `predict_fn(batch) -> {joints_r_m [B, 21, 3], verts_r_m [B, V, 3]}` (and optionally
    occ_logits [B, T, H, 2]) replaces the network (tests). `model_overrides` set inference
    switches of the restored network (`experiments.common.INFERENCE_SWITCHES`)."""
    from data_loaders.pipeline import make_eval_dataset
    from experiments.reports import plot_auc, write_ho3d_submission, write_json_report

    if checkpoint not in ("best", "latest"):
        raise UserError(f"--checkpoint must be best or latest, got {checkpoint!r}")
    if batch_size < 1 or limit < 0:
        raise UserError(f"--batch-size must be >= 1 and --limit >= 0; got {batch_size} and {limit}")
    config, model, variables, step = restore_run(workdir, checkpoint, topology=topology, model_overrides=model_overrides)
    data, default_split, prefix = dataset_config(config.data, dataset, data_dir)
    split = split or default_split
    source = evaluation_source(data, split)
    if limit:
        # Records are whole sequences in order: the first `limit` cover only the first few.
        source = SpreadSamples(source, limit) if spread else FirstSamples(source, limit)
    if len(source) == 0:
        raise UserError(f"split {split!r} of {data.name!r} holds no samples")
    num_vertices = len(model.topology.template_vertices_m)
    if source[0]["verts_r_m"].shape[1] != num_vertices:
        raise UserError(f"the run's hand topology ({config.model.topology!r}) has {num_vertices} vertices but "
                        f"{data.name!r} meshes have {source[0]['verts_r_m'].shape[1]}: evaluate a run trained with "
                        "the topology the dataset was built with")
    predict_fn = predict_fn or _predict_function(model, variables)
    out_dir = out_dir or workdir
    os.makedirs(out_dir, exist_ok=True)

    collector = MetricCollector()
    occlusion = OcclusionStats(model.config.occ_fusion_score)
    baselines = _baseline_collectors(data, model.topology)
    unlabelled: dict[str, list[np.ndarray]] = {"joints": [], "verts": [], "roots": []}
    dataset = make_eval_dataset(source, batch_size, shard_index=0, shard_count=1)
    for number in range(len(dataset)):
        batch = dataset[number]
        outputs = predict_fn(batch)
        pred_joints, pred_verts = np.asarray(outputs["joints_r_m"]), np.asarray(outputs["verts_r_m"])
        # Pads and unlabelled samples both carry mask 0: tell them apart by position.
        real = number * batch_size + np.arange(batch_size) < len(source)
        labelled = real & (np.asarray(batch["mask"]) > 0)
        if labelled.any():
            collector.add(pred_joints, pred_verts, batch["joints_r_m"][:, 0], batch["verts_r_m"][:, 0],
                          batch["occ_labels"][:, 0], batch["occ_label_mask"][:, 0], keep=labelled)
            if baselines is not None:
                baselines.add(batch["joints_r_m"][:, 0], batch["verts_r_m"][:, 0], batch["occ_labels"][:, 0],
                              batch["occ_label_mask"][:, 0], keep=labelled)
        if "occ_logits" in outputs:
            frames = np.shape(outputs["occ_logits"])[1]
            occlusion.add(outputs["occ_logits"], batch["occ_labels"][:, :frames],
                          batch["occ_label_mask"][:, :frames], keep=real)
        todo = real & ~labelled
        if todo.any():
            unlabelled["joints"].append(pred_joints[todo])
            unlabelled["verts"].append(pred_verts[todo])
            # Unlabelled (HO3D evaluation) records keep the given wrist in joints_cam_m[0].
            unlabelled["roots"].append(np.asarray(batch["joints_cam_m"])[todo, 0, 0])
        print(f"\rbatch {number + 1}/{len(dataset)}", end="", flush=True)
    print(flush=True)

    report: dict[str, Any] = {"workdir": os.path.abspath(workdir), "dataset": data.name, "split": split,
                              "checkpoint": checkpoint, "step": int(step), "variant": config.model.variant,
                              "model_overrides": dict(model_overrides or {}),
                              "num_labelled": collector.num_samples,
                              "num_unlabelled": int(sum(len(r) for r in unlabelled["roots"]))}
    if collector.num_samples:
        report.update(collector.results())
        print(format_table(report))
        if baselines is not None:
            report["baselines"] = baselines.results()
            for name, results in report["baselines"].items():
                print(f"\nconstant {name.replace('_', ' ')} (experiments/baselines.py), same samples:")
                print(format_table(results))
        png = os.path.join(out_dir, f"auc_{prefix}{split}.png")
        plot_auc({"mesh, PA": collector.errors("pa_vert_err"), "mesh": collector.errors("vert_err"),
                  "joints, PA": collector.errors("pa_joint_err"), "joints": collector.errors("joint_err")},
                 png, title=f"3D PCK, {data.name} {split}")
        report["auc_png"] = png
    if occlusion.num_frames is not None:
        report["occlusion"] = occlusion.results()
        print("\n" + format_occlusion_table(report["occlusion"]))
    if report["num_unlabelled"] and not collector.num_samples:
        path = os.path.join(out_dir, "pred.zip")
        write_ho3d_submission(path, *(np.concatenate(unlabelled[k]) for k in ("joints", "verts", "roots")))
        report["submission"] = path
        print(f"{report['num_unlabelled']} unlabelled samples: submission written to {path}"
              + (" (--limit set: the server expects the whole split)" if limit else ""))
    elif report["num_unlabelled"]:
        print(f"note: {report['num_unlabelled']} samples without 3D labels were skipped")
    json_path = os.path.join(out_dir, f"eval_{prefix}{split}.json")
    write_json_report(report, json_path)
    print(f"report: {json_path}")
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training run directory (config.json + checkpoints)")
    parser.add_argument("--split", default=None, help="dataset split (default: the run's data.eval_split, "
                                                       "usually test; HO3D-v2: evaluation), or 'validation': "
                                                       "the train sequences the run held out")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N samples only (0 = all)")
    parser.add_argument("--spread", action="store_true", help="with --limit: N samples spread evenly over "
                                                                "the split instead of the first N")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=None, help="output folder (default: the workdir)")
    parser.add_argument("--dataset", default=None, help="score on this prepared dataset (synthetic/tiny|small|default, "
                                                         "dexycb, ho3d_v2) instead of the run's")
    parser.add_argument("--data-dir", default=None, help="the folder holding the prepared dataset (default: the "
                                                          "run's data.data_dir, else $TFDS_DATA_DIR)")
    parser.add_argument("--topology", default=None, help="a topology spec that must be the run's own (checked; "
                                                          "the run's topology.npz is used)")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an inference switch of the network (repeat): enquiry_rotation=offset|copy, "
                             "gate_logit_offset=FLOAT, hand_reading=A|B (h2o_jax.config.ModelConfig)")
    args = parser.parse_args(argv)
    from experiments.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    try:
        return run_evaluation(args.workdir, args.split, args.checkpoint, args.limit, args.batch_size, args.out,
                              dataset=args.dataset, data_dir=args.data_dir, topology=args.topology,
                              spread=args.spread, model_overrides=parse_model_overrides(args.model_set))
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
