"""A run keeps the exact topology it trained with: a `mano:` run restored on a machine whose BLAS
kernels differ (another OPENBLAS_CORETYPE, in a subprocess) predicts bit for bit what the
training process predicts, and does not need the MANO pickle any more."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import train
from experiments.common import build_topology
from h2o_jax.hand.topology import load_topology, topology_hash
from hand.mano_fixtures import make_fake_mano_arrays
from test_train import tiny_config
from topology_helpers import REFERENCE_DIR, has_reference

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREDICT = """
import sys
import numpy as np
from experiments.common import restore_run
from experiments.evaluate import _predict_function

config, model, variables, step = restore_run(sys.argv[1], "latest")
inputs = np.load(sys.argv[2])
outputs = _predict_function(model, variables)({"image": inputs["image"], "occ_labels": inputs["occ_labels"]})
np.savez(sys.argv[3], **outputs)
"""


def samples_of(topology, count, seed=0):
    """Single-frame samples (features.py, T = 1) of random poses of `topology`'s mesh."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        verts = (topology.template_vertices_m + rng.normal(size=topology.template_vertices_m.shape) * 0.005)[None]
        joints = np.einsum("jv,tvk->tjk", topology.joint_regressor, verts)
        samples.append({
            "image": rng.random((1, 128, 128, 3)).astype(np.float32),
            "verts_c_m": verts.astype(np.float32), "verts_r_m": verts.astype(np.float32),
            "joints_c_m": joints.astype(np.float32), "joints_r_m": joints.astype(np.float32),
            "rot_mat": np.eye(3, dtype=np.float32)[None], "joints_img": rng.random((1, 21, 2)).astype(np.float32),
            "occ_labels": rng.integers(0, 2, (1, 6)).astype(np.int32), "mask": np.float32(1.0)})
    return samples


@pytest.mark.skipif(not has_reference(), reason="official reference data (../shared/reference) not beside this checkout")
def test_a_mano_run_restored_under_another_blas_predicts_bit_identically(tmp_path):
    # A MANO-format model file with MANO's real mesh connectivity (the official faces; the fake
    # pickle's random triangles cannot be decimated) and random hand-like values.
    arrays = make_fake_mano_arrays(seed=0)
    arrays["f"] = np.load(REFERENCE_DIR / "official_hierarchy.npz")["faces0"].astype(np.uint32)
    pkl = tmp_path / "MANO_RIGHT.npz"
    np.savez(pkl, **arrays)
    config = tiny_config(num_steps=2)
    config.model.topology = f"mano:{pkl}"
    config.train.eval_every = 0
    workdir = tmp_path / "run"
    state = train.train_and_evaluate(config, str(workdir), samples_of(build_topology(config.model.topology), 4))

    recorded = json.loads((workdir / "config.json").read_text())["model"]["topology_sha256"]
    saved = load_topology(workdir / "topology.npz")
    assert topology_hash(saved) == recorded
    # What the training process predicts, with the topology it trained with.
    from experiments.evaluate import _predict_function
    from h2o_jax.config import model_config_for
    from h2o_jax.nn import H2ONet

    model = H2ONet(saved, model_config_for(config.model.variant, width_divisor=config.model.width_divisor))
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    rng = np.random.default_rng(1)
    inputs = {"image": rng.random((2, 1, 128, 128, 3)).astype(np.float32), "occ_labels": np.zeros((2, 1, 6), np.int32)}
    expected = _predict_function(model, variables)(inputs)
    np.savez(tmp_path / "inputs.npz", **inputs)

    pkl.unlink()  # a restore must not rebuild the hierarchy (it could not now)
    other = "Haswell" if os.environ.get("OPENBLAS_CORETYPE", "").lower() != "haswell" else "SkylakeX"
    env = dict(os.environ, OPENBLAS_CORETYPE=other, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", PREDICT, str(workdir), str(tmp_path / "inputs.npz"),
                             str(tmp_path / "outputs.npz")], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "outputs.npz") as restored:
        for key in ("joints_r_m", "verts_r_m"):
            np.testing.assert_array_equal(restored[key], expected[key], err_msg=key)


def test_resuming_with_another_topology_is_refused_with_the_file_to_use(tmp_path):
    config = tiny_config(num_steps=1)
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)  # as a killed run leaves it, before its first checkpoint
    from experiments.common import save_run_topology, write_run_config

    topology = build_topology(config.model.topology)
    save_run_topology(str(workdir), topology)
    write_run_config(str(workdir), config, topology_hash(topology))
    config.model.topology = "random:50,25,12,6,3"
    try:
        train.train_and_evaluate(config, str(workdir), [])
    except train.UserError as err:
        message = str(err)
    else:
        raise AssertionError("a resume with another topology was accepted")
    assert "\n" not in message and "random:50,25,12,6,3" in message
    assert f"--config.model.topology={workdir}/topology.npz" in message
