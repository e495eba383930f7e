"""load_official_topology and its parts on fixtures written in the official template format."""

import pickle
import struct

import numpy as np
import pytest
import scipy.sparse

from h2o_jax.hand.official_import import (
    BONE_SEGMENTS,
    OFFICIAL_FINGERTIP_VERTICES,
    assign_vertex_parts,
    build_official_joint_regressor,
    load_official_topology,
    load_transform_pickle,
    read_ply,
)
from h2o_jax.hand.spirals import build_spirals
from topology_helpers import REFERENCE_DIR

HIERARCHY = REFERENCE_DIR / "official_hierarchy.npz"
SPIRALS = REFERENCE_DIR / "official_spirals.npz"


# -- fixture writers ----------------------------------------------------------------------------

def write_ply_ascii(path, verts, faces):
    lines = ["ply", "format ascii 1.0", "comment made by a test", f"element vertex {len(verts)}",
             "property float x", "property float y", "property float z", "property uchar red",
             f"element face {len(faces)}", "property list uchar int vertex_indices",
             "element extra 1", "property int something", "end_header"]
    lines += [f"{x!r} {y!r} {z!r} 7" for x, y, z in verts.tolist()]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    lines += ["42"]
    path.write_text("\n".join(lines) + "\n")


def write_ply_binary(path, verts, faces):
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(verts)}",
              "property double x", "property double y", "property double z", "property float nx",
              f"element face {len(faces)}", "property list uchar uint vertex_index", "end_header"]
    body = b"".join(struct.pack("<dddf", *v, 0.5) for v in verts.tolist())
    body += b"".join(struct.pack("<BIII", 3, *f) for f in faces.tolist())
    path.write_bytes(("\n".join(header) + "\n").encode() + body)


def grid(n, scale, rng):
    """Open n x n grid with random diagonals (consistently oriented), jittered positions."""
    ids = np.arange(n * n).reshape(n, n)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = ids[i, j], ids[i, j + 1], ids[i + 1, j + 1], ids[i + 1, j]
            faces += [(a, b, c), (a, c, d)] if rng.random() < 0.5 else [(a, b, d), (b, c, d)]
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    verts = np.stack([xx.ravel(), yy.ravel(), rng.normal(size=n * n) * 0.1], 1) * scale
    return verts, np.array(faces, np.uint32)


def selection(coarse, fine, rng):
    cols = np.sort(rng.choice(fine, coarse, replace=False))
    return scipy.sparse.csc_matrix((np.ones(coarse), (np.arange(coarse), cols)), shape=(coarse, fine)), cols


def up_matrix(fine, coarse, rng):
    cols = np.stack([rng.choice(coarse, 3, replace=False) for _ in range(fine)])
    vals = rng.normal(size=(fine, 3))
    vals[rng.random((fine, 3)) < 0.2] = 0.0  # stored zeros, as in the official matrices
    rows = np.repeat(np.arange(fine), 3)
    return scipy.sparse.csc_matrix((vals.ravel(), (rows, cols.ravel())), shape=(fine, coarse)), cols, vals


def write_pickle(path, content, old_module_names=False):
    data = pickle.dumps(content, protocol=2)
    if old_module_names:  # as written by python 2 / scipy < 1.8 / numpy < 2
        data = data.replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n")
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"scipy.sparse.csc\n" in data and b"numpy.core.multiarray\n" in data
    path.write_bytes(data)


def tip_regressor(num_vertices, tips, rng):
    regressor = rng.random((21, num_vertices))
    regressor /= regressor.sum(1, keepdims=True)
    for row, v in zip((4, 8, 12, 16, 20), tips):
        regressor[row] = 0.0
        regressor[row, v] = 1.0
    return regressor


@pytest.fixture
def small_template(tmp_path):
    """A 3-level hierarchy 25 -> 9 -> 4 vertices in the official format, plus expected tables."""
    rng = np.random.default_rng(11)
    levels = [grid(5, 0.01, rng), grid(3, 0.02, rng), grid(2, 0.04, rng)]
    sizes = [len(v) for v, _ in levels]
    downs = [selection(sizes[i + 1], sizes[i], rng) for i in range(2)]
    ups = [up_matrix(sizes[i], sizes[i + 1], rng) for i in range(2)]
    content = {"vertices": [v for v, _ in levels], "face": [f for _, f in levels],
               "adj": [None, None, None], "down_transform": [d[0] for d in downs],
               "up_transform": [u[0] for u in ups]}
    write_pickle(tmp_path / "transform.pkl", content, old_module_names=True)
    write_ply_ascii(tmp_path / "template.ply", levels[0][0], levels[0][1])
    tips = [3, 7, 12, 18, 24]
    regressor = tip_regressor(25, tips, rng)
    np.save(tmp_path / "jreg.npy", regressor)
    return tmp_path, levels, downs, ups, regressor, tips


