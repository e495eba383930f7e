"""Z-buffer triangle rasteriser for a pinhole camera, vectorised over triangles in NumPy.

Camera: the OpenCV frame of data_formats.md 0.1 (x right, y down, z forward, metres);
``u = fx X / Z + cx``, ``v = fy Y / Z + cy``; pixel ``(i, j)`` (row, column) has its centre at
``(u, v) = (j, i)``. A pixel is covered by a triangle when its centre lies inside or on the edge
of the projected triangle (edges inclusive; a pixel exactly on an edge shared by two triangles is
claimed by both and the depth test decides, so closed meshes render without cracks).

Depth is perspective-correct: ``1 / Z`` is affine in screen space, so it is interpolated with the
screen-space barycentrics and inverted. Vertex colours are interpolated perspective-correctly too
(screen barycentrics weighted by ``1 / Z_k`` and renormalised), i.e. they equal the barycentric
blend at the 3D surface point seen through the pixel. Nearest surface wins; exact depth ties go to
the lower face index.

Triangles with any vertex closer than ``near_m`` (including behind the camera) are dropped whole,
not clipped: for hands and objects in front of the camera this never triggers, and clipping would
add vertices the label code cannot attribute to parts. Faces that project to zero area are dropped.
Both sides of every face are drawn unless ``cull_back_faces`` is set.

Pure NumPy (float64 internally), no Python loop over triangles or pixels: the bounding-box rows
of all triangles, then the pixel centres of each row's span, are enumerated at once with
``np.repeat`` / ``cumsum``; the depth test is ``np.maximum.at`` on ``1 / Z`` per pixel followed by
``np.minimum.at`` on the face index among the nearest candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["RenderResult", "render_mesh"]

# Candidate (pixel, face) pairs handled per batch; bounds temporary memory (~100 B each) for
# large images with large triangles while leaving typical hand crops in a single batch.
_MAX_CANDIDATES_PER_BATCH = 1 << 21


class RenderResult(NamedTuple):
    """Output of :func:`render_mesh`; ``H, W`` = image size.

    Attributes:
      depth_m: ``[H, W]`` float32 camera-frame Z of the visible surface; ``np.inf`` on background.
      face_id: ``[H, W]`` int32 index of the visible face; -1 on background.
      label: ``[H, W]`` int32 ``face_labels`` of the visible face; -1 on background (and
        everywhere when no labels were given).
      rgb: ``[H, W, 3]`` float32 shaded colour in [0, 1]; 0 on background.
      mask: ``[H, W]`` bool, True where any face is visible.
    """

    depth_m: np.ndarray
    face_id: np.ndarray
    label: np.ndarray
    rgb: np.ndarray
    mask: np.ndarray


def _finite_array(name: str, value, shape_ok, spec: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real array {spec}, got {type(value).__name__}") from err
    if not shape_ok(array.shape):
        raise ValueError(f"{name} must have shape {spec}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got NaN or inf in {spec}")
    return array


def _pair(name: str, value, positive: bool) -> tuple[float, float]:
    array = _finite_array(name, value, lambda s: s == (2,), "(2,)")
    if positive and np.any(array <= 0):
        raise ValueError(f"{name} must be > 0, got {tuple(array)}")
    return float(array[0]), float(array[1])


def _image_size(image_size_px) -> tuple[int, int]:
    size = np.asarray(image_size_px)
    if size.shape != (2,) or not np.issubdtype(size.dtype, np.number):
        raise ValueError(f"image_size_px must be (H, W), got {image_size_px!r}")
    if np.any(size != np.round(size)) or np.any(size < 1):
        raise ValueError(f"image_size_px must be two integers >= 1 (H, W), got {image_size_px!r}")
    return int(size[0]), int(size[1])


def check_mesh(vertices_cam_m, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validates a mesh; returns ``(vertices [V, 3] float64, faces [F, 3] int64)``."""
    vertices = _finite_array("vertices_cam_m", vertices_cam_m,
                             lambda s: len(s) == 2 and s[1] == 3, "[V, 3]")
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape [F, 3], got shape {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"faces must index vertices 0..{len(vertices) - 1}, got range "
            f"{faces.min()}..{faces.max()}"
        )
    return vertices, faces


