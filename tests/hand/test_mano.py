"""MANO-format loading (no chumpy) and the JAX LBS forward pass against a naive float64 reference."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from h2o_jax.hand import mano_io
from h2o_jax.hand.mano import (
    MANO_FINGERTIP_VERTICES,
    HandModel,
    common_joint_regressor,
    hand_forward,
    hand_model_from_mano_dict,
    load_hand_model,
    pca_to_full_pose,
)
from h2o_jax.hand.mano_io import load_mano_dict, save_mano_dict
from hand.mano_fixtures import _fake_modules, _Placeholder, make_fake_mano_arrays, write_fake_mano_pkl

ATOL_M = 1e-5
FLOAT_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "J", "weights", "hands_components",
              "hands_mean", "hands_coeffs")
P_NATIVE_TO_COMMON = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]


# ----------------------------------------------------------------------------------------------
# Independent float64 reference: per-joint Rodrigues, 4x4 chain, per-vertex skinning loop.
# ----------------------------------------------------------------------------------------------
def _rodrigues(v: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(v)
    if angle == 0.0:
        return np.eye(3)
    x, y, z = v / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def naive_forward(m: dict, pose: np.ndarray, betas: np.ndarray, *, flat_hand_mean=False, trans=None,
                  tips=MANO_FINGERTIP_VERTICES):
    """float64 LBS of data_formats.md 1.6 written out literally. Returns (verts, joints16, joints21)."""
    pose = np.array(pose, dtype=np.float64)
    if not flat_hand_mean:
        pose[3:] += m["hands_mean"]
    v_shaped = m["v_template"] + np.tensordot(m["shapedirs"], betas, axes=([2], [0]))
    joints = m["J_regressor"] @ v_shaped
    rots = [_rodrigues(pose[3 * j:3 * j + 3]) for j in range(16)]
    feature = np.concatenate([(rots[j] - np.eye(3)).ravel() for j in range(1, 16)])
    v_posed = v_shaped + np.tensordot(m["posedirs"], feature, axes=([2], [0]))
    world = []
    for j in range(16):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[PARENTS[j]] if j > 0 else 0.0)
        world.append(local if j == 0 else world[PARENTS[j]] @ local)
    skin = []
    for j in range(16):
        unpose = np.eye(4)
        unpose[:3, 3] = -joints[j]
        skin.append(world[j] @ unpose)
    skin = np.stack(skin)
    verts = np.zeros_like(v_posed)
    for v in range(v_posed.shape[0]):  # one blended 4x4 transform per vertex
        blended = np.tensordot(m["weights"][v], skin, axes=1)
        verts[v] = (blended @ np.append(v_posed[v], 1.0))[:3]
    joints16 = np.array([w[:3, 3] for w in world])
    if trans is not None:
        verts, joints16 = verts + trans, joints16 + trans
    joints21 = np.concatenate([joints16, verts[list(tips)]])[P_NATIVE_TO_COMMON]
    return verts, joints16, joints21


_forward_jit = jax.jit(hand_forward, static_argnames=("flat_hand_mean",))


def forward(model, pose, betas, *, flat_hand_mean=False, trans_m=None):
    """hand_forward under jit, shared by the tests so each input shape compiles once per file
    (compiles dominate this file's time); no translation is passed as zeros for the same reason
    (the ``trans_m=None`` path runs in the gradient tests)."""
    if trans_m is None:
        trans_m = np.zeros((*np.shape(pose)[:-1], 3))
    return _forward_jit(model, pose, betas, flat_hand_mean=flat_hand_mean, trans_m=trans_m)


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """(path, arrays) of the release-like fixture: Select shapedirs, legacy sparse stub."""
    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    return str(path), write_fake_mano_pkl(path, seed=7)


@pytest.fixture(scope="module")
def model(fake) -> HandModel:
    return load_hand_model(fake[0])


def _random_inputs(rng, batch=(), scale=0.6):
    return rng.normal(0.0, scale, (*batch, 48)), rng.normal(0.0, 1.0, (*batch, 10)), rng.normal(0.0, 0.1, (*batch, 3))


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shapedirs_kind", ["select", "ch"])
@pytest.mark.parametrize("j_regressor_kind", ["stub", "scipy"])
def test_all_pickle_variants_load_identically(tmp_path, shapedirs_kind, j_regressor_kind):
    path = tmp_path / "m.pkl"
    expected = write_fake_mano_pkl(path, seed=3, shapedirs_kind=shapedirs_kind, j_regressor_kind=j_regressor_kind)
    loaded = load_mano_dict(path)
    assert set(loaded) == set(mano_io.MANO_KEYS)
    for key in FLOAT_KEYS:
        assert loaded[key].dtype == np.float64, key
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)
    assert loaded["J_regressor"].shape == (16, 778) and loaded["shapedirs"].shape == (778, 3, 10)
    assert loaded["f"].dtype == np.int32 and loaded["kintree_table"].dtype == np.int64
    np.testing.assert_array_equal(loaded["f"], expected["f"].astype(np.int64))
    np.testing.assert_array_equal(loaded["kintree_table"], expected["kintree_table"])
    assert (loaded["bs_style"], loaded["bs_type"]) == ("lbs", "lrotmin")


def test_protocol0_and_python2_module_names_load(tmp_path):
    """Protocol 0 goes through copy_reg._reconstructor; release pickles name numpy.core.*."""
    p0 = tmp_path / "p0.pkl"
    expected = write_fake_mano_pkl(p0, seed=4, protocol=0)
    np.testing.assert_array_equal(load_mano_dict(p0)["shapedirs"], expected["shapedirs"])
    # Protocol 2 spells globals as text lines, so the numpy 1 / Python 2 module path can be
    # substituted; filterwarnings=error proves the numpy.core alias is never touched.
    p2 = tmp_path / "p2.pkl"
    write_fake_mano_pkl(p2, seed=4)
    raw = p2.read_bytes()
    assert b"numpy._core.multiarray\n" in raw
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    loaded = load_mano_dict(legacy)
    for key in FLOAT_KEYS:
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)


@pytest.mark.parametrize("name, sparse", [("m.pkl", False), ("m.pkl", True), ("m.npz", False)])
def test_save_round_trip(tmp_path, fake, name, sparse):
    original = load_mano_dict(fake[0])
    out = tmp_path / name
    save_mano_dict(original, out, sparse_j_regressor=sparse)
    again = load_mano_dict(out)
    for key in mano_io.MANO_KEYS:
        np.testing.assert_array_equal(again[key], original[key], err_msg=key)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".mano_tmp_")] == []


def test_optional_keys_defaulted_and_extra_keys_ignored(tmp_path):
    arrays = make_fake_mano_arrays(seed=5)
    for key in mano_io.OPTIONAL_KEYS:
        del arrays[key]
    arrays.update(pose=np.zeros(48), trans=np.zeros(3), betas=np.zeros(10))
    path = tmp_path / "m.npz"
    np.savez(path, **arrays)
    loaded = load_mano_dict(path)
    assert set(loaded) == set(mano_io.MANO_KEYS)
    np.testing.assert_allclose(loaded["J"], arrays["J_regressor"] @ arrays["v_template"], rtol=0, atol=1e-15)
    assert loaded["hands_coeffs"].shape == (0, 45) and loaded["bs_type"] == "lrotmin"


def test_extra_keys_with_unsupported_objects_are_not_evaluated(tmp_path):
    """Keys outside the 13 (e.g. the release's priors) are ignored even if they hold chumpy nodes."""
    expr = type("Inv", (_Placeholder,), {})
    arrays = make_fake_mano_arrays(seed=5)
    arrays["J_regressor_prior"] = expr({"a": np.eye(2)})
    path = tmp_path / "extra.pkl"
    with _fake_modules({"chumpy": {}, "chumpy.linalg": {"Inv": expr}}):
        _dump(path, arrays)
    loaded = load_mano_dict(path)
    assert "J_regressor_prior" not in loaded
    np.testing.assert_array_equal(loaded["weights"], arrays["weights"])
    arrays["shapedirs"] = expr({"a": np.eye(2)})  # ...but a used key holding one is refused
    with _fake_modules({"chumpy": {}, "chumpy.linalg": {"Inv": expr}}):
        _dump(path, arrays)
    with pytest.raises(ValueError, match=r"extra\.pkl.*'shapedirs'.*chumpy\.linalg\.Inv"):
        load_mano_dict(path)


def test_other_vertex_and_shape_counts(tmp_path):
    arrays = make_fake_mano_arrays(seed=6, num_vertices=801, num_faces=1500, num_betas=20)
    path = tmp_path / "hand.npz"
    save_mano_dict(arrays, path)
    m = load_hand_model(path, fingertip_vertices=(800, 317, 444, 556, 673))
    assert m.num_vertices == 801 and m.num_betas == 20 and m.faces.shape == (1500, 3)
    rng = np.random.default_rng(0)
    pose, betas = rng.normal(0, 0.5, 48), rng.normal(0, 1, 20)
    out = forward(m, pose, betas)
    ref_v, _, ref_21 = naive_forward(arrays, pose, betas, tips=(800, 317, 444, 556, 673))
    np.testing.assert_allclose(out["vertices_m"], ref_v, atol=ATOL_M, rtol=0)
    np.testing.assert_allclose(out["joints_m"], ref_21, atol=ATOL_M, rtol=0)


# ----------------------------------------------------------------------------------------------
# Forward pass
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flat_hand_mean", [False, True])
def test_forward_matches_naive_reference(fake, model, flat_hand_mean):
    rng = np.random.default_rng(11 + flat_hand_mean)
    for _ in range(2):
        pose, betas, trans = _random_inputs(rng)
        out = forward(model, pose, betas, flat_hand_mean=flat_hand_mean, trans_m=trans)
        ref_v, ref_16, ref_21 = naive_forward(fake[1], pose, betas, flat_hand_mean=flat_hand_mean, trans=trans)
        # The pose must actually move the mesh, or the comparison would prove little.
        assert np.abs(ref_v - fake[1]["v_template"]).max() > 0.01
        np.testing.assert_allclose(out["vertices_m"], ref_v, atol=ATOL_M, rtol=0)
        np.testing.assert_allclose(out["joints16_m"], ref_16, atol=ATOL_M, rtol=0)
        np.testing.assert_allclose(out["joints_m"], ref_21, atol=ATOL_M, rtol=0)


def test_zero_pose_flat_mean_is_template_and_rest_joints_are_regressed(fake, model):
    out = forward(model, np.zeros(48), np.zeros(10), flat_hand_mean=True)
    np.testing.assert_allclose(out["vertices_m"], fake[1]["v_template"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(out["joints16_m"], fake[1]["J_regressor"] @ fake[1]["v_template"], atol=1e-7, rtol=0)
    # At rest (any betas) the common-order regressor reproduces the 21 joints from the mesh.
    betas = np.random.default_rng(1).normal(0, 1, 10)
    rest = forward(model, np.zeros(48), betas, flat_hand_mean=True)
    reg = common_joint_regressor(model)
    np.testing.assert_allclose(reg @ np.asarray(rest["vertices_m"]), rest["joints_m"], atol=1e-6, rtol=0)


def test_common_joint_regressor_rows(fake, model):
    reg = common_joint_regressor(model)
    assert reg.shape == (21, 778) and reg.dtype == np.float32
    native = np.zeros((21, 778))
    native[:16] = fake[1]["J_regressor"]
    for row, vertex in zip(range(16, 21), MANO_FINGERTIP_VERTICES, strict=True):
        native[row, vertex] = 1.0
    np.testing.assert_allclose(reg, native[P_NATIVE_TO_COMMON], atol=1e-7, rtol=0)
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-5)


def test_root_rotation_turns_everything_about_joint0(fake, model):
    rng = np.random.default_rng(2)
    fingers, betas = rng.normal(0, 0.4, 45), rng.normal(0, 1, 10)
    rest = forward(model, np.r_[np.zeros(3), fingers], betas)
    root = rng.normal(0, 1.0, 3)
    turned = forward(model, np.r_[root, fingers], betas)
    r0, j0 = _rodrigues(root), np.asarray(rest["joints16_m"][0], dtype=np.float64)
    np.testing.assert_allclose(turned["joints16_m"][0], j0, atol=1e-7, rtol=0)
    for key in ("vertices_m", "joints_m"):
        expected = (np.asarray(rest[key], dtype=np.float64) - j0) @ r0.T + j0
        np.testing.assert_allclose(turned[key], expected, atol=1e-6, rtol=0)


def test_flat_hand_mean_equivalence_and_translation(model):
    rng = np.random.default_rng(3)
    pose, betas, trans = _random_inputs(rng)
    mean = np.asarray(model.hands_mean, dtype=np.float64)
    relative = forward(model, pose, betas)
    absolute = forward(model, pose + np.r_[np.zeros(3), mean], betas, flat_hand_mean=True)
    for key in relative:
        np.testing.assert_allclose(relative[key], absolute[key], atol=1e-6, rtol=0)
    zero_rel = forward(model, np.zeros(48), np.zeros(10))
    mean_abs = forward(model, np.r_[np.zeros(3), mean], np.zeros(10), flat_hand_mean=True)
    np.testing.assert_allclose(zero_rel["vertices_m"], mean_abs["vertices_m"], atol=1e-7, rtol=0)
    moved = forward(model, pose, betas, trans_m=trans)
    for key in relative:
        np.testing.assert_allclose(np.asarray(moved[key]) - np.asarray(relative[key]),
                                   np.broadcast_to(trans, relative[key].shape), atol=1e-6, rtol=0)


def test_pca_pose(fake, model):
    rng = np.random.default_rng(4)
    comps = fake[1]["hands_components"]
    coeffs45 = np.r_[rng.normal(0, 0.5, 3), rng.normal(0, 0.7, 45)]
    full = pca_to_full_pose(model, coeffs45)
    np.testing.assert_allclose(full, np.r_[coeffs45[:3], coeffs45[3:] @ comps], atol=1e-5, rtol=0)
    # Components are orthogonal but not unit length: the inverse needs the squared row norms.
    back = np.linalg.solve(comps.T, np.asarray(full[3:], dtype=np.float64))
    np.testing.assert_allclose(back, coeffs45[3:], atol=1e-4)
    out = forward(model, full, np.zeros(10))
    ref_v, _, _ = naive_forward(fake[1], np.r_[coeffs45[:3], coeffs45[3:] @ comps], np.zeros(10))
    np.testing.assert_allclose(out["vertices_m"], ref_v, atol=ATOL_M, rtol=0)
    coeffs6 = rng.normal(0, 0.5, (2, 9))  # batched, n = 6
    np.testing.assert_allclose(pca_to_full_pose(model, coeffs6),
                               np.concatenate([coeffs6[:, :3], coeffs6[:, 3:] @ comps[:6]], axis=1), atol=1e-5)


def test_jit_vmap_and_broadcast_match_per_sample(model):
    rng = np.random.default_rng(5)
    pose, betas, trans = _random_inputs(rng, batch=(2, 2))
    # Batch dims broadcast: poses and translations [2, 2, ...] against one shape vector.
    batched = forward(model, pose, betas[0, 0], trans_m=trans)
    assert batched["vertices_m"].shape == (2, 2, 778, 3)
    mapped = jax.jit(jax.vmap(lambda p, b, t: hand_forward(model, p, b, trans_m=t)))(
        pose.reshape(4, 48), betas.reshape(4, 10), trans.reshape(4, 3))
    for i, j in np.ndindex(2, 2):
        single = forward(model, pose[i, j], betas[0, 0], trans_m=trans[i, j])
        single_own = forward(model, pose[i, j], betas[i, j], trans_m=trans[i, j])
        for key in single:
            np.testing.assert_allclose(batched[key][i, j], single[key], atol=1e-6, rtol=0)
            np.testing.assert_allclose(mapped[key][2 * i + j], single_own[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_gradient_finite_at_zero_pose_and_matches_finite_differences(fake, model, flat_hand_mean):
    rng = np.random.default_rng(6)
    probe = rng.normal(0, 1, (778, 3))

    def loss(pose, betas):
        return jnp.sum(hand_forward(model, pose, betas, flat_hand_mean=flat_hand_mean)["vertices_m"] * probe)

    g_pose, g_betas = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.zeros(48), jnp.zeros(10))
    assert np.all(np.isfinite(g_pose)) and np.all(np.isfinite(g_betas))

    def ref_loss(pose, betas):
        return np.sum(naive_forward(fake[1], pose, betas, flat_hand_mean=flat_hand_mean)[0] * probe)

    h = 1e-5
    for idx in (0, 2, 4, 30, 47):  # root and finger entries; central differences in float64
        e = np.zeros(48)
        e[idx] = h
        fd = (ref_loss(e, np.zeros(10)) - ref_loss(-e, np.zeros(10))) / (2 * h)
        np.testing.assert_allclose(g_pose[idx], fd, rtol=1e-3, atol=1e-4)
    e = np.zeros(10)
    e[3] = h
    fd = (ref_loss(np.zeros(48), e) - ref_loss(np.zeros(48), -e)) / (2 * h)
    np.testing.assert_allclose(g_betas[3], fd, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Cross-check with the body-models library (the [mano] extra), which reads our saved files.
# ----------------------------------------------------------------------------------------------
def test_matches_body_models_on_saved_files(tmp_path, fake, model):
    bm_jax = pytest.importorskip("body_models.mano.jax", reason="body-models (the [mano] extra) is not installed")

    @jax.jit
    def theirs(reference, p, b):  # the body-models model is a pytree: one compile for both files
        return reference.forward_vertices(p[3:].reshape(15, 3), wrist_rotation=p[:3], shape=b)

    rng = np.random.default_rng(8)
    pose, betas, _ = _random_inputs(rng)
    ours = forward(model, pose, betas)["vertices_m"]
    for name, sparse in (("saved.pkl", True), ("saved.npz", False)):
        path = tmp_path / name
        save_mano_dict(load_mano_dict(fake[0]), path, sparse_j_regressor=sparse)
        reference = bm_jax.MANO(model_path=str(path), flat_hand_mean=False)
        np.testing.assert_allclose(ours, theirs(reference, jnp.asarray(pose, jnp.float32),
                                                jnp.asarray(betas, jnp.float32)), atol=ATOL_M, rtol=0)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def _dump(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


class _RunsShell:
    """Pickles as os.system("touch <marker>"): a malicious file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_mano_dict(tmp_path / "nope.pkl")
    other = tmp_path / "m.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match=r"m\.json.*\.pkl or \.npz"):
        load_mano_dict(other)


def test_missing_key_names_file_and_key(tmp_path):
    arrays = make_fake_mano_arrays(seed=1)
    del arrays["posedirs"]
    path = _dump(tmp_path / "nokey.pkl", arrays)
    with pytest.raises(KeyError, match=r"nokey\.pkl.*'posedirs'"):
        load_mano_dict(path)


def test_not_a_dict_and_garbage(tmp_path):
    with pytest.raises(ValueError, match=r"list\.pkl.*dict.*list"):
        load_mano_dict(_dump(tmp_path / "list.pkl", [1, 2]))
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"junk\.pkl"):
        load_mano_dict(junk)
    bad_npz = tmp_path / "obj.npz"
    np.savez(bad_npz, v_template=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz"):
        load_mano_dict(bad_npz)


def test_forbidden_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = _dump(tmp_path / "evil.pkl", {"v_template": _RunsShell(marker)})
    with pytest.raises(ValueError, match=r"evil\.pkl.*(posix|os)\.system"):
        load_mano_dict(path)
    assert not marker.exists()


def test_unknown_chumpy_class_and_wrong_shapes(tmp_path, fake):
    raw = tmp_path / "x.pkl"
    data = Path(fake[0]).read_bytes()
    raw.write_bytes(data.replace(b"chumpy.reordering\nSelect\n", b"chumpy.reordering\nTranspose\n"))
    with pytest.raises(ValueError, match=r"x\.pkl.*'shapedirs'.*chumpy\.reordering\.Transpose"):
        load_mano_dict(raw)
    arrays = make_fake_mano_arrays(seed=2)
    arrays["weights"] = arrays["weights"][:, :15]
    with pytest.raises(ValueError, match=r"shape\.pkl.*'weights'.*\(778, 15\).*\(778, 16\)"):
        load_mano_dict(_dump(tmp_path / "shape.pkl", arrays))
    arrays = make_fake_mano_arrays(seed=2)
    arrays["f"] = arrays["f"].astype(np.int64) + 1
    with pytest.raises(ValueError, match=r"'f'.*outside"):
        load_mano_dict(_dump(tmp_path / "faces.pkl", arrays))
    arrays = make_fake_mano_arrays(seed=2)
    arrays["bs_type"] = "lrotmax"
    with pytest.raises(ValueError, match=r"'bs_type'.*lrotmax"):
        load_mano_dict(_dump(tmp_path / "bs.pkl", arrays))


def test_model_level_errors(tmp_path, model):
    arrays = make_fake_mano_arrays(seed=2)
    arrays["kintree_table"][0, 2] = 0
    with pytest.raises(ValueError, match=r"tree\.npz.*kintree_table"):
        load_hand_model(_npz(tmp_path / "tree.npz", arrays))
    with pytest.raises(ValueError, match="fingertip_vertices"):
        hand_model_from_mano_dict(make_fake_mano_arrays(seed=2), fingertip_vertices=(1, 2, 3, 4, 778))
    with pytest.raises(ValueError, match=r"pose_aa.*\[\.\.\., 48\]"):
        hand_forward(model, np.zeros(45), np.zeros(10))
    with pytest.raises(ValueError, match=r"betas.*10"):
        hand_forward(model, np.zeros(48), np.zeros(16))
    with pytest.raises(ValueError, match=r"trans_m"):
        hand_forward(model, np.zeros(48), np.zeros(10), trans_m=np.zeros(2))
    with pytest.raises(ValueError, match=r"coeffs"):
        pca_to_full_pose(model, np.zeros(49))
    with pytest.raises(ValueError, match=r"sparse_j_regressor"):
        save_mano_dict(make_fake_mano_arrays(seed=2), tmp_path / "s.npz", sparse_j_regressor=True)


def _npz(path, arrays):
    np.savez(path, **arrays)
    return str(path)
