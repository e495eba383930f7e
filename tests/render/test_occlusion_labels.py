"""Occlusion labels on constructed scenes: a six-strip synthetic "hand" and box occluders.

The hand is six flat 6 x 12 vertex grids (72 vertices each; parts 0 thumb .. 4 little, 5 palm)
facing the camera, vertices at half-pixel positions 2 px apart. A vertex at (u0 + 0.5 + 2a,
v0 + 0.5 + 2b) truncates to pixel (u0 + 2a, v0 + 2b), whose centre lies inside its strip iff
a >= 1 and b >= 1: an unoccluded strip has exactly 5 * 11 = 55 visible vertices and covers
10 x 22 = 220 pixels. Expected counts below are derived by hand from this layout.
"""

from collections import Counter

import numpy as np
import pytest

from h2o_jax.render import (
    box_mesh,
    face_parts_from_vertex_parts,
    merge_meshes,
    occlusion_labels,
    render_mesh,
    vertex_part_visibility,
    visible_hand_mask,
)

FOCAL, PRINCIPAL, SIZE = (500.0, 500.0), (50.0, 20.0), (40, 100)
HAND_Z = 0.5
STRIP_U0 = [4 + 16 * k for k in range(6)]  # strip k spans u in [u0 + 0.5, u0 + 10.5]
STRIP_V0 = 4  # v in [4.5, 26.5]
VISIBLE_PER_STRIP, PIXELS_PER_STRIP = 55, 220


def to_camera(u, v, z):
    u, v, z = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(z, float))
    return np.stack([(u - PRINCIPAL[0]) * z / FOCAL[0], (v - PRINCIPAL[1]) * z / FOCAL[1], z], -1)


def strip_hand(shift_u=0.0, z=HAND_Z):
    """(vertices [432, 3], faces [660, 3], vertex_part [432]) of the six-strip hand."""
    meshes, parts = [], []
    a, b = np.meshgrid(np.arange(6), np.arange(12), indexing="ij")
    idx = a * 12 + b
    cells = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    # Wound so that (v1 - v0) x (v2 - v0) points at the camera (-z): front faces, not culled.
    faces = np.concatenate([cells[:, [0, 2, 1]], cells[:, [0, 3, 2]]])
    for part, u0 in enumerate(STRIP_U0):
        u = u0 + 0.5 + 2 * a.ravel() + shift_u
        v = STRIP_V0 + 0.5 + 2 * b.ravel()
        meshes.append((to_camera(u, v, z), faces))
        parts.append(np.full(72, part))
    vertices, faces = merge_meshes(meshes)
    return vertices, faces, np.concatenate(parts)


def occluder(u_range, v_range, z=0.3, thickness=1e-3):
    """A thin box whose front face projects exactly onto the image rectangle u_range x v_range."""
    front = z - thickness / 2
    lo, hi = to_camera(u_range[0], v_range[0], front), to_camera(u_range[1], v_range[1], front)
    v, f = box_mesh((hi[0] - lo[0], hi[1] - lo[1], thickness))
    return v + [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, z], f


def scene(*boxes):
    """Hand, its segmentation in front of `boxes`, and occlusion_labels arguments."""
    vertices, faces, part = strip_hand()
    occ = merge_meshes(list(boxes)) if boxes else (np.zeros((0, 3)), np.zeros((0, 3), np.int32))
    mask = visible_hand_mask(vertices, faces, *occ, FOCAL, PRINCIPAL, SIZE)
    return (vertices, faces, part, FOCAL, PRINCIPAL, SIZE, mask)


INDEX_BOX = occluder((18, 33), (-5, 45))  # exactly strip 1 (index)


@pytest.mark.parametrize("rule", ["official", "paper"])
def test_no_occluder_nothing_occluded(rule):
    args = scene()
    assert args[-1].sum() == 6 * PIXELS_PER_STRIP
    labels = occlusion_labels(*args, rule=rule)
    np.testing.assert_array_equal(labels.visible_vertices, [VISIBLE_PER_STRIP] * 6)
    assert not labels.fingers.any() and not labels.palm and not labels.hand
    assert labels.visible_hand_ratio == 1.0
    assert labels.to_json_dict() == dict(thumb=0, index=0, middle=0, ring=0, little=0, palm=0,
                                         **{"global": 0})


