"""The HandOccNet/H2ONet crop convention (data_formats.md 4.1-4.6) as pure numpy functions.

A dataset record stores the un-augmented crop: the box comes from the 2D joints (or, on the HO3D
evaluation split, from the dataset's hand box), is sanitised and made square, and the image is
warped to ``out_size_px`` x ``out_size_px`` by a scale + translation affine. Augmentation
(scale, in-plane rotation, colour) happens later in the pipeline, on the crop; ``crop_affine``
accepts ``scale``/``rot_deg`` only so the official three-point construction can be checked
against the worked examples of data_formats.md 4.8.

Conventions: pixel coordinates (x = column, y = row) of OpenCV, origin at the centre of the
top-left pixel; boxes are ``[x_min, y_min, width, height]`` in pixels; an affine is a [2, 3]
float64 matrix mapping full-image pixels to crop pixels, ``p' = A[:, :2] @ p + A[:, 2]``.
Left hands are mirrored to right hands before cropping: image columns u -> W - 1 - u
(``mirror_points_px``), and the box centre likewise (``crop_affine(..., mirror_width_px=W)``).
"""

from __future__ import annotations

import numpy as np

BBOX_EXPANSION_FROM_JOINTS = 1.5  # get_bbox factor for joint boxes (data_formats 4.3)
BBOX_EXPANSION_HO3D_EVAL = 1.5  # process_bbox factor for the HO3D evaluation hand box
CROP_SIZE_PX = 128


