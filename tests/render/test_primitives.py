"""Primitive meshes: watertight, outward-oriented, on the analytic surface, right volume."""

import numpy as np
import pytest

from h2o_jax.render import box_mesh, cylinder_mesh, merge_meshes, sphere_mesh


def signed_volume(vertices, faces):
    """Divergence theorem: sum of signed tetrahedra (origin, face) volumes; > 0 if outward."""
    tri = vertices[faces].astype(np.float64)
    return np.einsum("fk,fk->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0


def assert_closed_and_outward(vertices, faces):
    assert faces.dtype == np.int32 and faces.ndim == 2 and faces.shape[1] == 3
    assert vertices.shape[1] == 3 and np.all(np.isfinite(vertices))
    assert len(np.unique(faces)) == len(vertices)  # no unused vertices
    # Every directed edge exactly once, and its reverse exactly once: each undirected edge lies in
    # exactly two faces that traverse it in opposite directions (closed, consistently oriented).
    directed = [(int(f[k]), int(f[(k + 1) % 3])) for f in faces for k in range(3)]
    assert len(set(directed)) == len(directed)
    assert set(directed) == {(b, a) for a, b in directed}
    # Convex and centred: every outward face normal points away from the origin.
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.einsum("fk,fk->f", normal, tri.mean(axis=1)) > 0)
    # Euler characteristic of a sphere-like surface.
    assert len(vertices) - len(directed) // 2 + len(faces) == 2


@pytest.mark.parametrize("subdivisions, num_vertices", [(0, 12), (1, 42), (2, 162), (3, 642)])
def test_sphere(subdivisions, num_vertices):
    radius = 0.037
    vertices, faces = sphere_mesh(radius, subdivisions)
    assert vertices.shape == (num_vertices, 3) and faces.shape == (20 * 4**subdivisions, 3)
    assert_closed_and_outward(vertices, faces)
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), radius, rtol=1e-12)
    volume = signed_volume(vertices, faces)
    exact = 4.0 / 3.0 * np.pi * radius**3
    # Inscribed polyhedron: below the ball's volume; the gap shrinks ~4x per subdivision.
    assert 0 < volume < exact
    assert 1.0 - volume / exact < [0.4, 0.13, 0.035, 0.009][subdivisions]
    if subdivisions == 0:
        # Regular icosahedron, circumradius r: edge a = r / sin(2 pi / 5),
        # volume 5/12 (3 + sqrt 5) a^3.
        edge = radius / np.sin(2 * np.pi / 5)
        assert volume == pytest.approx(5.0 / 12.0 * (3 + np.sqrt(5)) * edge**3, rel=1e-12)


def test_sphere_volume_error_shrinks_fourfold():
    gaps = [1.0 - signed_volume(*sphere_mesh(1.0, s)) / (4.0 / 3.0 * np.pi) for s in range(1, 5)]
    ratios = np.array(gaps[:-1]) / np.array(gaps[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.5)), ratios


@pytest.mark.parametrize("seed", [0, 1])
def test_box(seed):
    size = np.random.default_rng(seed).uniform(0.01, 0.3, 3)
    vertices, faces = box_mesh(size)
    assert vertices.shape == (8, 3) and faces.shape == (12, 3)
    assert_closed_and_outward(vertices, faces)
    np.testing.assert_allclose(np.abs(vertices), np.broadcast_to(size / 2, (8, 3)), rtol=1e-15)
    assert len({tuple(np.sign(v)) for v in vertices}) == 8  # all eight corners
    assert signed_volume(vertices, faces) == pytest.approx(np.prod(size), rel=1e-12)


@pytest.mark.parametrize("segments", [3, 7, 16])
def test_cylinder(segments):
    radius, height = 0.012, 0.05
    vertices, faces = cylinder_mesh(radius, height, segments)
    assert vertices.shape == (2 * segments + 2, 3) and faces.shape == (4 * segments, 3)
    assert_closed_and_outward(vertices, faces)
    ring = vertices[: 2 * segments]
    np.testing.assert_allclose(np.hypot(ring[:, 0], ring[:, 1]), radius, rtol=1e-12)
    np.testing.assert_allclose(np.sort(np.unique(vertices[:, 2])), [-height / 2, height / 2])
    # Exact volume of the inscribed prism: n triangles of area r^2 sin(2 pi / n) / 2, times h.
    prism = segments / 2.0 * radius**2 * np.sin(2 * np.pi / segments) * height
    assert signed_volume(vertices, faces) == pytest.approx(prism, rel=1e-12)
    if segments == 16:
        assert signed_volume(vertices, faces) == pytest.approx(np.pi * radius**2 * height, rel=0.03)


def test_merge_meshes_offsets_faces():
    box = box_mesh((1.0, 2.0, 3.0))
    sphere = sphere_mesh(0.5, 1)
    vertices, faces = merge_meshes([box, (sphere[0] + 5.0, sphere[1])])
    assert vertices.shape == (8 + 42, 3) and faces.dtype == np.int32
    np.testing.assert_array_equal(faces[:12], box[1])
    np.testing.assert_array_equal(faces[12:], sphere[1] + 8)
    np.testing.assert_array_equal(vertices[faces[12:]], sphere[0][sphere[1]] + 5.0)


@pytest.mark.parametrize("call, match", [
    (lambda: sphere_mesh(0.0), "radius_m"),
    (lambda: sphere_mesh(np.nan), "radius_m"),
    (lambda: sphere_mesh(1.0, 1.5), "subdivisions"),
    (lambda: box_mesh((1.0, 2.0)), "size_xyz_m"),
    (lambda: box_mesh((1.0, -2.0, 1.0)), r"size_xyz_m\[1\]"),
    (lambda: cylinder_mesh(1.0, 0.0), "height_m"),
    (lambda: cylinder_mesh(1.0, 1.0, 2), "segments"),
    (lambda: merge_meshes([]), "meshes"),
    (lambda: merge_meshes([(np.zeros((3, 3)), np.array([[0, 1, 3]]))]), r"meshes\[0\]"),
])
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