def _rasterize_batch(edge_a, edge_b, edge_c, area, inv_z_vertex, box, width, height, face_offset):
    """Covered (pixel, face) candidates of one batch of faces, nearest per pixel.

    Candidates are enumerated in two levels without Python loops: first every bounding-box row of
    every face, then the pixels of each row's span, both with ``np.repeat`` over run lengths.

    Args:
      edge_a, edge_b, edge_c: ``[3, B]`` edge-function coefficients, ``E_k = c_k + b_k y + a_k x``
        (>= 0 inside; see ``render_mesh``).
      area: ``[B]`` twice the unsigned screen area (``E_0 + E_1 + E_2``).
      inv_z_vertex: ``[3, B]`` ``1 / Z`` per corner.
      box: ``(i0, j0, nh, nw)`` each ``[B]``: first row/column and bounding-box size in pixels.
      width, height: image size W, H.
      face_offset: index of the batch's first face in the caller's face list.

    Returns:
      ``(pixel [P], face [P], inv_z [P], bary [P, 3])`` for the winning candidate per pixel
      (screen-space barycentrics); ``face`` indexes into the batch plus ``face_offset``.
    """
    i0, j0, nh, nw = box
    row_face = np.repeat(np.arange(len(nh)), nh)  # [R]
    row_y = np.take(i0, row_face) + (np.arange(len(row_face)) - np.repeat(np.cumsum(nh) - nh, nh))
    y = row_y.astype(np.float64)
    # Along a row y is fixed, so each edge function is affine in x: E_k = r_k + a_k x with
    # r_k = c_k + b_k y. Each edge with a_k != 0 bounds x to one side of -r_k / a_k: intersecting
    # the three bounds with the bounding box gives the row's span. The span is widened by a
    # generous rounding margin and only preselects candidates; the E_k >= 0 test below decides.
    x_lo = np.take(j0, row_face).astype(np.float64)
    x_hi = x_lo + np.take(nw, row_face) - 1.0
    row_term, row_slope = [], []
    for k in range(3):
        r = np.take(edge_c[k], row_face) + np.take(edge_b[k], row_face) * y
        slope = np.take(edge_a[k], row_face)
        steep = np.abs(slope) > 1e-9 * (np.abs(r) + 1.0)  # else: nearly parallel to the row
        safe = np.where(steep, slope, 1.0)
        root = -r / safe
        # Rounding of E = r + a x is ~1e-16 (|r| + |a x|), i.e. ~1e-16 (|root| + |x|) in x.
        margin = 1e-9 * (np.abs(root) + width + 1.0)
        x_lo = np.where(steep & (slope > 0), np.maximum(x_lo, root - margin), x_lo)
        x_hi = np.where(steep & (slope < 0), np.minimum(x_hi, root + margin), x_hi)
        row_term.append(r)
        row_slope.append(slope)
    x_first = np.ceil(x_lo).astype(np.int64)
    row_width = np.maximum(np.floor(x_hi).astype(np.int64) - x_first + 1, 0)
    cand_row = np.repeat(np.arange(len(row_face)), row_width)  # [N]
    cand_x = np.repeat(x_first - (np.cumsum(row_width) - row_width), row_width)
    cand_x += np.arange(len(cand_row))
    x = cand_x.astype(np.float64)
    edge = []
    inside = None
    for k in range(3):
        value = np.take(row_term[k], cand_row)
        value += np.take(row_slope[k], cand_row) * x
        inside = value >= 0.0 if inside is None else inside & (value >= 0.0)
        edge.append(value)
    inside = np.flatnonzero(inside)
    cand_row = np.take(cand_row, inside)
    local_face = np.take(row_face, cand_row)
    edge = [np.take(value, inside) for value in edge]
    # 1/Z is affine in screen space: sum_k E_k / Z_k / area.
    inv_z = (edge[0] * np.take(inv_z_vertex[0], local_face)
             + edge[1] * np.take(inv_z_vertex[1], local_face)
             + edge[2] * np.take(inv_z_vertex[2], local_face)) / np.take(area, local_face)
    pixel = np.take(row_y, cand_row) * width + np.take(cand_x, inside)
    # Depth test without sorting: the per-pixel maximum of 1/Z, then among the candidates that
    # reach it the lowest face (a face covers a pixel at most once, so the winner is unique).
    best = np.zeros(height * width)
    np.maximum.at(best, pixel, inv_z)
    nearest = np.flatnonzero(inv_z == np.take(best, pixel))
    lowest = np.full(height * width, len(nh))
    np.minimum.at(lowest, np.take(pixel, nearest), np.take(local_face, nearest))
    win = nearest[np.take(local_face, nearest) == np.take(lowest, np.take(pixel, nearest))]
    face = np.take(local_face, win)
    bary = np.stack([np.take(value, win) for value in edge], axis=1) / np.take(area, face)[:, None]
    return np.take(pixel, win), face + face_offset, np.take(inv_z, win), bary


