"""Mesh hierarchy for the spiral decoder: quadric-error decimation and the resampling tables.

As in COMA / MobRecon's mesh sampling, every level keeps a subset of the finer level's vertices
(an edge collapses onto one of its end points, so no new positions appear), the down table
selects the kept vertices, and the up table gives every fine vertex the barycentric weights of
its closest point on the coarse surface (K = 3; a kept vertex gets weight 1 on itself).

Shapes: V fine vertices, Vc coarse vertices, F / Fc faces. Pure numpy.

Bit-reproducible on every machine: the collapse order turns on near-ties between quadric costs,
so every dot product, norm and quadratic form here is spelled out as elementwise IEEE operations
in a fixed order (`_dot3`, `_quadric_cost`). A BLAS call (`@`, `np.dot`, `np.linalg.norm` of a
vector) would let the library's kernel choice (OpenBLAS core type, SIMD width) change the last
bits, the collapse order and so the whole hierarchy. Ties resolve by vertex ids.
"""

from __future__ import annotations

import heapq

import numpy as np


def _check_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh"):
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.isfinite(vertices).all():
        raise ValueError(f"{name} vertices must be a finite [V, 3] array, got shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0:
        raise ValueError(f"{name} faces must be a non-empty [F, 3] integer array, got shape {faces.shape}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"{name} faces index vertices outside [0, {len(vertices)})")
    faces = faces.astype(np.int64)
    if np.any((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])):
        raise ValueError(f"{name} has degenerate faces (a repeated vertex)")
    areas = _norm3(_cross3(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                           vertices[faces[:, 2]] - vertices[faces[:, 0]]))
    if np.any(areas <= 1e-14):
        raise ValueError(f"{name} has {int(np.sum(areas <= 1e-14))} zero-area faces")
    return vertices, faces


def _dot3(a, b):
    """Dot product over the last axis (size 3) in a fixed order: no BLAS, same bits everywhere."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _cross3(a, b):
    """Cross product over the last axis (size 3), elementwise."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def _norm3(a):
    return np.sqrt(_dot3(a, a))


def _quadric_cost(quadric: np.ndarray, homogeneous_point: np.ndarray) -> float:
    """x^T Q x for a [4, 4] quadric and a [4] point, summed in a fixed order (no BLAS)."""
    q, x = quadric, homogeneous_point
    q_x = q[:, 0] * x[0] + q[:, 1] * x[1] + q[:, 2] * x[2] + q[:, 3] * x[3]
    return float(q_x[0] * x[0] + q_x[1] * x[1] + q_x[2] * x[2] + q_x[3] * x[3])


def _plane_quadrics(vertices, faces):
    """[V, 4, 4] sum of the (area-weighted) plane quadrics of the faces around each vertex."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    normal = _cross3(b - a, c - a)
    area2 = _norm3(normal)[:, None]
    normal = normal / area2
    plane = np.concatenate([normal, -_dot3(normal, a)[:, None]], axis=1)
    face_q = area2[:, :, None] * plane[:, :, None] * plane[:, None, :]
    quadrics = np.zeros((len(vertices), 4, 4))
    for i in range(3):
        np.add.at(quadrics, faces[:, i], face_q)
    return quadrics


def _boundary_quadrics(vertices, faces, weight=1e3):
    """Quadrics of planes through each boundary edge perpendicular to its face (keep holes open)."""
    quadrics = np.zeros((len(vertices), 4, 4))
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    owner = np.tile(np.arange(len(faces)), 3)
    keys = set(map(tuple, directed.tolist()))
    for (u, v), f in zip(directed.tolist(), owner):
        if (v, u) in keys:
            continue
        a, b, c = vertices[faces[f]]
        n = _cross3(b - a, c - a)
        edge = vertices[v] - vertices[u]
        p = _cross3(edge, n)
        norm = _norm3(p)
        if norm == 0:
            continue
        p /= norm
        plane = np.append(p, -_dot3(p, vertices[u]))
        q = weight * np.outer(plane, plane) * _dot3(edge, edge)
        quadrics[u] += q
        quadrics[v] += q
    return quadrics


def decimate(vertices: np.ndarray, faces: np.ndarray, target_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error edge collapses onto end points until `target_vertices` remain.

    Args:
      vertices: [V, 3] positions. faces: [F, 3] consistently oriented triangles.
      target_vertices: Vc < V.
    Returns:
      kept: [Vc] sorted indices into the fine vertices; coarse_faces: [Fc, 3] over 0 .. Vc-1
      (orientation preserved).
    Collapses that would make the surface non-manifold (link condition) or flip a face are
    skipped; a ValueError says so if the target cannot be reached.
    """
    vertices, faces = _check_mesh(vertices, faces)
    num_vertices = len(vertices)
    used = np.unique(faces)
    if len(used) != num_vertices:
        raise ValueError(f"mesh has {num_vertices - len(used)} vertices that no face uses")
    if not 3 <= target_vertices < num_vertices:
        raise ValueError(f"target_vertices must be in [3, {num_vertices}), got {target_vertices}")
    quadrics = _plane_quadrics(vertices, faces) + _boundary_quadrics(vertices, faces)
    face_list = {i: list(f) for i, f in enumerate(faces.tolist())}
    vertex_faces = [set() for _ in range(num_vertices)]
    for i, f in face_list.items():
        for v in f:
            vertex_faces[v].add(i)
    alive = np.ones(num_vertices, bool)
    homogeneous = np.concatenate([vertices, np.ones((num_vertices, 1))], axis=1)

    def neighbours(v):
        return {w for f in vertex_faces[v] for w in face_list[f]} - {v}

    def cost(u, v):
        """Cost and direction of the cheaper collapse of edge (u, v): (cost, from, to)."""
        q = quadrics[u] + quadrics[v]
        cost_to_v = _quadric_cost(q, homogeneous[v])
        cost_to_u = _quadric_cost(q, homogeneous[u])
        # Ties (flat regions) resolve to the lower index: deterministic.
        return (cost_to_v, u, v) if (cost_to_v, v) < (cost_to_u, u) else (cost_to_u, v, u)

    heap = []
    for u in range(num_vertices):
        for v in neighbours(u):
            if u < v:
                heapq.heappush(heap, cost(u, v))
    remaining = num_vertices
    while remaining > target_vertices and heap:
        _, src, dst = heapq.heappop(heap)
        if not (alive[src] and alive[dst]):
            continue
        nb_src = neighbours(src)
        if dst not in nb_src:
            continue
        current = cost(src, dst)
        if current[1:] != (src, dst):
            heapq.heappush(heap, current)  # stale entry: the other direction is cheaper now
            continue
        shared_faces = vertex_faces[src] & vertex_faces[dst]
        if len(nb_src & neighbours(dst)) != len(shared_faces):
            continue  # link condition: collapsing would pinch the surface
        if not _collapse_keeps_orientation(vertices, face_list, vertex_faces[src] - shared_faces, src, dst):
            continue
        for f in shared_faces:
            for w in face_list[f]:
                vertex_faces[w].discard(f)
            del face_list[f]
        for f in list(vertex_faces[src]):
            face_list[f] = [dst if w == src else w for w in face_list[f]]
            vertex_faces[dst].add(f)
        vertex_faces[src] = set()
        alive[src] = False
        quadrics[dst] += quadrics[src]
        remaining -= 1
        for w in neighbours(dst):
            heapq.heappush(heap, cost(dst, w) if dst < w else cost(w, dst))
    if remaining > target_vertices:
        raise ValueError(f"decimation stopped at {remaining} vertices (target {target_vertices}): "
                         "no further collapse keeps the mesh manifold")
    kept = np.flatnonzero(alive)
    remap = -np.ones(num_vertices, np.int64)
    remap[kept] = np.arange(len(kept))
    coarse_faces = remap[np.array(list(face_list.values()), np.int64)]
    return kept, coarse_faces


def _collapse_keeps_orientation(vertices, face_list, moving_faces, src, dst) -> bool:
    for f in moving_faces:
        tri = face_list[f]
        before = vertices[tri]
        after = np.array([vertices[dst] if w == src else vertices[w] for w in tri])
        n0 = _cross3(before[1] - before[0], before[2] - before[0])
        n1 = _cross3(after[1] - after[0], after[2] - after[0])
        if _norm3(n1) < 1e-14 or _dot3(n0, n1) <= 0:
            return False
    return True


def closest_point_barycentric(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray):
    """Closest point on a triangle mesh for every query point.

    Returns (face [N] int64, barycentric [N, 3] float64 >= 0 summing to 1, distance [N]).
    Brute force over all faces (meshes here have < 2,000 faces)."""
    p = np.asarray(points, np.float64)[:, None, :]
    a, b, c = (vertices[faces[:, i]][None] for i in range(3))
    ab, ac, ap = b - a, c - a, p - a
    # Barycentric of the projection onto each face's plane (Cramer on the 2x2 Gram system).
    d00, d01, d11 = _dot3(ab, ab), _dot3(ab, ac), _dot3(ac, ac)
    d20, d21 = _dot3(ap, ab), _dot3(ap, ac)
    denom = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    bary = np.stack([1 - v - w, v, w], axis=-1)
    inside = (bary >= 0).all(-1)
    candidates = [np.where(inside[..., None], bary, np.nan)]
    corners = (a, b, c)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        e = corners[j] - corners[i]
        t = np.clip(_dot3(p - corners[i], e) / _dot3(e, e), 0.0, 1.0)
        edge_bary = np.zeros(bary.shape)
        edge_bary[..., i] = 1 - t
        edge_bary[..., j] = t
        candidates.append(edge_bary)
    best_bary, best_dist = None, None
    for cand in candidates:
        point = cand[..., 0:1] * a + cand[..., 1:2] * b + cand[..., 2:3] * c
        dist = _norm3(point - p)
        dist = np.where(np.isnan(dist), np.inf, dist)
        if best_dist is None:
            best_bary, best_dist = np.nan_to_num(cand), dist
        else:
            better = dist < best_dist
            best_bary = np.where(better[..., None], cand, best_bary)
            best_dist = np.where(better, dist, best_dist)
    face = np.argmin(best_dist, axis=1)
    rows = np.arange(len(face))
    return face, best_bary[rows, face], best_dist[rows, face]


def up_table(fine_vertices: np.ndarray, kept: np.ndarray, coarse_faces: np.ndarray):
    """[V, 3] int32 coarse indices and [V, 3] float32 weights mapping coarse -> fine vertices."""
    coarse_vertices = np.asarray(fine_vertices, np.float64)[kept]
    face, bary, _ = closest_point_barycentric(fine_vertices, coarse_vertices, coarse_faces)
    indices = coarse_faces[face].astype(np.int32)
    weights = bary.astype(np.float32)
    # Kept vertices map exactly onto themselves (ties between faces sharing them are harmless,
    # but one-hot on the vertex itself is what the table means).
    indices[kept] = np.stack([np.arange(len(kept))] * 3, axis=1)
    weights[kept] = np.array([1.0, 0.0, 0.0], np.float32)
    return indices, weights


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, num_levels: int = 5):
    """Level l+1 keeps ceil(V_l / 2) vertices of level l (the official 778/389/195/98/49 rule).

    Returns dict with per-level `vertices` [V_l, 3], `faces` [F_l, 3] int32, and per transition
    `down` (indices [V_{l+1}, 1] int32, weights ones) and `up` (indices, weights [V_l, 3])."""
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}")
    vertices, faces = _check_mesh(vertices, faces)
    levels_v, levels_f, downs, ups = [vertices], [faces.astype(np.int32)], [], []
    for _ in range(num_levels - 1):
        fine_v, fine_f = levels_v[-1], levels_f[-1]
        kept, coarse_f = decimate(fine_v, fine_f, (len(fine_v) + 1) // 2)
        downs.append((kept[:, None].astype(np.int32), np.ones((len(kept), 1), np.float32)))
        ups.append(up_table(fine_v, kept, coarse_f))
        levels_v.append(fine_v[kept])
        levels_f.append(coarse_f.astype(np.int32))
    return {"vertices": levels_v, "faces": levels_f, "down": downs, "up": ups}
