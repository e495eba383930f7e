"""Spiral index tables exactly as the official H2ONet/MobRecon/SpiralNet++ code computes them.

The official code builds an OpenMesh ``TriMesh(vertices, faces)`` and walks SpiralNet++'s
``extract_spirals`` over it. The order of every spiral depends on OpenMesh's halfedge data
structure as it stands after the faces were added one by one: each vertex's circulation starts at
the vertex's stored outgoing halfedge, and which halfedge that is follows from the order of the
faces and from the bookkeeping inside ``PolyConnectivity::add_face``. To reproduce the tables
without OpenMesh (not installable here) this module re-simulates that bookkeeping in plain
python, then runs the same ring walk.

Conventions simulated (OpenMesh's ArrayKernel / PolyConnectivity):
  * edge ``e`` owns halfedges ``2e`` (from ``start`` to ``end`` as created) and ``2e + 1``;
  * a halfedge without a face is a boundary halfedge; a vertex is "boundary" when its outgoing
    halfedge is missing or is a boundary halfedge;
  * the vertex-vertex circulator starts at the outgoing halfedge ``h`` and steps clockwise,
    ``h <- next(opposite(h))``, yielding ``to_vertex(h)``.
"""

from __future__ import annotations

import numpy as np

_INVALID = -1


class _HalfedgeMesh:
    """Minimal halfedge mesh that grows exactly like OpenMesh's PolyConnectivity.

    Only connectivity is stored: per halfedge its target vertex, next, prev and face; per vertex
    its outgoing halfedge. Halfedge ``h``'s opposite is ``h ^ 1``.
    """

    def __init__(self, num_vertices: int):
        self.vertex_halfedge = [_INVALID] * num_vertices
        self.to_vertex: list[int] = []
        self.next: list[int] = []
        self.prev: list[int] = []
        self.face: list[int] = []
        self.num_faces = 0

    # -- elementary queries -------------------------------------------------------------------
    def is_boundary_halfedge(self, h: int) -> bool:
        return self.face[h] == _INVALID

    def is_boundary_vertex(self, v: int) -> bool:
        h = self.vertex_halfedge[v]
        return h == _INVALID or self.face[h] == _INVALID

    def set_next(self, h: int, n: int) -> None:
        # OpenMesh's set_next_halfedge_handle keeps the stored prev pointer in sync.
        self.next[h] = n
        self.prev[n] = h

    def outgoing(self, v: int) -> list[int]:
        """Outgoing halfedges of ``v`` in OpenMesh's default (clockwise) circulator order."""
        start = self.vertex_halfedge[v]
        if start == _INVALID:
            return []
        result = []
        h = start
        while True:
            result.append(h)
            h = self.next[h ^ 1]
            if h == start:
                return result
            if len(result) > len(self.to_vertex):  # cannot happen on a consistent mesh
                raise RuntimeError(f"halfedge cycle around vertex {v} does not close")

    def neighbours(self, v: int) -> list[int]:
        """One-ring of ``v`` in OpenMesh's ``vv`` circulator order."""
        return [self.to_vertex[h] for h in self.outgoing(v)]

    def find_halfedge(self, start: int, end: int) -> int:
        for h in self.outgoing(start):
            if self.to_vertex[h] == end:
                return h
        return _INVALID

    def new_edge(self, start: int, end: int) -> int:
        h = len(self.to_vertex)
        self.to_vertex += [end, start]
        self.next += [_INVALID, _INVALID]
        self.prev += [_INVALID, _INVALID]
        self.face += [_INVALID, _INVALID]
        return h

    def adjust_outgoing_halfedge(self, v: int) -> None:
        for h in self.outgoing(v):
            if self.is_boundary_halfedge(h):
                self.vertex_halfedge[v] = h
                return

    # -- PolyConnectivity::add_face ------------------------------------------------------------
    def add_face(self, vertices: tuple[int, ...], face_index: int) -> None:
        """Adds one polygon with OpenMesh's add_face semantics; topological errors raise."""
        n = len(vertices)
        edge_halfedge = [_INVALID] * n
        is_new = [False] * n
        needs_adjust = [False] * n
        next_cache: list[tuple[int, int]] = []

        for i in range(n):
            ii = (i + 1) % n
            if not self.is_boundary_vertex(vertices[i]):
                raise ValueError(
                    f"faces[{face_index}] = {list(vertices)} is not manifold: vertex "
                    f"{vertices[i]} is already surrounded by faces (OpenMesh: complex vertex)")
            edge_halfedge[i] = self.find_halfedge(vertices[i], vertices[ii])
            is_new[i] = edge_halfedge[i] == _INVALID
            if not is_new[i] and not self.is_boundary_halfedge(edge_halfedge[i]):
                raise ValueError(
                    f"faces[{face_index}] = {list(vertices)} is not manifold: the directed edge "
                    f"{vertices[i]}->{vertices[ii]} already belongs to another face "
                    "(a non-manifold edge or inconsistently oriented faces)")

        # Re-link patches: two existing consecutive boundary halfedges that are not yet adjacent
        # along the boundary get the patch between them moved to a free gap around the vertex.
        for i in range(n):
            ii = (i + 1) % n
            if is_new[i] or is_new[ii]:
                continue
            inner_prev, inner_next = edge_halfedge[i], edge_halfedge[ii]
            if self.next[inner_prev] == inner_next:
                continue
            outer_prev = inner_next ^ 1
            boundary_prev = outer_prev
            while True:
                boundary_prev = self.next[boundary_prev] ^ 1
                if self.is_boundary_halfedge(boundary_prev):
                    break
            boundary_next = self.next[boundary_prev]
            if boundary_prev == inner_prev:
                raise ValueError(
                    f"faces[{face_index}] = {list(vertices)} is not manifold: no free gap at "
                    f"vertex {vertices[ii]} (OpenMesh: patch re-linking failed)")
            patch_start = self.next[inner_prev]
            patch_end = self.prev[inner_next]
            next_cache += [(boundary_prev, patch_start), (patch_end, boundary_next),
                           (inner_prev, inner_next)]

        for i in range(n):
            if is_new[i]:
                edge_halfedge[i] = self.new_edge(vertices[i], vertices[(i + 1) % n])

        face = self.num_faces
        self.num_faces += 1

        for i in range(n):
            ii = (i + 1) % n
            vh = vertices[ii]
            inner_prev, inner_next = edge_halfedge[i], edge_halfedge[ii]
            case = (1 if is_new[i] else 0) | (2 if is_new[ii] else 0)
            if case:
                outer_prev = inner_next ^ 1
                outer_next = inner_prev ^ 1
                if case == 1:  # prev is new, next is old
                    boundary_prev = self.prev[inner_next]
                    next_cache.append((boundary_prev, outer_next))
                    self.vertex_halfedge[vh] = outer_next
                elif case == 2:  # next is new, prev is old
                    boundary_next = self.next[inner_prev]
                    next_cache.append((outer_prev, boundary_next))
                    self.vertex_halfedge[vh] = boundary_next
                else:  # both new
                    if self.vertex_halfedge[vh] == _INVALID:
                        self.vertex_halfedge[vh] = outer_next
                        next_cache.append((outer_prev, outer_next))
                    else:
                        boundary_next = self.vertex_halfedge[vh]
                        boundary_prev = self.prev[boundary_next]
                        next_cache += [(boundary_prev, outer_next), (outer_prev, boundary_next)]
                next_cache.append((inner_prev, inner_next))
            else:
                needs_adjust[ii] = self.vertex_halfedge[vh] == inner_next
            self.face[edge_halfedge[i]] = face

        for h, n_h in next_cache:
            self.set_next(h, n_h)

        for i in range(n):
            if needs_adjust[i]:
                self.adjust_outgoing_halfedge(vertices[i])


