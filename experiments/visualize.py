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


def write_prediction_png(workdir: str, config, state, source, num_samples: int = 6) -> str:
    """Runs the trained model on the first samples of `source`; writes `<workdir>/predictions.png`."""
    from experiments.common import build_topology
    from h2o_jax.config import model_config_for
    from h2o_jax.nn import H2ONet
    from h2o_jax.training import make_predict_step

    topology = build_topology(config.model.topology)
    model = H2ONet(topology, model_config_for(config.model.variant, width_divisor=config.model.width_divisor))
    count = min(num_samples, len(source))
    samples = [source[i] for i in range(count)]
    batch = {k: np.stack([s[k] for s in samples]) for k in ("image", "occ_labels")}
    outputs = jax.jit(make_predict_step(model))(jax.device_get(state), batch)
    pred = np.asarray(outputs["verts_r_m"])[:, 0]
    rows = [prediction_panel(s, p, np.asarray(topology.faces)) for s, p in zip(samples, pred)]
    grid = np.concatenate(rows, axis=0)
    header = np.full((18, grid.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(("input", "ground truth", "prediction", "prediction, side")):
        cv2.putText(header, text, (4 + 128 * i, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    path = os.path.join(workdir, "predictions.png")
    cv2.imwrite(path, cv2.cvtColor(np.concatenate([header, grid]), cv2.COLOR_RGB2BGR))
    return path
