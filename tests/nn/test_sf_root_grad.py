"""ModelConfig.sf_root_grad: whether a single-frame network's root joint takes the gradient of
the rotated outputs (official: yes, through the added root of R (v - r) + r)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.config import model_config_for
from h2o_jax.nn import H2ONet
from topology_helpers import init_variables, random_topology


def test_detached_root_changes_only_the_gradient_into_the_root():
    topology = random_topology((48, 24, 12, 6, 3))
    rng = np.random.default_rng()
    images = rng.random((2, 1, 128, 128, 3)).astype(np.float32)
    official = H2ONet(topology, model_config_for("single_frame", width_divisor=8))
    detached = H2ONet(topology, model_config_for("single_frame", width_divisor=8, sf_root_grad=False))
    variables = init_variables(official, images)
    cotangent = jnp.asarray(rng.normal(size=(2, 1, topology.num_vertices, 3)), jnp.float32)

    def rotated_loss(model):
        def loss(regressor):
            params = {**variables["params"], "mano_joint_reg": regressor}
            out = model.apply({**variables, "params": params}, images)
            return jnp.sum(out["verts_r_m"] * cotangent), out
        return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"]["mano_joint_reg"])

    (value_a, out_a), grad_a = rotated_loss(official)
    (value_b, out_b), grad_b = rotated_loss(detached)
    for key in ("verts_r_m", "joints_r_m", "verts_c_m", "rot_mat"):  # the forward pass is the same
        np.testing.assert_array_equal(out_a[key], out_b[key])
    # By hand: verts_r = R (sg(v) - sg(r)) + r with r = J[0] . verts_c, so the loss's gradient in J
    # is row 0 only: dL/dJ[0, v] = sum_b (sum_p c[b, p]) . verts_c[b, v]  (float64 reference).
    verts_c = np.asarray(out_a["verts_c_m"][:, 0], np.float64)
    summed = np.asarray(cotangent[:, 0], np.float64).sum(axis=1)  # [B, 3]
    expected = np.zeros(np.shape(grad_a))
    expected[0] = np.einsum("bk,bvk->v", summed, verts_c)
    np.testing.assert_allclose(np.asarray(grad_a), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert not np.any(np.asarray(grad_b))
