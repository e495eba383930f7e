"""The paper's evaluation metrics, as the official HO3D/FreiHAND scorer computes them.

Per-sample functions are pure JAX (jit/vmap-able, for use inside an eval step); the dataset-level
aggregation is float64 numpy, as the official scorer is (metrics.md):
* J-PE / V-PE: Euclidean error per point, mean over samples per point, then mean over points.
* PA-*: the same after the HO3D Procrustes (`h2o_jax.ops.procrustes_align`), joints and
  vertices aligned independently.
* AUC: PCK (error <= t) at 100 thresholds linspace(0, 0.05 m), trapezoid area / 0.05 per point,
  mean over points.
* F@5 / F@15: nearest neighbours both ways between the vertex sets, fractions strictly below
  5 mm / 15 mm, F = 2ab / (a + b) (0 when both are 0), mean over samples.
Root alignment (Dex-YCB: both sides minus their own joint 0) is the caller's choice; see
`root_align`.

Shape letters: N points (21 joints or V vertices). Lengths in metres; reports in millimetres.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.ops import procrustes_align, root_relative

AUC_MAX_M = 0.05
AUC_NUM_THRESHOLDS = 100
F_THRESHOLDS_M = (0.005, 0.015)
OCCLUSION_CATEGORIES = ("none", "fingers", "hand")


def point_errors(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Euclidean distance per point: [..., N, 3] x2 -> [..., N]."""
    return jnp.linalg.norm(pred - target, axis=-1)


