"""One synthetic occluded-hand video sequence: scene layout, rendering and every label.

A sequence is a hand (built-in or MANO) moving and curling its fingers in front of a pinhole
camera (a virtual 640 x 480 image), optionally holding an object that moves rigidly with the
palm, while 0-3 occluders (spheres, boxes, cylinders with random colours and stripe textures)
pass between the camera and the hand: small ones hide single fingers, large ones the whole hand.
Each frame is rendered directly into the 128 x 128 crop of the real datasets' convention (box
from the projected 2D joints, `data_loaders.crop`), which equals rendering the full image and
cropping it, and labelled with the paper's occlusion procedure
(`h2o_jax.render.occlusion_labels`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation

from data_loaders import crop
from data_loaders.features import CROP_SIZE_PX
from data_loaders.synthetic import motion
from h2o_jax.render import box_mesh, cylinder_mesh, merge_meshes, render_mesh, sphere_mesh
from h2o_jax.render.occlusion_labels import occlusion_labels

FULL_IMAGE_WH_PX = (640, 480)
SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.90, 0.70, 0.55], [0.78, 0.57, 0.42], [0.55, 0.38, 0.26],
                       [0.40, 0.27, 0.18]])


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Knobs of the generator (defaults give >= 40 % frames with an occluded finger)."""

    frames_per_sequence: int = 100
    hold_probability: float = 0.6
    occluder_events_per_100_frames: float = 4.0
    whole_hand_occluder_share: float = 0.2
    depth_range_m: tuple[float, float] = (0.35, 0.65)
    # The forearm points away from the camera (motion.wrist_rotations); None: the whole sphere.
    max_forearm_angle_deg: float | None = 90.0


@dataclasses.dataclass(frozen=True)
class HandRig:
    """What the generator needs of a hand model (numpy, float64), see `make_rig`."""

    forward: object              # callable(pose [T, 48], betas [T, S]) -> (verts [T,V,3], joints [T,21,3])
    faces: np.ndarray            # [F, 3]
    vertex_part: np.ndarray      # [V]
    rest_joints16_m: np.ndarray  # [16, 3]
    num_shape: int


def _object_mesh(rng: np.random.Generator, size_m: float):
    kind = rng.integers(3)
    if kind == 0:
        return sphere_mesh(size_m / 2, subdivisions=2)
    if kind == 1:
        return box_mesh(size_m * rng.uniform(0.5, 1.0, 3))
    return cylinder_mesh(size_m * rng.uniform(0.25, 0.5), size_m, segments=16)


