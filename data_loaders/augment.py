"""Training augmentation of a multi-frame sample: one scale, rotation and colour gain for all frames.

The official code (HandOccNet/H2ONet `common/utils/preprocessing.py`, data_formats.md 4.4,
architecture.md 14.2) draws, once per sample and shared by the three frames of a triplet:
- scale s = 1 + 0.25 * clip(N(0, 1), -1, 1) in [0.75, 1.25]; the source square is s times the
  box, so s > 1 zooms OUT (the image shrinks by 1/s);
- rotation r = 30 deg * clip(N(0, 1), -2, 2) in [-60, 60] deg with probability 0.6 (else 0);
  the source square is turned by +r, so image content turns by -r;
- a colour gain per RGB channel from U(0.8, 1.2), multiplied after the warp, clipped to range.
Evaluation uses s = 1, r = 0, gain 1 (:data:`IDENTITY`).

Here the records are already 128 x 128 crops with their own crop camera, so the same effect is
applied to the crop about its centre c = (64, 64): with R2(a) = [[cos a, -sin a], [sin a, cos a]]
the crop pixel p goes to ``p' = c + R2(-r) (p - c) / s`` (exactly the official three-point affine
composed with the crop affine). Consequences, all exact:
- images: ``cv2.warpAffine`` bilinear, zero border (content outside the stored crop is zero
  where the official code would have shown more of the original image); hand masks: nearest;
- 2D joints: the same affine;
- 3D camera-frame points (joints, vertices, and the rotated root-relative targets) are turned
  about the camera z axis by A = Rz(-r) (x right, y down: the same turn as the image), the
  global rotation becomes A R and the pose's root axis-angle is recomputed from it; canonical
  targets are unchanged;
- crop camera: focal' = focal / s and principal' = affine(principal). With fx == fy this makes
  ``project(A X, focal', principal') == affine(project(X, focal, principal))`` exactly. (With
  fx != fy no pinhole camera reproduces a rotated image; the official code has the same limit.)
Pure numpy + OpenCV; randomness only from the caller's ``np.random.Generator``.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_loaders.features import CROP_SIZE_PX

# Official ranges (HandOccNet / H2ONet `augmentation_multi_frames`).
SCALE_FACTOR = 0.25
ROT_FACTOR_DEG = 30.0
ROT_PROB = 0.6
COLOR_FACTOR = 0.2

# Sample keys of 3D camera-frame points ([T, N, 3]) that turn with the image.
_CAMERA_POINT_KEYS = ("joints_cam_m", "verts_cam_m", "joints_r_m", "verts_r_m")


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One augmentation: official scale s (s > 1 zooms out), rotation in degrees, RGB gains."""

    scale: float
    rot_deg: float
    color_gain: tuple[float, float, float]

    def __post_init__(self):
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"AugmentParams.scale must be finite and > 0; got {self.scale}")
        if not np.isfinite(self.rot_deg):
            raise ValueError(f"AugmentParams.rot_deg must be finite; got {self.rot_deg}")
        if len(self.color_gain) != 3 or not all(np.isfinite(g) and g >= 0 for g in self.color_gain):
            raise ValueError(f"AugmentParams.color_gain must be 3 finite gains >= 0; got {self.color_gain}")


IDENTITY = AugmentParams(scale=1.0, rot_deg=0.0, color_gain=(1.0, 1.0, 1.0))


def sample_augment_params(rng: np.random.Generator, scale_factor: float = SCALE_FACTOR,
                          rot_factor_deg: float = ROT_FACTOR_DEG, rot_prob: float = ROT_PROB,
                          color_factor: float = COLOR_FACTOR) -> AugmentParams:
    """Draws one augmentation with the official distributions (module docstring).

    Draw order: scale normal, rotation normal, rotation coin, three colour uniforms (all always
    drawn, so the stream position after this call does not depend on the outcome).
    """
    scale = 1.0 + scale_factor * float(np.clip(rng.standard_normal(), -1.0, 1.0))
    rot = rot_factor_deg * float(np.clip(rng.standard_normal(), -2.0, 2.0))
    if rng.random() > rot_prob:  # the official `random.random() <= rot_prob` keeps the rotation
        rot = 0.0
    gain = rng.uniform(1.0 - color_factor, 1.0 + color_factor, 3)
    return AugmentParams(scale=scale, rot_deg=rot, color_gain=tuple(float(g) for g in gain))


