"""Drawing meshes on frames: the prediction PNG of a training run and the demo's frames.

A root-relative mesh (what the network predicts) is placed in the camera at a root position
(ground truth when known, else a fixed depth in front of the crop camera), rendered with the
z-buffer rasteriser and blended over the image; a side view shows the same mesh turned 90 degrees
about the vertical axis, so depth errors that the front view hides become visible.
"""

from __future__ import annotations

import os

import cv2
import jax
import numpy as np

from h2o_jax.render import render_mesh

PRED_COLOUR = (0.35, 0.65, 1.0)
GT_COLOUR = (0.4, 0.9, 0.4)


def overlay_mesh(image_rgb_u8: np.ndarray, verts_cam_m: np.ndarray, faces: np.ndarray, focal_px, principal_px,
                 colour=PRED_COLOUR, alpha: float = 0.7) -> np.ndarray:
    """[H, W, 3] uint8: the shaded mesh blended over the image where it covers it."""
    height, width = image_rgb_u8.shape[:2]
    render = render_mesh(verts_cam_m, faces, focal_px, principal_px, (height, width),
                         vertex_colors=np.tile(np.asarray(colour, np.float64), (len(verts_cam_m), 1)),
                         light_dir_cam=(0.3, -0.4, 1.0), ambient=0.35, diffuse=0.65)
    image = image_rgb_u8.astype(np.float32) / 255
    blended = np.where(render.mask[..., None], (1 - alpha) * image + alpha * render.rgb, image)
    return np.round(blended * 255).astype(np.uint8)


def side_view(verts_rel_m: np.ndarray, faces: np.ndarray, size_px: int = 128, colour=PRED_COLOUR) -> np.ndarray:
    """[size, size, 3] uint8: the root-relative mesh turned 90 degrees about y, on grey."""
    centre = verts_rel_m.mean(0)
    turned = (verts_rel_m - centre) @ np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], np.float64).T
    extent = max(np.abs(turned[:, :2]).max(), 1e-3)
    depth = 0.5
    focal = 0.42 * size_px * depth / extent
    background = np.full((size_px, size_px, 3), 60, np.uint8)
    return overlay_mesh(background, turned + [0, 0, depth], faces, (focal, focal), (size_px / 2, size_px / 2),
                        colour=colour, alpha=1.0)


def prediction_panel(sample: dict, pred_verts_r_m: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """One row: input frame | ground truth | prediction | prediction side view (frame 0)."""
    image = np.round(np.asarray(sample["image"][0]) * 255).astype(np.uint8)
    focal, principal = sample["focal_px"][0], sample["principal_px"][0]
    root = np.asarray(sample["joints_cam_m"][0, 0], np.float64)
    gt = np.asarray(sample["verts_r_m"][0], np.float64) + root
    pred = np.asarray(pred_verts_r_m, np.float64) + root
    return np.concatenate([image, overlay_mesh(image, gt, faces, focal, principal, GT_COLOUR),
                           overlay_mesh(image, pred, faces, focal, principal),
                           side_view(np.asarray(pred_verts_r_m, np.float64), faces)], axis=1)


def pick_display_samples(source, count: int, scan_limit: int = 400) -> list[int]:
    """Indices of up to `count` samples of `source` from different sequences, about a third of them
    with occluded fingers or hand (frame 0), spread over the first `scan_limit` samples."""
    from h2o_jax.metrics import occlusion_category

    total = min(len(source), scan_limit)
    order = np.linspace(0, total - 1, min(total, 4 * count)).round().astype(int)
    seen, occluded, visible = set(), [], []
    for index in dict.fromkeys(order.tolist()):
        sample = source[index]
        sequence = int(np.asarray(sample["sequence_index"]))
        if sequence in seen:
            continue
        seen.add(sequence)
        category = int(occlusion_category(np.asarray(sample["occ_labels"])[None, 0])[0])
        (occluded if category > 0 else visible).append(index)
    wanted_occluded = min(len(occluded), max(1, count // 3))
    picked = occluded[:wanted_occluded] + visible[:count - wanted_occluded]
    picked += [i for i in occluded[wanted_occluded:] + visible if i not in picked][:count - len(picked)]
    return sorted(picked[:count])


def write_prediction_png(workdir: str, model, state, source, num_samples: int = 6) -> str:
    """Runs the trained `model` (an H2ONet) on samples of `source` from different sequences
    (occluded ones included, `pick_display_samples`); writes `<workdir>/predictions.png`, one row
    per sample labelled with its sequence, occlusion category and errors in mm."""
    from h2o_jax.metrics import OCCLUSION_CATEGORIES, occlusion_category, root_align, sample_metrics
    from h2o_jax.training import make_predict_step

    indices = pick_display_samples(source, num_samples)
    samples = [source[i] for i in indices]
    batch = {k: np.stack([s[k] for s in samples]) for k in ("image", "occ_labels")}
    outputs = jax.jit(make_predict_step(model))(jax.device_get(state), batch)
    pred_v, pred_j = np.asarray(outputs["verts_r_m"])[:, 0], np.asarray(outputs["joints_r_m"])[:, 0]
    gt_j, gt_v = (np.stack([s[k][0] for s in samples]).astype(np.float64) for k in ("joints_r_m", "verts_r_m"))
    with jax.enable_x64(True):
        metrics = jax.device_get(sample_metrics(*root_align(pred_j.astype(np.float64), pred_v.astype(np.float64)),
                                                *root_align(gt_j, gt_v)))
    categories = occlusion_category(np.stack([np.asarray(s["occ_labels"])[0] for s in samples]))
    faces = np.asarray(model.topology.faces)
    rows = []
    for k, (sample, verts) in enumerate(zip(samples, pred_v)):
        panel = prediction_panel(sample, verts, faces)
        label = np.full((14, panel.shape[1], 3), 235, np.uint8)
        text = (f"seq {int(np.asarray(sample['sequence_index']))} frame {int(np.asarray(sample['frame_index'])[0])}"
                f" | occluded: {OCCLUSION_CATEGORIES[int(categories[k])]} | J-PE "
                f"{1000 * float(np.mean(metrics['joint_err'][k])):.1f} mm, PA-J-PE "
                f"{1000 * float(np.mean(metrics['pa_joint_err'][k])):.1f} mm, PA-V-PE "
                f"{1000 * float(np.mean(metrics['pa_vert_err'][k])):.1f} mm")
        cv2.putText(label, text, (4, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        rows += [label, panel]
    grid = np.concatenate(rows, axis=0)
    header = np.full((18, grid.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(("input", "ground truth", "prediction", "prediction, side")):
        cv2.putText(header, text, (4 + 128 * i, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    path = os.path.join(workdir, "predictions.png")
    cv2.imwrite(path, cv2.cvtColor(np.concatenate([header, grid]), cv2.COLOR_RGB2BGR))
    return path
