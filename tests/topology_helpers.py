"""Topologies for network tests: a small random hierarchy (fast compiles) and the official one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse

from h2o_jax.hand.random_topology import random_topology  # noqa: F401  (re-exported for tests)
from h2o_jax.hand.topology import MeshTopology
from h2o_jax.ops import resample_table_from_sparse

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def official_topology() -> MeshTopology:
    """The official 778/389/195/98/49 hierarchy and spirals from ../shared/reference (random
    template, part labels and regressor: only the connectivity is official)."""
    hierarchy = np.load(REFERENCE_DIR / "official_hierarchy.npz")
    spirals = np.load(REFERENCE_DIR / "official_spirals.npz")

    def table(kind: str, i: int):
        key = f"{kind}_transform{i}"
        matrix = scipy.sparse.coo_matrix(
            (hierarchy[f"{key}_vals"], (hierarchy[f"{key}_rows"], hierarchy[f"{key}_cols"])),
            shape=tuple(hierarchy[f"{key}_shape"]))
        return resample_table_from_sparse(matrix)

    ups = [table("up", i) for i in range(4)]
    downs = [table("down", i) for i in range(4)]
    rng = np.random.default_rng(0)
    return MeshTopology(
        template_vertices_m=rng.normal(size=(778, 3)).astype(np.float32),
        faces=hierarchy["faces0"],
        vertex_part=rng.integers(0, 6, 778).astype(np.int32),
        fingertip_vertices=np.array([745, 317, 444, 556, 673], np.int32),
        joint_regressor=(rng.random((21, 778)) / 778).astype(np.float32),
        level_faces=tuple(hierarchy[f"faces{i}"] for i in range(5)),
        down_indices=tuple(d[0] for d in downs),
        down_weights=tuple(d[1] for d in downs),
        up_indices=tuple(u[0] for u in ups),
        up_weights=tuple(u[1] for u in ups),
        spirals=tuple(spirals[f"level{i}"] for i in range(4)),
    )


def has_reference() -> bool:
    return (REFERENCE_DIR / "official_hierarchy.npz").exists()


def init_variables(model, *args, seed: int = 0, **kwargs):
    """`model.init(key, *args, **kwargs)` compiled as one program, with an rbg key.

    Run eagerly, an init dispatches every op of the forward pass one by one (thousands of small
    compilations on the first use of each shape); jitted, XLA drops the forward (only shapes are
    needed), and the rbg key and the unoptimised build (`h2o_jax.training.INIT_COMPILER_OPTIONS`)
    keep the initialisers' compilation short. Test speed only: the values differ from a threefry
    init, not their distribution.
    """
    import jax

    from h2o_jax.training import INIT_COMPILER_OPTIONS

    key = jax.random.key(seed, impl="unsafe_rbg")
    init = jax.jit(lambda k: model.init(k, *args, **kwargs))
    return init.lower(key).compile(compiler_options=INIT_COMPILER_OPTIONS)(key)
