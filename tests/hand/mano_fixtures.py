"""Fake MANO-format model files for tests (docs/data_formats.md section 1.8).

The real MANO_RIGHT.pkl cannot ship with the tests, so these helpers synthesise a stand-in with
the real structure: one dict pickled with protocol 2, the 13 keys of section 1.2, 778 vertices,
16 joints, 1538 faces, ``shapedirs`` stored as a chumpy object (``Select`` over a ``Ch``, or a
bare ``Ch``) and ``J_regressor`` stored as a scipy CSC matrix (a stub under the legacy module
path ``scipy.sparse.csc``, or a real modern ``scipy.sparse.csc_matrix``). chumpy is never
imported: throw-away classes are registered in ``sys.modules`` only while pickling.

Values are random but shaped like a hand: each vertex hangs off one joint of a plausible
skeleton (metres), skinning weights and regressor rows are non-negative and sum to one, the
tip vertices 745/317/444/445/556/673 sit beyond their finger's distal joint.

Public API (other tests import it; keep it stable):
  ``write_fake_mano_pkl(path, *, seed=0, shapedirs_kind="select", j_regressor_kind="stub", protocol=2)``
  ``make_fake_mano_arrays(*, seed=0, num_vertices=778, num_faces=1538, num_betas=10)``
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import types
from collections.abc import Iterator

import numpy as np

NUM_VERTICES = 778
NUM_FACES = 1538
NUM_JOINTS = 16
NUM_BETAS = 10
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
ROOT_PARENT_STORED = 4294967295  # 2**32 - 1, how the release stores the root's parent
# Tip vertex -> distal MANO joint (thumb 15, index 3, middle 6, ring 12, pinky 9); both middle
# tips (444 manopth, 445 H2ONet one-hot) are included (data_formats.md 1.7).
TIP_VERTEX_JOINT = {745: 15, 317: 3, 444: 6, 445: 6, 556: 12, 673: 9}
# Chain start (MCP/CMC) of each finger in MANO order: index, middle, pinky, ring, thumb.
_FINGER_BASE_JOINTS = (1, 4, 7, 10, 13)
_FINGER_BASES_M = ((0.085, 0.0, 0.025), (0.09, 0.0, 0.0), (0.075, 0.0, -0.045), (0.085, 0.0, -0.022),
                   (0.025, -0.01, 0.035))
_FINGER_DIRECTIONS = ((1.0, 0.0, 0.1), (1.0, 0.0, 0.0), (1.0, 0.0, -0.2), (1.0, 0.0, -0.1),
                      (0.6, -0.2, 0.8))
_BONE_LENGTHS_M = (0.035, 0.025, 0.02)
_SHAPEDIRS_STORED_COMPONENTS = 20  # the Select node gathers 10 of these 20 stored components


def _skeleton_m() -> np.ndarray:
    """[16, 3] plausible right-hand rest joints in metres (wrist at the origin)."""
    joints = np.zeros((NUM_JOINTS, 3))
    for base, start, direction in zip(_FINGER_BASE_JOINTS, _FINGER_BASES_M, _FINGER_DIRECTIONS, strict=True):
        unit = np.asarray(direction) / np.linalg.norm(direction)
        position = np.asarray(start, dtype=np.float64)
        for k, length in enumerate(_BONE_LENGTHS_M):
            joints[base + k] = position
            position = position + length * unit
    return joints


def make_fake_mano_arrays(
    *, seed: int = 0, num_vertices: int = NUM_VERTICES, num_faces: int = NUM_FACES, num_betas: int = NUM_BETAS
) -> dict:
    """Random MANO-format model with the real structure, as plain (dense) arrays.

    Returns the 13 keys of data_formats.md 1.2: float64 ``v_template`` [V,3], ``shapedirs``
    [V,3,S], ``posedirs`` [V,3,135], ``J_regressor`` dense [16,V], ``J`` [16,3], ``weights``
    [V,16], ``hands_components`` [45,45], ``hands_mean`` [45], ``hands_coeffs`` [1554,45];
    int64 ``kintree_table`` [2,16] (root parent 2**32-1); uint32 ``f`` [F,3]; str ``bs_style``,
    ``bs_type``. ``num_vertices`` must exceed 745 so the tip vertices exist.
    """
    if num_vertices <= max(TIP_VERTEX_JOINT):
        raise ValueError(f"num_vertices must exceed {max(TIP_VERTEX_JOINT)}, got {num_vertices}")
    rng = np.random.default_rng(seed)
    joints_m = _skeleton_m()
    children = {j: [c for c, p in enumerate(MANO_PARENTS) if p == j] for j in range(NUM_JOINTS)}

    # Each vertex belongs to one joint and lies around the bone from that joint to its child.
    owner = rng.integers(0, NUM_JOINTS, size=num_vertices)
    for vertex, joint in TIP_VERTEX_JOINT.items():
        owner[vertex] = joint
    v_template = np.empty((num_vertices, 3))
    for v in range(num_vertices):
        j = owner[v]
        start = joints_m[j]
        end = joints_m[children[j][0]] if children[j] else start + 0.02 * (start - joints_m[MANO_PARENTS[j]]) / (
            np.linalg.norm(start - joints_m[MANO_PARENTS[j]])
        )
        v_template[v] = start + rng.uniform(0.0, 1.0) * (end - start) + rng.normal(0.0, 0.006, 3)
    for vertex, joint in TIP_VERTEX_JOINT.items():  # tips: 2 cm beyond the distal joint
        bone = joints_m[joint] - joints_m[MANO_PARENTS[joint]]
        v_template[vertex] = joints_m[joint] + 0.02 * bone / np.linalg.norm(bone) + rng.normal(0.0, 0.001, 3)

    # Skinning: most weight on the owner, the rest on its parent, and a little on a random joint
    # for some vertices so dense (3-joint) blending is exercised.
    weights = np.zeros((num_vertices, NUM_JOINTS))
    for v in range(num_vertices):
        j = owner[v]
        share = rng.uniform(0.5, 1.0) if j > 0 else 1.0
        weights[v, j] += share
        weights[v, max(MANO_PARENTS[j], 0)] += 1.0 - share
        if rng.uniform() < 0.3:
            weights[v, rng.integers(0, NUM_JOINTS)] += rng.uniform(0.0, 0.2)
    weights /= weights.sum(axis=1, keepdims=True)

    # Regressor rows: non-negative weights over the joint's own vertices, normalised.
    j_regressor = np.zeros((NUM_JOINTS, num_vertices))
    for j in range(NUM_JOINTS):
        members = np.flatnonzero(owner == j)
        j_regressor[j, members] = rng.uniform(0.1, 1.0, size=members.size)
    j_regressor /= j_regressor.sum(axis=1, keepdims=True)

    faces = np.empty((num_faces, 3), dtype=np.uint32)
    for i in range(num_faces):
        faces[i] = rng.choice(num_vertices, size=3, replace=False)

    # PCA basis: orthogonal rows that are NOT unit length (as in the release, section 1.2).
    q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    hands_components = q.T * np.linspace(1.31, 0.1, 45)[:, None]

    kintree_table = np.stack([np.array(MANO_PARENTS, dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
    kintree_table[0, 0] = ROOT_PARENT_STORED
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(0.0, 1e-3, size=(num_vertices, 3, num_betas)),
        "posedirs": rng.normal(0.0, 2e-3, size=(num_vertices, 3, 135)),
        "J_regressor": j_regressor,
        "J": j_regressor @ v_template,
        "weights": weights,
        "kintree_table": kintree_table,
        "f": faces,
        "hands_components": hands_components,
        "hands_mean": rng.normal(0.0, 0.15, size=45),
        "hands_coeffs": rng.normal(0.0, 1.0, size=(1554, 45)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


class _Placeholder:
    """Base of the throw-away chumpy / scipy classes: pickles as NEWOBJ + its ``__dict__``."""

    def __init__(self, state: dict) -> None:
        self.__dict__.update(state)


@contextlib.contextmanager
def _fake_modules(classes: dict[str, dict[str, type]]) -> Iterator[None]:
    """Registers modules {module: {name: class}} in sys.modules while pickling, then restores."""
    saved = {name: sys.modules.get(name) for name in classes}
    try:
        for module_name, members in classes.items():
            module = types.ModuleType(module_name)
            for name, cls in members.items():
                cls.__module__ = module_name
                cls.__qualname__ = name
                cls.__name__ = name
                setattr(module, name, cls)
            sys.modules[module_name] = module
        yield
    finally:
        for module_name, previous in saved.items():
            if previous is None:
                sys.modules.pop(module_name, None)
            else:
                sys.modules[module_name] = previous


def _chumpy_shapedirs(shapedirs: np.ndarray, kind: str, rng: np.random.Generator):
    """Builds (object, classes-to-register) for ``shapedirs`` as chumpy stores it."""
    ch_cls = type("Ch", (_Placeholder,), {})
    if kind == "ch":
        return ch_cls({"x": shapedirs, "_dirty_vars": set()}), {"chumpy": {}, "chumpy.ch": {"Ch": ch_cls}}
    select_cls = type("Select", (_Placeholder,), {})
    v, d, s = shapedirs.shape
    stored = rng.normal(0.0, 1e-3, size=(v, d, _SHAPEDIRS_STORED_COMPONENTS))
    stored[:, :, :s] = shapedirs
    # Flat positions of stored[:, :, :s] inside the stored array, as Select's idxs.
    idxs = np.arange(stored.size).reshape(stored.shape)[:, :, :s].ravel()
    node = select_cls(
        {"a": ch_cls({"x": stored, "_dirty_vars": set()}), "idxs": idxs, "preferred_shape": (v, d, s),
         "_dirty_vars": set()}
    )
    classes = {"chumpy": {}, "chumpy.ch": {"Ch": ch_cls}, "chumpy.reordering": {"Select": select_cls}}
    return node, classes


def write_fake_mano_pkl(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    shapedirs_kind: str = "select",
    j_regressor_kind: str = "stub",
    protocol: int = 2,
) -> dict:
    """Writes a fake MANO_RIGHT.pkl (protocol 2) and returns the dense float64 arrays it holds.

    Args:
      path: output file.
      seed: random seed (same seed -> same values for every ``*_kind``).
      shapedirs_kind: ``"select"`` (chumpy ``Select`` over a ``Ch``, as in the release) or ``"ch"``.
      j_regressor_kind: ``"stub"`` (class ``scipy.sparse.csc.csc_matrix``, legacy path) or
        ``"scipy"`` (a real ``scipy.sparse.csc_matrix``, pickled under its modern module).
      protocol: pickle protocol; 2 as in the release, 0 exercises ``copy_reg._reconstructor``.

    Returns:
      ``make_fake_mano_arrays(seed=seed)``: what a loader should reconstruct.
    """
    if shapedirs_kind not in ("select", "ch"):
        raise ValueError(f"shapedirs_kind must be 'select' or 'ch', got {shapedirs_kind!r}")
    if j_regressor_kind not in ("stub", "scipy"):
        raise ValueError(f"j_regressor_kind must be 'stub' or 'scipy', got {j_regressor_kind!r}")
    arrays = make_fake_mano_arrays(seed=seed)
    rng = np.random.default_rng(seed + 1)
    shapedirs, classes = _chumpy_shapedirs(arrays["shapedirs"], shapedirs_kind, rng)

    dense = arrays["J_regressor"]
    col_ids, row_ids = np.nonzero(dense.T)  # walks column by column: CSC storage order
    indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(dense, axis=0))]).astype(np.int32)
    indices, data = row_ids.astype(np.int32), dense[row_ids, col_ids]
    if j_regressor_kind == "scipy":
        import scipy.sparse

        j_regressor = scipy.sparse.csc_matrix((data, indices, indptr), shape=dense.shape)
    else:
        # Import the real package first so the fake submodule is swapped in and back out cleanly
        # (scipy.sparse binds its submodules as attributes when it is first imported).
        import scipy.sparse  # noqa: F401

        csc_cls = type("csc_matrix", (_Placeholder,), {})
        j_regressor = csc_cls(
            {"data": data, "indices": indices, "indptr": indptr, "_shape": dense.shape, "maxprint": 50}
        )
        classes["scipy.sparse.csc"] = {"csc_matrix": csc_cls}

    payload = dict(arrays, shapedirs=shapedirs, J_regressor=j_regressor)
    with _fake_modules(classes), open(path, "wb") as f:
        pickle.dump(payload, f, protocol=protocol)
    return arrays
