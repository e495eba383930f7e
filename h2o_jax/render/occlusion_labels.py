"""H2ONet's finger- and hand-level occlusion labels (paper Sec. 3.2, Fig. 3a; architecture.md 16.2).

Recipe (label 1 / True = occluded):
1. Render the hand mesh with one label per part (0 thumb, 1 index, 2 middle, 3 ring, 4 little,
   5 palm) at the image's intrinsics -> label image ``L`` and render mask ``M``. Back faces are
   culled by default, as in the official render: pyrender's ``Mesh.from_trimesh`` default material
   is single-sided, so OpenGL culls faces turned away from the camera. This matters only where
   the (open at the wrist) MANO mesh shows its inside.
2. Mask it with the ground-truth hand segmentation ``S``: outside ``S`` the pixel shows no hand
   part (the official code pastes the photo there, which could by chance match a part colour,
   e.g. saturated white = palm; we write -1, which never equals a part).
3. A vertex is *visible* iff the masked label at its integer-truncated projected pixel
   (``j = trunc(u)``, ``i = trunc(v)``) equals its own part: hidden both by objects (outside
   ``S``) and by other hand parts in front. Vertices projecting outside the image, or with
   ``Z <= 0``, are not visible (the official code wraps negative indices and sends
   ``x >= W`` / ``y >= H`` to pixel (0, 0); we do neither).
4. ``rule="official"`` (the released generator, default): a part is occluded iff fewer than
   ``min_visible_vertices`` (30) of its vertices are visible; the hand iff
   ``|S| / |M| < min_visible_hand_ratio`` (0.40), with ``|S|`` all segmentation pixels as in the
   released code (the ratio can exceed 1).
   ``rule="paper"``: a part is occluded iff more than ``max_occluded_vertices`` (50) of its
   vertices are not visible; the hand iff more than ``max_occluded_pixel_ratio`` (50 %) of the
   rendered hand pixels ``M`` lie outside ``S``.
   If nothing of the hand is rendered (``|M| = 0``) the visible ratio is defined as 0.

Face parts: by default the majority part of a face's three vertices (the first vertex's part when
all three differ). MANO's official face sets (architecture.md 16.1) are fixed index lists that need
not agree with this rule on faces spanning two parts; pass them as ``face_part`` for parity with
the released labels.

Synthetic scenes: :func:`visible_hand_mask` renders hand and occluders together and returns the
pixels whose front-most face belongs to the hand, i.e. the segmentation ``S`` such a scene would
have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from h2o_jax.render.primitives import merge_meshes
from h2o_jax.render.rasterizer import _finite_array, _image_size, _pair, check_mesh, render_mesh

__all__ = [
    "NUM_PARTS",
    "PART_NAMES",
    "OcclusionLabels",
    "face_parts_from_vertex_parts",
    "occlusion_labels",
    "vertex_part_visibility",
    "visible_hand_mask",
]

PART_NAMES = ("thumb", "index", "middle", "ring", "little", "palm")
NUM_PARTS = len(PART_NAMES)
RULES = ("official", "paper")


class OcclusionLabels(NamedTuple):
    """Occlusion labels of one image (True = occluded).

    Attributes:
      fingers: ``[5]`` bool, thumb, index, middle, ring, little.
      palm: bool (computed by the same rule as the fingers; the official loaders do not read it).
      hand: bool, the hand-level ("global") label.
      visible_vertices: ``[6]`` int, visible vertices per part (fingers, then palm).
      visible_hand_ratio: ``|S| / |M|`` for the official rule, ``|S and M| / |M|`` for the paper
        rule (0 when nothing is rendered).
    """

    fingers: np.ndarray
    palm: bool
    hand: bool
    visible_vertices: np.ndarray
    visible_hand_ratio: float

    def to_json_dict(self) -> dict[str, int]:
        """The label file layout of data_formats.md 2.8: 0/1 ints thumb..little, palm, global."""
        out = {name: int(flag) for name, flag in zip(PART_NAMES[:5], self.fingers)}
        out["palm"] = int(self.palm)
        out["global"] = int(self.hand)
        return out


def _check_vertex_part(vertex_part, num_vertices: int) -> np.ndarray:
    vertex_part = np.asarray(vertex_part)
    if vertex_part.shape != (num_vertices,):
        raise ValueError(f"vertex_part must have shape [V={num_vertices}], got {vertex_part.shape}")
    if vertex_part.size and (not np.issubdtype(vertex_part.dtype, np.integer)
                             or vertex_part.min() < 0 or vertex_part.max() >= NUM_PARTS):
        raise ValueError(f"vertex_part must hold integer parts 0..{NUM_PARTS - 1} "
                         f"(0 thumb .. 4 little, 5 palm)")
    return vertex_part.astype(np.int64)


def _check_hand_mask(hand_mask, shape: tuple[int, int]) -> np.ndarray:
    hand_mask = np.asarray(hand_mask)
    if hand_mask.dtype != np.bool_:
        raise ValueError(f"hand_mask must be a bool array [H, W], got dtype {hand_mask.dtype}")
    if hand_mask.shape != shape:
        raise ValueError(f"hand_mask must have shape [H, W] = {shape}, got {hand_mask.shape}")
    return hand_mask


def face_parts_from_vertex_parts(faces, vertex_part) -> np.ndarray:
    """Part of each face: the majority of its vertices' parts, else its first vertex's part.

    Args:
      faces: ``[F, 3]`` integer vertex indices.
      vertex_part: ``[V]`` integer part per vertex.

    Returns:
      ``[F]`` int32.
    """
    faces = np.asarray(faces)
    integer = not faces.size or np.issubdtype(faces.dtype, np.integer)
    if faces.ndim != 2 or faces.shape[1] != 3 or not integer:
        raise ValueError(f"faces must be an integer array [F, 3], got {faces.dtype} {faces.shape}")
    vertex_part = np.asarray(vertex_part)
    if vertex_part.ndim != 1 or (faces.size and faces.max() >= len(vertex_part)):
        raise ValueError(
            f"vertex_part must have shape [V] covering the face indices, got {vertex_part.shape}")
    a, b, c = vertex_part[faces].T
    # a wins when it matches b or c, or when all three differ; otherwise b == c is the majority.
    return np.where(b == c, b, a).astype(np.int32)


def vertex_part_visibility(
    label_image, hand_mask, vertices_cam_m, vertex_part, focal_px: Sequence[float],
    principal_px: Sequence[float],
) -> np.ndarray:
    """Whether each vertex shows its own part in the segmentation-masked label image (step 3).

    Args:
      label_image: ``[H, W]`` int part label of the hand render (-1 background).
      hand_mask: ``[H, W]`` bool hand segmentation ``S``.
      vertices_cam_m: ``[V, 3]`` camera-frame vertices in metres.
      vertex_part: ``[V]`` int part per vertex, 0..5.
      focal_px: ``(fx, fy)``.
      principal_px: ``(cx, cy)``.

    Returns:
      ``[V]`` bool.
    """
    label_image = np.asarray(label_image)
    integer = not label_image.size or np.issubdtype(label_image.dtype, np.integer)
    if label_image.ndim != 2 or not integer:
        raise ValueError(f"label_image must be an integer array [H, W], got {label_image.dtype} "
                         f"{label_image.shape}")
    hand_mask = _check_hand_mask(hand_mask, label_image.shape)
    vertices = _finite_array("vertices_cam_m", vertices_cam_m,
                             lambda s: len(s) == 2 and s[1] == 3, "[V, 3]")
    vertex_part = _check_vertex_part(vertex_part, len(vertices))
    fx, fy = _pair("focal_px", focal_px, positive=True)
    cx, cy = _pair("principal_px", principal_px, positive=False)
    height, width = label_image.shape
    z = vertices[:, 2]
    in_front = z > 0.0
    safe_z = np.where(in_front, z, 1.0)
    u = fx * vertices[:, 0] / safe_z + cx
    v = fy * vertices[:, 1] / safe_z + cy
    # Test the unrounded coordinates: trunc(-0.5) = 0 would otherwise pull outside points in.
    inside = in_front & (u >= 0.0) & (v >= 0.0) & (u < width) & (v < height)
    j = np.where(inside, u, 0.0).astype(np.int64)  # astype truncates towards zero, as the official
    i = np.where(inside, v, 0.0).astype(np.int64)
    masked = np.where(hand_mask, label_image, -1)
    return inside & (masked[i, j] == vertex_part)


def visible_hand_mask(
    hand_vertices_cam_m, hand_faces, occluder_vertices_cam_m, occluder_faces,
    focal_px: Sequence[float], principal_px: Sequence[float], image_size_px: Sequence[int],
    *, near_m: float = 1e-3, cull_back_faces: bool = False,
) -> np.ndarray:
    """Hand segmentation of a synthetic scene: pixels whose front-most surface is the hand.

    Hand and occluders are rendered together with one z-buffer, so an occluder hides the hand
    only where it is nearer to the camera.

    Args:
      hand_vertices_cam_m: ``[V, 3]`` metres.
      hand_faces: ``[F, 3]`` int.
      occluder_vertices_cam_m: ``[V_o, 3]`` metres (may be empty with empty faces).
      occluder_faces: ``[F_o, 3]`` int.
      focal_px, principal_px, image_size_px: camera as in :func:`render_mesh`.
      near_m: near plane, see :func:`render_mesh`.
      cull_back_faces: see :func:`render_mesh`; off by default because real surfaces are seen
        from both sides.

    Returns:
      ``[H, W]`` bool.
    """
    hand = check_mesh(hand_vertices_cam_m, hand_faces)
    occluder = check_mesh(np.reshape(occluder_vertices_cam_m, (-1, 3)), occluder_faces)
    vertices, faces = merge_meshes([hand, occluder])
    face_id = render_mesh(vertices, faces, focal_px, principal_px, image_size_px,
                          near_m=near_m, cull_back_faces=cull_back_faces).face_id
    return (face_id >= 0) & (face_id < len(hand[1]))


def occlusion_labels(
    vertices_cam_m,
    faces,
    vertex_part,
    focal_px: Sequence[float],
    principal_px: Sequence[float],
    image_size_px: Sequence[int],
    hand_mask,
    *,
    rule: str = "official",
    min_visible_vertices: int = 30,
    min_visible_hand_ratio: float = 0.40,
    max_occluded_vertices: int = 50,
    max_occluded_pixel_ratio: float = 0.5,
    face_part=None,
    near_m: float = 1e-3,
    cull_back_faces: bool = True,
) -> OcclusionLabels:
    """Finger, palm and hand occlusion labels of one image (module docstring, steps 1-4).

    Args:
      vertices_cam_m: ``[V, 3]`` ground-truth hand mesh in the camera frame, metres.
      faces: ``[F, 3]`` int.
      vertex_part: ``[V]`` int, 0 thumb, 1 index, 2 middle, 3 ring, 4 little, 5 palm.
      focal_px: ``(fx, fy)``.
      principal_px: ``(cx, cy)``.
      image_size_px: ``(H, W)``.
      hand_mask: ``[H, W]`` bool ground-truth hand segmentation.
      rule: ``"official"`` (released code) or ``"paper"`` (Sec. 3.2 text).
      min_visible_vertices: official: part occluded iff visible vertices < this.
      min_visible_hand_ratio: official: hand occluded iff ``|S| / |M|`` < this.
      max_occluded_vertices: paper: part occluded iff occluded vertices > this.
      max_occluded_pixel_ratio: paper: hand occluded iff ``|M and not S| / |M|`` > this.
      face_part: ``[F]`` int part per face, or None for :func:`face_parts_from_vertex_parts`.
      near_m: near plane of the render, metres.
      cull_back_faces: drop faces turned away from the camera (outward-oriented faces needed).

    Returns:
      :class:`OcclusionLabels`.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    vertices, faces = check_mesh(vertices_cam_m, faces)
    vertex_part = _check_vertex_part(vertex_part, len(vertices))
    shape = _image_size(image_size_px)
    hand_mask = _check_hand_mask(hand_mask, shape)
    if face_part is None:
        face_part = face_parts_from_vertex_parts(faces, vertex_part)
    else:
        face_part = np.asarray(face_part)
        if face_part.shape != (len(faces),) or (face_part.size and (
                not np.issubdtype(face_part.dtype, np.integer)
                or face_part.min() < 0 or face_part.max() >= NUM_PARTS)):
            raise ValueError(f"face_part must hold integer parts 0..{NUM_PARTS - 1} with shape "
                             f"[F={len(faces)}], got {face_part.dtype} {face_part.shape}")

    render = render_mesh(vertices, faces, focal_px, principal_px, shape, face_labels=face_part,
                         near_m=near_m, cull_back_faces=cull_back_faces)
    visible = vertex_part_visibility(render.label, hand_mask, vertices, vertex_part, focal_px,
                                     principal_px)
    visible_count = np.bincount(vertex_part[visible], minlength=NUM_PARTS)
    part_size = np.bincount(vertex_part, minlength=NUM_PARTS)
    rendered = int(render.mask.sum())

    if rule == "official":
        part_occluded = visible_count < min_visible_vertices
        ratio = float(hand_mask.sum()) / rendered if rendered else 0.0
        hand_occluded = ratio < min_visible_hand_ratio
    else:
        part_occluded = (part_size - visible_count) > max_occluded_vertices
        ratio = float((hand_mask & render.mask).sum()) / rendered if rendered else 0.0
        hand_occluded = (1.0 - ratio) > max_occluded_pixel_ratio
    return OcclusionLabels(
        fingers=part_occluded[:5].astype(bool),
        palm=bool(part_occluded[5]),
        hand=bool(hand_occluded),
        visible_vertices=visible_count.astype(np.int64),
        visible_hand_ratio=ratio,
    )
