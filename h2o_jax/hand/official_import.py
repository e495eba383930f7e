"""Import the official H2ONet/MobRecon hand template folder into a :class:`MeshTopology`.

The official code (H2ONet ``model/modules/template/``, identical to MobRecon's ``template/``)
keeps the hand mesh hierarchy in two files:

* ``template.ply`` — the level-0 MANO right-hand mesh (778 vertices, metres);
* ``transform.pkl`` — a pickle (written by python 2 era code, read with ``encoding='latin1'``)
  holding a dict with ``'vertices'`` (list of ``[V_l, 3]`` arrays, level 0 first), ``'face'``
  (list of ``[F_l, 3]`` arrays), ``'adj'`` (unused here), ``'down_transform'`` (list of sparse
  ``[V_{l+1}, V_l]`` vertex-selection matrices) and ``'up_transform'`` (list of sparse
  ``[V_l, V_{l+1}]`` matrices with three stored entries per row).

The official network computes its spiral tables at start-up from each level's faces and vertices
(``preprocess_spiral`` for levels ``0 .. L-2``); :func:`load_official_topology` does the same with
:func:`h2o_jax.hand.spirals.build_spirals`, which reproduces OpenMesh's order exactly.

The official 21 x 778 joint regressor is built in H2ONet's ``common/utils/mano.py`` from MANO's
licensed ``MANO_RIGHT.pkl``: MANO's 16-row ``J_regressor``, five one-hot fingertip rows
(vertices 745, 317, 445, 556, 673) and the row permutation P of data_formats.md 0.3. The template
folder does not contain it (its ``j_reg.npy`` is MobRecon's regressor in another joint order), so
the caller passes it as an ``.npy`` file; :func:`build_official_joint_regressor` makes that array.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from h2o_jax.hand.mano import NATIVE_TO_COMMON
from h2o_jax.hand.mano_parts import MANO_NUM_VERTICES, mano_vertex_part
from h2o_jax.hand.spirals import build_spirals
from h2o_jax.hand.topology import NUM_JOINTS, PALM_PART, MeshTopology
from h2o_jax.ops import resample_table_from_sparse

# Fingertip vertices of the official regressor's one-hot rows (thumb, index, middle, ring, little).
OFFICIAL_FINGERTIP_VERTICES = (745, 317, 445, 556, 673)
# MANO-native 21 order (16 MANO joints + 5 tips) -> common order: common = native[P].
# Rows of the fingertips in the common 21-joint order.
COMMON_TIP_ROWS = (4, 8, 12, 16, 20)
# MobRecon's template/j_reg.npy has one-hot rows 16..20 at these vertices; it is not the official
# H2ONet regressor (different joint order) and is rejected to avoid a silent joint mix-up.
_MOBRECON_JREG_TIPS = (333, 444, 672, 555, 744)

# Bone segments (parent, child joint in the common order) and the part each belongs to: a finger's
# three phalanx segments belong to that finger; the five wrist-to-knuckle segments to the palm.
# This matches the joint lists of the official part colouring (architecture.md 16.1), where the
# palm owns the wrist and the five first finger joints.
BONE_SEGMENTS = tuple(
    [(1 + 4 * f + k, 2 + 4 * f + k, f) for f in range(5) for k in range(3)]
    + [(0, 1 + 4 * f, PALM_PART) for f in range(5)]
)


# -- PLY ------------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _ply_type(name: str, path: str) -> str:
    if name not in _PLY_TYPES:
        raise ValueError(f"PLY file {path!r} uses the unknown property type {name!r}")
    return _PLY_TYPES[name]


def read_ply(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reads vertices and triangles from an ascii or binary_little_endian PLY file.

    Args:
      path: the ``.ply`` file. The ``vertex`` element needs ``x, y, z`` (other properties are
        skipped); the ``face`` element needs a list property ``vertex_indices`` (or
        ``vertex_index``) of triangles. Other elements are skipped.

    Returns:
      ``(vertices float64 [V, 3], faces int64 [F, 3])``.

    Raises:
      FileNotFoundError if the file is missing; ValueError naming the file for anything else.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"PLY file {path!r} does not exist")
    with open(path, "rb") as handle:
        raw = handle.read()
    header_end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or header_end < 0:
        raise ValueError(f"{path!r} is not a PLY file (no 'ply' magic or no 'end_header')")
    body_start = raw.index(b"\n", header_end) + 1
    header = raw[:header_end].decode("ascii", errors="replace").splitlines()

    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str, str | None]]]] = []
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise ValueError(f"PLY file {path!r}: property before any element")
            if words[1] == "list":  # property list <count type> <item type> <name>
                elements[-1][2].append((words[4], _ply_type(words[3], path), _ply_type(words[2], path)))
            else:
                elements[-1][2].append((words[2], _ply_type(words[1], path), None))
    if fmt not in ("ascii", "binary_little_endian"):
        raise ValueError(
            f"PLY file {path!r} has format {fmt!r}; supported: ascii, binary_little_endian")

    data: dict[str, dict[str, Any]] = {}
    if fmt == "ascii":
        tokens = raw[body_start:].split()
        pos = 0
        for name, count, props in elements:
            columns: dict[str, list] = {p[0]: [] for p in props}
            for _ in range(count):
                for prop, item_type, count_type in props:
                    if count_type is None:
                        columns[prop].append(np.array(tokens[pos].decode(), dtype=item_type))
                        pos += 1
                    else:
                        n = int(tokens[pos])
                        columns[prop].append(
                            np.array([t.decode() for t in tokens[pos + 1:pos + 1 + n]], dtype=item_type))
                        pos += 1 + n
            data[name] = columns
        if pos > len(tokens):
            raise ValueError(f"PLY file {path!r} ends before all declared elements were read")
    else:
        body = memoryview(raw)[body_start:]
        pos = 0
        for name, count, props in elements:
            if all(p[2] is None for p in props):  # fixed-size records: one structured read
                dtype = np.dtype([(p[0], "<" + p[1]) for p in props])
                if pos + dtype.itemsize * count > len(body):
                    raise ValueError(f"PLY file {path!r} ends inside element {name!r}")
                records = np.frombuffer(body, dtype, count, pos)
                pos += dtype.itemsize * count
                data[name] = {p[0]: records[p[0]] for p in props}
                continue
            columns = {p[0]: [] for p in props}
            for _ in range(count):
                for prop, item_type, count_type in props:
                    if count_type is None:
                        item = np.dtype("<" + item_type)
                        columns[prop].append(np.frombuffer(body, item, 1, pos)[0])
                        pos += item.itemsize
                    else:
                        size_type = np.dtype("<" + count_type)
                        n = int(np.frombuffer(body, size_type, 1, pos)[0])
                        pos += size_type.itemsize
                        item = np.dtype("<" + item_type)
                        if pos + n * item.itemsize > len(body):
                            raise ValueError(f"PLY file {path!r} ends inside element {name!r}")
                        columns[prop].append(np.frombuffer(body, item, n, pos))
                        pos += n * item.itemsize
            data[name] = columns

    if "vertex" not in data or not all(k in data["vertex"] for k in "xyz"):
        raise ValueError(f"PLY file {path!r} has no vertex element with x, y, z properties")
    vertices = np.stack([np.asarray(data["vertex"][k], np.float64) for k in "xyz"], axis=1)
    face_columns = data.get("face", {})
    key = next((k for k in ("vertex_indices", "vertex_index") if k in face_columns), None)
    if key is None:
        raise ValueError(f"PLY file {path!r} has no face element with a vertex_indices list")
    rows = face_columns[key]
    if any(len(r) != 3 for r in rows):
        raise ValueError(f"PLY file {path!r}: faces must be triangles")
    faces = np.array([np.asarray(r, np.int64) for r in rows], np.int64).reshape(-1, 3)
    return vertices, faces


# -- transform.pkl ------------------------------------------------------------------------------

class _CompatUnpickler(pickle.Unpickler):
    """Unpickler that maps module paths of old scipy/numpy releases onto today's names.

    The official pickle names e.g. ``scipy.sparse.csc.csc_matrix`` (scipy < 1.8) and
    ``numpy.core.multiarray._reconstruct`` (numpy < 2); both old modules are deprecated shims now
    (or gone), and importing them would warn. The classes themselves are unchanged.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("scipy.sparse") and hasattr(scipy.sparse, name):
            return getattr(scipy.sparse, name)
        if module == "numpy.core" or module.startswith("numpy.core."):
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def load_transform_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Loads the official ``transform.pkl`` (latin1 pickle) and checks the keys used here."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"transform pickle {path!r} does not exist")
    with open(path, "rb") as handle:
        try:
            content = _CompatUnpickler(io.BytesIO(handle.read()), encoding="latin1").load()
        except Exception as error:  # noqa: BLE001 - any unpickling failure means a bad file
            raise ValueError(f"transform pickle {path!r} could not be read: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"transform pickle {path!r} holds a {type(content).__name__}, expected a dict")
    for key in ("vertices", "face", "down_transform", "up_transform"):
        if key not in content:
            raise KeyError(f"transform pickle {path!r} lacks the key {key!r}")
    return content


# -- joint regressor and parts ------------------------------------------------------------------

def build_official_joint_regressor(mano_j_regressor: Any) -> np.ndarray:
    """The official H2ONet 21-joint regressor from MANO's 16-joint ``J_regressor``.

    Args:
      mano_j_regressor: [16, V] dense or scipy sparse (MANO_RIGHT.pkl's ``J_regressor``), rows in
        MANO-native order; V = 778 (the tip rows use vertex ids of the MANO topology).

    Returns:
      [21, V] float32 in the common 21-joint order: rows of MANO's regressor plus one-hot rows at
      vertices 745, 317, 445, 556, 673 (thumb .. little tips), permuted with ``NATIVE_TO_COMMON``.
    """
    if scipy.sparse.issparse(mano_j_regressor):
        mano_j_regressor = mano_j_regressor.toarray()
    regressor = np.asarray(mano_j_regressor, np.float64)
    too_few_columns = regressor.ndim == 2 and regressor.shape[1] <= max(OFFICIAL_FINGERTIP_VERTICES)
    if regressor.ndim != 2 or regressor.shape[0] != 16 or too_few_columns:
        raise ValueError(
            f"mano_j_regressor must have shape [16, 778] (MANO's J_regressor), got {regressor.shape}")
    tips = np.zeros((5, regressor.shape[1]))
    tips[np.arange(5), OFFICIAL_FINGERTIP_VERTICES] = 1.0
    native = np.concatenate([regressor, tips], axis=0)
    return native[list(NATIVE_TO_COMMON)].astype(np.float32)


def _point_segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Euclidean distance of [N, 3] points to the segment start-end (a point if they coincide)."""
    axis = end - start
    length2 = float(axis @ axis)
    t = np.zeros(len(points)) if length2 == 0.0 else np.clip((points - start) @ axis / length2, 0.0, 1.0)
    return np.linalg.norm(points - (start + t[:, None] * axis), axis=1)


def assign_vertex_parts(vertices_m: np.ndarray, joints_m: np.ndarray) -> np.ndarray:
    """Part id of each vertex: the part of the nearest bone segment of the 21 joints.

    Segments are ``BONE_SEGMENTS``: each finger's three phalanx segments give that finger's id
    (0 thumb .. 4 little); the five wrist-to-first-finger-joint segments give the palm (5). An
    exact tie goes to the segment listed first. This approximates, not reproduces, the official
    hand-painted part colouring (architecture.md 16.1).

    Args:
      vertices_m: [V, 3] mesh vertices.
      joints_m: [21, 3] joints in the common order.

    Returns:
      [V] int32 part ids.
    """
    vertices_m = np.asarray(vertices_m, np.float64)
    joints_m = np.asarray(joints_m, np.float64)
    if vertices_m.ndim != 2 or vertices_m.shape[1] != 3:
        raise ValueError(f"vertices_m must have shape [V, 3], got {vertices_m.shape}")
    if joints_m.shape != (NUM_JOINTS, 3):
        raise ValueError(f"joints_m must have shape [21, 3], got {joints_m.shape}")
    distances = np.stack([_point_segment_distance(vertices_m, joints_m[a], joints_m[b])
                          for a, b, _ in BONE_SEGMENTS], axis=1)
    segment_part = np.array([part for _, _, part in BONE_SEGMENTS], np.int32)
    return segment_part[np.argmin(distances, axis=1)]


def _fingertips_from_regressor(regressor: np.ndarray, path: str) -> np.ndarray:
    tips = []
    for row in COMMON_TIP_ROWS:
        nonzero = np.flatnonzero(regressor[row])
        if len(nonzero) != 1 or regressor[row, nonzero[0]] != 1.0:
            raise ValueError(
                f"joint regressor {path!r}: row {row} (a fingertip) must be one-hot to locate the "
                f"fingertip vertex, it has {len(nonzero)} non-zeros")
        tips.append(int(nonzero[0]))
    return np.array(tips, np.int32)


def _load_joint_regressor(path: str | os.PathLike[str] | None, num_vertices: int) -> np.ndarray:
    if path is None:
        raise ValueError(
            "joint_regressor_path is required: the official template folder does not hold the "
            "21 x 778 H2ONet joint regressor. Build it from MANO_RIGHT.pkl's J_regressor with "
            "build_official_joint_regressor() and save it as .npy (template/j_reg.npy is MobRecon's "
            "regressor in another joint order, not this one)")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"joint regressor file {path!r} does not exist (expected a [21, {num_vertices}] .npy "
            "made by build_official_joint_regressor)")
    try:
        regressor = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"joint regressor file {path!r} is not a plain .npy array: {error}") from error
    if regressor.shape != (NUM_JOINTS, num_vertices):
        raise ValueError(
            f"joint regressor file {path!r} has shape {regressor.shape}, expected "
            f"({NUM_JOINTS}, {num_vertices})")
    if not np.all(np.isfinite(regressor)):
        raise ValueError(f"joint regressor file {path!r} holds non-finite values")
    if num_vertices == 778 and all(
            np.count_nonzero(regressor[16 + i]) == 1 and regressor[16 + i, v] == 1.0
            for i, v in enumerate(_MOBRECON_JREG_TIPS)):
        raise ValueError(
            f"joint regressor file {path!r} looks like MobRecon's template/j_reg.npy (one-hot rows "
            "16-20 at vertices 333, 444, 672, 555, 744), whose joint order differs from H2ONet's; "
            "build the official one with build_official_joint_regressor()")
    return regressor.astype(np.float32)


# -- the topology -------------------------------------------------------------------------------

def _table(content: dict[str, Any], key: str, index: int, path: str,
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Index/weight table of ``content[key][index]`` after checking it is sparse of ``shape``."""
    matrix = content[key][index]
    if not scipy.sparse.issparse(matrix):
        raise ValueError(
            f"transform pickle {path!r}: {key}[{index}] is a {type(matrix).__name__}, expected a "
            "scipy sparse matrix")
    if tuple(matrix.shape) != shape:
        raise ValueError(
            f"transform pickle {path!r}: {key}[{index}] has shape {tuple(matrix.shape)}, expected {shape}")
    try:
        return resample_table_from_sparse(matrix)
    except ValueError as error:
        raise ValueError(f"transform pickle {path!r}: {key}[{index}]: {error}") from error


def load_official_topology(
    template_dir: str | os.PathLike[str],
    *,
    joint_regressor_path: str | os.PathLike[str] | None = None,
    spiral_length: int = 9,
) -> MeshTopology:
    """Builds a :class:`MeshTopology` from the official H2ONet/MobRecon template folder.

    Args:
      template_dir: folder with ``template.ply`` and ``transform.pkl`` (see module docstring).
      joint_regressor_path: ``.npy`` file with the [21, V] official joint regressor (common joint
        order), e.g. saved from :func:`build_official_joint_regressor`.
      spiral_length: spiral length S (9 in the official network), dilation 1.

    Returns:
      The topology: level-0 template vertices from ``template.ply`` (float32, metres), faces and
      level faces, down/up tables (``resample_table_from_sparse``) and spirals from the pickle;
      when V = 778 (MANO), ``vertex_part`` = the official part lists
      (:func:`h2o_jax.hand.mano_parts.mano_vertex_part`, what the official network fuses with)
      and fingertips ``OFFICIAL_FINGERTIP_VERTICES``; otherwise parts from
      :func:`assign_vertex_parts` on the regressed template joints and fingertips from the
      one-hot tip rows of the regressor.

    Raises:
      FileNotFoundError naming a missing file; KeyError naming the file and a missing key;
      ValueError for inconsistent contents.
    """
    template_dir = Path(template_dir)
    ply_path = template_dir / "template.ply"
    pkl_path = template_dir / "transform.pkl"
    if not template_dir.is_dir():
        raise FileNotFoundError(f"template folder {str(template_dir)!r} does not exist")
    template_vertices, _ = read_ply(ply_path)
    content = load_transform_pickle(pkl_path)
    pkl = str(pkl_path)

    level_vertices = [np.asarray(v, np.float64) for v in content["vertices"]]
    level_faces = [np.asarray(f) for f in content["face"]]
    num_levels = len(level_faces)
    if num_levels < 2 or len(level_vertices) != num_levels:
        raise ValueError(
            f"transform pickle {pkl!r}: 'vertices' and 'face' must list the same number (>= 2) of "
            f"levels, got {len(level_vertices)} and {num_levels}")
    for key in ("down_transform", "up_transform"):
        if len(content[key]) != num_levels - 1:
            raise ValueError(
                f"transform pickle {pkl!r}: {key!r} must list {num_levels - 1} matrices, got "
                f"{len(content[key])}")
    for level, (verts, faces) in enumerate(zip(level_vertices, level_faces)):
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise ValueError(
                f"transform pickle {pkl!r}: vertices[{level}] has shape {verts.shape}, expected [V, 3]")
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(
                f"transform pickle {pkl!r}: face[{level}] has shape {faces.shape}, expected [F, 3]")
    sizes = [len(v) for v in level_vertices]
    if len(template_vertices) != sizes[0]:
        raise ValueError(
            f"{str(ply_path)!r} has {len(template_vertices)} vertices but {pkl!r} level 0 has {sizes[0]}")

    regressor = _load_joint_regressor(joint_regressor_path, sizes[0])

    downs, ups = [], []
    for level in range(num_levels - 1):
        fine, coarse = sizes[level], sizes[level + 1]
        downs.append(_table(content, "down_transform", level, pkl, (coarse, fine)))
        ups.append(_table(content, "up_transform", level, pkl, (fine, coarse)))

    spirals = []
    for level in range(num_levels - 1):
        try:
            spirals.append(build_spirals(level_faces[level], sizes[level], spiral_length, 1,
                                         vertices_m=level_vertices[level]))
        except ValueError as error:
            raise ValueError(f"transform pickle {pkl!r}: face[{level}]: {error}") from error

    template_m = template_vertices.astype(np.float32)
    joints_m = regressor.astype(np.float64) @ template_vertices
    if sizes[0] == MANO_NUM_VERTICES:
        # The official network fuses with the label script's hand-made part lists (arch. C.3).
        fingertips = np.array(OFFICIAL_FINGERTIP_VERTICES, np.int32)
        vertex_part = mano_vertex_part()
    else:
        fingertips = _fingertips_from_regressor(regressor, os.fspath(joint_regressor_path))
        vertex_part = assign_vertex_parts(template_vertices, joints_m)

    return MeshTopology(
        template_vertices_m=template_m,
        faces=level_faces[0].astype(np.int32),
        vertex_part=vertex_part,
        fingertip_vertices=fingertips,
        joint_regressor=regressor,
        level_faces=tuple(f.astype(np.int32) for f in level_faces),
        down_indices=tuple(d[0] for d in downs),
        down_weights=tuple(d[1] for d in downs),
        up_indices=tuple(u[0] for u in ups),
        up_weights=tuple(u[1] for u in ups),
        spirals=tuple(spirals),
    )