@pytest.mark.parametrize("rule", ["official", "paper"])
def test_occluder_over_index_finger(rule):
    labels = occlusion_labels(*scene(INDEX_BOX), rule=rule)
    np.testing.assert_array_equal(labels.visible_vertices, [55, 0, 55, 55, 55, 55])
    np.testing.assert_array_equal(labels.fingers, [False, True, False, False, False])
    assert not labels.palm and not labels.hand
    assert labels.visible_hand_ratio == pytest.approx(5 / 6)
    assert labels.to_json_dict()["index"] == 1


@pytest.mark.parametrize("rule", ["official", "paper"])
def test_occluder_over_whole_hand(rule):
    labels = occlusion_labels(*scene(occluder((-5, 105), (-5, 45))), rule=rule)
    np.testing.assert_array_equal(labels.visible_vertices, [0] * 6)
    assert labels.fingers.all() and labels.palm and labels.hand
    assert labels.visible_hand_ratio == 0.0


def test_occluder_behind_the_hand_hides_nothing():
    labels = occlusion_labels(*scene(occluder((-5, 105), (-5, 45), z=0.8)))
    np.testing.assert_array_equal(labels.visible_vertices, [55] * 6)
    assert not labels.hand


def test_thresholds_change_the_labels():
    args = scene(INDEX_BOX)
    # Official: part occluded iff visible < min_visible_vertices (55 visible on the free strips).
    assert occlusion_labels(*args, min_visible_vertices=56).fingers.all()
    assert occlusion_labels(*args, min_visible_vertices=56).palm
    np.testing.assert_array_equal(occlusion_labels(*args, min_visible_vertices=55).fingers,
                                  [False, True, False, False, False])
    assert occlusion_labels(*args, min_visible_vertices=0).fingers.sum() == 0
    # Hand ratio 5/6: occluded iff the threshold exceeds it.
    assert occlusion_labels(*args, min_visible_hand_ratio=0.84).hand
    assert not occlusion_labels(*args, min_visible_hand_ratio=0.83).hand
    # Paper: part occluded iff occluded vertices (72 - 55 = 17 on free strips) > the maximum.
    assert occlusion_labels(*args, rule="paper", max_occluded_vertices=16).fingers.all()
    paper_17 = occlusion_labels(*args, rule="paper", max_occluded_vertices=17)
    np.testing.assert_array_equal(paper_17.fingers, [False, True, False, False, False])
    assert not occlusion_labels(*args, rule="paper", max_occluded_vertices=72).fingers.any()
    assert occlusion_labels(*args, rule="paper", max_occluded_pixel_ratio=0.16).hand  # 1/6 hidden
    assert not occlusion_labels(*args, rule="paper", max_occluded_pixel_ratio=0.17).hand


def test_paper_and_official_rules_differ():
    # Strips 0-2 hidden; strip 3 hidden in pixel rows v <= 17 (13 of its 22 rows, vertex rows
    # b <= 6), leaving 5 rows x 5 columns = 25 visible vertices: < 30 (official: occluded) but
    # only 47 <= 50 occluded (paper: not occluded). Hidden pixels 3 * 220 + 13 * 10 = 790 of
    # 1320: visible ratio 530 / 1320 = 0.4015 >= 0.40 (official: hand not occluded) while
    # 59.8 % > 50 % of the rendered hand is hidden (paper: occluded).
    args = scene(occluder((0, 49), (-5, 45)), occluder((50, 65), (-5, 17.5)))
    official = occlusion_labels(*args, rule="official")
    paper = occlusion_labels(*args, rule="paper")
    for labels in (official, paper):
        np.testing.assert_array_equal(labels.visible_vertices, [0, 0, 0, 25, 55, 55])
        assert labels.visible_hand_ratio == pytest.approx(530 / 1320)
    np.testing.assert_array_equal(official.fingers, [True, True, True, True, False])
    np.testing.assert_array_equal(paper.fingers, [True, True, True, False, False])
    assert not official.hand and paper.hand


