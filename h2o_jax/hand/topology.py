"""Mesh topology of a hand model: the value every mesh-aware part of h2o_jax is handed.

Shape letters: V vertices at level 0, V_l vertices at hierarchy level l, F faces, J = 21 joints,
S spiral length, K resampling-table width.

Levels follow the official H2ONet/MobRecon hierarchy: level 0 is the full mesh, each further level
has about half the vertices; there are ``num_levels`` levels (5 for the official hierarchy: 778,
389, 195, 98, 49), ``num_levels - 1`` transitions and spiral tables for levels ``0 .. num_levels-2``
(the coarsest level only holds the lifted features and needs no convolution).

Part ids (``vertex_part``): 0 thumb, 1 index, 2 middle, 3 ring, 4 little, 5 palm.
Joint order: the common 21-joint order of data_formats.md section 0.2 (wrist first, thumb-first).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
from flax import struct

TOPOLOGY_FORMAT_VERSION = 1
PART_NAMES = ("thumb", "index", "middle", "ring", "little", "palm")
NUM_FINGERS = 5
PALM_PART = 5
NUM_JOINTS = 21


@struct.dataclass
class MeshTopology:
    """Immutable pytree of the arrays that describe a hand mesh and its hierarchy.

    Attributes:
      template_vertices_m: [V, 3] float32 rest-pose mesh in metres (level 0).
      faces: [F, 3] int32 level-0 triangles, consistently oriented.
      vertex_part: [V] int32 part id per vertex (see module docstring).
      fingertip_vertices: [5] int32 vertex ids of the thumb, index, middle, ring, little tips.
      joint_regressor: [21, V] float32 regressor of the 21 joints (common order) from vertices.
      level_faces: per level l = 0 .. L-1, [F_l, 3] int32 faces of that level.
      down_indices, down_weights: per transition l -> l+1, [V_{l+1}, K] int32 / float32 tables
        (selection: K = 1, weight 1).
      up_indices, up_weights: per transition l+1 -> l, [V_l, K] int32 / float32 tables
        (barycentric weights of a coarse triangle, K = 3).
      spirals: per level l = 0 .. L-2, [V_l, S] int32 spiral indices, centre vertex first.
    """

    template_vertices_m: np.ndarray
    faces: np.ndarray
    vertex_part: np.ndarray
    fingertip_vertices: np.ndarray
    joint_regressor: np.ndarray
    level_faces: tuple[np.ndarray, ...]
    down_indices: tuple[np.ndarray, ...]
    down_weights: tuple[np.ndarray, ...]
    up_indices: tuple[np.ndarray, ...]
    up_weights: tuple[np.ndarray, ...]
    spirals: tuple[np.ndarray, ...]

    @property
    def num_levels(self) -> int:
        return len(self.level_faces)

    @property
    def level_num_vertices(self) -> tuple[int, ...]:
        """Vertex count per level, finest first."""
        counts = [int(self.template_vertices_m.shape[0])]
        counts += [int(idx.shape[0]) for idx in self.down_indices]
        return tuple(counts)

    @property
    def num_vertices(self) -> int:
        return int(self.template_vertices_m.shape[0])


_TUPLE_FIELDS = ("level_faces", "down_indices", "down_weights", "up_indices", "up_weights", "spirals")
_ARRAY_FIELDS = ("template_vertices_m", "faces", "vertex_part", "fingertip_vertices", "joint_regressor")


def save_topology(topology: MeshTopology, path: str | os.PathLike[str]) -> None:
    """Writes ``topology`` to one versioned, compressed ``.npz`` file."""
    arrays: dict[str, Any] = {"format_version": np.int32(TOPOLOGY_FORMAT_VERSION)}
    for name in _ARRAY_FIELDS:
        arrays[name] = np.asarray(getattr(topology, name))
    for name in _TUPLE_FIELDS:
        items = getattr(topology, name)
        arrays[f"{name}_count"] = np.int32(len(items))
        for i, item in enumerate(items):
            arrays[f"{name}_{i}"] = np.asarray(item)
    np.savez_compressed(path, **arrays)


def load_topology(path: str | os.PathLike[str]) -> MeshTopology:
    """Reads a topology written by :func:`save_topology`; errors name the file and the key."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"topology file {path!r} does not exist")
    # An open file object, so that it is closed even when numpy cannot read it (a damaged file).
    with open(path, "rb") as file, np.load(file, allow_pickle=False) as data:
        keys = set(data.files)

        def get(key: str) -> np.ndarray:
            if key not in keys:
                raise KeyError(f"topology file {path!r} lacks the key {key!r}")
            return data[key]

        version = int(get("format_version"))
        if version != TOPOLOGY_FORMAT_VERSION:
            raise ValueError(
                f"topology file {path!r} has format_version {version}; this h2o_jax reads "
                f"version {TOPOLOGY_FORMAT_VERSION}"
            )
        fields: dict[str, Any] = {name: get(name) for name in _ARRAY_FIELDS}
        for name in _TUPLE_FIELDS:
            count = int(get(f"{name}_count"))
            fields[name] = tuple(get(f"{name}_{i}") for i in range(count))
    return MeshTopology(**fields)


def topology_hash(topology: MeshTopology) -> str:
    """SHA-256 (hex) of the topology's arrays: names, dtypes, shapes and bytes, in a fixed field
    order. Equal hashes mean the same network wiring; a run records it to refuse another one."""
    digest = hashlib.sha256()

    def add(name: str, value: Any) -> None:
        array = np.ascontiguousarray(value)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())

    for name in _ARRAY_FIELDS:
        add(name, getattr(topology, name))
    for name in _TUPLE_FIELDS:
        items = getattr(topology, name)
        digest.update(f"{name}|{len(items)}|".encode())
        for i, item in enumerate(items):
            add(f"{name}_{i}", item)
    return digest.hexdigest()