def pa_point_errors(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Errors after aligning `pred` to `target` with the HO3D Procrustes: [..., N]."""
    return point_errors(procrustes_align(pred, target), target)


def root_align(joints: jax.Array, verts: jax.Array | None = None, root_index: int = 0):
    """Subtracts joint `root_index` from the joints (and, if given, from the vertices)."""
    root = joints[..., root_index : root_index + 1, :]
    return (root_relative(joints, root_index), None if verts is None else verts - root)


def f_scores(pred_verts: jax.Array, target_verts: jax.Array,
             thresholds_m: tuple[float, ...] = F_THRESHOLDS_M) -> jax.Array:
    """F-score per sample and threshold: [..., V, 3] x2 -> [..., len(thresholds_m)].

    The vertex sets are treated as unordered point clouds (exact brute-force nearest neighbours).
    """
    d = jnp.linalg.norm(pred_verts[..., :, None, :] - target_verts[..., None, :, :], axis=-1)
    pred_to_target = jnp.min(d, axis=-1)  # [..., V]
    target_to_pred = jnp.min(d, axis=-2)
    scores = []
    for t in thresholds_m:
        a = jnp.mean((pred_to_target < t).astype(d.dtype), axis=-1)
        b = jnp.mean((target_to_pred < t).astype(d.dtype), axis=-1)
        scores.append(jnp.where(a + b > 0, 2 * a * b / jnp.maximum(a + b, 1e-12), 0.0))
    return jnp.stack(scores, axis=-1)


def sample_metrics(pred_joints: jax.Array, pred_verts: jax.Array, target_joints: jax.Array,
                   target_verts: jax.Array) -> dict[str, jax.Array]:
    """Everything the aggregate needs for a batch of root-aligned samples.

    Returns per-point errors `joint_err` [B, J], `vert_err` [B, V], `pa_joint_err`,
    `pa_vert_err`, and F-scores `f` [B, 2] (unaligned) and `pa_f` [B, 2] (after the vertex PA).
    """
    aligned_verts = procrustes_align(pred_verts, target_verts)
    return {
        "joint_err": point_errors(pred_joints, target_joints),
        "vert_err": point_errors(pred_verts, target_verts),
        "pa_joint_err": pa_point_errors(pred_joints, target_joints),
        "pa_vert_err": point_errors(aligned_verts, target_verts),
        "f": f_scores(pred_verts, target_verts),
        "pa_f": f_scores(aligned_verts, target_verts),
    }


def auc(errors: np.ndarray, max_m: float = AUC_MAX_M, num_thresholds: int = AUC_NUM_THRESHOLDS) -> float:
    """Official AUC of per-point errors [S, N] (metres): mean over points of the normalised area."""
    errors = np.asarray(errors, np.float64)
    thresholds = np.linspace(0.0, max_m, num_thresholds)
    pck = (errors[None, :, :] <= thresholds[:, None, None]).mean(axis=1)  # [thresholds, N]
    area = np.trapezoid(pck, thresholds, axis=0) / np.trapezoid(np.ones_like(thresholds), thresholds)
    return float(area.mean())


def pck_curve(errors: np.ndarray, max_m: float = AUC_MAX_M, num_thresholds: int = AUC_NUM_THRESHOLDS
              ) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds in mm, point-averaged PCK) -- the curve of the paper's Fig. 4."""
    thresholds = np.linspace(0.0, max_m, num_thresholds)
    pck = (np.asarray(errors)[None] <= thresholds[:, None, None]).mean(axis=(1, 2))
    return thresholds * 1000.0, pck


def occlusion_category(occ_labels: np.ndarray) -> np.ndarray:
    """[..., 6] labels (fingers, global; 1 = occluded) -> 0 none, 1 some fingers, 2 whole hand."""
    occ_labels = np.asarray(occ_labels)
    hand = occ_labels[..., 5] == 1
    fingers = occ_labels[..., :5].any(axis=-1)
    return np.where(hand, 2, np.where(fingers, 1, 0))


class MetricAccumulator:
    """Collects `sample_metrics` outputs (with a mask for padding) and reports the paper's table."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}
        self._categories: list[np.ndarray] = []

    def add(self, metrics: Mapping[str, jax.Array], mask: np.ndarray | None = None,
            occ_labels: np.ndarray | None = None) -> None:
        """Adds a batch; `mask` [B] drops padded samples; `occ_labels` [B, 6] sets categories."""
        batch = np.asarray(metrics["joint_err"]).shape[0]
        keep = np.ones(batch, bool) if mask is None else np.asarray(mask) > 0
        for key, value in metrics.items():
            self._parts.setdefault(key, []).append(np.asarray(value, np.float64)[keep])
        categories = np.full(batch, -1) if occ_labels is None else occlusion_category(occ_labels)
        self._categories.append(categories[keep])

    def _report(self, select: np.ndarray) -> dict[str, float]:
        part = {k: np.concatenate(v)[select] for k, v in self._parts.items()}
        report = {"num_samples": int(select.sum())}
        for name, key in (("j", "joint_err"), ("v", "vert_err")):
            report[f"{name}_pe_mm"] = float(part[key].mean(axis=0).mean() * 1000)
            report[f"pa_{name}_pe_mm"] = float(part[f"pa_{key}"].mean(axis=0).mean() * 1000)
            report[f"{name}_auc"] = auc(part[key])
            report[f"pa_{name}_auc"] = auc(part[f"pa_{key}"])
        for i, t in enumerate(F_THRESHOLDS_M):
            report[f"f{round(t * 1000)}"] = float(part["f"][:, i].mean())
            report[f"pa_f{round(t * 1000)}"] = float(part["pa_f"][:, i].mean())
        return report

    def results(self) -> dict:
        """{"overall": report, "by_occlusion": {category: report}} (categories with samples)."""
        if not self._parts:
            raise ValueError("no samples were added")
        categories = np.concatenate(self._categories)
        out = {"overall": self._report(np.ones(categories.shape, bool)), "by_occlusion": {}}
        for index, name in enumerate(OCCLUSION_CATEGORIES):
            if (categories == index).any():
                out["by_occlusion"][name] = self._report(categories == index)
        return out

    def errors(self, key: str) -> np.ndarray:
        """All collected per-point errors of one kind, e.g. "pa_vert_err": [S, N]."""
        return np.concatenate(self._parts[key])