def _as_float_array(name: str, value, shape_tail: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != len(shape_tail) or any(
        want is not None and got != want for got, want in zip(array.shape, shape_tail)
    ):
        wanted = "[" + ", ".join("N" if w is None else str(w) for w in shape_tail) + "]"
        raise ValueError(f"{name} must have shape {wanted}; got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array


def bbox_from_joints(joints_img_px: np.ndarray, expansion: float = BBOX_EXPANSION_FROM_JOINTS) -> np.ndarray:
    """Tight box around 2D joints, width and height each scaled about the centre (`get_bbox`).

    Args:
      joints_img_px: [N, 2] (or [N, >=2]; extra columns ignored) joint pixels, N >= 1.
      expansion: factor applied to the tight width and height independently (not yet square).

    Returns:
      [4] float64 box [x_min, y_min, w, h].
    """
    joints = np.asarray(joints_img_px, dtype=np.float64)
    if joints.ndim != 2 or joints.shape[0] < 1 or joints.shape[1] < 2:
        raise ValueError(f"joints_img_px must have shape [N>=1, 2]; got {joints.shape}")
    joints = _as_float_array("joints_img_px", joints[:, :2], (None, 2))
    lo = joints.min(axis=0)
    hi = joints.max(axis=0)
    centre = (lo + hi) / 2.0
    half = 0.5 * (hi - lo) * expansion
    return np.concatenate([centre - half, 2.0 * half])


def process_bbox(
    bbox: np.ndarray,
    image_w: int,
    image_h: int,
    *,
    aspect_ratio: float = 1.0,
    expansion: float = 1.0,
) -> np.ndarray | None:
    """Sanitises a box to the image and makes it square about its centre (`process_bbox`).

    Follows data_formats.md 4.2 exactly, including its quirks: the clamped box is one pixel
    smaller than the input ("- 1"), a box lying left of/above the image is shifted to the border
    rather than rejected, and the squared, expanded result may extend outside the image.

    Args:
      bbox: [4] box [x, y, w, h] in pixels.
      image_w, image_h: full image size in pixels.
      aspect_ratio: output width / height (1 for the 128 x 128 crop).
      expansion: factor applied to the squared width and height.

    Returns:
      [4] float64 box [x_min, y_min, w, h], or None when the box has zero area or starts beyond
      the right/bottom edge ("no box": training drops the sample, Dex-YCB test uses the whole image).
    """
    x, y, w, h = _as_float_array("bbox", bbox, (4,))
    if image_w < 1 or image_h < 1:
        raise ValueError(f"image size must be positive; got image_w={image_w}, image_h={image_h}")
    x1 = max(0.0, x)
    y1 = max(0.0, y)
    x2 = min(image_w - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_h - 1.0, y1 + max(0.0, h - 1.0))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    w, h = x2 - x1, y2 - y1
    centre_x, centre_y = x1 + w / 2.0, y1 + h / 2.0
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    w *= expansion
    h *= expansion
    return np.array([centre_x - w / 2.0, centre_y - h / 2.0, w, h])


def whole_image_bbox(image_w: int, image_h: int) -> np.ndarray:
    """[4] box [0, 0, W - 1, H - 1]: the Dex-YCB test fallback when `process_bbox` gives no box."""
    return np.array([0.0, 0.0, image_w - 1.0, image_h - 1.0])


def crop_affine(
    bbox: np.ndarray,
    out_size_px: int = CROP_SIZE_PX,
    *,
    mirror_width_px: int | None = None,
    scale: float = 1.0,
    rot_deg: float = 0.0,
) -> np.ndarray:
    """The [2, 3] affine from full-image pixels to crop pixels (`gen_trans_from_patch_cv`).

    The official code solves `cv2.getAffineTransform` on three point pairs: box centre c -> crop
    centre, c + rot((0, s h / 2)) -> crop centre + (0, out / 2), c + rot((s w / 2, 0)) -> crop
    centre + (out / 2, 0). That is the closed form A = diag(out / (s w), out / (s h)) R(rot)^-1
    with translation crop centre - A c, computed here directly in float64.

    Args:
      bbox: [4] box [x, y, w, h] (square after `process_bbox`; the test fallback is not).
      out_size_px: crop side in pixels.
      mirror_width_px: the full image width W when the image is mirrored (left hand): the box
        centre x becomes W - cx - 1. The box itself is from the unmirrored joints.
      scale: source box scale s (1 = no augmentation).
      rot_deg: in-plane rotation in degrees (0 = no augmentation).

    Returns:
      [2, 3] float64 affine.
    """
    x, y, w, h = _as_float_array("bbox", bbox, (4,))
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox must have positive width and height; got w={w}, h={h}")
    if out_size_px < 1:
        raise ValueError(f"out_size_px must be positive; got {out_size_px}")
    if not scale > 0:
        raise ValueError(f"scale must be positive; got {scale}")
    centre = np.array([x + w / 2.0, y + h / 2.0])
    if mirror_width_px is not None:
        centre[0] = mirror_width_px - centre[0] - 1.0
    rot = np.deg2rad(rot_deg)
    cos, sin = np.cos(rot), np.sin(rot)
    rotation_inv = np.array([[cos, sin], [-sin, cos]])
    linear = np.diag([out_size_px / (scale * w), out_size_px / (scale * h)]) @ rotation_inv
    translation = np.full(2, out_size_px / 2.0) - linear @ centre
    return np.concatenate([linear, translation[:, None]], axis=1)


def transform_points(points_px: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Applies a [2, 3] affine to [N, 2] points: p' = A[:, :2] p + A[:, 2]. Returns [N, 2] float64."""
    points = _as_float_array("points_px", points_px, (None, 2))
    affine = _as_float_array("affine", affine, (2, 3))
    return points @ affine[:, :2].T + affine[:, 2]


def mirror_points_px(points_px: np.ndarray, image_w: int) -> np.ndarray:
    """Mirrors [N, 2] pixel points of a horizontally flipped image: u -> W - 1 - u. Returns float64."""
    points = _as_float_array("points_px", points_px, (None, 2)).copy()
    points[:, 0] = image_w - 1.0 - points[:, 0]
    return points


def crop_image(
    image: np.ndarray,
    affine: np.ndarray,
    out_size_px: int = CROP_SIZE_PX,
    *,
    nearest: bool = False,
) -> np.ndarray:
    """Warps an image with the crop affine (`cv2.warpAffine`, zero border).

    Args:
      image: [H, W] or [H, W, C] array (uint8 photos, 0/1 masks).
      affine: [2, 3] affine from `crop_affine`.
      out_size_px: crop side in pixels.
      nearest: nearest-neighbour sampling (for masks/labels) instead of bilinear (photos).

    Returns:
      [out, out] or [out, out, C] array of the image's dtype.
    """
    import cv2  # deferred: keeps `import data_loaders.crop` cheap for pure box maths

    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have shape [H, W] or [H, W, C]; got {image.shape}")
    affine = _as_float_array("affine", affine, (2, 3))
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.warpAffine(
        image, affine, (out_size_px, out_size_px), flags=flags,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    # cv2 drops a trailing channel axis of size 1; keep the caller's rank.
    return out.reshape((out_size_px, out_size_px) + image.shape[2:])


def crop_intrinsics(
    focal_px: np.ndarray, principal_px: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pinhole camera of the crop: fx' = A00 fx, fy' = A11 fy, c' = A c.

    Projection commutes with the crop: for any 3D point X in front of the camera,
    project(X, crop camera) == transform_points(project(X, full camera), affine). This holds only
    for a scale + translation affine (no rotation/shear), which is what the dataset records store.

    Args:
      focal_px: [2] (fx, fy) of the full image.
      principal_px: [2] (cx, cy) of the full image.
      affine: [2, 3] crop affine without rotation.

    Returns:
      (focal_px [2], principal_px [2]) float64 of the crop camera.
    """
    focal = _as_float_array("focal_px", focal_px, (2,))
    principal = _as_float_array("principal_px", principal_px, (2,))
    affine = _as_float_array("affine", affine, (2, 3))
    scale = np.abs(np.diag(affine[:, :2]))
    if abs(affine[0, 1]) > 1e-9 * scale.max() or abs(affine[1, 0]) > 1e-9 * scale.max():
        raise ValueError(
            f"affine must be scale + translation (no rotation/shear) for a pinhole crop camera; got {affine.tolist()}"
        )
    new_focal = np.array([affine[0, 0] * focal[0], affine[1, 1] * focal[1]])
    new_principal = affine[:, :2] @ principal + affine[:, 2]
    return new_focal, new_principal
