"""Constant-hand baselines: what "learned something" means on a dataset.

Three predictions that ignore the image, scored with the same metrics as the model:
* `mean_hand`: the mean root-relative (camera-orientation) hand of the training split, joints
  and vertices averaged over frames: the best constant under a squared error of J-PE / V-PE,
  but a blurred, shrunken hand;
* `mean_pose_hand`: the mean canonical hand of the training split (each frame's hand with its
  global rotation undone, v_c = R^T v_r, averaged) turned by the training split's mean rotation:
  a sharp average articulation. The Procrustes-aligned errors ignore the rotation, so its PA-J-PE
  / PA-V-PE are what predicting no articulation at all scores: the yardstick of the PA errors;
* `rest_hand`: the hand model's template (flat hand, identity rotation), root-relative.
A model that does not beat all three has not learned the task.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

BASELINE_NAMES = ("mean_hand", "mean_pose_hand", "rest_hand")


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """The rotation closest (Frobenius) to the mean of [N, 3, 3] rotations: its polar factor."""
    u, _, vt = np.linalg.svd(np.mean(rotations, axis=0))
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def labelled_arrays(records: Sequence[dict[str, Any]], keys: Sequence[str], max_records: int = 4000,
                    caller: str = "labelled_arrays") -> dict[str, np.ndarray]:
    """{key: float64 [N, ...]} stacked over up to `max_records` evenly spread records that have 3D
    labels (``label_valid`` != 0). One read per record; only the named arrays are kept (not the
    images)."""
    count = len(records)
    if count == 0:
        raise ValueError(f"{caller} needs at least one record")
    picks = np.unique(np.linspace(0, count - 1, min(count, max_records)).round().astype(np.int64))
    stacked: dict[str, list] = {key: [] for key in keys}
    for i in picks:
        record = records[int(i)]
        if "label_valid" in record and not int(record["label_valid"]):
            continue
        for key in keys:
            stacked[key].append(np.asarray(record[key], np.float64))
    if not stacked[keys[0]]:
        raise ValueError("no record with 3D labels (label_valid = 1) to average")
    return {key: np.stack(values) for key, values in stacked.items()}


HAND_LABEL_KEYS = ("joints_cam_m", "verts_cam_m", "pose")


def _mean_hand(labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    root = labels["joints_cam_m"][:, :1]
    return np.mean(labels["joints_cam_m"] - root, 0), np.mean(labels["verts_cam_m"] - root, 0)


def mean_canonical_hand_of(labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`training_mean_canonical_hand` of `labelled_arrays(records, HAND_LABEL_KEYS)`."""
    from scipy.spatial.transform import Rotation

    rotations = Rotation.from_rotvec(labels["pose"][:, :3]).as_matrix()
    root = labels["joints_cam_m"][:, :1]
    # Row vectors: R^T x is x R.
    joints_c = np.mean(np.einsum("npk,nkj->npj", labels["joints_cam_m"] - root, rotations), 0)
    verts_c = np.mean(np.einsum("npk,nkj->npj", labels["verts_cam_m"] - root, rotations), 0)
    return joints_c, verts_c, mean_rotation(rotations)


