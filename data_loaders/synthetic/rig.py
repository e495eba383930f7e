"""The hand model behind the synthetic data: the built-in hand by default, MANO when configured."""

from __future__ import annotations

import jax
import numpy as np

from data_loaders.synthetic.scene import HandRig


def make_rig(mano_path: str | None = None) -> HandRig:
    """A `HandRig` over the built-in hand (``mano_path`` None) or the user's MANO file.

    Poses are absolute rotations (``flat_hand_mean=True``), so the stored ``pose`` is what was
    applied, whichever model drew it. MANO's part labels come from its skinning weights.
    """
    from h2o_jax.hand import builtin_hand_model, builtin_topology
    from h2o_jax.hand.build_topology import hand_vertex_parts
    from h2o_jax.hand.mano import hand_forward, load_hand_model

    if mano_path is None:
        model = builtin_hand_model()
        vertex_part = np.asarray(builtin_topology().vertex_part)
    else:
        model = load_hand_model(mano_path)
        vertex_part = hand_vertex_parts(np.asarray(model.skin_weights))

    @jax.jit
    def forward(pose, betas):
        out = hand_forward(model, pose, betas, flat_hand_mean=True)
        return out["vertices_m"], out["joints_m"], out["joints16_m"]

    def forward_np(pose, betas):
        verts, joints, _ = forward(np.asarray(pose, np.float32), np.asarray(betas, np.float32))
        return np.asarray(verts, np.float64), np.asarray(joints, np.float64)

    rest = forward(np.zeros(48, np.float32), np.zeros(model.num_betas, np.float32))[2]
    return HandRig(forward=forward_np, faces=np.asarray(model.faces), vertex_part=vertex_part,
                   rest_joints16_m=np.asarray(rest, np.float64), num_shape=model.num_betas)
