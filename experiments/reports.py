"""Evaluation outputs: the JSON report, the AUC-vs-threshold plot (paper Fig. 4) and the HO3D-v2
competition submission file (data_formats.md 3.8)."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from h2o_jax.metrics import pck_curve

# common 21-joint order -> MANO-native order (data_formats.md 0.3: native = common[Q]).
COMMON_TO_NATIVE = np.array([0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20])
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def write_json_report(results: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, sort_keys=True)


def plot_auc(curves: dict[str, np.ndarray], path: str, title: str = "3D PCK") -> None:
    """One PCK-vs-threshold line per entry of `curves` (name -> per-point errors [S, N], metres)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, errors in curves.items():
        thresholds_mm, pck = pck_curve(errors)
        area = np.trapezoid(pck, thresholds_mm) / thresholds_mm[-1]
        ax.plot(thresholds_mm, pck, label=f"{name} (AUC {area:.3f})")
    ax.set_xlabel("error threshold (mm)")
    ax.set_ylabel("3D PCK")
    ax.set_xlim(0, 50)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_ho3d_submission(path: str, joints_cam_m: np.ndarray, verts_cam_m: np.ndarray,
                          root_joint_cam_m: np.ndarray) -> None:
    """Writes `pred.zip` holding `pred.json` = [xyz_list, verts_list] for the HO3D-v2 server.

    Args:
      joints_cam_m: [N, 21, 3] predicted joints, common order, OpenCV camera frame (any origin).
      verts_cam_m: [N, V, 3] predicted vertices, same frame and origin as the joints.
      root_joint_cam_m: [N, 3] the evaluation split's given wrist positions (OpenCV frame).
    The prediction is translated so that its wrist lands on the given root (HandOccNet/H2ONet),
    joints are reordered to MANO-native order and both are converted to the OpenGL frame.
    """
    joints, verts = np.asarray(joints_cam_m, np.float64), np.asarray(verts_cam_m, np.float64)
    roots = np.asarray(root_joint_cam_m, np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (21, 3):
        raise ValueError(f"joints_cam_m must have shape [N, 21, 3], got {joints.shape}")
    if verts.ndim != 3 or verts.shape[0] != joints.shape[0] or verts.shape[2] != 3:
        raise ValueError(f"verts_cam_m must have shape [N={joints.shape[0]}, V, 3], got {verts.shape}")
    if roots.shape != (joints.shape[0], 3):
        raise ValueError(f"root_joint_cam_m must have shape [N={joints.shape[0]}, 3], got {roots.shape}")
    shift = roots[:, None] - joints[:, :1]
    joints_gl = (joints + shift)[:, COMMON_TO_NATIVE] @ OPENCV_TO_OPENGL
    verts_gl = (verts + shift) @ OPENCV_TO_OPENGL
    payload = json.dumps([joints_gl.tolist(), verts_gl.tolist()])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pred.json", payload)