def _mean_pose_hand(labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    joints_c, verts_c, mean_rot = mean_canonical_hand_of(labels)
    return joints_c @ mean_rot.T, verts_c @ mean_rot.T


def training_mean_hand(records: Sequence[dict[str, Any]], max_records: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(joints [21, 3], vertices [V, 3]) float64, the mean over up to `max_records` evenly spread
    records (``joints_cam_m``, ``verts_cam_m`` of data_loaders.records) of the root-relative hand.
    Records without 3D labels (``label_valid`` = 0) are skipped."""
    return _mean_hand(labelled_arrays(records, HAND_LABEL_KEYS[:2], max_records, "training_mean_hand"))


def training_mean_canonical_hand(records: Sequence[dict[str, Any]], max_records: int = 4000
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(joints [21, 3], vertices [V, 3], rotation [3, 3]) float64: the mean canonical hand of up
    to `max_records` evenly spread labelled records (root-relative, global rotation
    R = Rodrigues(pose[:3]) undone: x R in row-vector form, as the pipeline's canonical targets)
    and the records' mean rotation (`mean_rotation`)."""
    return mean_canonical_hand_of(labelled_arrays(records, HAND_LABEL_KEYS, max_records, "training_mean_canonical_hand"))


def training_mean_pose_hand(records: Sequence[dict[str, Any]], max_records: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(joints [21, 3], vertices [V, 3]) float64: `training_mean_canonical_hand` turned by the
    records' mean rotation."""
    return _mean_pose_hand(labelled_arrays(records, HAND_LABEL_KEYS, max_records, "training_mean_pose_hand"))


def rest_hand(template_vertices_m: np.ndarray, joint_regressor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(joints [21, 3], vertices [V, 3]) of the template, both minus the template's joint 0."""
    verts = np.asarray(template_vertices_m, np.float64)
    joints = np.asarray(joint_regressor, np.float64) @ verts
    return joints - joints[:1], verts - joints[:1]


class BaselineCollectors:
    """One metric collector per constant prediction; fed with the same ground-truth batches as
    the model's (`experiments.evaluate.MetricCollector.add` arguments without the prediction)."""

    def __init__(self, constants: dict[str, tuple[np.ndarray, np.ndarray]]):
        from experiments.evaluate import MetricCollector

        self.constants = {name: (np.asarray(j, np.float64), np.asarray(v, np.float64))
                          for name, (j, v) in constants.items()}
        self.collectors = {name: MetricCollector() for name in self.constants}

    def add(self, gt_joints_m, gt_verts_m, occ_labels=None, occ_valid=None, keep=None) -> None:
        batch = np.shape(gt_joints_m)[0]
        for name, (joints, verts) in self.constants.items():
            if verts.shape != np.shape(gt_verts_m)[1:]:
                raise ValueError(f"baseline {name!r} has {verts.shape[0]} vertices, the ground truth "
                                 f"{np.shape(gt_verts_m)[1]}")
            self.collectors[name].add(np.broadcast_to(joints, (batch,) + joints.shape),
                                      np.broadcast_to(verts, (batch,) + verts.shape),
                                      gt_joints_m, gt_verts_m, occ_labels, occ_valid, keep)

    def results(self) -> dict[str, Any]:
        """{name: {"overall": ..., "by_occlusion": ...}} as `MetricCollector.results`."""
        return {name: collector.results() for name, collector in self.collectors.items()}


def evaluate_baselines(constants: dict[str, tuple[np.ndarray, np.ndarray]], eval_source,
                       chunk_size: int = 16) -> dict[str, Any]:
    """The constants scored on frame 0 of every sample of `eval_source` (random access, samples
    of the batch contract): {name: {"overall": ..., "by_occlusion": ...}}."""
    collectors = BaselineCollectors(constants)
    for start in range(0, len(eval_source), chunk_size):
        samples = [eval_source[i] for i in range(start, min(start + chunk_size, len(eval_source)))]
        stack = {k: np.stack([np.asarray(s[k]) for s in samples]) for k in
                 ("joints_r_m", "verts_r_m", "occ_labels", "occ_label_mask", "mask")}
        collectors.add(stack["joints_r_m"][:, 0], stack["verts_r_m"][:, 0], stack["occ_labels"][:, 0],
                       stack["occ_label_mask"][:, 0], keep=stack["mask"] > 0)
    return collectors.results()


def baseline_constants(train_records, template_vertices_m, joint_regressor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"mean_hand": training_mean_hand(train_records), "mean_pose_hand":
    training_mean_pose_hand(train_records), "rest_hand": rest_hand(template)}, the records read once."""
    labels = labelled_arrays(train_records, HAND_LABEL_KEYS, caller="baseline_constants")
    return {"mean_hand": _mean_hand(labels), "mean_pose_hand": _mean_pose_hand(labels),
            "rest_hand": rest_hand(template_vertices_m, joint_regressor)}
