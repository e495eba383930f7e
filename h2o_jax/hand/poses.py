"""Hand poses built from anatomy: flexion axes from rest joints, and a few named example poses.

Works for any right hand in MANO's joint order (the built-in hand and MANO alike). Poses are 48
absolute axis-angle numbers (``flat_hand_mean=True``): root first, then the 15 finger joints.
"""

from __future__ import annotations

import numpy as np

# MANO joint ids per finger, thumb .. little (data_formats.md 1.4).
FINGER_CHAINS = ((13, 14, 15), (1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9))
# Largest flexion (radians) of the three joints of a finger at curl 1; thumb first.
MAX_FLEXION_RAD = ((0.7, 0.8, 1.0), (1.5, 1.7, 1.1), (1.5, 1.7, 1.1), (1.5, 1.7, 1.1), (1.5, 1.7, 1.1))


def flexion_axes_from_joints(rest_joints16_m: np.ndarray) -> np.ndarray:
    """[16, 3] unit axes, in the rest frame, about which a positive rotation curls each finger
    joint towards the palm (row 0 unused: zeros).

    The palm normal is (index MCP - wrist) x (little MCP - wrist); a bone of direction d curls
    towards the palm about d x n.
    """
    joints = np.asarray(rest_joints16_m, np.float64)
    if joints.shape != (16, 3):
        raise ValueError(f"rest_joints16_m must have shape (16, 3), got {joints.shape}")
    palm_normal = np.cross(joints[1] - joints[0], joints[7] - joints[0])
    palm_normal /= np.linalg.norm(palm_normal)
    axes = np.zeros((16, 3))
    for chain in FINGER_CHAINS:
        for i, joint in enumerate(chain):
            child = chain[i + 1] if i + 1 < len(chain) else None
            end = joints[child] if child is not None else 2 * joints[joint] - joints[chain[i - 1]]
            d = (end - joints[joint]) / np.linalg.norm(end - joints[joint])
            axis = np.cross(d, palm_normal)
            axes[joint] = axis / np.linalg.norm(axis)
    return axes


def curl_pose(axes: np.ndarray, curls) -> np.ndarray:
    """[48] pose with each finger (thumb .. little) curled by ``curls[f]`` in [0, 1]."""
    pose = np.zeros((16, 3))
    for finger, chain in enumerate(FINGER_CHAINS):
        for i, joint in enumerate(chain):
            pose[joint] = curls[finger] * MAX_FLEXION_RAD[finger][i] * axes[joint]
    return pose.reshape(48)


def example_poses(rest_joints16_m: np.ndarray) -> np.ndarray:
    """[3, 48]: an open hand, a pointing hand (index straight) and a fist-like grasp."""
    axes = flexion_axes_from_joints(rest_joints16_m)
    return np.stack([curl_pose(axes, [0.0, 0.0, 0.1, 0.1, 0.15]),
                     curl_pose(axes, [0.6, 0.0, 0.95, 0.95, 0.95]),
                     curl_pose(axes, [0.7, 0.8, 0.85, 0.85, 0.9])])