# -- PLY ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("writer", [write_ply_ascii, write_ply_binary])
def test_read_ply_round_trip(tmp_path, writer):
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(13, 3))
    faces = rng.integers(0, 13, size=(9, 3))
    writer(tmp_path / "m.ply", verts, faces)
    got_verts, got_faces = read_ply(tmp_path / "m.ply")
    # The ascii file declares float32 x, y, z, the binary one float64: each is read at its type.
    expected = verts.astype(np.float32).astype(np.float64) if writer is write_ply_ascii else verts
    np.testing.assert_array_equal(got_verts, expected)
    np.testing.assert_array_equal(got_faces, faces)


def test_read_ply_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        read_ply(tmp_path / "nope.ply")
    (tmp_path / "bad.ply").write_text("solid stl\n")
    with pytest.raises(ValueError, match="bad.ply"):
        read_ply(tmp_path / "bad.ply")
    (tmp_path / "big.ply").write_text(
        "ply\nformat binary_big_endian 1.0\nelement vertex 0\nproperty float x\nend_header\n")
    with pytest.raises(ValueError, match="binary_big_endian"):
        read_ply(tmp_path / "big.ply")


# -- regressor and parts ------------------------------------------------------------------------

def test_official_joint_regressor_rows():
    rng = np.random.default_rng(1)
    mano = rng.random((16, 778))
    got = build_official_joint_regressor(mano)
    # Independent route: the common -> native permutation Q of data_formats.md 0.3 undoes P.
    q = [0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20]
    native = got[q]
    np.testing.assert_allclose(native[:16], mano, rtol=1e-6)
    for k, v in enumerate([745, 317, 445, 556, 673]):
        assert np.flatnonzero(native[16 + k]).tolist() == [v] and native[16 + k, v] == 1.0
    # By name: common row 1 (Thumb_1) is MANO joint 13, row 12 (middle tip) vertex 445.
    np.testing.assert_allclose(got[1], mano[13], rtol=1e-6)
    assert got[12, 445] == 1.0
    np.testing.assert_array_equal(build_official_joint_regressor(scipy.sparse.csc_matrix(mano)), got)
    with pytest.raises(ValueError, match="mano_j_regressor"):
        build_official_joint_regressor(mano[:15])


def brute_force_parts(points, joints):
    """Nearest bone by dense sampling of each segment (no projection formula)."""
    t = np.linspace(0.0, 1.0, 20001)
    best = []
    for p in points:
        dists = [np.min(np.linalg.norm(joints[a] + t[:, None] * (joints[b] - joints[a]) - p, axis=1))
                 for a, b, _ in BONE_SEGMENTS]
        order = np.argsort(dists)
        best.append((BONE_SEGMENTS[order[0]][2], dists[order[1]] - dists[order[0]]))
    return best


def test_vertex_parts_against_brute_force():
    rng = np.random.default_rng(2)
    joints = rng.normal(size=(21, 3))
    points = rng.normal(size=(60, 3))
    got = assign_vertex_parts(points, joints)
    assert got.dtype == np.int32
    checked = 0
    for part, (expected, margin) in zip(got, brute_force_parts(points, joints)):
        if margin > 2e-4:  # the brute force's sampling error is below 1e-4 here
            assert part == expected
            checked += 1
    assert checked >= 40


def test_vertex_parts_hand_placed():
    # Wrist at the origin, finger f's joints along x = f, y = 1, 2, 3, 4.
    joints = np.zeros((21, 3))
    for f in range(5):
        for k in range(4):
            joints[1 + 4 * f + k] = (f, 1 + k, 0)
    points = np.array([(0.1, 2.5, 0.0), (3.0, 3.5, 0.2), (4.1, 1.8, 0.0), (0.0, 0.2, 0.0)])
    np.testing.assert_array_equal(assign_vertex_parts(points, joints), [0, 3, 4, 5])
    with pytest.raises(ValueError, match="joints_m"):
        assign_vertex_parts(points, joints[:20])


