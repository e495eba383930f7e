"""Official PyTorch checkpoint import: name/shape coverage of the official state dicts, exact
placement of every tensor, refusal of bad state dicts, a converted multi-frame forward pass on the
official hierarchy, and (with the `convert` extra) the .pth -> orbax command line."""

import functools
import json
import pickle
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from h2o_jax.config import model_config_for
from h2o_jax.convert import (
    MULTI_FRAME_VARIANT,
    SINGLE_FRAME_VARIANT,
    dropped_entries,
    official_entries,
    official_name,
    state_dict_to_variables,
    strip_checkpoint,
    variables_to_state_dict,
)
from h2o_jax.nn import H2ONet
from h2o_jax.ops import spiral_conv
from topology_helpers import REFERENCE_DIR, has_reference, official_topology

needs_reference = pytest.mark.skipif(
    not has_reference(), reason="official reference data (../shared/reference) not beside this checkout")
TSV = {SINGLE_FRAME_VARIANT: "official_sf_params.tsv", MULTI_FRAME_VARIANT: "official_mf_params.tsv"}
VARIANTS = [pytest.param(SINGLE_FRAME_VARIANT, id="sf"), pytest.param(MULTI_FRAME_VARIANT, id="mf")]
ALIAS = "decoder3d.occ_pred.finger_cls_layer."
ALIAS_TARGET = "decoder3d.occ_pred.finger_cls_layer_list.4."


def reference_shapes(variant):
    """{name: (shape, dtype)} of the official state dict, in its order."""
    out = {}
    for line in (REFERENCE_DIR / TSV[variant]).read_text().splitlines():
        name, shape, dtype = line.split("\t")
        out[name] = (() if shape == "scalar" else tuple(int(d) for d in shape.split("x")), dtype)
    return out


@functools.cache
def topology():
    return official_topology()


def make_model(variant):
    return H2ONet(topology(), model_config_for(variant))


