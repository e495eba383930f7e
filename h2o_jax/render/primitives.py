"""Closed triangle meshes for synthetic scenes: sphere, box, capped cylinder, and mesh merging.

Every primitive is centred at the origin, watertight (each edge is shared by exactly two faces,
traversed in opposite directions) and outward-oriented: the vertices of each face run
counter-clockwise seen from outside, so ``cross(v1 - v0, v2 - v0)`` points out of the solid.
Vertices are float64 metres ``[V, 3]``; faces are int32 ``[F, 3]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["box_mesh", "cylinder_mesh", "merge_meshes", "sphere_mesh"]


def _positive_length(name: str, value) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite length > 0 (metres), got {value}")
    return value


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flips faces whose normal points towards the origin.

    Valid only for convex solids that contain the origin (all primitives here): there the
    outward normal of every face has a positive dot product with the face centroid.
    """
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = np.einsum("fk,fk->f", normal, tri.mean(axis=1)) < 0.0
    faces = faces.copy()
    faces[inward] = faces[inward][:, ::-1]
    return faces


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Unit icosahedron: the 12 cyclic permutations of (0, +-1, +-phi), faces found by edge length.

    Faces are the vertex triples whose three pairwise distances all equal the edge length 2, so
    no face table has to be typed in.
    """
    phi = (1.0 + np.sqrt(5.0)) / 2.0
    base = np.array([[0.0, a, b * phi] for a in (-1.0, 1.0) for b in (-1.0, 1.0)])
    vertices = np.concatenate([np.roll(base, shift, axis=1) for shift in range(3)])
    dist = np.linalg.norm(vertices[:, None] - vertices[None], axis=-1)
    edge = np.isclose(dist, 2.0)
    i, j, k = np.meshgrid(*(np.arange(12),) * 3, indexing="ij")
    triple = (i < j) & (j < k) & edge[i, j] & edge[j, k] & edge[i, k]
    faces = np.stack([i[triple], j[triple], k[triple]], axis=1)
    assert faces.shape == (20, 3)  # a construction invariant, not an input check
    vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices, _orient_outward(vertices, faces)


def _subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Splits every triangle into four at its edge midpoints (shared midpoints are reused)."""
    edges = faces[:, [[0, 1], [1, 2], [2, 0]]]  # [F, 3, 2], edge k = (corner k, corner k+1)
    unique_edges, inverse = np.unique(np.sort(edges, axis=-1).reshape(-1, 2), axis=0,
                                      return_inverse=True)
    midpoints = vertices[unique_edges].mean(axis=1)
    mid = len(vertices) + inverse.reshape(-1, 3)  # [F, 3]: midpoint of edge (k, k+1)
    a, b, c = faces.T
    ab, bc, ca = mid.T
    # The four children keep the parent's orientation.
    new_faces = np.concatenate([
        np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1),
        np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1),
    ])
    return np.concatenate([vertices, midpoints]), new_faces