# -- the topology -------------------------------------------------------------------------------

def test_load_small_template(small_template):
    folder, levels, downs, ups, regressor, tips = small_template
    topo = load_official_topology(folder, joint_regressor_path=folder / "jreg.npy", spiral_length=5)
    np.testing.assert_allclose(topo.template_vertices_m, levels[0][0].astype(np.float32))
    assert topo.template_vertices_m.dtype == np.float32
    np.testing.assert_array_equal(topo.faces, levels[0][1])
    assert topo.faces.dtype == np.int32 and topo.level_num_vertices == (25, 9, 4)
    for level in range(3):
        np.testing.assert_array_equal(topo.level_faces[level], levels[level][1])
    for level in range(2):
        # Down: one selected fine vertex per coarse vertex, weight 1.
        np.testing.assert_array_equal(topo.down_indices[level][:, 0], downs[level][1])
        np.testing.assert_array_equal(topo.down_weights[level], 1.0)
        # Up: the three coarse vertices of each row in increasing column order, zeros kept.
        _, cols, vals = ups[level]
        order = np.argsort(cols, axis=1)
        np.testing.assert_array_equal(topo.up_indices[level], np.take_along_axis(cols, order, 1))
        np.testing.assert_allclose(topo.up_weights[level], np.take_along_axis(vals, order, 1), rtol=1e-6)
        expected = build_spirals(levels[level][1], len(levels[level][0]), 5, vertices_m=levels[level][0])
        np.testing.assert_array_equal(topo.spirals[level], expected)
    assert len(topo.spirals) == 2
    np.testing.assert_allclose(topo.joint_regressor, regressor, rtol=1e-6)
    np.testing.assert_array_equal(topo.fingertip_vertices, tips)
    joints = regressor @ levels[0][0]
    np.testing.assert_array_equal(topo.vertex_part, assign_vertex_parts(levels[0][0], joints))


def test_binary_ply_gives_the_same_topology(small_template):
    folder, levels, *_ = small_template
    ascii_topo = load_official_topology(folder, joint_regressor_path=folder / "jreg.npy")
    write_ply_binary(folder / "template.ply", levels[0][0], levels[0][1])
    binary_topo = load_official_topology(folder, joint_regressor_path=folder / "jreg.npy")
    np.testing.assert_array_equal(ascii_topo.template_vertices_m, binary_topo.template_vertices_m)
    np.testing.assert_array_equal(ascii_topo.vertex_part, binary_topo.vertex_part)


