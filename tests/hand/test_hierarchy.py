"""Quadric decimation and resampling tables of the mesh hierarchy."""

from __future__ import annotations

import numpy as np
import pytest

from h2o_jax.hand import builtin_topology
from h2o_jax.hand.hierarchy import build_hierarchy, closest_point_barycentric, decimate, up_table


def _edges(faces):
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return set(map(tuple, directed.tolist()))


def _bumpy_sphere(n_lat=10, n_lon=16, seed=0):
    """A closed UV sphere with random radial bumps (poles as single vertices)."""
    rng = np.random.default_rng(seed)
    verts = [[0, 0, 1.0]]
    for i in range(1, n_lat):
        theta = np.pi * i / n_lat
        for j in range(n_lon):
            phi = 2 * np.pi * j / n_lon
            verts.append([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    verts.append([0, 0, -1.0])
    verts = np.array(verts) * (1 + 0.1 * rng.random((len(verts), 1)))
    faces = []
    ring = lambda i, j: 1 + (i - 1) * n_lon + j % n_lon  # noqa: E731
    for j in range(n_lon):
        faces.append([0, ring(1, j), ring(1, j + 1)])
        faces.append([len(verts) - 1, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            faces.append([ring(i, j), ring(i + 1, j), ring(i + 1, j + 1)])
            faces.append([ring(i, j), ring(i + 1, j + 1), ring(i, j + 1)])
    return verts, np.array(faces)


def test_decimation_keeps_a_closed_oriented_manifold_on_a_vertex_subset():
    verts, faces = _bumpy_sphere()
    kept, coarse = decimate(verts, faces, 73)
    assert len(kept) == 73 and np.all(np.diff(kept) > 0)
    edges = _edges(coarse)
    assert len(edges) == 3 * len(coarse)  # no directed edge twice: orientation kept
    assert all((b, a) in edges for a, b in edges)  # closed
    assert 73 - len(edges) // 2 + len(coarse) == 2  # still a sphere
    # Orientation follows the fine mesh: outward normals (positive volume).
    v = verts[kept]
    assert np.einsum("ij,ij->i", v[coarse[:, 0]], np.cross(v[coarse[:, 1]], v[coarse[:, 2]])).sum() > 0


def test_builtin_hierarchy_halves_and_up_tables_reproduce_kept_vertices():
    topology = builtin_topology()
    sizes = topology.level_num_vertices
    for fine, coarse in zip(sizes, sizes[1:]):
        assert coarse == (fine + 1) // 2
    vertices = np.asarray(topology.template_vertices_m, np.float64)
    for level in range(topology.num_levels - 1):
        down = topology.down_indices[level][:, 0]
        up_i, up_w = topology.up_indices[level], topology.up_weights[level]
        np.testing.assert_allclose(up_w.sum(1), 1.0, atol=1e-6)
        assert up_w.min() >= 0
        coarse_vertices = vertices[down]
        rebuilt = (coarse_vertices[up_i] * up_w[..., None]).sum(1)
        np.testing.assert_allclose(rebuilt[down], vertices[down], atol=1e-7)
        # Removed vertices land on the coarse surface within a few millimetres.
        assert np.abs(rebuilt - vertices).max() < 0.01
        vertices = coarse_vertices


def test_closest_point_matches_dense_sampling():
    rng = np.random.default_rng(1)
    verts, faces = _bumpy_sphere(6, 8, seed=2)
    points = rng.normal(size=(25, 3)) * 0.8
    face, bary, dist = closest_point_barycentric(points, verts, faces)
    np.testing.assert_allclose(bary.sum(1), 1.0)
    assert bary.min() >= -1e-12
    closest = np.einsum("nk,nkd->nd", bary, verts[faces[face]])
    np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), dist, atol=1e-12)
    # Brute force: a dense barycentric grid on every face never beats the returned distance.
    u, w = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 41))
    grid = np.stack([u.ravel(), w.ravel()], 1)
    grid = grid[grid.sum(1) <= 1]
    samples = np.einsum("gk,fkd->fgd", np.c_[1 - grid.sum(1), grid], verts[faces]).reshape(-1, 3)
    brute = np.linalg.norm(points[:, None] - samples[None], axis=-1).min(1)
    assert np.all(dist <= brute + 1e-12)
    assert np.all(brute - dist < 0.02)


def test_up_table_on_a_hand_made_case():
    # Fine square with a centre vertex; coarse = the 4 corners split along one diagonal.
    fine = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.25, 0.5, 0]], float)
    kept = np.array([0, 1, 2, 3])
    coarse_faces = np.array([[0, 1, 2], [0, 2, 3]])
    idx, w = up_table(fine, kept, coarse_faces)
    rebuilt = (fine[kept][idx] * w[..., None]).sum(1)
    np.testing.assert_allclose(rebuilt, fine, atol=1e-7)
    # (0.25, 0.5) lies in triangle (0, 2, 3) with weights 0.5, 0.25, 0.25.
    np.testing.assert_array_equal(idx[4], [0, 2, 3])
    np.testing.assert_allclose(w[4], [0.5, 0.25, 0.25], atol=1e-7)


def test_bad_meshes_are_refused():
    verts, faces = _bumpy_sphere(4, 6)
    with pytest.raises(ValueError, match="degenerate"):
        decimate(verts, np.vstack([faces, [[0, 0, 1]]]), 10)
    with pytest.raises(ValueError, match="outside"):
        decimate(verts, faces + 100, 10)
    with pytest.raises(ValueError, match="target_vertices"):
        decimate(verts, faces, len(verts))
    flat = verts.copy()
    flat[faces[0]] = flat[faces[0][0]]
    with pytest.raises(ValueError, match="zero-area"):
        build_hierarchy(flat, faces)
    with pytest.raises(ValueError, match=r"\[V, 3\]"):
        build_hierarchy(verts[:, :2], faces)


def test_fixed_order_arithmetic_matches_float64_reference():
    """The BLAS-free products the decimation orders its collapses by (module docstring)."""
    from h2o_jax.hand.hierarchy import _cross3, _dot3, _norm3, _quadric_cost

    rng = np.random.default_rng()
    a, b = rng.normal(size=(2, 50, 3))
    np.testing.assert_allclose(_dot3(a, b), np.einsum("ij,ij->i", a, b), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(_cross3(a, b), np.cross(a, b), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(_norm3(a), np.linalg.norm(a, axis=1), rtol=1e-13)
    m = rng.normal(size=(4, 4))
    quadric = m @ m.T  # symmetric positive semi-definite, like a sum of plane quadrics
    x = np.append(rng.normal(size=3), 1.0)
    expected = sum(x[i] * quadric[i, j] * x[j] for i in range(4) for j in range(4))
    assert _quadric_cost(quadric, x) == pytest.approx(expected, rel=1e-12, abs=1e-14)