def random_state_dict(variant, seed):
    """Random tensors with exactly the reference names, shapes and dtypes; magnitudes as PyTorch's
    initialisers (so a forward pass stays finite); BN variances positive; the MF alias equal to
    its target, as in a real state dict."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, (shape, dtype) in reference_shapes(variant).items():
        if dtype == "int64":
            state[name] = np.asarray(rng.integers(0, 1000), np.int64)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith(("running_mean", ".bias")) or len(shape) == 1:
            state[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32) + (
                1.0 if name.endswith(".weight") else 0.0)  # BN scale around 1
        else:
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            state[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    state["mano_joint_reg"] = (rng.random((21, 778)) / 389).astype(np.float32)
    for name in [n for n in state if n.startswith(ALIAS)]:
        state[name] = state[ALIAS_TARGET + name[len(ALIAS):]].copy()
    return state


def leaf(variables, collection, path):
    node = variables[collection]
    for key in path.split("/"):
        node = node[key]
    return np.asarray(node)


@needs_reference
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_official_entry_has_one_place_of_the_right_shape(variant):
    reference = reference_shapes(variant)
    entries = official_entries(make_model(variant))
    mapped = {name for name in reference if name in entries}
    dropped = set(dropped_entries(list(reference)))
    assert mapped | dropped == set(reference) and not mapped & dropped
    assert set(entries) == mapped  # nothing of ours is left without an official entry
    for name in mapped:
        assert entries[name].official_shape == reference[name][0], name
    # What is dropped is exactly the step counters, the never-executed senet3 and the MF alias.
    expected_dropped = {n for n in reference if n.endswith("num_batches_tracked")
                        or n.startswith(("backbone.dense_stack1.senet3.", ALIAS))}
    assert dropped == expected_dropped
    assert len([n for n in dropped if n.startswith("backbone.dense_stack1.senet3.")]) == 12  # fc1, fc2: Linear weight + 5 BatchNorm entries each
    assert len([n for n in dropped if n.startswith(ALIAS)]) == (16 if variant == MULTI_FRAME_VARIANT else 0)


# Hand-written correspondences (independent of the converter's naming rules) with einsum layouts.
SPOT_CHECKS = [
    ("backbone.pre_layer.0.0.weight", "params", "backbone/pre_layer_0/conv/kernel", "oihw->hwio"),
    ("backbone.pre_layer.1.conv3x3.0.0.weight", "params", "backbone/pre_layer_1/conv3x3_0/conv/kernel", "oihw->hwio"),
    ("backbone.dense_stack2.thrink1.1.conv3x3.1.1.running_var", "batch_stats",
     "backbone/dense_stack2/thrink1_1/conv3x3_1/bn/var", "c->c"),
    ("backbone.dense_stack3.senet2.fc1.0.weight", "params", "backbone/dense_stack3/senet2/fc1/linear/kernel", "oi->io"),
    ("backbone.dense_stack1.senet6.fc2.1.weight", "params", "backbone/dense_stack1/senet6/fc2/bn/scale", "c->c"),
    ("backbone.mid_proj.0.weight", "params", "backbone/mid_proj/kernel", "oihw->hwio"),
    ("backbone.uv_reg.1.0.weight", "params", "backbone/uv_reg_1/kernel", "oi->io"),
    ("decoder3d.upsample", "params", "decoder3d/upsample", "vj->vj"),
    ("decoder3d.de_layer.2.conv.layer.weight", "params", "decoder3d/de_layer_2/layer/kernel", "oi->io"),
    ("decoder3d.head.layer.bias", "params", "decoder3d/head/layer/bias", "c->c"),
    ("decoder3d.rot_reg.conv_block.2.weight", "params", "rot_reg/conv_block_2/kernel", "oik->io"),
    ("decoder3d.rot_reg.pre_block.0.weight", "params", "rot_reg/pre_block_0/kernel", "oi->io"),
    ("mano_joint_reg", "params", "mano_joint_reg", "jv->jv"),
]
MF_SPOT_CHECKS = [
    ("decoder3d.rot_reg.fc_block2.6.weight", "params", "rot_reg/fc_block2_6/kernel", "oi->io"),
    ("decoder3d.occ_pred.pre_layer.3.weight", "params", "occ_pred/pre_layer_3/kernel", "oik->io"),
    ("decoder3d.occ_pred.pre_layer.4.running_mean", "batch_stats", "occ_pred/pre_layer_4/mean", "c->c"),
    ("decoder3d.occ_pred.finger_cls_layer_list.3.4.weight", "params", "occ_pred/finger_cls_layer_list_3_4/scale", "c->c"),
    ("decoder3d.occ_pred.glob_cls_layer.6.bias", "params", "occ_pred/glob_cls_layer_6/bias", "c->c"),
    ("decoder3d.offset_pred.block.4.layer.weight", "params", "offset_pred/block_4/layer/kernel", "oi->io"),
]
SF_SPOT_CHECKS = [("decoder3d.rot_reg.fc_block.4.bias", "params", "rot_reg/fc_block_4/bias", "c->c")]


@needs_reference
@pytest.mark.parametrize("variant", VARIANTS)
def test_random_state_dict_lands_in_place_and_round_trips_exactly(variant):
    state = random_state_dict(variant, seed=1)
    variables = state_dict_to_variables(state, make_model(variant), multi_frame=variant == MULTI_FRAME_VARIANT)
    spots = SPOT_CHECKS + (MF_SPOT_CHECKS if variant == MULTI_FRAME_VARIANT else SF_SPOT_CHECKS)
    for name, collection, path, layout in spots:
        source = state[name][..., 0] if layout.startswith("oik") else state[name]
        np.testing.assert_array_equal(leaf(variables, collection, path),
                                      np.einsum(layout.replace("k", ""), source), err_msg=name)
        assert official_name(collection, path.split("/")) == name
    # Every tensor lands where it belongs: the inverse reproduces the state dict bit for bit, on
    # exactly the mapped entries (the dropped ones carry no information here).
    back = variables_to_state_dict(variables, multi_frame=variant == MULTI_FRAME_VARIANT)
    num_batches = {n for n in state if n.endswith("num_batches_tracked")}
    senet3 = {n for n in state if n.startswith("backbone.dense_stack1.senet3.")}
    assert set(back) == set(state) - num_batches - senet3  # the MF alias is reproduced
    for name, value in back.items():
        assert value.dtype == np.float32 and value.shape == state[name].shape, name
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    # Each of our variables is filled from a distinct official tensor (nothing mapped twice).
    leaves = jax.tree.leaves(variables)
    assert len(leaves) == len(official_entries(make_model(variant)))


@needs_reference
def test_converted_spiral_layer_matches_the_official_linear_on_gathered_neighbours():
    """Official SpiralConv: Linear(x[:, spiral].reshape(V, 9 C)) (neighbour-major), float64."""
    state = random_state_dict(SINGLE_FRAME_VARIANT, seed=2)
    variables = state_dict_to_variables(state, make_model(SINGLE_FRAME_VARIANT), multi_frame=False)
    spirals = np.asarray(topology().spirals[1])  # de_layer.2 runs at level 1
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, spirals.shape[0], 128))
    weight = state["decoder3d.de_layer.2.conv.layer.weight"].astype(np.float64)
    bias = state["decoder3d.de_layer.2.conv.layer.bias"].astype(np.float64)
    expected = x[:, spirals.reshape(-1)].reshape(2, spirals.shape[0], -1) @ weight.T + bias
    kernel = leaf(variables, "params", "decoder3d/de_layer_2/layer/kernel")
    layer_bias = leaf(variables, "params", "decoder3d/de_layer_2/layer/bias")
    got = jax.jit(lambda v: spiral_conv(v, spirals, kernel, layer_bias))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


@needs_reference
def test_converted_multi_frame_model_runs_on_the_official_hierarchy():
    model = make_model(MULTI_FRAME_VARIANT)
    state = random_state_dict(MULTI_FRAME_VARIANT, seed=4)
    variables = state_dict_to_variables(state, model, multi_frame=True)
    images = jnp.asarray(np.random.default_rng(5).random((1, 3, 128, 128, 3)), jnp.float32)
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, images)
    assert out["verts_c_m"].shape == (1, 1, 778, 3) and out["occ_logits"].shape == (1, 3, 6, 2)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(out))
    # The joints use the converted (official) regressor: J . verts in float64.
    expected = np.einsum("jv,vk->jk", state["mano_joint_reg"].astype(np.float64),
                         np.asarray(out["verts_c_m"][0, 0], np.float64))
    np.testing.assert_allclose(np.asarray(out["joints_c_m"][0, 0]), expected, atol=1e-5)
    rot = np.asarray(out["rot_mat"][0, 0], np.float64)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-5)


@needs_reference
def test_bad_state_dicts_are_refused_with_the_names_listed():
    model = make_model(SINGLE_FRAME_VARIANT)
    good = random_state_dict(SINGLE_FRAME_VARIANT, seed=6)
    bad = dict(good)
    del bad["backbone.thrink.1.running_mean"], bad["decoder3d.head.layer.bias"]
    bad["backbone.extra_layer.weight"] = np.zeros(3, np.float32)
    bad["decoder3d.rot_reg.fc_block.6.weight"] = good["decoder3d.rot_reg.fc_block.6.weight"].T.copy()
    bad["backbone.reduce.0.weight"] = good["backbone.reduce.0.weight"].astype(np.int32)
    bad["decoder3d.upsample"] = np.full((49, 21), np.nan, np.float32)
    with pytest.raises(ValueError) as error:
        state_dict_to_variables(bad, model, multi_frame=False)
    message = str(error.value)
    for expected in ("missing (2)", "backbone.thrink.1.running_mean", "decoder3d.head.layer.bias",
                     "unexpected (1)", "backbone.extra_layer.weight",
                     "mis-shaped (1)", "decoder3d.rot_reg.fc_block.6.weight: expected 6x256, got 256x6",
                     "wrong dtype (1)", "backbone.reduce.0.weight", "non-finite values (1)", "decoder3d.upsample"):
        assert expected in message
    # The other kind of network is named in the error.
    mf_state = random_state_dict(MULTI_FRAME_VARIANT, seed=7)
    with pytest.raises(ValueError, match="looks like the multi-frame network") as error:
        state_dict_to_variables(mf_state, model, multi_frame=False)
    assert "decoder3d.rot_reg.fc_block2.0.weight" in str(error.value)
    with pytest.raises(ValueError, match="num_frames=1"):
        state_dict_to_variables(good, model, multi_frame=True)
    with pytest.raises(ValueError, match="mapping"):
        state_dict_to_variables([("a", 1)], model, multi_frame=False)


@needs_reference
def test_alias_that_differs_from_its_target_is_refused():
    model = make_model(MULTI_FRAME_VARIANT)
    state = random_state_dict(MULTI_FRAME_VARIANT, seed=8)
    state[ALIAS + "6.bias"] = state[ALIAS + "6.bias"] + 1.0
    with pytest.raises(ValueError, match=r"finger_cls_layer\.6\.bias != .*finger_cls_layer_list\.4\.6\.bias"):
        state_dict_to_variables(state, model, multi_frame=True)


def test_strip_checkpoint_wrappers_and_module_prefix():
    inner = {"module.a.weight": np.ones(2), "module.b": np.zeros(1)}
    for wrapped in (inner, {"state_dict": inner, "epoch": 3}, {"model": inner}, {"net": inner}):
        assert sorted(strip_checkpoint(wrapped)) == ["a.weight", "b"]
    assert sorted(strip_checkpoint({"a": np.ones(1)})) == ["a"]
    with pytest.raises(ValueError, match="no state dict"):
        strip_checkpoint({})
    with pytest.raises(ValueError, match="must be a dict"):
        strip_checkpoint([1, 2])


def test_official_name_rejects_bad_input():
    with pytest.raises(ValueError, match="collection"):
        official_name("cache", ("a",))
    with pytest.raises(ValueError, match="empty path"):
        official_name("params", ())


# -- the command line (needs PyTorch: the `convert` extra) ---------------------------------------

def write_official_template(folder, rng):
    """The official template folder format (binary template.ply + transform.pkl) over the official
    hierarchy's connectivity, with random positions."""
    hierarchy = np.load(REFERENCE_DIR / "official_hierarchy.npz")
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
    (folder / "transform.pkl").write_bytes(pickle.dumps(content, protocol=2))
    faces = hierarchy["faces0"]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {sizes[0]}", "property double x",
              "property double y", "property double z", f"element face {len(faces)}",
              "property list uchar uint vertex_indices", "end_header"]
    body = b"".join(struct.pack("<ddd", *v) for v in vertices[0].tolist())
    body += b"".join(struct.pack("<BIII", 3, *f) for f in faces.tolist())
    (folder / "template.ply").write_bytes(("\n".join(header) + "\n").encode() + body)


