"""Example poses and the pose gallery picture of a hand model."""

import numpy as np

from h2o_jax.gallery import pose_gallery
from h2o_jax.hand import builtin_hand_model, builtin_topology
from h2o_jax.hand.mano import hand_forward
from h2o_jax.hand.poses import curl_pose, example_poses, flexion_axes_from_joints


def _rest_joints(model):
    return np.asarray(hand_forward(model, np.zeros(48, np.float32), np.zeros(10, np.float32),
                                   flat_hand_mean=True)["joints16_m"], np.float64)


def test_curl_pose_bends_only_the_chosen_finger():
    model = builtin_hand_model()
    rest = _rest_joints(model)
    axes = flexion_axes_from_joints(rest)
    # Axes are unit, perpendicular to their bone.
    np.testing.assert_allclose(np.linalg.norm(axes[1:], axis=1), 1.0)
    assert abs(axes[1] @ (rest[2] - rest[1])) < 1e-9
    pose = curl_pose(axes, [0, 1, 0, 0, 0])  # index only
    verts = np.asarray(hand_forward(model, pose.astype(np.float32), np.zeros(10, np.float32),
                                    flat_hand_mean=True)["vertices_m"])
    rest_verts = np.asarray(model.v_template_m)
    moved = np.linalg.norm(verts - rest_verts, axis=1) > 1e-4
    part = np.asarray(builtin_topology().vertex_part)
    assert moved[part == 1].mean() > 0.9
    assert not moved[part == 2].any() and not moved[part == 0].any()


def test_gallery_shows_three_distinct_poses():
    model = builtin_hand_model()
    image = pose_gallery(model, size_px=96)
    assert image.shape == (96, 3 * 96, 3) and image.dtype == np.uint8
    panels = np.split(image, 3, axis=1)
    covered = [(p < 250).any(-1) for p in panels]
    assert all(0.05 < c.mean() < 0.9 for c in covered)
    assert not np.array_equal(covered[0], covered[1]) and not np.array_equal(covered[1], covered[2])
    assert example_poses(_rest_joints(model)).shape == (3, 48)