def _object_colours(rng: np.random.Generator, vertices: np.ndarray) -> np.ndarray:
    """[V, 3] a random base colour modulated by stripes along a random direction."""
    base = rng.uniform(0.1, 0.95, 3)
    other = rng.uniform(0.1, 0.95, 3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    stripes = 0.5 + 0.5 * np.sign(np.sin(vertices @ direction * rng.uniform(60, 250)))
    mix = rng.uniform(0.0, 1.0)
    return base[None] * (1 - mix * stripes[:, None]) + other[None] * mix * stripes[:, None]


def background_image(rng: np.random.Generator, size_px: int = CROP_SIZE_PX) -> np.ndarray:
    """[H, W, 3] float32 textured background: a colour gradient plus low-frequency noise and an
    optional checker / stripe pattern."""
    y, x = np.mgrid[0:size_px, 0:size_px] / size_px
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x + np.sin(angle) * y)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    image = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
    cells = int(rng.integers(3, 9))
    noise = rng.normal(0, 0.12, (cells, cells, 3))
    yi = np.minimum((y * cells).astype(int), cells - 1)
    xi = np.minimum((x * cells).astype(int), cells - 1)
    image = image + noise[yi, xi]
    pattern = rng.integers(3)
    if pattern == 1:
        period = rng.uniform(0.05, 0.25)
        image += 0.15 * (((x // period + y // period) % 2) - 0.5)[..., None]
    elif pattern == 2:
        image += 0.15 * np.sin(2 * np.pi * (x * rng.uniform(2, 10) + y * rng.uniform(0, 4)))[..., None]
    return np.clip(image, 0, 1).astype(np.float32)


@dataclasses.dataclass
class _Occluder:
    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray
    start: int
    stop: int
    path_start_m: np.ndarray
    path_end_m: np.ndarray
    spin: Rotation


def _plan_occluders(rng, config: SceneConfig, hand_centres_m: np.ndarray) -> list[_Occluder]:
    num_frames = len(hand_centres_m)
    rate = config.occluder_events_per_100_frames * num_frames / 100
    events = []
    for _ in range(rng.poisson(rate) if num_frames >= 8 else 0):
        whole = rng.random() < config.whole_hand_occluder_share
        size = rng.uniform(0.16, 0.24) if whole else rng.uniform(0.02, 0.045)
        vertices, faces = _object_mesh(rng, size)
        duration = int(rng.integers(12, 41) if whole else rng.integers(8, 31))
        start = int(rng.integers(-duration // 2, num_frames - duration // 2))
        stop = start + duration
        mid = int(np.clip((start + stop) // 2, 0, num_frames - 1))
        centre = hand_centres_m[mid]
        # Between camera and hand, crossing the hand's line of sight at mid-event.
        depth = centre[2] - rng.uniform(0.06, 0.16)
        target = centre * depth / centre[2] + rng.normal(0, 0.01 if whole else 0.025, 3) * [1, 1, 0]
        direction = rng.normal(size=3) * [1, 1, 0]
        direction /= np.linalg.norm(direction)
        travel = rng.uniform(0.08, 0.2) if whole else rng.uniform(0.15, 0.35)
        events.append(_Occluder(vertices, faces, _object_colours(rng, vertices), start, stop,
                                target - direction * travel / 2, target + direction * travel / 2,
                                Rotation.from_rotvec(rng.normal(size=3) * 0.1)))
    return events


def generate_sequence(rig: HandRig, config: SceneConfig, seed: int | tuple[int, ...], sequence_index: int) -> list[dict]:
    """All frame records of one sequence (keys of `data_loaders.records.FRAME_FEATURES`).

    Deterministic in (seed, sequence_index): the same arguments give the same records."""
    rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), sequence_index])
    num_frames = config.frames_per_sequence
    grasp = rng.random() < config.hold_probability
    axes = motion.flexion_axes_from_joints(rig.rest_joints16_m)
    pose = np.zeros((num_frames, 16, 3))
    cone = config.max_forearm_angle_deg
    pose[:, 0] = motion.wrist_rotations(
        rng, num_frames, forearm_rest=None if cone is None else motion.forearm_direction(rig.rest_joints16_m),
        max_forearm_angle_rad=np.pi / 2 if cone is None else np.radians(cone))
    pose[:, 1:] = motion.finger_pose(rng, num_frames, axes, grasp)
    pose = pose.reshape(num_frames, 48)
    betas = np.repeat(np.clip(rng.normal(size=(1, rig.num_shape)), -2, 2), num_frames, axis=0)
    verts, joints = rig.forward(pose, betas)
    centres = motion.hand_positions(rng, num_frames, config.depth_range_m)
    shift = centres - joints.mean(axis=1)
    verts = verts + shift[:, None]
    joints = joints + shift[:, None]

    held = None
    if grasp:
        size = rng.uniform(0.05, 0.09)
        obj_v, obj_f = _object_mesh(rng, size)
        # Rest-frame placement in front of the palm; it then moves rigidly with the wrist.
        rest = rig.rest_joints16_m
        palm_normal = np.cross(rest[1] - rest[0], rest[7] - rest[0])
        palm_normal /= np.linalg.norm(palm_normal)
        palm_centre = rest[[0, 1, 4, 7, 10]].mean(0) + palm_normal * (size * 0.45 + 0.012)
        held = (obj_v + palm_centre, obj_f, _object_colours(rng, obj_v))
    occluders = _plan_occluders(rng, config, centres)

    focal = np.full(2, rng.uniform(550, 700))
    principal = np.array(FULL_IMAGE_WH_PX, float) / 2 + rng.normal(0, 5, 2)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.1, 3)
    skin_colours = np.clip(skin[None] * (1 + rng.normal(0, 0.03, (len(rig.vertex_part), 1))), 0, 1)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
    ambient = rng.uniform(0.25, 0.5)
    background = background_image(rng)
    rest_root = rig.rest_joints16_m[0]

    records = []
    for t in range(num_frames):
        meshes = [(verts[t], rig.faces)]
        colours = [skin_colours]
        if held is not None:
            rot = Rotation.from_rotvec(pose[t, :3])
            root_cam = joints[t, 0]
            meshes.append((rot.apply(held[0] - rest_root) + root_cam, held[1]))
            colours.append(held[2])
        for occ in occluders:
            if occ.start <= t < occ.stop:
                f = (t - occ.start) / max(occ.stop - occ.start - 1, 1)
                centre = occ.path_start_m * (1 - f) + occ.path_end_m * f
                spin = Rotation.from_rotvec(occ.spin.as_rotvec() * (t - occ.start))
                meshes.append((spin.apply(occ.vertices) + centre, occ.faces))
                colours.append(occ.colours)
        scene_v, scene_f = merge_meshes(meshes)
        labels = np.concatenate([np.full(len(m[1]), i) for i, m in enumerate(meshes)])

        joints_full_px = focal * joints[t, :, :2] / joints[t, :, 2:] + principal
        box = crop.process_bbox(crop.bbox_from_joints(joints_full_px), *FULL_IMAGE_WH_PX)
        if box is None:  # the hand left the virtual image: crop the whole image instead
            box = crop.whole_image_bbox(*FULL_IMAGE_WH_PX)
        affine = crop.crop_affine(box, CROP_SIZE_PX)
        crop_focal, crop_principal = crop.crop_intrinsics(focal, principal, affine)
        render = render_mesh(scene_v, scene_f, crop_focal, crop_principal, (CROP_SIZE_PX, CROP_SIZE_PX),
                             face_labels=labels, vertex_colors=np.concatenate(colours),
                             light_dir_cam=light, ambient=ambient, diffuse=1 - ambient)
        image = np.where(render.mask[..., None], render.rgb, background)
        image = np.clip(image + rng.normal(0, 0.015, image.shape), 0, 1)
        hand_mask = render.label == 0
        occ = occlusion_labels(verts[t], rig.faces, rig.vertex_part, crop_focal, crop_principal,
                               (CROP_SIZE_PX, CROP_SIZE_PX), hand_mask)
        records.append({
            "image": np.round(image * 255).astype(np.uint8),
            "hand_mask": hand_mask.astype(np.uint8),
            "joints_img_px": (crop_focal * joints[t, :, :2] / joints[t, :, 2:] + crop_principal).astype(np.float32),
            "joints_cam_m": joints[t].astype(np.float32),
            "verts_cam_m": verts[t].astype(np.float32),
            "pose": pose[t].astype(np.float32),
            "shape": betas[t].astype(np.float32),
            "focal_px": crop_focal.astype(np.float32),
            "principal_px": crop_principal.astype(np.float32),
            "occ_labels": np.append(np.asarray(occ.fingers, np.int32), np.int32(occ.hand)).astype(np.int32),
            "occ_label_valid": np.uint8(1),
            "label_valid": np.uint8(1),
            "is_mirrored": np.uint8(0),
            "sequence_index": np.int32(sequence_index),
            "frame_number": np.int32(t),
            "sample_id": f"synthetic/{sequence_index:05d}/{t:05d}".encode(),
        })
    return records
