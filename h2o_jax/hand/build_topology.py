"""Builds a `MeshTopology` (hierarchy, resampling tables, spirals, parts, regressor) offline.

    python -m h2o_jax.hand.build_topology builtin OUT_DIR      # the shipped built-in hand assets
    python -m h2o_jax.hand.build_topology mano MANO_RIGHT.pkl OUT.npz [--num-levels 5]

`builtin` writes `builtin_hand.npz` (the built-in hand in MANO's model format) and
`builtin_topology.npz`; the package ships exactly these two files in `h2o_jax/hand/assets/` and a
test checks this generator still reproduces them. `mano` builds the topology of the user's own
MANO file once (MANO cannot be shipped); the 778-vertex MANO gives the official level sizes
778/389/195/98/49. For the official H2ONet template files use
`h2o_jax.hand.official_import.load_official_topology` instead.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from h2o_jax.hand import builtin
from h2o_jax.hand.hierarchy import build_hierarchy
from h2o_jax.hand.mano import MANO_FINGERTIP_VERTICES, NATIVE_TO_COMMON
from h2o_jax.hand.mano_parts import MANO_NUM_VERTICES, mano_vertex_part
from h2o_jax.hand.spirals import build_spirals
from h2o_jax.hand.topology import MeshTopology, save_topology

# Part id of each MANO joint (0 thumb, 1 index, 2 middle, 3 ring, 4 little, 5 palm).
JOINT_PART = np.array([5, 1, 1, 1, 2, 2, 2, 4, 4, 4, 3, 3, 3, 0, 0, 0], np.int32)
MANO_FINGERTIPS = MANO_FINGERTIP_VERTICES  # manopth's layer tips (data_formats.md 1.7)


def common_joint_regressor(joint_regressor16: np.ndarray, fingertip_vertices) -> np.ndarray:
    """[21, V]: the 16 MANO rows, one-hot rows at the five tips, permuted to the common order."""
    regressor16 = np.asarray(joint_regressor16, np.float64)
    tips = np.zeros((5, regressor16.shape[1]))
    tips[np.arange(5), np.asarray(fingertip_vertices)] = 1.0
    return np.concatenate([regressor16, tips])[np.asarray(NATIVE_TO_COMMON)]


def parts_from_skin_weights(skin_weights: np.ndarray) -> np.ndarray:
    """[V] part id of the joint with the largest skinning weight (how MANO vertices are split)."""
    return JOINT_PART[np.argmax(np.asarray(skin_weights), axis=1)]


def hand_vertex_parts(skin_weights: np.ndarray) -> np.ndarray:
    """[V] part ids (0 thumb .. 4 little, 5 palm) of a MANO-format hand: the official H2ONet
    lists for the 778-vertex MANO mesh (the network fuses with them, architecture.md C.3),
    ``parts_from_skin_weights`` for any other mesh (the built-in hand)."""
    skin_weights = np.asarray(skin_weights)
    if len(skin_weights) == MANO_NUM_VERTICES:
        return mano_vertex_part()
    return parts_from_skin_weights(skin_weights)


def topology_from_mano_dict(mano: dict, vertex_part: np.ndarray, fingertip_vertices,
                            num_levels: int = 5, spiral_length: int = 9) -> MeshTopology:
    """The full topology of a MANO-format hand (keys of data_formats.md 1.2, dense arrays)."""
    vertices = np.asarray(mano["v_template"], np.float64)
    faces = np.asarray(mano["f"]).astype(np.int64)
    vertex_part = np.asarray(vertex_part, np.int32)
    if vertex_part.shape != (len(vertices),) or vertex_part.min() < 0 or vertex_part.max() > 5:
        raise ValueError(f"vertex_part must be [{len(vertices)}] ids in 0..5, got shape {vertex_part.shape}")
    hierarchy = build_hierarchy(vertices, faces, num_levels)
    spirals = tuple(
        build_spirals(hierarchy["faces"][level], len(hierarchy["vertices"][level]), spiral_length,
                      vertices_m=hierarchy["vertices"][level]).astype(np.int32)
        for level in range(num_levels - 1)
    )
    return MeshTopology(
        template_vertices_m=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        vertex_part=vertex_part,
        fingertip_vertices=np.asarray(fingertip_vertices, np.int32),
        joint_regressor=common_joint_regressor(mano["J_regressor"], fingertip_vertices).astype(np.float32),
        level_faces=tuple(hierarchy["faces"]),
        down_indices=tuple(d[0] for d in hierarchy["down"]),
        down_weights=tuple(d[1] for d in hierarchy["down"]),
        up_indices=tuple(u[0] for u in hierarchy["up"]),
        up_weights=tuple(u[1] for u in hierarchy["up"]),
        spirals=spirals,
    )


BUILTIN_HAND_FILE = "builtin_hand.npz"
BUILTIN_TOPOLOGY_FILE = "builtin_topology.npz"
MANO_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "J", "weights", "kintree_table", "f",
             "hands_components", "hands_mean", "hands_coeffs", "bs_style", "bs_type")


def write_builtin_assets(out_dir: str) -> tuple[str, str]:
    """Generates the built-in hand and writes its MANO-format file and topology into `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    hand = builtin.builtin_mano_dict()
    hand_path = os.path.join(out_dir, BUILTIN_HAND_FILE)
    arrays = {key: np.asarray(hand[key]) for key in MANO_KEYS}
    arrays["vertex_part"] = hand["vertex_part"]
    arrays["fingertip_vertices"] = hand["fingertip_vertices"]
    np.savez_compressed(hand_path, **arrays)
    topology = topology_from_mano_dict(hand, hand["vertex_part"], hand["fingertip_vertices"])
    topology_path = os.path.join(out_dir, BUILTIN_TOPOLOGY_FILE)
    save_topology(topology, topology_path)
    return hand_path, topology_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m h2o_jax.hand.build_topology", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    p_builtin = sub.add_parser("builtin", help="write the built-in hand's MANO-format file and topology")
    p_builtin.add_argument("out_dir")
    p_mano = sub.add_parser("mano", help="build the topology of a MANO_RIGHT.pkl")
    p_mano.add_argument("mano_path")
    p_mano.add_argument("out_path")
    p_mano.add_argument("--num-levels", type=int, default=5)
    args = parser.parse_args(argv)
    if args.source == "builtin":
        for path in write_builtin_assets(args.out_dir):
            print(f"wrote {path}")
        return 0
    from h2o_jax.hand.mano_io import load_mano_dict

    try:
        mano = load_mano_dict(args.mano_path)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    topology = topology_from_mano_dict(mano, hand_vertex_parts(mano["weights"]), MANO_FINGERTIPS,
                                       num_levels=args.num_levels)
    save_topology(topology, args.out_path)
    print(f"wrote {args.out_path} (levels {topology.level_num_vertices})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
