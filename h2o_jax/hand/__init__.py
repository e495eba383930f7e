"""Hand models and mesh topology.

The built-in procedural hand (licence-free, shipped) and the user's MANO share one MANO-format
skinning layer (`h2o_jax.hand.mano`); every mesh-aware part of h2o_jax is handed a
`MeshTopology` value (`h2o_jax.hand.topology`).

    from h2o_jax.hand import builtin_topology
    topology = builtin_topology()          # 719/360/180/90/45 vertices, spirals, parts, regressor
"""

from __future__ import annotations

import functools
import os

from h2o_jax.hand.topology import MeshTopology, load_topology

ASSETS_DIR = os.path.join(os.path.dirname(__file__), "assets")
BUILTIN_HAND_PATH = os.path.join(ASSETS_DIR, "builtin_hand.npz")
BUILTIN_TOPOLOGY_PATH = os.path.join(ASSETS_DIR, "builtin_topology.npz")


@functools.cache
def builtin_topology() -> MeshTopology:
    """The shipped topology of the built-in hand (regenerate: `python -m h2o_jax.hand.build_topology
    builtin h2o_jax/hand/assets`)."""
    return load_topology(BUILTIN_TOPOLOGY_PATH)


@functools.cache
def builtin_hand_model():
    """The built-in hand as a `h2o_jax.hand.mano.HandModel` (719 vertices, 10 shape parameters)."""
    import numpy as np

    from h2o_jax.hand.mano import load_hand_model

    with np.load(BUILTIN_HAND_PATH) as data:
        tips = tuple(int(i) for i in data["fingertip_vertices"])
    return load_hand_model(BUILTIN_HAND_PATH, fingertip_vertices=tips)


__all__ = ["ASSETS_DIR", "BUILTIN_HAND_PATH", "BUILTIN_TOPOLOGY_PATH", "MeshTopology", "builtin_hand_model",
           "builtin_topology"]