@needs_reference
def test_pth_round_trip_through_the_command_line(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="the .pth command line needs the convert extra: pip install '.[convert]'")
    import optax

    from experiments.checkpointing import Checkpoints
    from experiments.convert import main
    from h2o_jax.hand.topology import load_topology
    from h2o_jax.training import TrainState

    state = random_state_dict(SINGLE_FRAME_VARIANT, seed=9)
    # As the official trainer saves it: DataParallel prefix, wrapped with the optimiser state.
    torch.save({"state_dict": {"module." + k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                "epoch": 37, "step": 1000}, tmp_path / "model.pth")
    template = tmp_path / "template"
    template.mkdir()
    write_official_template(template, np.random.default_rng(10))
    out = tmp_path / "converted"
    assert main([str(tmp_path / "model.pth"), str(out), "--template-dir", str(template)]) == 0

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["variant"] == SINGLE_FRAME_VARIANT and config["model"]["width_divisor"] == 1
    topo = load_topology(config["model"]["topology"])
    np.testing.assert_array_equal(topo.spirals[0], np.load(REFERENCE_DIR / "official_spirals.npz")["level0"])
    # Without --joint-regressor the topology uses the checkpoint's own regressor.
    np.testing.assert_array_equal(topo.joint_regressor, state["mano_joint_reg"])

    variables = state_dict_to_variables(state, make_model(SINGLE_FRAME_VARIANT), multi_frame=False)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.float32), variables)
    from h2o_jax.training import OptimConfig, make_optimizer
    opt_state = jax.eval_shape(make_optimizer(OptimConfig(), 1).init, abstract["params"])
    template_state = TrainState(jax.ShapeDtypeStruct((), jnp.int32), abstract["params"],
                                abstract["batch_stats"], opt_state)
    checkpoints = Checkpoints(str(out))
    assert checkpoints.latest_step() == 0
    restored, _ = checkpoints.restore(template_state)
    checkpoints.close()
    assert int(restored.step) == 0
    back = variables_to_state_dict({"params": restored.params, "batch_stats": restored.batch_stats},
                                   multi_frame=False)
    for name, value in back.items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    # A fresh optimiser: Adam moments zero.
    adam = [s for s in jax.tree.leaves(restored.opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    assert adam and all(not np.any(np.asarray(m)) for m in jax.tree.leaves(adam[0].mu))

    # Errors come back as exit status 1 with the reason on stderr, and nothing is written.
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "other"), "--template-dir", str(template)]) == 1
    assert "missing.pth" in capsys.readouterr().err and not (tmp_path / "other").exists()


