"""A random topology with given level sizes: the cost of the real one, none of its geometry.

For speed benchmarks and tests that need a valid `MeshTopology` (spirals start at their own
vertex, up-table rows are convex weights of three coarse vertices, faces are distinct vertex
triples) but not a meaningful mesh. Never use it to train a model you care about.
"""

from __future__ import annotations

import numpy as np

from h2o_jax.hand.topology import MeshTopology

OFFICIAL_LEVEL_SIZES = (778, 389, 195, 98, 49)


def random_topology(level_sizes: tuple[int, ...] = OFFICIAL_LEVEL_SIZES, seed: int = 0,
                    spiral_length: int = 9) -> MeshTopology:
    """A seeded random MeshTopology with `level_sizes` vertices per level (finest first)."""
    if len(level_sizes) < 2 or any(n < 3 for n in level_sizes):
        raise ValueError(f"level_sizes needs >= 2 levels of >= 3 vertices, got {level_sizes}")
    rng = np.random.default_rng(seed)
    spirals, ups, downs, faces = [], [], [], []
    for level, count in enumerate(level_sizes):
        faces.append(np.stack([rng.choice(count, 3, replace=False) for _ in range(2 * count)]).astype(np.int32))
        if level + 1 == len(level_sizes):
            break
        coarse = level_sizes[level + 1]
        spiral = rng.integers(0, count, size=(count, spiral_length)).astype(np.int32)
        spiral[:, 0] = np.arange(count)
        spirals.append(spiral)
        ups.append((np.stack([rng.choice(coarse, 3, replace=False) for _ in range(count)]).astype(np.int32),
                    rng.dirichlet(np.ones(3), size=count).astype(np.float32)))
        downs.append((np.sort(rng.choice(count, coarse, replace=False))[:, None].astype(np.int32),
                      np.ones((coarse, 1), np.float32)))
    num_vertices = level_sizes[0]
    regressor = rng.random((21, num_vertices)).astype(np.float32)
    regressor /= regressor.sum(1, keepdims=True)
    return MeshTopology(
        template_vertices_m=(rng.normal(size=(num_vertices, 3)) * 0.03).astype(np.float32),
        faces=faces[0],
        vertex_part=(np.arange(num_vertices) % 6).astype(np.int32),
        fingertip_vertices=np.arange(5, dtype=np.int32),
        joint_regressor=regressor,
        level_faces=tuple(faces),
        down_indices=tuple(d[0] for d in downs),
        down_weights=tuple(d[1] for d in downs),
        up_indices=tuple(u[0] for u in ups),
        up_weights=tuple(u[1] for u in ups),
        spirals=tuple(spirals),
    )
