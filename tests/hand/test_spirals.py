"""build_spirals: exact against the official OpenMesh tables, structural properties on fresh meshes."""

from collections import deque

import numpy as np
import pytest

from h2o_jax.hand.spirals import build_spirals
from topology_helpers import REFERENCE_DIR

HIERARCHY = REFERENCE_DIR / "official_hierarchy.npz"
SPIRALS = REFERENCE_DIR / "official_spirals.npz"
needs_reference = pytest.mark.skipif(
    not (HIERARCHY.exists() and SPIRALS.exists()), reason="official reference files absent")


# -- meshes -------------------------------------------------------------------------------------

def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed, outward-oriented icosphere: (vertices [V, 3], faces [F, 3])."""
    t = (1 + 5 ** 0.5) / 2
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(v, float) for v in verts]
    for _ in range(subdivisions):
        midpoint: dict[tuple[int, int], int] = {}

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in midpoint:
                midpoint[key] = len(verts)
                verts.append((verts[a] + verts[b]) / 2)
            return midpoint[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    verts = np.array(verts)
    return verts / np.linalg.norm(verts, axis=1, keepdims=True), np.array(faces)


def grid_mesh(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Open n x n vertex grid in the plane, each cell split along a random diagonal, CCW faces."""
    ids = np.arange(n * n).reshape(n, n)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = ids[i, j], ids[i, j + 1], ids[i + 1, j + 1], ids[i + 1, j]
            faces += [(a, b, c), (a, c, d)] if rng.random() < 0.5 else [(a, b, d), (b, c, d)]
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    verts = np.stack([xx.ravel(), yy.ravel(), np.zeros(n * n)], axis=1).astype(float)
    return verts, np.array(faces)


def shuffled(faces: np.ndarray, num_vertices: int, rng: np.random.Generator):
    """Random face order, random cyclic start per face (same orientation), random vertex ids."""
    relabel = rng.permutation(num_vertices)
    faces = faces[rng.permutation(len(faces))]
    shift = rng.integers(0, 3, len(faces))
    faces = np.stack([np.roll(f, s) for f, s in zip(faces, shift)])
    return relabel[faces], relabel


def directed_edges(faces):
    return {(int(f[k]), int(f[(k + 1) % 3])) for f in faces for k in range(3)}