def crop_affine(scale: float, rot_deg: float, crop_size_px: int = CROP_SIZE_PX) -> np.ndarray:
    """``[2, 3]`` float64 affine of crop pixels, ``p' = c + R2(-r) (p - c) / s``, c = crop centre.

    The official construction maps the source points c, c + R2(r)(0, s w/2) and c + R2(r)(s w/2, 0)
    to c, c + (0, w/2) and c + (w/2, 0) (w = crop size); this is that map in closed form.
    """
    angle = np.deg2rad(rot_deg)
    # R2(-r) / s
    linear = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) / scale
    centre = np.full(2, crop_size_px / 2.0)
    return np.concatenate([linear, (centre - linear @ centre)[:, None]], axis=1)


def camera_rotation(rot_deg: float) -> np.ndarray:
    """``[3, 3]`` float64 A = Rz(-r): turns camera-frame points as the image turns under `crop_affine`."""
    angle = np.deg2rad(-rot_deg)
    return np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])


def _apply_affine(affine: np.ndarray, points_px: np.ndarray) -> np.ndarray:
    return points_px @ affine[:, :2].T + affine[:, 2]


def _rotmat_to_axis_angle(rotmat: np.ndarray) -> np.ndarray:
    axis_angle, _ = cv2.Rodrigues(np.asarray(rotmat, np.float64))
    return axis_angle[:, 0]


def augment_sample(sample: dict[str, np.ndarray], params: AugmentParams,
                   crop_size_px: int = CROP_SIZE_PX) -> dict[str, np.ndarray]:
    """Applies one augmentation to every frame of a sample; returns a new dict (input untouched).

    Keys used (T frames; any other key is passed through unchanged; all but "image" optional):
      image ``[T, H, W, 3]`` float32 in [0, 1] (warped bilinear, gained, clipped to [0, 1]);
      hand_mask ``[T, H, W]`` (warped nearest); joints_img ``[T, J, 2]`` crop px / crop size;
      joints_cam_m, verts_cam_m, joints_r_m, verts_r_m ``[T, N, 3]`` (turned by A);
      rot_mat ``[T, 3, 3]`` (-> A R); pose ``[T, 48]`` (root axis-angle -> that of A R);
      focal_px, principal_px ``[T, 2]``. Canonical targets (joints_c_m, verts_c_m) do not change.
    """
    if "image" not in sample:
        raise KeyError("augment_sample needs sample['image'] ([T, H, W, 3] float32 in [0, 1])")
    image = np.asarray(sample["image"])
    if image.ndim != 4 or image.shape[1:] != (crop_size_px, crop_size_px, 3) or image.dtype != np.float32:
        raise ValueError(f"sample['image'] must be [T, {crop_size_px}, {crop_size_px}, 3] float32 in [0, 1]; "
                         f"got {image.shape} {image.dtype}")
    affine = crop_affine(params.scale, params.rot_deg, crop_size_px)
    rotation = camera_rotation(params.rot_deg)
    size = (crop_size_px, crop_size_px)
    out = dict(sample)
    warped = np.stack([cv2.warpAffine(frame, affine, size, flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0) for frame in image])
    gain = np.asarray(params.color_gain, np.float32)
    out["image"] = np.clip(warped * gain, 0.0, 1.0).astype(np.float32)
    if "hand_mask" in sample:
        out["hand_mask"] = np.stack([cv2.warpAffine(np.ascontiguousarray(m), affine, size, flags=cv2.INTER_NEAREST,
                                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                                     for m in np.asarray(sample["hand_mask"])])
    if "joints_img" in sample:
        joints_px = np.asarray(sample["joints_img"], np.float64) * crop_size_px
        out["joints_img"] = (_apply_affine(affine, joints_px) / crop_size_px).astype(np.float32)
    for key in _CAMERA_POINT_KEYS:
        if key in sample:
            out[key] = (np.asarray(sample[key], np.float64) @ rotation.T).astype(np.float32)
    new_rot = None
    if "rot_mat" in sample:
        new_rot = rotation @ np.asarray(sample["rot_mat"], np.float64)
        out["rot_mat"] = new_rot.astype(np.float32)
    if "pose" in sample:
        pose = np.array(sample["pose"], np.float64)
        if new_rot is None:
            new_rot = rotation @ np.stack([cv2.Rodrigues(p[:3])[0] for p in pose])
        pose[:, :3] = np.stack([_rotmat_to_axis_angle(r) for r in new_rot])
        out["pose"] = pose.astype(np.float32)
    if "focal_px" in sample:
        out["focal_px"] = (np.asarray(sample["focal_px"], np.float64) / params.scale).astype(np.float32)
    if "principal_px" in sample:
        out["principal_px"] = _apply_affine(affine, np.asarray(sample["principal_px"], np.float64)).astype(np.float32)
    return out