@needs_reference
def test_converted_directory_records_its_topology_hash(tmp_path, monkeypatch):
    """A converted directory is restored like a training run: topology.npz plus its sha256 in
    config.json (only the .pth reading, which needs PyTorch, is replaced by the state dict)."""
    import experiments.convert
    from experiments.common import run_topology
    from h2o_jax.hand.topology import load_topology, topology_hash

    state = random_state_dict(SINGLE_FRAME_VARIANT, seed=3)
    monkeypatch.setattr(experiments.convert, "load_torch_checkpoint", lambda path: state)
    template = tmp_path / "template"
    template.mkdir()
    write_official_template(template, np.random.default_rng(4))
    out = experiments.convert.convert_checkpoint("model.pth", tmp_path / "converted", template)
    config = json.loads((tmp_path / "converted" / "config.json").read_text())
    saved = load_topology(tmp_path / "converted" / "topology.npz")
    assert config["model"]["topology_sha256"] == topology_hash(saved)
    topology, digest, _ = run_topology(out)
    assert digest == topology_hash(saved)
    np.testing.assert_array_equal(topology.joint_regressor, state["mano_joint_reg"])


def test_the_library_does_not_import_the_application_layer():
    """h2o_jax must not depend on experiments/ (design.md: experiments -> data_loaders, h2o_jax)."""
    import ast
    import pathlib

    package = pathlib.Path(__file__).resolve().parents[1] / "h2o_jax"
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("experiments", "data_loaders")]
    assert not offenders
