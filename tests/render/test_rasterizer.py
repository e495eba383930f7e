"""render_mesh against float64 references: ray-plane / ray-triangle intersection, brute-force
point-in-triangle, hand-derived Lambert shading."""

import numpy as np
import pytest

import h2o_jax.render.rasterizer as rasterizer
from h2o_jax.render import box_mesh, merge_meshes, render_mesh, sphere_mesh


def pixel_rays(image_size, focal, principal):
    """[H, W, 3] float64 ray directions through pixel centres (u = j, v = i), scaled to z = 1."""
    height, width = image_size
    i, j = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                       indexing="ij")
    return np.stack([(j - principal[0]) / focal[0], (i - principal[1]) / focal[1],
                     np.ones_like(i)], axis=-1)


def ray_cast(vertices, faces, image_size, focal, principal, edge_eps=1e-7):
    """Brute-force float64 Moeller-Trumbore over every (pixel, face) pair.

    Works in 3D, independently of the rasteriser's screen-space edge functions. Returns
    (depth [H, W] with inf on background, face [H, W] with -1, ambiguous [H, W] bool) where
    ambiguous marks pixels whose ray passes within `edge_eps` (barycentric) of any edge or whose
    two nearest hits tie.
    """
    rays = pixel_rays(image_size, focal, principal).reshape(-1, 1, 3)
    tri = vertices[faces][None]  # [1, F, 3, 3]
    e1, e2 = tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :]
    p = np.cross(rays, e2)
    det = np.einsum("pfk,pfk->pf", e1, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_det = 1.0 / det
        s = -tri[..., 0, :]  # ray origin (0, 0, 0) minus corner 0
        b1 = np.einsum("pfk,pfk->pf", s, p) * inv_det
        q = np.cross(s, e1)
        b2 = np.einsum("pfk,pk->pf", q, rays[:, 0]) * inv_det
        t = np.einsum("pfk,pfk->pf", e2, q) * inv_det
    b0 = 1.0 - b1 - b2
    min_bary = np.minimum(np.minimum(b0, b1), b2)
    hit = (min_bary >= 0) & (t > 0) & np.isfinite(t)
    t_hit = np.where(hit, t, np.inf)
    order = np.sort(t_hit, axis=1)
    near_edge = np.any((np.abs(min_bary) < edge_eps) & (t > 0), axis=1)
    second = np.where(np.isfinite(order[:, 1]), order[:, 1], 0.0)  # inf - inf would warn
    tie = np.isfinite(order[:, 1]) & (second - order[:, 0] < 1e-9 * order[:, 0])
    face = np.where(np.isfinite(order[:, 0]), np.argmin(t_hit, axis=1), -1)
    height, width = image_size
    return (order[:, 0].reshape(height, width), face.reshape(height, width),
            (near_edge | tie).reshape(height, width))


def triangle_from_screen(screen_uv, depths, focal, principal):
    """3D corners whose projections are `screen_uv` [3, 2] at camera depths `depths` [3]."""
    uv = np.asarray(screen_uv, dtype=np.float64)
    z = np.asarray(depths, dtype=np.float64)
    x = (uv[:, 0] - principal[0]) / focal[0] * z
    y = (uv[:, 1] - principal[1]) / focal[1] * z
    return np.stack([x, y, z], axis=1)


FOCAL, PRINCIPAL, SIZE = (60.0, 55.0), (20.3, 14.8), (30, 41)  # non-square, off-centre


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tilted_plane_depth_is_perspective_correct(seed):
    rng = np.random.default_rng(seed)
    # Plane z = a x + b y + c, steep enough that linear-in-z interpolation is visibly wrong.
    a, b, c = rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5), rng.uniform(0.5, 1.0)
    screen = np.array([[-5.0, -3.0], [45.0, 2.0], [12.0, 40.0]]) + rng.uniform(-2, 2, (3, 2))
    rays = np.stack([(screen[:, 0] - PRINCIPAL[0]) / FOCAL[0],
                     (screen[:, 1] - PRINCIPAL[1]) / FOCAL[1]], axis=1)
    corner_z = c / (1.0 - a * rays[:, 0] - b * rays[:, 1])
    assert np.all(corner_z > 0.05)
    vertices = triangle_from_screen(screen, corner_z, FOCAL, PRINCIPAL)
    result = render_mesh(vertices, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE)

    d = pixel_rays(SIZE, FOCAL, PRINCIPAL)
    expected = c / (1.0 - a * d[..., 0] - b * d[..., 1])  # ray-plane intersection, float64
    assert result.mask.sum() > 300
    np.testing.assert_allclose(result.depth_m[result.mask], expected[result.mask], rtol=2e-7)
    # The same pixels under (wrong) screen-linear z: the test can tell the two apart.
    i, j = np.nonzero(result.mask)
    lhs = np.stack([screen[:, 0], screen[:, 1], np.ones(3)])
    bary = np.linalg.solve(lhs, np.stack([j, i, np.ones_like(i)]).astype(np.float64))
    linear_z = corner_z @ bary
    assert np.max(np.abs(linear_z / expected[i, j] - 1.0)) > 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_scene_matches_ray_casting(seed):
    rng = np.random.default_rng(seed)
    sphere_v, sphere_f = sphere_mesh(0.25, subdivisions=2)
    box_v, box_f = box_mesh(rng.uniform(0.1, 0.4, 3))
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    vertices, faces = merge_meshes([
        (sphere_v + [rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.1), 1.2], sphere_f),
        (box_v @ rot.T + [rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), 1.0], box_f),
    ])
    labels = rng.integers(0, 7, len(faces))
    result = render_mesh(vertices.astype(np.float32), faces, FOCAL, PRINCIPAL, SIZE,
                         face_labels=labels)
    depth, face, ambiguous = ray_cast(vertices.astype(np.float32).astype(np.float64), faces,
                                      SIZE, FOCAL, PRINCIPAL)
    clear = ~ambiguous
    assert clear.sum() > 0.9 * clear.size
    np.testing.assert_array_equal(result.face_id[clear], face[clear])
    np.testing.assert_array_equal(result.mask[clear], face[clear] >= 0)
    np.testing.assert_array_equal(result.label[clear], np.where(face >= 0, labels[face], -1)[clear])
    hit = clear & (face >= 0)
    assert hit.sum() > 300 and np.any(face >= len(sphere_f))  # both objects visible
    assert np.any((0 <= face) & (face < len(sphere_f)))
    np.testing.assert_allclose(result.depth_m[hit], depth[hit], rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_coverage_matches_brute_force_point_in_triangle(seed):
    rng = np.random.default_rng(seed)
    screen = rng.uniform([-8, -8], [SIZE[1] + 8, SIZE[0] + 8], (3, 2))
    vertices = triangle_from_screen(screen, rng.uniform(0.5, 3.0, 3), FOCAL, PRINCIPAL)
    result = render_mesh(vertices, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE)
    # Independent test: the centre is on the same side of all three edges (float64 cross
    # products, per pixel); centres closer than 1e-6 px to an edge are exact-edge ties.
    inside = np.zeros(SIZE, dtype=bool)
    tie = np.zeros(SIZE, dtype=bool)
    for i in range(SIZE[0]):
        for j in range(SIZE[1]):
            signs, dists = [], []
            for k in range(3):
                a, b = screen[k], screen[(k + 1) % 3]
                cross = (b[0] - a[0]) * (i - a[1]) - (b[1] - a[1]) * (j - a[0])
                signs.append(np.sign(cross))
                dists.append(abs(cross) / np.hypot(*(b - a)))
            inside[i, j] = all(s >= 0 for s in signs) or all(s <= 0 for s in signs)
            tie[i, j] = min(dists) < 1e-6
    np.testing.assert_array_equal(result.mask[~tie], inside[~tie])
    assert result.mask.any() == inside.any()


def test_shared_edge_through_pixel_centres_leaves_no_crack():
    # A square split along its diagonal, which passes exactly through pixel centres (k, k):
    # inclusive, exactly-negated edge functions must cover those centres.
    screen = np.array([[2.0, 2.0], [20.0, 2.0], [20.0, 20.0], [2.0, 20.0]])
    vertices = triangle_from_screen(screen[[0, 1, 2]], [1.0] * 3, FOCAL, PRINCIPAL)
    fourth = triangle_from_screen(screen[[3]], [1.0], FOCAL, PRINCIPAL)
    vertices = np.concatenate([vertices, fourth])
    for faces in ([[0, 1, 2], [0, 2, 3]], [[0, 2, 3], [2, 0, 1]]):
        result = render_mesh(vertices, np.array(faces), FOCAL, PRINCIPAL, SIZE)
        expected = np.zeros(SIZE, dtype=bool)
        expected[2:21, 2:21] = True
        np.testing.assert_array_equal(result.mask, expected)
        # On the diagonal both faces tie in depth: the lower face index wins.
        assert np.all(result.face_id[np.arange(3, 20), np.arange(3, 20)] == 0)


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_wins(near_first):
    near = triangle_from_screen([[0, 0], [30, 0], [0, 25]], [1.0, 1.0, 1.0], FOCAL, PRINCIPAL)
    far = triangle_from_screen([[5, 3], [40, 3], [5, 29]], [2.0, 2.0, 2.0], FOCAL, PRINCIPAL)
    order = [near, far] if near_first else [far, near]
    vertices = np.concatenate(order)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    labels = np.array([7, 9])
    near_id = 0 if near_first else 1
    result = render_mesh(vertices, faces, FOCAL, PRINCIPAL, SIZE, face_labels=labels)
    overlap = (10, 10)  # inside both triangles
    only_far = (5, 35)
    assert result.face_id[overlap] == near_id and result.label[overlap] == labels[near_id]
    assert result.depth_m[overlap] == pytest.approx(1.0, rel=1e-6)
    assert result.face_id[only_far] == 1 - near_id
    assert result.label[only_far] == labels[1 - near_id]
    assert result.depth_m[only_far] == pytest.approx(2.0, rel=1e-6)


def test_back_face_culling():
    screen = [[0, 0], [30, 0], [0, 25]]
    tri = triangle_from_screen(screen, [1.0, 1.2, 0.9], FOCAL, PRINCIPAL)
    # (v1 - v0) x (v2 - v0) for these corners points along +z (away from the camera): a back face.
    assert np.cross(tri[1] - tri[0], tri[2] - tri[0]) @ tri[0] > 0
    for faces, front in (([[0, 1, 2]], False), ([[0, 2, 1]], True)):
        culled = render_mesh(tri, np.array(faces), FOCAL, PRINCIPAL, SIZE, cull_back_faces=True)
        both = render_mesh(tri, np.array(faces), FOCAL, PRINCIPAL, SIZE)
        assert both.mask.sum() > 300
        np.testing.assert_array_equal(culled.mask, both.mask if front else False)
    # A closed, outward-oriented mesh looks the same with culling, up to exact edge ties.
    v, f = sphere_mesh(0.3, subdivisions=2)
    v = v + [0.05, -0.02, 1.0]
    _, face, ambiguous = ray_cast(v, f, SIZE, FOCAL, PRINCIPAL)
    culled = render_mesh(v, f, FOCAL, PRINCIPAL, SIZE, cull_back_faces=True)
    np.testing.assert_array_equal(culled.face_id[~ambiguous], face[~ambiguous])


def test_batched_candidates_match_single_batch(monkeypatch):
    rng = np.random.default_rng(5)
    v, f = sphere_mesh(0.3, subdivisions=2)
    v = v + [0.05, -0.02, 1.0]
    colors = rng.uniform(size=v.shape)
    whole = render_mesh(v, f, FOCAL, PRINCIPAL, SIZE, vertex_colors=colors)
    monkeypatch.setattr(rasterizer, "_MAX_CANDIDATES_PER_BATCH", 37)
    # Duplicate faces make exact ties across batches; the lower index must still win.
    batched = render_mesh(v, np.concatenate([f, f]), FOCAL, PRINCIPAL, SIZE, vertex_colors=colors)
    for got, want in zip(batched, whole):
        np.testing.assert_array_equal(got, want)


def test_flat_shading_is_ambient_plus_diffuse_cosine():
    theta = np.deg2rad(50.0)
    # A plane through (0, 0, 1) tilted by theta about x: normal (0, -sin, cos) up to sign.
    corners = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]]) * 0.4
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    vertices = corners @ rot.T + [0.0, 0.0, 1.0]
    colour = np.array([0.9, 0.5, 0.2])
    for light, ambient, diffuse, cosine in [((0, 0, 1), 0.3, 0.7, np.cos(theta)),
                                            ((0, 0, -2), 0.1, 0.5, np.cos(theta)),
                                            ((0, 1, 0), 0.2, 0.6, np.sin(theta))]:
        result = render_mesh(vertices, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE,
                             vertex_colors=np.tile(colour, (3, 1)), light_dir_cam=light,
                             ambient=ambient, diffuse=diffuse)
        assert result.mask.sum() > 50
        expected = colour * (ambient + diffuse * cosine)
        covered = result.rgb[result.mask]
        np.testing.assert_allclose(covered, np.broadcast_to(expected, covered.shape), atol=1e-6)
        np.testing.assert_array_equal(result.rgb[~result.mask], 0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_vertex_colours_are_interpolated_on_the_surface(seed):
    rng = np.random.default_rng(seed)
    screen = np.array([[-4.0, -2.0], [44.0, 6.0], [10.0, 33.0]])
    vertices = triangle_from_screen(screen, rng.uniform(0.4, 3.0, 3), FOCAL, PRINCIPAL)
    colors = rng.uniform(size=(3, 3))
    result = render_mesh(vertices, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE,
                         vertex_colors=colors, ambient=1.0, diffuse=0.0)
    # Reference: the 3D point the pixel ray hits, written in 3D barycentrics of the corners.
    i, j = np.nonzero(result.mask)
    rays = pixel_rays(SIZE, FOCAL, PRINCIPAL)[i, j]  # [P, 3]
    expected = np.empty((len(i), 3))
    for n, ray in enumerate(rays):
        # Solve t * ray = w0 v0 + w1 v1 + w2 v2 with w0 + w1 + w2 = 1 for (w, t).
        lhs = np.zeros((4, 4))
        lhs[:3, :3] = vertices.T
        lhs[:3, 3] = -ray
        lhs[3, :3] = 1.0
        w = np.linalg.solve(lhs, [0.0, 0.0, 0.0, 1.0])[:3]
        expected[n] = w @ colors
    np.testing.assert_allclose(result.rgb[i, j], expected, atol=2e-6)


def test_triangle_crossing_near_plane_is_dropped():
    good = triangle_from_screen([[0, 0], [30, 0], [0, 25]], [1.0, 1.0, 1.0], FOCAL, PRINCIPAL)
    assert render_mesh(good, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE).mask.any()
    for z in (-0.5, 0.0, 5e-4):
        bad = good.copy()
        bad[2, 2] = z
        result = render_mesh(bad, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE)
        assert not result.mask.any()
    # A larger near plane drops the good triangle too.
    far_near_plane = render_mesh(good, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE, near_m=1.5)
    assert not far_near_plane.mask.any()


def test_background_and_dtypes():
    tri = triangle_from_screen([[3, 3], [12, 3], [3, 12]], [1.0, 1.0, 1.0], FOCAL, PRINCIPAL)
    result = render_mesh(tri, np.array([[0, 1, 2]]), FOCAL, PRINCIPAL, SIZE)
    assert result.depth_m.dtype == np.float32 and result.rgb.dtype == np.float32
    assert result.face_id.dtype == np.int32 and result.label.dtype == np.int32
    assert result.mask.dtype == np.bool_ and result.rgb.shape == (*SIZE, 3)
    background = ~result.mask
    assert np.all(np.isinf(result.depth_m[background])) and np.all(result.face_id[background] == -1)
    assert np.all(result.label == -1)  # no labels given
    np.testing.assert_allclose(result.rgb[result.mask], 0.3 + 0.7)  # white, facing the light
    empty = render_mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int32), FOCAL, PRINCIPAL, SIZE)
    assert not empty.mask.any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(vertices_cam_m=np.zeros((3, 2))), "vertices_cam_m"),
    (dict(vertices_cam_m=np.array([[0, 0, 1.0], [1, 0, 1], [0, np.nan, 1]])), "vertices_cam_m"),
    (dict(faces=np.array([[0, 1]])), "faces"),
    (dict(faces=np.array([[0, 1, 3]])), "faces"),
    (dict(faces=np.array([[0.0, 1.0, 2.0]])), "faces"),
    (dict(focal_px=(0.0, 10.0)), "focal_px"),
    (dict(focal_px=(np.inf, 10.0)), "focal_px"),
    (dict(principal_px=(1.0,)), "principal_px"),
    (dict(image_size_px=(0, 5)), "image_size_px"),
    (dict(image_size_px=(4.5, 5)), "image_size_px"),
    (dict(face_labels=np.zeros(2, dtype=int)), "face_labels"),
    (dict(face_labels=np.zeros(1)), "face_labels"),
    (dict(vertex_colors=np.ones((3, 4))), "vertex_colors"),
    (dict(vertex_colors=np.full((3, 3), 1.5)), "vertex_colors"),
    (dict(light_dir_cam=(0, 0, 0)), "light_dir_cam"),
    (dict(ambient=-0.1), "ambient"),
    (dict(near_m=0.0), "near_m"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    args = dict(vertices_cam_m=np.array([[0, 0, 1.0], [1, 0, 1], [0, 1, 1]]),
                faces=np.array([[0, 1, 2]]), focal_px=(10.0, 10.0), principal_px=(4.0, 4.0),
                image_size_px=(8, 8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        render_mesh(**args)
