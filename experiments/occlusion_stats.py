"""How a multi-frame run's occlusion classifier and fusion behave on a labelled split (issue 14).

Two things the paper's Eq. 2-4 rest on, measured on the ground-truth occlusion labels:
* the classifier: per head (thumb .. little, and the whole-hand head), on frame 0 of every sample,
  the confusion counts, precision and recall of the "occluded" class, accuracy, and the ROC AUC
  of its occluded-minus-visible logit (threshold-free: 0.5 means the features carry no occlusion
  information, near 1 means they do and only the decision threshold is off);
* the fusion: the per-finger weight each frame's feature gets (softmax over the T frames of the
  finger's score, `h2o_jax.ops.fusion.finger_scores`; 1/T means no preference), split by whether
  that finger is occluded in that frame; and the weight frame 0 keeps when its finger is occluded
  there but visible in an earlier frame (what fusion is for: below 1/T means it looks elsewhere).

Counts are float64 numpy, accumulated over batches; `results()` gives a JSON-ready dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from scipy.stats import rankdata

from h2o_jax.ops.fusion import NUM_FINGERS, finger_scores

HEAD_NAMES = ("thumb", "index", "middle", "ring", "little", "hand")
WEIGHT_QUANTILES = (0.1, 0.5, 0.9)


def finger_fusion_weights(occ_logits: np.ndarray, score: str = "visible_prob") -> np.ndarray:
    """Per-finger fusion weights [B, T, 5] of occlusion logits [B, T, H>=5, 2] (softmax over T)."""
    return softmax(np.asarray(finger_scores(occ_logits, score), np.float64), axis=1)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` [N] for the boolean labels `positive` [N]: the chance
    that a random positive scores above a random negative (ties count 1/2; the Mann-Whitney U
    statistic over the average ranks). None when either class is empty."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(f"scores and positive must both have shape [N]; got {scores.shape}, {positive.shape}")
    num_pos = int(positive.sum())
    num_neg = positive.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks for ties, 1-based
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def _summary(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0}
    out: dict[str, Any] = {"count": int(values.size), "mean": float(values.mean())}
    out.update({f"p{round(100 * q)}": float(np.quantile(values, q)) for q in WEIGHT_QUANTILES})
    return out


class OcclusionStats:
    """Accumulates classifier outcomes and fusion weights over batches (module docstring)."""

    def __init__(self, score: str = "visible_prob") -> None:
        self.score = score
        self.confusion = np.zeros((len(HEAD_NAMES), 2, 2), np.int64)  # [head, true, predicted]
        self.weights: dict[str, list[np.ndarray]] = {"occluded": [], "visible": [], "frame0_occluded_seen_before": []}
        self.num_frames: int | None = None
        self.margins: list[np.ndarray] = []  # frame-0 occluded-minus-visible logits [rows, H]
        self.labels: list[np.ndarray] = []  # frame-0 labels [rows, 6]

    def add(self, occ_logits: np.ndarray, occ_labels: np.ndarray, label_mask: np.ndarray,
            keep: np.ndarray | None = None) -> None:
        """One batch: logits [B, T, H, 2] (class 1 = occluded; H = 5 or 6), labels [B, T, 6]
        (1 = occluded), label_mask [B, T] (1 where labels exist), keep [B] (0: padding)."""
        occ_logits, occ_labels = np.asarray(occ_logits, np.float64), np.asarray(occ_labels)
        label_mask = np.asarray(label_mask) > 0
        if occ_logits.ndim != 4 or occ_logits.shape[-1] != 2 or occ_logits.shape[2] < NUM_FINGERS:
            raise ValueError(f"occ_logits must have shape [B, T, H>=5, 2]; got {occ_logits.shape}")
        batch, frames, heads = occ_logits.shape[:3]
        if occ_labels.shape != (batch, frames, len(HEAD_NAMES)):
            raise ValueError(f"occ_labels must have shape [B={batch}, T={frames}, 6]; got {occ_labels.shape}")
        if label_mask.shape != (batch, frames):
            raise ValueError(f"label_mask must have shape [B={batch}, T={frames}]; got {label_mask.shape}")
        if not np.isin(occ_labels, (0, 1)).all():
            raise ValueError(f"occ_labels must hold 0 (visible) or 1 (occluded); got values {np.unique(occ_labels)}")
        occ_labels = occ_labels.astype(np.int64)
        keep = np.ones(batch, bool) if keep is None else np.asarray(keep) > 0
        if keep.shape != (batch,):
            raise ValueError(f"keep must have shape [B={batch}]; got {keep.shape}")
        if self.num_frames not in (None, frames):
            raise ValueError(f"occ_logits has T={frames} frames but earlier batches had {self.num_frames}")
        self.num_frames = frames

        predicted = occ_logits.argmax(-1)  # [B, T, H]
        rows = keep & label_mask[:, 0]
        for head in range(min(heads, len(HEAD_NAMES))):
            np.add.at(self.confusion[head], (occ_labels[rows, 0, head], predicted[rows, 0, head]), 1)
        self.margins.append(occ_logits[rows, 0, :, 1] - occ_logits[rows, 0, :, 0])
        self.labels.append(occ_labels[rows, 0])

        weights = finger_fusion_weights(occ_logits, self.score)  # [B, T, 5]
        fingers_occluded = occ_labels[..., :NUM_FINGERS] == 1  # [B, T, 5]
        # Fusion weights are compared only where every frame of the sample is labelled.
        full = (keep & label_mask.all(axis=1))[:, None, None]
        self.weights["occluded"].append(weights[full & fingers_occluded])
        self.weights["visible"].append(weights[full & ~fingers_occluded])
        seen_before = fingers_occluded[:, 0] & (~fingers_occluded[:, 1:]).any(axis=1)  # [B, 5]
        self.weights["frame0_occluded_seen_before"].append(weights[:, 0][full[:, 0] & seen_before])

    def results(self) -> dict[str, Any]:
        """{"classifier": {head: counts, precision, recall, accuracy}, "fusion_weights": {...}}."""
        classifier = {}
        margins = np.concatenate(self.margins) if self.margins else np.zeros((0, len(HEAD_NAMES)))
        labels = np.concatenate(self.labels) if self.labels else np.zeros((0, len(HEAD_NAMES)), np.int64)
        for head, name in enumerate(HEAD_NAMES):
            (tn, fp), (fn, tp) = self.confusion[head]
            total = int(self.confusion[head].sum())
            if total == 0:
                continue
            classifier[name] = {
                "num_samples": total, "num_occluded": int(fn + tp), "true_positive": int(tp),
                "false_positive": int(fp), "false_negative": int(fn), "true_negative": int(tn),
                # None where undefined (nothing predicted / nothing occluded), never a silent 0.
                "precision": float(tp / (tp + fp)) if tp + fp else None,
                "recall": float(tp / (tp + fn)) if tp + fn else None,
                "accuracy": float((tp + tn) / total),
                "roc_auc": roc_auc(margins[:, head], labels[:, head] == 1),
            }
        fusion = {"uniform": 1.0 / self.num_frames if self.num_frames else None}
        fusion.update({key: _summary(np.concatenate(parts) if parts else np.zeros(0))
                       for key, parts in self.weights.items()})
        return {"classifier": classifier, "fusion_weights": fusion}


def format_occlusion_table(results: dict[str, Any]) -> str:
    """The classifier's per-head precision / recall and the fusion-weight summaries as text."""
    lines = [f"{'occlusion head':15s}{'N':>6s}{'occluded':>10s}{'precision':>11s}{'recall':>8s}{'accuracy':>10s}"
             f"{'ROC AUC':>9s}"]
    fmt = lambda v: f"{100 * v:.1f}" if v is not None else "-"  # noqa: E731
    for name, c in results["classifier"].items():
        auc = "-" if c.get("roc_auc") is None else f"{c['roc_auc']:.3f}"
        lines.append(f"{name:15s}{c['num_samples']:6d}{c['num_occluded']:10d}{fmt(c['precision']):>11s}"
                     f"{fmt(c['recall']):>8s}{fmt(c['accuracy']):>10s}{auc:>9s}")
    fusion = results["fusion_weights"]
    lines.append(f"fusion weight per finger and frame (uniform = {fusion['uniform']:.3f}):")
    for key in ("visible", "occluded", "frame0_occluded_seen_before"):
        s = fusion[key]
        text = "no samples" if not s["count"] else (
            f"mean {s['mean']:.3f}  p10 {s['p10']:.3f}  p50 {s['p50']:.3f}  p90 {s['p90']:.3f}  (n = {s['count']})")
        lines.append(f"  {key.replace('_', ' '):32s}{text}")
    lines.append("precision / recall of the 'occluded' class on frame 0, in percent.")
    return "\n".join(lines)