def test_official_ratio_counts_all_mask_pixels():
    vertices, faces, part, *camera, mask = scene(INDEX_BOX)
    bigger = mask.copy()
    bigger[:, :3] = True  # segmentation pixels where nothing is rendered
    official = occlusion_labels(vertices, faces, part, *camera, bigger)
    paper = occlusion_labels(vertices, faces, part, *camera, bigger, rule="paper")
    assert official.visible_hand_ratio == pytest.approx((5 * 220 + 3 * 40) / 1320)
    assert paper.visible_hand_ratio == pytest.approx(5 / 6)


def test_other_parts_in_front_hide_vertices():
    vertices, faces, part = strip_hand()
    # Move the thumb strip in front of the palm strip's left half (columns a <= 2 of the palm).
    thumb = part == 0
    shift = STRIP_U0[5] - STRIP_U0[0] - 6
    uv = vertices[thumb, :2] / vertices[thumb, 2:] * FOCAL + PRINCIPAL
    vertices[thumb] = to_camera(uv[:, 0] + shift, uv[:, 1], 0.4)
    mask = visible_hand_mask(vertices, faces, np.zeros((0, 3)), np.zeros((0, 3), int), FOCAL,
                             PRINCIPAL, SIZE)
    labels = occlusion_labels(vertices, faces, part, FOCAL, PRINCIPAL, SIZE, mask)
    # The thumb now spans u in [78.5, 88.5] (Z = 0.4 keeps pixel positions), covering palm
    # pixel columns 85..88: palm vertices with a = 1 (pixel 86) and a = 2 (pixel 88) are hidden.
    np.testing.assert_array_equal(labels.visible_vertices, [55, 55, 55, 55, 55, 33])
    assert not labels.palm and not labels.hand


def test_vertices_outside_the_image_are_not_visible():
    vertices, faces, part = strip_hand(shift_u=-8.0)
    mask = np.ones(SIZE, dtype=bool)
    labels = occlusion_labels(vertices, faces, part, FOCAL, PRINCIPAL, SIZE, mask)
    # Thumb strip spans u in [-3.5, 6.5]: columns a = 0, 1 (u = -3.5, -1.5) are outside; a = 1
    # would truncate to -1 and wrap to the last column in the official code.
    assert labels.visible_vertices[0] == 4 * 11
    behind = vertices.copy()
    behind[:, 2] *= -1.0  # mirrored behind the camera: projects into the image but is not seen
    visible = vertex_part_visibility(np.zeros(SIZE, int) + part[0], mask, behind, part, FOCAL,
                                     PRINCIPAL)
    assert not visible.any()


