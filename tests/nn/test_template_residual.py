"""ModelConfig.template_residual: the mesh head's output is an offset from the root-relative
template, for all frames and for the fused frame 0 alike."""

from __future__ import annotations

import jax
import numpy as np

from h2o_jax.config import model_config_for
from h2o_jax.nn import H2ONet
from topology_helpers import init_variables, random_topology


def test_template_residual_adds_the_root_relative_template_and_nothing_else():
    topology = random_topology((48, 24, 12, 6, 3))
    images = np.random.default_rng().random((2, 3, 128, 128, 3)).astype(np.float32)
    plain = H2ONet(topology, model_config_for("B+D+MF+FO+HO", width_divisor=8))
    residual = H2ONet(topology, model_config_for("B+D+MF+FO+HO", width_divisor=8, template_residual=True))
    variables = init_variables(plain, images)  # the switch adds no parameter
    assert jax.tree.structure(variables) == jax.tree.structure(jax.eval_shape(residual.init, jax.random.key(0), images))
    out_plain = jax.jit(lambda v, x: plain.apply(v, x, all_frames=True))(variables, images)
    out_residual = jax.jit(lambda v, x: residual.apply(v, x, all_frames=True))(variables, images)
    template = np.asarray(topology.template_vertices_m, np.float64)
    offset = template - np.asarray(topology.joint_regressor, np.float64)[0] @ template  # float64 reference
    np.testing.assert_allclose(np.asarray(out_residual["verts_c_m"]) - np.asarray(out_plain["verts_c_m"]),
                               np.broadcast_to(offset, out_plain["verts_c_m"].shape), atol=2e-6)
    # Its own initialisation starts the head at zero: every frame's canonical mesh is the template.
    fresh = init_variables(residual, images, seed=1)
    assert not np.any(np.asarray(fresh["params"]["decoder3d"]["head"]["layer"]["kernel"]))
    # Orientation and occlusion are untouched.
    np.testing.assert_array_equal(out_residual["rot_mat"], out_plain["rot_mat"])
    np.testing.assert_array_equal(out_residual["occ_logits"], out_plain["occ_logits"])