def _validate_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be an [F, 3] array of triangles, got shape {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex ids, got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ValueError(
            f"faces hold vertex ids in [{faces.min()}, {faces.max()}], outside [0, {num_vertices})")
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (
        faces[:, 0] == faces[:, 2])
    if degenerate.any():
        f = int(np.argmax(degenerate))
        raise ValueError(f"faces[{f}] = {faces[f].tolist()} repeats a vertex (degenerate triangle)")
    return faces


def build_halfedge_mesh(faces: np.ndarray, num_vertices: int) -> _HalfedgeMesh:
    """Adds ``num_vertices`` vertices and then ``faces`` in order, as ``om.TriMesh(v, f)`` does.

    Args:
      faces: [F, 3] int vertex ids, consistently oriented, manifold.
      num_vertices: V; vertices not referenced by any face stay isolated.

    Raises:
      ValueError naming ``faces`` when a face is out of range, degenerate or non-manifold (where
      OpenMesh would print an error and silently drop the face).
    """
    faces = _validate_faces(faces, num_vertices)
    mesh = _HalfedgeMesh(num_vertices)
    for f, (a, b, c) in enumerate(faces.tolist()):
        mesh.add_face((a, b, c), f)
    return mesh


def _next_ring(mesh: _HalfedgeMesh, last_ring: list[int], other: list[int]) -> list[int]:
    """SpiralNet++'s ``_next_ring``: the vertices adjacent to ``last_ring`` that are new.

    Around each ring vertex the circulation is rotated to start just after the first neighbour
    that lies in ``last_ring``, which keeps successive rings turning the same way.
    """
    last_set, other_set = set(last_ring), set(other)
    result: list[int] = []
    seen: set[int] = set()

    def take(v: int) -> None:
        if v not in last_set and v not in other_set and v not in seen:
            seen.add(v)
            result.append(v)

    for v in last_ring:
        ring = mesh.neighbours(v)
        after_last_ring = False
        for u in ring:
            if after_last_ring:
                take(u)
            if u in last_set:
                after_last_ring = True
        for u in ring:
            if u in last_set:
                break
            take(u)
    return result


def _nearest_neighbours(vertices_m: np.ndarray, centre: int, count: int) -> list[int]:
    """The ``count`` vertices nearest to vertex ``centre`` (itself first), ties by index."""
    dist2 = np.sum((vertices_m.astype(np.float64) - vertices_m[centre].astype(np.float64)) ** 2,
                   axis=1)
    order = np.lexsort((np.arange(len(dist2)), dist2))
    return order[:count].tolist()


def build_spirals(
    faces: np.ndarray,
    num_vertices: int,
    length: int = 9,
    dilation: int = 1,
    vertices_m: np.ndarray | None = None,
) -> np.ndarray:
    """Spiral index table of a triangle mesh, identical to the official ``preprocess_spiral``.

    Each row is ``[v] + one-ring + next ring + ...`` (rings in OpenMesh circulator order, see the
    module docstring), truncated to ``length * dilation`` entries and then subsampled
    ``[::dilation]``. Where the rings run out before the spiral is long enough (tiny or
    disconnected meshes) the official code falls back to the ``length * dilation`` nearest
    vertices by euclidean distance; so does this function, breaking distance ties by vertex index
    (sklearn's KDTree order on exact ties is unspecified).

    Args:
      faces: [F, 3] int triangles, consistently oriented and manifold, in the order the official
        code adds them (the order matters for the spiral order).
      num_vertices: V.
      length: spiral length S.
      dilation: keep every ``dilation``-th entry of a spiral ``S * dilation`` long.
      vertices_m: optional [V, 3] vertex positions, used only by the nearest-vertex fallback.

    Returns:
      [V, S] int32, column 0 the centre vertex.

    Raises:
      ValueError naming ``faces`` for bad faces; naming ``vertices_m`` when the fallback is
      needed but positions are missing or wrongly shaped; for non-positive length/dilation.
    """
    num_vertices = int(num_vertices)
    if num_vertices < 1:
        raise ValueError(f"num_vertices must be >= 1, got {num_vertices}")
    if int(length) < 1 or int(dilation) < 1:
        raise ValueError(f"length and dilation must be >= 1, got {length} and {dilation}")
    total = int(length) * int(dilation)
    if vertices_m is not None:
        vertices_m = np.asarray(vertices_m)
        if vertices_m.shape != (num_vertices, 3):
            raise ValueError(
                f"vertices_m must have shape ({num_vertices}, 3), got {vertices_m.shape}")
    mesh = build_halfedge_mesh(faces, num_vertices)

    spirals = np.empty((num_vertices, int(length)), np.int32)
    for v in range(num_vertices):
        spiral = [v]
        last_ring = mesh.neighbours(v)
        next_ring = _next_ring(mesh, last_ring, spiral)
        spiral.extend(last_ring)
        while len(spiral) + len(next_ring) < total and next_ring:
            last_ring = next_ring
            next_ring = _next_ring(mesh, last_ring, spiral)
            spiral.extend(last_ring)
        if next_ring:
            spiral.extend(next_ring)
        else:
            # The official code takes this branch whenever the last ring walked has no successor,
            # even if the spiral is already long enough.
            if vertices_m is None:
                raise ValueError(
                    f"the rings around vertex {v} run out before {total} vertices; the official "
                    "nearest-vertex fallback needs vertex positions: pass vertices_m")
            if num_vertices < total:
                raise ValueError(
                    f"the mesh has {num_vertices} vertices, fewer than length * dilation = {total}")
            spiral = _nearest_neighbours(vertices_m, v, total)
        spirals[v] = spiral[:total][:: int(dilation)]
    return spirals