def ray_cast_front_face(vertices, faces, ray):
    """Index of the nearest face hit by `ray` from the origin (float64 Moeller-Trumbore), and
    whether the hit is ambiguous (ray within 1e-7 of an edge of any face it nearly hits)."""
    tri = vertices[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(ray, e2)
    det = e1 @ p if e1.ndim == 1 else np.einsum("fk,fk->f", e1, p)
    ok = np.abs(det) > 1e-15
    det = np.where(ok, det, 1.0)
    s = -tri[:, 0]
    b1 = np.einsum("fk,fk->f", s, p) / det
    q = np.cross(s, e1)
    b2 = (q @ ray) / det
    t = np.einsum("fk,fk->f", e2, q) / det
    min_bary = np.minimum(np.minimum(1 - b1 - b2, b1), b2)
    hit = ok & (min_bary >= 0) & (t > 0)
    ambiguous = bool(np.any(ok & (np.abs(min_bary) < 1e-7)))
    if not hit.any():
        return -1, ambiguous
    return int(np.flatnonzero(hit)[np.argmin(t[hit])]), ambiguous


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vertex_visibility_matches_per_vertex_ray_cast(seed):
    rng = np.random.default_rng(seed)
    vertices, faces, part = strip_hand()
    # Perturb and tilt the hand so strips overlap and vertices fall anywhere in their pixels.
    angle = rng.uniform(-0.6, 0.6)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    centre = np.array([0.0, 0.0, HAND_Z])
    vertices = (vertices - centre) @ rot.T + centre + rng.normal(0, 1e-3, vertices.shape)
    mask = rng.uniform(size=SIZE) < 0.8  # a segmentation with holes
    face_part = face_parts_from_vertex_parts(faces, part)
    labels = render_mesh(vertices, faces, FOCAL, PRINCIPAL, SIZE, face_labels=face_part).label
    got = vertex_part_visibility(labels, mask, vertices, part, FOCAL, PRINCIPAL)

    expected = np.zeros(len(vertices), bool)
    checked = 0
    for n, (x, y, z) in enumerate(vertices):
        u, v = FOCAL[0] * x / z + PRINCIPAL[0], FOCAL[1] * y / z + PRINCIPAL[1]
        if not (0 <= u < SIZE[1] and 0 <= v < SIZE[0]):
            continue
        i, j = int(v), int(u)
        ray = np.array([(j - PRINCIPAL[0]) / FOCAL[0], (i - PRINCIPAL[1]) / FOCAL[1], 1.0])
        face, ambiguous = ray_cast_front_face(vertices, faces, ray)
        if ambiguous:
            expected[n] = got[n]  # exact-edge tie: either answer is right
            continue
        checked += 1
        expected[n] = mask[i, j] and face >= 0 and face_part[face] == part[n]
    assert checked > 300 and 50 < expected.sum() < checked
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_face_parts_are_the_majority_vertex_part(seed):
    rng = np.random.default_rng(seed)
    vertex_part = rng.integers(0, 6, 50)
    faces = rng.integers(0, 50, (200, 3))
    expected = []
    for face in faces:
        parts = [int(vertex_part[k]) for k in face]
        value, count = Counter(parts).most_common(1)[0]
        expected.append(value if count >= 2 else parts[0])
    np.testing.assert_array_equal(face_parts_from_vertex_parts(faces, vertex_part), expected)


def test_face_part_override():
    vertices, faces, part, *camera, mask = scene()
    labels = occlusion_labels(vertices, faces, part, *camera, mask,
                              face_part=np.full(len(faces), 5))
    # Every pixel shows "palm", so no finger vertex sees its own part.
    np.testing.assert_array_equal(labels.visible_vertices, [0, 0, 0, 0, 0, 55])
    assert labels.fingers.all() and not labels.palm


@pytest.mark.parametrize("change, match", [
    (dict(rule="both"), "rule"),
    (dict(hand_mask=np.ones((40, 99), bool)), "hand_mask"),
    (dict(hand_mask=np.ones((40, 100), np.uint8)), "hand_mask"),
    (dict(vertex_part=np.full(432, 6)), "vertex_part"),
    (dict(vertex_part=np.zeros(431, int)), "vertex_part"),
    (dict(face_part=np.zeros(3, int)), "face_part"),
    (dict(vertices_cam_m=np.full((432, 3), np.nan)), "vertices_cam_m"),
    (dict(focal_px=(-1.0, 1.0)), "focal_px"),
])
def test_bad_inputs(change, match):
    vertices, faces, part, focal, principal, size, mask = scene()
    kwargs = dict(vertices_cam_m=vertices, faces=faces, vertex_part=part, focal_px=focal,
                  principal_px=principal, image_size_px=size, hand_mask=mask)
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        occlusion_labels(**kwargs)


def test_back_faces_are_culled_like_the_official_render():
    vertices, faces, part, *camera, mask = scene()
    palm_faces = np.all(part[faces] == 5, axis=1)
    flipped = faces.copy()
    flipped[palm_faces] = flipped[palm_faces][:, ::-1]  # the palm strip now faces away
    culled = occlusion_labels(vertices, flipped, part, *camera, mask)
    np.testing.assert_array_equal(culled.visible_vertices, [55, 55, 55, 55, 55, 0])
    assert culled.palm and not culled.fingers.any()
    assert culled.visible_hand_ratio == pytest.approx(6 / 5)  # |S| / |M| with M = 5 strips
    two_sided = occlusion_labels(vertices, flipped, part, *camera, mask, cull_back_faces=False)
    np.testing.assert_array_equal(two_sided.visible_vertices, [55] * 6)
