"""The built-in procedural hand: mesh validity, proportions, shape space, skinning data, assets."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest

from h2o_jax.hand import BUILTIN_HAND_PATH, BUILTIN_TOPOLOGY_PATH, builtin, builtin_topology
from h2o_jax.hand.topology import load_topology


@pytest.fixture(scope="module")
def hand():
    return builtin.builtin_mano_dict()


def test_mesh_is_closed_consistently_oriented_and_outward(hand):
    v, f = hand["v_template"], hand["f"].astype(np.int64)
    assert 700 <= len(v) <= 1000
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    as_set = set(map(tuple, directed.tolist()))
    assert len(as_set) == len(directed), "a directed edge appears twice: inconsistent winding"
    assert all((b, a) in as_set for a, b in as_set), "an edge lacks its twin: the mesh is open"
    assert len(np.unique(f)) == len(v)
    # Euler characteristic 2: one closed genus-0 surface.
    assert len(v) - len(as_set) // 2 + len(f) == 2
    signed_volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert signed_volume > 1e-4  # > 100 cm^3 and positive: normals point outwards


def test_adult_proportions_and_joint_tree(hand):
    joints = hand["J_regressor"] @ hand["v_template"]
    np.testing.assert_allclose(joints, hand["J"])
    tips = hand["v_template"][hand["fingertip_vertices"]]
    wrist, middle_mcp = joints[0], joints[4]
    assert 0.080 <= np.linalg.norm(middle_mcp - wrist) <= 0.090  # palm 8-9 cm
    assert 0.075 <= np.linalg.norm(tips[2] - middle_mcp) <= 0.085  # middle finger ~8 cm
    # Each finger's chain runs from the palm outwards and ends at its own tip.
    for finger, chain in enumerate(builtin.FINGER_CHAINS):
        points = np.concatenate([joints[list(chain)], tips[finger][None]])
        assert np.all(np.linalg.norm(np.diff(points, axis=0), axis=1) > 0.01)
    parents = hand["kintree_table"][0].astype(np.int64)
    assert parents[0] == 2**32 - 1 and tuple(parents[1:]) == builtin.MANO_PARENTS[1:]


def test_skin_weights_and_parts(hand):
    w = hand["weights"]
    assert w.shape == (len(hand["v_template"]), 16) and w.min() >= 0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    part = hand["vertex_part"]
    chains = builtin.FINGER_CHAINS
    for finger in range(5):
        members = part == finger
        assert members.sum() >= 60
        # A finger's vertices are skinned to the wrist or its own chain only.
        others = [j for j in range(1, 16) if j not in chains[finger]]
        assert np.abs(w[members][:, others]).max() == 0
        assert part[hand["fingertip_vertices"][finger]] == finger


def test_shapedirs_are_the_derivative_of_the_generator(hand):
    rng = np.random.default_rng(0)
    betas = rng.normal(size=builtin.NUM_SHAPE) * 0.02
    exact = builtin.hand_vertices(builtin.proportions_for_shape(betas))
    linear = hand["v_template"] + hand["shapedirs"] @ betas
    assert np.abs(exact - linear).max() < 1e-6  # 1 micrometre at 2 % changes
    scaled = builtin.hand_vertices(builtin.proportions_for_shape(np.eye(builtin.NUM_SHAPE)[0]))
    joints = hand["J_regressor"] @ scaled
    np.testing.assert_allclose(np.linalg.norm(joints[4] - joints[0]),
                               1.05 * np.linalg.norm(hand["J"][4] - hand["J"][0]), rtol=1e-6)


def test_flexion_axes_curl_fingers_towards_the_palm():
    axes = builtin.flexion_axes()
    np.testing.assert_allclose(np.linalg.norm(axes, axis=1), 1.0)
    # The palm faces -y: the fingers' flexion axes are perpendicular to +y and to their direction.
    for finger in range(1, 5):
        axis = axes[builtin.FINGER_CHAINS[finger][0]]
        assert abs(axis[1]) < 1e-12 and axis[2] < 0


# OpenBLAS kernels whose last bits differ (issue 16: the hierarchy once followed them).
_CORE_TYPES = ("Haswell", "SkylakeX") if platform.machine() in ("x86_64", "AMD64") else ("",)


def _generate_assets_in_subprocess(out_dir, core_type):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("OPENBLAS_CORETYPE", None)
    if core_type:
        env["OPENBLAS_CORETYPE"] = core_type
    subprocess.run([sys.executable, "-m", "h2o_jax.hand.build_topology", "builtin", str(out_dir)],
                   check=True, env=env, capture_output=True)
    return os.path.join(out_dir, "builtin_hand.npz"), os.path.join(out_dir, "builtin_topology.npz")


@pytest.mark.parametrize("core_type", _CORE_TYPES)
def test_shipped_assets_are_reproduced_by_the_generator_under_any_blas_kernel(tmp_path, core_type):
    hand_path, topology_path = _generate_assets_in_subprocess(tmp_path, core_type)
    with np.load(hand_path) as fresh, np.load(BUILTIN_HAND_PATH) as shipped:
        assert sorted(fresh.files) == sorted(shipped.files)
        for key in fresh.files:
            if fresh[key].dtype.kind in "fc" and key != "v_template":
                np.testing.assert_allclose(fresh[key], shipped[key], atol=1e-12, err_msg=key)
            else:  # the rest vertices are snapped to a grid: bit-identical on every machine
                np.testing.assert_array_equal(fresh[key], shipped[key], err_msg=key)
    # The topology file, bit for bit: every table (hierarchy, up weights, spirals) is identical.
    with np.load(topology_path) as fresh, np.load(BUILTIN_TOPOLOGY_PATH) as shipped:
        assert sorted(fresh.files) == sorted(shipped.files)
        for key in fresh.files:
            np.testing.assert_array_equal(fresh[key], shipped[key], err_msg=key)
    fresh_t = load_topology(topology_path)
    assert fresh_t.level_num_vertices == (719, 360, 180, 90, 45)


def test_rest_vertices_are_far_from_the_snapping_boundaries():
    """Snapping is BLAS-proof only if no unsnapped vertex lies within the kernels' rounding
    differences (~1e-16 m) of a half-grid point; require a margin of 1e-14 m."""
    unsnapped = builtin.hand_vertices() / builtin.REST_GRID_M
    distance_to_half_grid_m = np.abs(unsnapped - np.floor(unsnapped) - 0.5) * builtin.REST_GRID_M
    assert distance_to_half_grid_m.min() > 1e-14
    snapped = builtin.snap_to_grid(builtin.hand_vertices())
    assert np.abs(snapped - builtin.hand_vertices()).max() <= builtin.REST_GRID_M / 2
    np.testing.assert_array_equal(snapped / builtin.REST_GRID_M, np.round(snapped / builtin.REST_GRID_M))


def test_builtin_topology_levels_and_regressor():
    topology = builtin_topology()
    assert topology.level_num_vertices == (719, 360, 180, 90, 45)
    joints = topology.joint_regressor @ topology.template_vertices_m
    hand = builtin.builtin_mano_dict()
    # Common order: wrist, then thumb chain + tip, index chain + tip, ...
    np.testing.assert_allclose(joints[0], hand["J"][0], atol=1e-6)
    np.testing.assert_allclose(joints[4], hand["v_template"][hand["fingertip_vertices"][0]], atol=1e-6)
    np.testing.assert_allclose(joints[5], hand["J"][1], atol=1e-6)  # index MCP
    np.testing.assert_allclose(joints[17], hand["J"][7], atol=1e-6)  # little MCP


def test_builtin_skinning_matches_the_naive_float64_reference(hand):
    from h2o_jax.hand import builtin_hand_model
    from h2o_jax.hand.mano import hand_forward
    from hand.test_mano import naive_forward

    model = builtin_hand_model()
    rng = np.random.default_rng(3)
    pose = rng.normal(size=48) * 0.4
    betas = rng.normal(size=builtin.NUM_SHAPE)
    tips = tuple(int(i) for i in hand["fingertip_vertices"])
    ref_v, ref_j16, ref_j21 = naive_forward(hand, pose, betas, flat_hand_mean=True, tips=tips)
    out = jax.jit(hand_forward, static_argnames="flat_hand_mean")(model, pose.astype(np.float32),
                                                                 betas.astype(np.float32), flat_hand_mean=True)
    np.testing.assert_allclose(out["vertices_m"], ref_v, atol=1e-5)
    np.testing.assert_allclose(out["joints16_m"], ref_j16, atol=1e-5)
    np.testing.assert_allclose(out["joints_m"], ref_j21, atol=1e-5)
    # Zero pose and shape give the template; the shipped model equals the generator's dict.
    rest = hand_forward(model, np.zeros(48, np.float32), np.zeros(10, np.float32), flat_hand_mean=True)
    np.testing.assert_allclose(rest["vertices_m"], hand["v_template"], atol=1e-6)


def test_hand_vertex_parts_use_the_official_lists_for_mano_only(hand):
    """778 vertices (MANO): architecture.md 16.1's lists whatever the skinning says; any other
    mesh: the joint with the largest skinning weight."""
    from h2o_jax.hand.build_topology import JOINT_PART, hand_vertex_parts

    np.testing.assert_array_equal(hand_vertex_parts(hand["weights"]), JOINT_PART[np.argmax(hand["weights"], 1)])
    mano_weights = np.random.default_rng(0).dirichlet(np.ones(16), size=778)
    parts = hand_vertex_parts(mano_weights)
    np.testing.assert_array_equal(np.bincount(parts, minlength=6), [100, 122, 119, 124, 122, 191])
    np.testing.assert_array_equal(parts[[6, 10, 46, 185, 76, 161, 0, 777]], [0, 0, 1, 2, 3, 4, 5, 5])