def test_missing_files_and_keys(small_template):
    folder, *_ = small_template
    reg = folder / "jreg.npy"
    with pytest.raises(ValueError, match="joint_regressor_path"):
        load_official_topology(folder)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_official_topology(folder, joint_regressor_path=folder / "missing.npy")
    np.save(folder / "wrong.npy", np.zeros((16, 25)))
    with pytest.raises(ValueError, match="wrong.npy"):
        load_official_topology(folder, joint_regressor_path=folder / "wrong.npy")
    not_one_hot = np.load(reg)
    not_one_hot[8, 0] = 0.5  # the index-tip row must be one-hot when V != 778
    np.save(folder / "soft.npy", not_one_hot)
    with pytest.raises(ValueError, match="soft.npy.*row 8"):
        load_official_topology(folder, joint_regressor_path=folder / "soft.npy")
    content = load_transform_pickle(folder / "transform.pkl")
    del content["up_transform"]
    write_pickle(folder / "transform.pkl", content)
    with pytest.raises(KeyError, match="transform.pkl.*up_transform"):
        load_official_topology(folder, joint_regressor_path=reg)
    (folder / "transform.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="transform.pkl"):
        load_official_topology(folder, joint_regressor_path=reg)
    (folder / "template.ply").unlink()
    with pytest.raises(FileNotFoundError, match="template.ply"):
        load_official_topology(folder, joint_regressor_path=reg)


def test_inconsistent_contents_raise(small_template):
    folder, *_ = small_template
    reg = folder / "jreg.npy"
    content = load_transform_pickle(folder / "transform.pkl")
    bad = dict(content, up_transform=[content["up_transform"][0].T, content["up_transform"][1]])
    write_pickle(folder / "transform.pkl", bad)
    with pytest.raises(ValueError, match="up_transform\\[0\\]"):
        load_official_topology(folder, joint_regressor_path=reg)
    faces = content["face"][0].copy()
    faces[0] = faces[0][::-1]  # flips one triangle: an inconsistently oriented edge
    write_pickle(folder / "transform.pkl", dict(content, face=[faces] + content["face"][1:]))
    with pytest.raises(ValueError, match="face\\[0\\]"):
        load_official_topology(folder, joint_regressor_path=reg)


@pytest.mark.skipif(not (HIERARCHY.exists() and SPIRALS.exists()), reason="official reference files absent")
def test_official_faces_give_the_official_spirals(tmp_path):
    hierarchy, reference = np.load(HIERARCHY), np.load(SPIRALS)
    rng = np.random.default_rng(4)
    sizes = (778, 389, 195, 98, 49)

    def matrix(kind, i):
        key = f"{kind}_transform{i}"
        return scipy.sparse.coo_matrix(
            (hierarchy[f"{key}_vals"], (hierarchy[f"{key}_rows"], hierarchy[f"{key}_cols"])),
            shape=tuple(hierarchy[f"{key}_shape"])).tocsc()

    vertices = [rng.normal(size=(n, 3)) * 0.05 for n in sizes]
    content = {"vertices": vertices, "face": [hierarchy[f"faces{i}"].astype(np.uint32) for i in range(5)],
               "adj": [], "down_transform": [matrix("down", i) for i in range(4)],
               "up_transform": [matrix("up", i) for i in range(4)]}
    write_pickle(tmp_path / "transform.pkl", content, old_module_names=True)
    write_ply_binary(tmp_path / "template.ply", vertices[0], hierarchy["faces0"])
    np.save(tmp_path / "jreg.npy", build_official_joint_regressor(rng.random((16, 778))))
    topo = load_official_topology(tmp_path, joint_regressor_path=tmp_path / "jreg.npy")
    for level in range(4):
        np.testing.assert_array_equal(topo.spirals[level], reference[f"level{level}"])
        # Up rows keep all three stored entries, stored zeros included.
        assert topo.up_indices[level].shape == (sizes[level], 3)
        up = matrix("up", level).tocsr()
        dense = np.zeros((sizes[level], sizes[level + 1]))
        np.add.at(dense, (np.repeat(np.arange(sizes[level]), 3), topo.up_indices[level].ravel()),
                  topo.up_weights[level].ravel())
        np.testing.assert_allclose(dense, up.toarray(), rtol=1e-6)
    np.testing.assert_array_equal(topo.fingertip_vertices, OFFICIAL_FINGERTIP_VERTICES)
    # The part lists of architecture.md 16.1 / C.3 (what the official network fuses with), not
    # the nearest-bone approximation: per-part counts and the first vertex of each longest run.
    np.testing.assert_array_equal(np.bincount(topo.vertex_part, minlength=6), [100, 122, 119, 124, 122, 191])
    np.testing.assert_array_equal(topo.vertex_part[[697, 768, 294, 356, 468, 580, 696, 0, 769, 777]],
                                  [0, 0, 1, 2, 3, 4, 4, 5, 5, 5])


def test_mobrecon_regressor_is_rejected(tmp_path):
    hierarchy_faces = np.array([(0, 1, 2)])
    rng = np.random.default_rng(6)
    regressor = rng.random((21, 778))
    for k, v in enumerate([333, 444, 672, 555, 744]):
        regressor[16 + k] = 0.0
        regressor[16 + k, v] = 1.0
    np.save(tmp_path / "j_reg.npy", regressor)
    verts = rng.normal(size=(778, 3))
    faces = np.concatenate([hierarchy_faces, [(3, 4, 5)]])
    write_ply_binary(tmp_path / "template.ply", verts, faces)
    down = scipy.sparse.csc_matrix((np.ones(3), (range(3), range(3))), shape=(3, 778))
    content = {"vertices": [verts, verts[:3]], "face": [faces, hierarchy_faces], "down_transform": [down],
               "up_transform": [scipy.sparse.csc_matrix((778, 3))]}
    write_pickle(tmp_path / "transform.pkl", content)
    with pytest.raises(ValueError, match="MobRecon"):
        load_official_topology(tmp_path, joint_regressor_path=tmp_path / "j_reg.npy")
