"""Smooth random hand motion: wrist orientation, position and grasp-like finger curls.

Everything is seeded by a numpy Generator; trajectories are piecewise interpolations between
random keyframes, so consecutive frames are close (what a video of a real hand gives) while a
dataset of many sequences covers every wrist orientation with the forearm pointing away from the
camera (the hemisphere of forearm directions a third-person or egocentric camera sees).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from h2o_jax.hand.poses import FINGER_CHAINS, MAX_FLEXION_RAD, flexion_axes_from_joints  # noqa: F401


def _smooth_keys(rng: np.random.Generator, num_frames: int, period: int, size, low, high) -> np.ndarray:
    """[num_frames, *size] smooth-step interpolation of uniform keyframes every `period` frames."""
    num_keys = num_frames // period + 2
    keys = rng.uniform(low, high, size=(num_keys,) + tuple(np.atleast_1d(size)))
    t = np.arange(num_frames) / period
    i = np.floor(t).astype(int)
    f = t - i
    f = (f * f * (3 - 2 * f))[(...,) + (None,) * (keys.ndim - 1)]
    return keys[i] * (1 - f) + keys[i + 1] * f


def forearm_direction(rest_joints16_m: np.ndarray) -> np.ndarray:
    """[3] unit vector from the middle-finger knuckle (joint 4) back through the wrist (joint 0):
    where the forearm leaves the hand, in the hand's rest frame."""
    direction = np.asarray(rest_joints16_m[0] - rest_joints16_m[4], float)
    return direction / np.linalg.norm(direction)


def wrist_rotations(rng: np.random.Generator, num_frames: int, period: int = 24,
                    max_step_rad: float = 1.2, forearm_rest: np.ndarray | None = None,
                    max_forearm_angle_rad: float = np.pi / 2) -> np.ndarray:
    """[num_frames, 3] axis-angle root rotations (camera frame): slerp between keyframes, each a
    random turn of 0.3 to `max_step_rad` from the previous one, starting from a uniformly random
    orientation.

    With `forearm_rest` (see `forearm_direction`), every keyframe is drawn (by rejection) so that
    the forearm points away from the camera within `max_forearm_angle_rad` of the optical axis:
    the arm and the body it belongs to are behind the hand, as in every third-person (Dex-YCB,
    HO3D) or egocentric view; without it orientations cover the whole sphere.
    """
    if not 0.0 < max_forearm_angle_rad <= np.pi:
        raise ValueError(f"max_forearm_angle_rad must be in (0, pi], got {max_forearm_angle_rad}")
    num_keys = num_frames // period + 2
    offsets = np.linspace(0.0, 1.0, period + 1)[1:]
    min_forearm_z = np.cos(max_forearm_angle_rad) - 1e-12

    def allowed(previous, candidate):
        if forearm_rest is None:
            return True
        # Every interpolated frame up to the candidate key, not just the key itself.
        frames = candidate if previous is None else Slerp(
            [0.0, 1.0], Rotation.concatenate([previous, candidate]))(offsets)
        return bool(np.all(np.atleast_2d(frames.apply(forearm_rest))[:, 2] >= min_forearm_z))

    def draw(previous, propose):
        for _ in range(1000):
            candidate = propose()
            if allowed(previous, candidate):
                return candidate
        raise ValueError(f"no wrist orientation within max_forearm_angle_rad={max_forearm_angle_rad} "
                         "found in 1000 draws")

    def turn(previous):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        return Rotation.from_rotvec(axis * rng.uniform(0.3, max_step_rad)) * previous

    keys = [draw(None, lambda: Rotation.random(random_state=rng))]
    for _ in range(num_keys - 1):
        keys.append(draw(keys[-1], lambda: turn(keys[-1])))
    slerp = Slerp(np.arange(num_keys) * period, Rotation.concatenate(keys))
    return slerp(np.arange(num_frames)).as_rotvec()


def finger_pose(rng: np.random.Generator, num_frames: int, axes: np.ndarray, grasp: bool,
                period: int = 16) -> np.ndarray:
    """[num_frames, 15, 3] finger-joint axis-angles: per-finger curls in [0, 1] (higher and more
    uniform while grasping), a little spread, the curl split over the three joints."""
    low, high = (0.35, 0.85) if grasp else (0.0, 0.9)
    shared = _smooth_keys(rng, num_frames, period, 1, low, high)
    own = _smooth_keys(rng, num_frames, period, 5, -0.25, 0.25)
    curls = np.clip(shared + own, 0.0, 1.0)
    pose = np.zeros((num_frames, 16, 3))
    for finger, chain in enumerate(FINGER_CHAINS):
        for i, joint in enumerate(chain):
            angle = curls[:, finger] * MAX_FLEXION_RAD[finger][i]
            pose[:, joint] = angle[:, None] * axes[joint][None]
    return pose[:, 1:]


def hand_positions(rng: np.random.Generator, num_frames: int, depth_range_m=(0.35, 0.65),
                   period: int = 30) -> np.ndarray:
    """[num_frames, 3] camera-frame wrist positions drifting smoothly inside the view."""
    depth = _smooth_keys(rng, num_frames, period, 1, *depth_range_m)[:, 0]
    lateral = _smooth_keys(rng, num_frames, period, 2, -0.12, 0.12)
    return np.stack([lateral[:, 0] * depth / 0.5, lateral[:, 1] * depth / 0.6, depth], axis=1)