def sphere_mesh(radius_m: float, subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere: an icosahedron subdivided ``subdivisions`` times, vertices pushed to the sphere.

    Sizes: ``V = 10 * 4**s + 2``, ``F = 20 * 4**s`` (s = 2: 162 / 320, s = 3: 642 / 1280).
    The mesh is inscribed: every vertex lies at ``radius_m``, so its volume is slightly below
    ``4/3 pi r^3``.

    Args:
      radius_m: sphere radius in metres, > 0.
      subdivisions: number of 1-to-4 splits, 0..7.

    Returns:
      ``(vertices [V, 3] float64 metres, faces [F, 3] int32)``.
    """
    radius_m = _positive_length("radius_m", radius_m)
    if int(subdivisions) != subdivisions or not 0 <= subdivisions <= 7:
        raise ValueError(f"subdivisions must be an integer in 0..7, got {subdivisions}")
    vertices, faces = _icosahedron()
    for _ in range(int(subdivisions)):
        vertices, faces = _subdivide(vertices, faces)
        vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return radius_m * vertices, faces.astype(np.int32)


def box_mesh(size_xyz_m: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box with edge lengths ``size_xyz_m``: 8 vertices, 12 faces (two per side).

    Args:
      size_xyz_m: ``(sx, sy, sz)`` edge lengths in metres, each > 0.

    Returns:
      ``(vertices [8, 3] float64 metres, faces [12, 3] int32)``; vertex ``k`` has the sign
      pattern of bits ``(k & 1, k & 2, k & 4)`` in x, y, z (bit set = positive half).
    """
    size = np.asarray(size_xyz_m, dtype=np.float64)
    if size.shape != (3,):
        raise ValueError(f"size_xyz_m must have shape [3] (sx, sy, sz), got shape {size.shape}")
    for axis, name in enumerate("xyz"):
        _positive_length(f"size_xyz_m[{axis}] ({name})", size[axis])
    bits = (np.arange(8)[:, None] >> np.arange(3)[None]) & 1  # [8, 3] in {0, 1}
    vertices = (bits - 0.5) * size
    faces = []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        for side in (0, 1):
            # Corners of this side in cyclic order around the axis: (u, v) bits 00, 10, 11, 01.
            cycle = ((0, 0), (1, 0), (1, 1), (0, 1))
            quad = [(side << axis) | (bu << u) | (bv << v) for bu, bv in cycle]
            faces += [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
    faces = _orient_outward(vertices, np.asarray(faces))
    return vertices, faces.astype(np.int32)


def cylinder_mesh(
    radius_m: float, height_m: float, segments: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Capped cylinder along z, from ``z = -height_m / 2`` to ``+height_m / 2``.

    The side is a ``segments``-gon prism (ring vertices at ``radius_m``); each cap is a fan
    around a centre vertex. Sizes: ``V = 2 * segments + 2``, ``F = 4 * segments``. Vertex
    order: bottom ring, top ring, bottom centre, top centre.

    Args:
      radius_m: radius in metres, > 0.
      height_m: height in metres, > 0.
      segments: ring vertices, >= 3.

    Returns:
      ``(vertices [V, 3] float64 metres, faces [F, 3] int32)``.
    """
    radius_m = _positive_length("radius_m", radius_m)
    height_m = _positive_length("height_m", height_m)
    if int(segments) != segments or segments < 3:
        raise ValueError(f"segments must be an integer >= 3, got {segments}")
    n = int(segments)
    angle = 2.0 * np.pi * np.arange(n) / n
    ring = np.stack([radius_m * np.cos(angle), radius_m * np.sin(angle)], axis=1)
    half = height_m / 2.0
    vertices = np.concatenate([
        np.concatenate([ring, np.full((n, 1), -half)], axis=1),
        np.concatenate([ring, np.full((n, 1), half)], axis=1),
        [[0.0, 0.0, -half], [0.0, 0.0, half]],
    ])
    k = np.arange(n)
    k1 = (k + 1) % n
    bottom, top = 2 * n, 2 * n + 1
    faces = np.concatenate([
        # Side quad (k, k+1) split in two, counter-clockwise seen from outside.
        np.stack([k, k1, n + k1], 1), np.stack([k, n + k1, n + k], 1),
        np.stack([np.full(n, top), n + k, n + k1], 1),  # top cap, seen from +z
        np.stack([np.full(n, bottom), k1, k], 1),  # bottom cap, seen from -z
    ])
    faces = _orient_outward(vertices, faces)  # a no-op when the order above is right
    return vertices, faces.astype(np.int32)


def merge_meshes(
    meshes: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates meshes into one: vertices stacked in order, faces offset accordingly.

    Face ``f`` of the result comes from the mesh whose face range contains ``f``, so callers can
    recover per-mesh face ranges from the cumulative face counts.

    Args:
      meshes: ``[(vertices [V_i, 3], faces [F_i, 3] int), ...]``, at least one.

    Returns:
      ``(vertices [sum V_i, 3] float64, faces [sum F_i, 3] int32)``.
    """
    if len(meshes) == 0:
        raise ValueError("meshes must hold at least one (vertices, faces) pair, got none")
    all_vertices, all_faces, offset = [], [], 0
    for index, (vertices, faces) in enumerate(meshes):
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(
                f"meshes[{index}] vertices must have shape [V, 3], got {vertices.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(
                f"meshes[{index}] faces must be an integer array [F, 3], "
                f"got {faces.dtype} {faces.shape}"
            )
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"meshes[{index}] faces index outside 0..{len(vertices) - 1}")
        all_vertices.append(vertices)
        all_faces.append(faces.astype(np.int64) + offset)
        offset += len(vertices)
    return np.concatenate(all_vertices), np.concatenate(all_faces).astype(np.int32)