def render_mesh(
    vertices_cam_m,
    faces,
    focal_px: Sequence[float],
    principal_px: Sequence[float],
    image_size_px: Sequence[int],
    *,
    face_labels=None,
    vertex_colors=None,
    light_dir_cam: Sequence[float] = (0.0, 0.0, 1.0),
    ambient: float = 0.3,
    diffuse: float = 0.7,
    near_m: float = 1e-3,
    cull_back_faces: bool = False,
) -> RenderResult:
    """Renders a triangle mesh with a z-buffer (see the module docstring for conventions).

    Shading is Lambert, two-sided and flat per face:
    ``rgb = colour * (ambient + diffuse * |n . l|)`` with ``n`` the unit face normal and ``l`` the
    unit ``light_dir_cam``, clipped to [0, 1]; ``colour`` is the perspective-correct blend of
    ``vertex_colors`` (white when None).

    Args:
      vertices_cam_m: ``[V, 3]`` camera-frame vertices in metres.
      faces: ``[F, 3]`` integer vertex indices.
      focal_px: ``(fx, fy)`` in pixels, > 0.
      principal_px: ``(cx, cy)`` in pixels.
      image_size_px: ``(H, W)``.
      face_labels: ``[F]`` integers copied to ``label`` for the visible face, or None.
      vertex_colors: ``[V, 3]`` RGB in [0, 1], or None (white).
      light_dir_cam: ``(3,)`` light direction in the camera frame (sign irrelevant, two-sided).
      ambient: ambient term, >= 0.
      diffuse: diffuse weight, >= 0.
      near_m: near plane in metres, > 0; faces with a vertex at ``Z < near_m`` are dropped.
      cull_back_faces: drop faces whose normal ``(v1 - v0) x (v2 - v0)`` points away from the
        camera (``n . v0 > 0``), as OpenGL does for single-sided materials; for closed,
        outward-oriented meshes this changes nothing but speed.

    Returns:
      :class:`RenderResult` with ``[H, W]`` depth/face/label/mask and ``[H, W, 3]`` rgb.
    """
    vertices, faces = check_mesh(vertices_cam_m, faces)
    fx, fy = _pair("focal_px", focal_px, positive=True)
    cx, cy = _pair("principal_px", principal_px, positive=False)
    height, width = _image_size(image_size_px)
    num_faces = len(faces)
    if face_labels is not None:
        face_labels = np.asarray(face_labels)
        if face_labels.shape != (num_faces,):
            raise ValueError(
                f"face_labels must have shape [F={num_faces}], got {face_labels.shape}")
        if face_labels.size and not np.issubdtype(face_labels.dtype, np.integer):
            raise ValueError(f"face_labels must be integers, got dtype {face_labels.dtype}")
    if vertex_colors is not None:
        vertex_colors = _finite_array("vertex_colors", vertex_colors,
                                      lambda s: s == (len(vertices), 3), f"[V={len(vertices)}, 3]")
        if np.any(vertex_colors < 0.0) or np.any(vertex_colors > 1.0):
            raise ValueError("vertex_colors must lie in [0, 1]")
    light = _finite_array("light_dir_cam", light_dir_cam, lambda s: s == (3,), "(3,)")
    if not np.linalg.norm(light) > 0:
        raise ValueError("light_dir_cam must be a non-zero vector")
    light = light / np.linalg.norm(light)
    for name, value in (("ambient", ambient), ("diffuse", diffuse)):
        if not (np.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not (np.isfinite(near_m) and near_m > 0.0):
        raise ValueError(f"near_m must be a finite distance > 0 (metres), got {near_m}")

    tri = vertices[faces]  # [F, 3, 3]
    z = tri[..., 2]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], unnormalised
    drawn = np.all(z >= near_m, axis=1)
    if cull_back_faces:
        drawn &= np.einsum("fk,fk->f", normal, tri[:, 0]) <= 0.0
    kept = np.flatnonzero(drawn)
    z = z[kept]
    su = fx * tri[kept, :, 0] / z + cx
    sv = fy * tri[kept, :, 1] / z + cy
    # Edge function of edge (a, b) at pixel centre p = (x, y):
    #   E_ab(p) = (a - p) x (b - p) = (u_a v_b - u_b v_a) + (v_a - v_b) x + (u_b - u_a) y,
    # for the edges opposite corners 0, 1, 2: (1, 2), (2, 0), (0, 1). A neighbour traversing a
    # shared edge as (b, a) gets exactly negated coefficients and hence exactly negated values, so
    # a centre on the shared edge gets 0 in both faces and no crack can open.
    ua, ub = su[:, [1, 2, 0]], su[:, [2, 0, 1]]
    va, vb = sv[:, [1, 2, 0]], sv[:, [2, 0, 1]]
    edge_c, edge_a, edge_b = ua * vb - ub * va, va - vb, ub - ua
    area2 = ((su[:, 1] - su[:, 0]) * (sv[:, 2] - sv[:, 0])
             - (su[:, 2] - su[:, 0]) * (sv[:, 1] - sv[:, 0]))
    j0 = np.maximum(np.ceil(su.min(axis=1)), 0)
    j1 = np.minimum(np.floor(su.max(axis=1)), width - 1)
    i0 = np.maximum(np.ceil(sv.min(axis=1)), 0)
    i1 = np.minimum(np.floor(sv.max(axis=1)), height - 1)
    nw = np.maximum(j1 - j0 + 1, 0).astype(np.int64)
    nh = np.maximum(i1 - i0 + 1, 0).astype(np.int64)
    live = (area2 != 0.0) & (nw > 0) & (nh > 0)
    kept, z, area2 = kept[live], z[live], area2[live]
    # Flip clockwise faces (sign flips are exact) so that "inside" is E_k >= 0 for every face.
    sign = np.sign(area2)[:, None]
    edge_a, edge_b, edge_c = sign * edge_a[live], sign * edge_b[live], sign * edge_c[live]
    inv_z_vertex = 1.0 / z
    i0, j0, nh, nw = i0[live].astype(np.int64), j0[live].astype(np.int64), nh[live], nw[live]

    depth = np.full(height * width, np.inf)
    face_id = np.full(height * width, -1, dtype=np.int64)  # index into `kept` until the end
    best_inv_z = np.zeros(height * width)
    best_bary = np.zeros((height * width, 3))
    # Batches of consecutive faces, each with at most _MAX_CANDIDATES_PER_BATCH bounding-box
    # pixels (a single larger face forms its own batch). Later batches hold higher face indices,
    # so on an exact depth tie the pixel already written keeps its (lower) face.
    cumulative = np.cumsum(nh * nw)
    start = 0
    while start < len(kept):
        base = cumulative[start - 1] if start else 0
        stop = max(int(np.searchsorted(cumulative, base + _MAX_CANDIDATES_PER_BATCH, "right")),
                   start + 1)
        part = slice(start, stop)
        pixel, face, inv_z, bary = _rasterize_batch(
            edge_a[part].T.copy(), edge_b[part].T.copy(), edge_c[part].T.copy(),
            np.abs(area2[part]), inv_z_vertex[part].T.copy(),
            (i0[part], j0[part], nh[part], nw[part]), width, height, start)
        closer = inv_z > best_inv_z[pixel]
        pixel = pixel[closer]
        best_inv_z[pixel] = inv_z[closer]
        face_id[pixel] = face[closer]
        best_bary[pixel] = bary[closer]
        start = stop

    covered = np.flatnonzero(face_id >= 0)
    kept_index = face_id[covered]
    depth[covered] = 1.0 / best_inv_z[covered]
    face_id[covered] = kept[kept_index]
    mask = face_id >= 0

    label = np.full(height * width, -1, dtype=np.int64)
    if face_labels is not None:
        label[covered] = face_labels[face_id[covered]]

    rgb = np.zeros((height * width, 3))
    if len(covered):
        normal = normal[kept]
        cos = (normal @ light) / np.linalg.norm(normal, axis=1)
        shade = (ambient + diffuse * np.abs(cos))[kept_index]
        if vertex_colors is None:
            colour = np.ones((len(covered), 3))
        else:
            # Perspective-correct weights: screen barycentric / Z_k, renormalised by 1 / Z.
            weight = best_bary[covered] * inv_z_vertex[kept_index] * depth[covered, None]
            colour = np.einsum("pk,pkc->pc", weight, vertex_colors[faces[face_id[covered]]])
        rgb[covered] = np.clip(colour * shade[:, None], 0.0, 1.0)

    return RenderResult(
        depth_m=depth.reshape(height, width).astype(np.float32),
        face_id=face_id.reshape(height, width).astype(np.int32),
        label=label.reshape(height, width).astype(np.int32),
        rgb=rgb.reshape(height, width, 3).astype(np.float32),
        mask=mask.reshape(height, width),
    )
