"""A picture of a hand model in a few poses (README snippet, sanity checks of a MANO file).

    from h2o_jax.hand import builtin_hand_model; from h2o_jax.gallery import pose_gallery
    import cv2; cv2.imwrite("hand.png", pose_gallery(builtin_hand_model())[..., ::-1])
"""

from __future__ import annotations

import numpy as np

from h2o_jax.hand.mano import HandModel, hand_forward
from h2o_jax.hand.poses import example_poses
from h2o_jax.render import render_mesh

# One colour per part: thumb, index, middle, ring, little, palm.
PART_COLOURS = np.array([[0.90, 0.35, 0.35], [0.95, 0.65, 0.25], [0.85, 0.85, 0.30], [0.40, 0.80, 0.45],
                         [0.35, 0.60, 0.90], [0.85, 0.75, 0.65]])


def pose_gallery(model: HandModel, poses: np.ndarray | None = None, vertex_part: np.ndarray | None = None,
                 size_px: int = 256) -> np.ndarray:
    """[size, N * size, 3] uint8 RGB: the hand in each pose (default: open, pointing, grasp),
    seen from the palm side, coloured by part (parts from the skinning weights when not given)."""
    import jax.numpy as jnp

    from h2o_jax.hand.build_topology import hand_vertex_parts

    betas = jnp.zeros(model.num_betas)
    rest = np.asarray(hand_forward(model, jnp.zeros(48), betas, flat_hand_mean=True)["joints16_m"], np.float64)
    poses = example_poses(rest) if poses is None else np.asarray(poses, np.float64)
    if vertex_part is None:
        vertex_part = hand_vertex_parts(np.asarray(model.skin_weights))
    colours = PART_COLOURS[np.asarray(vertex_part)]
    # Camera looking at the palm: the palm normal points towards the camera (-z).
    palm_normal = np.cross(rest[1] - rest[0], rest[7] - rest[0])
    palm_normal /= np.linalg.norm(palm_normal)
    up = rest[4] - rest[0]
    up -= (up @ palm_normal) * palm_normal
    up /= np.linalg.norm(up)
    # Rows: camera x, y (down), z (forward) in model coordinates; fingers point up in the image.
    view = np.stack([np.cross(up, palm_normal), -up, -palm_normal])
    panels = []
    for pose in poses:
        verts = np.asarray(hand_forward(model, jnp.asarray(pose, jnp.float32), betas,
                                        flat_hand_mean=True)["vertices_m"], np.float64)
        cam = (verts - verts.mean(0)) @ view.T
        extent = np.abs(cam[:, :2]).max()
        depth = 0.5
        focal = 0.45 * size_px * depth / extent
        render = render_mesh(cam + [0, 0, depth], np.asarray(model.faces), (focal, focal),
                             (size_px / 2, size_px / 2), (size_px, size_px), vertex_colors=colours,
                             light_dir_cam=(0.3, -0.5, -1.0), ambient=0.35, diffuse=0.65)
        panel = np.where(render.mask[..., None], render.rgb, 1.0)
        panels.append(np.round(panel * 255).astype(np.uint8))
    return np.concatenate(panels, axis=1)