def bfs_distances(faces, num_vertices, source):
    adjacency = [set() for _ in range(num_vertices)]
    for f in faces:
        for k in range(3):
            adjacency[f[k]].add(int(f[(k + 1) % 3]))
            adjacency[f[(k + 1) % 3]].add(int(f[k]))
    dist = np.full(num_vertices, -1)
    dist[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for w in adjacency[u]:
            if dist[w] < 0:
                dist[w] = dist[u] + 1
                queue.append(w)
    return dist, adjacency


def check_spiral_structure(spirals, faces, num_vertices):
    """Properties derived by hand from the ring walk and OpenMesh's clockwise circulator."""
    edges = directed_edges(faces)
    face_cycles = {tuple(np.roll(f, s)) for f in faces.tolist() for s in range(3)}
    for v in range(num_vertices):
        row = spirals[v].tolist()
        dist, adjacency = bfs_distances(faces, num_vertices, v)
        degree = len(adjacency[v])
        assert row[0] == v
        assert len(set(row)) == len(row), f"duplicate in spiral {v}: {row}"
        assert set(row[1:degree + 1]) == adjacency[v]
        # Clockwise: for consecutive one-ring entries a, b the triangle (v, b, a) is a face.
        ring = row[1:degree + 1]
        for a, b in zip(ring[:-1], ring[1:]):
            assert (v, b, a) in face_cycles, f"vertex {v}: {a} -> {b} is not a clockwise step"
        boundary_in = [a for a in adjacency[v] if (a, v) in edges and (v, a) not in edges]
        if boundary_in:  # boundary vertex: the circulator starts at the boundary halfedge v -> a
            assert ring[0] == boundary_in[0]
        else:  # interior vertex: the ring closes
            assert (v, ring[0], ring[-1]) in face_cycles
        # Rings are complete BFS shells, in order of distance.
        d = dist[row]
        assert np.all(np.diff(d) >= 0)
        for k in range(d[-1]):
            assert set(np.array(row)[d == k].tolist()) == set(np.flatnonzero(dist == k).tolist())


# -- exactness against the official tables -------------------------------------------------------

@needs_reference
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_matches_official_openmesh_tables(level):
    hierarchy, reference = np.load(HIERARCHY), np.load(SPIRALS)
    expected = reference[f"level{level}"]
    got = build_spirals(hierarchy[f"faces{level}"], expected.shape[0], length=9)
    assert got.dtype == np.int32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@needs_reference
def test_official_tables_satisfy_the_structural_properties():
    hierarchy = np.load(HIERARCHY)
    faces = hierarchy["faces1"]
    check_spiral_structure(build_spirals(faces, 389, length=12), faces, 389)


@needs_reference
def test_dilation_subsamples_the_longer_spiral():
    faces = np.load(HIERARCHY)["faces0"]
    np.testing.assert_array_equal(build_spirals(faces, 778, length=5, dilation=2),
                                  build_spirals(faces, 778, length=10)[:, ::2])


# -- fresh random meshes ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_mesh_structure(seed):
    rng = np.random.default_rng(seed)
    verts, faces = icosphere(1)
    faces, _ = shuffled(faces, len(verts), rng)
    spirals = build_spirals(faces, len(verts), length=int(rng.integers(7, 20)))
    check_spiral_structure(spirals, faces, len(verts))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_open_mesh_structure(seed):
    rng = np.random.default_rng(seed)
    verts, faces = grid_mesh(6, rng)
    faces, _ = shuffled(faces, len(verts), rng)
    spirals = build_spirals(faces, len(verts), length=int(rng.integers(7, 13)))
    check_spiral_structure(spirals, faces, len(verts))


def test_closed_mesh_dilation():
    rng = np.random.default_rng(5)
    verts, faces = icosphere(1)
    faces, _ = shuffled(faces, len(verts), rng)
    np.testing.assert_array_equal(build_spirals(faces, len(verts), length=6, dilation=3),
                                  build_spirals(faces, len(verts), length=18)[:, ::3])


def nearest_reference(verts, v, count):
    dist = [float(np.sum((verts[u] - verts[v]) ** 2)) for u in range(len(verts))]
    return sorted(range(len(verts)), key=lambda u: (dist[u], u))[:count]


def test_exhausted_rings_fall_back_to_nearest_vertices():
    # A tetrahedron: the one-ring (3 vertices) already makes a spiral of 4 >= 3, but the next
    # ring is empty, and the official code then takes the nearest-vertex branch anyway.
    rng = np.random.default_rng(3)
    verts = rng.normal(size=(4, 3))
    faces = np.array([(0, 1, 2), (0, 3, 1), (1, 3, 2), (0, 2, 3)])
    got = build_spirals(faces, 4, length=3, vertices_m=verts)
    for v in range(4):
        assert got[v].tolist() == nearest_reference(verts, v, 3)
    # An isolated vertex next to a closed mesh also falls back; the others do not.
    sphere, sphere_faces = icosphere(1)
    verts = np.concatenate([sphere, rng.normal(size=(1, 3)) * 0.1])
    got = build_spirals(sphere_faces, len(verts), length=9, vertices_m=verts)
    assert got[-1].tolist() == nearest_reference(verts, len(verts) - 1, 9)
    np.testing.assert_array_equal(got[:-1], build_spirals(sphere_faces, len(sphere), length=9))


def test_fallback_without_positions_raises():
    faces = np.array([(0, 1, 2), (0, 3, 1), (1, 3, 2), (0, 2, 3)])
    with pytest.raises(ValueError, match="vertices_m"):
        build_spirals(faces, 4, length=3)
    with pytest.raises(ValueError, match="vertices_m"):
        build_spirals(faces, 4, length=3, vertices_m=np.zeros((5, 3)))


@pytest.mark.parametrize("faces,message", [
    (np.array([(0, 1, 5)]), "faces"),                                  # out of range
    (np.array([(0, -1, 2)]), "faces"),                                 # negative
    (np.array([(0, 1, 2, 3)]), "faces"),                               # not triangles
    (np.array([(0.0, 1.0, 2.0)]), "faces"),                            # not integers
    (np.array([(0, 1, 1)]), "faces"),                                  # degenerate
    (np.array([(0, 1, 2), (1, 0, 3), (0, 1, 4)]), "faces\\[2\\]"),     # edge in three faces
    (np.array([(0, 1, 2), (0, 1, 3)]), "faces\\[1\\]"),                # inconsistent orientation
])
def test_bad_faces_raise(faces, message):
    with pytest.raises(ValueError, match=message):
        build_spirals(faces, 5)


def test_closing_a_vertex_twice_raises():
    # Vertex 0 is closed by the fan of four faces; a fifth face at 0 is a complex vertex.
    fan = np.array([(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 1), (0, 5, 6)])
    with pytest.raises(ValueError, match="faces\\[4\\]"):
        build_spirals(fan, 7)


def test_bad_length_raises():
    with pytest.raises(ValueError, match="length"):
        build_spirals(np.array([(0, 1, 2)]), 3, length=0)
