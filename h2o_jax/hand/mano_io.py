"""Reading and writing MANO-format model files without chumpy (docs/data_formats.md 1.1-1.3).

A MANO-format file is one dict with the keys of data_formats.md 1.2, either

* a ``.pkl`` pickle: the MANO release (Python-2 pickle, ``shapedirs`` a chumpy ``Select``/``Ch``
  node, ``J_regressor`` a scipy CSC matrix under the legacy module ``scipy.sparse.csc``) or a
  de-chumpied copy with plain numpy arrays, or
* a ``.npz`` archive with the same keys as plain (non-object) arrays.

Pickles are user-supplied files, and a plain unpickler would run any global they name, so
:func:`load_mano_dict` uses a restricted unpickler: chumpy classes become inert stubs (one per
class, nothing of chumpy runs), scipy sparse classes become stubs densified here (scipy is not
consulted), numpy's array-reconstruction names and a few builtins are allowed, and every other
global is refused with a ``ValueError`` naming the file and the global.

Shape letters: V vertices, S shape components, F faces.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

import numpy as np

NUM_MANO_JOINTS = 16
NUM_POSE_BLEND = 135  # 15 non-root joints x 9 entries of (R - I)
NUM_FINGER_POSE = 45  # 15 non-root joints x 3 axis-angle components
ROOT_PARENT_STORED = 4294967295  # the release stores the root's parent as 2**32 - 1

REQUIRED_KEYS = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "f",
    "hands_components",
    "hands_mean",
)
# Keys a loader fills in when a file lacks them: they are not needed for the forward pass.
OPTIONAL_KEYS = ("J", "hands_coeffs", "bs_style", "bs_type")
MANO_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS

# (module, name) -> (module, name) actually resolved. numpy.core.* is mapped onto numpy._core.*
# because touching the numpy.core alias warns under numpy 2; Python-2 names (copy_reg,
# __builtin__) are mapped by the base class's fix_imports.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("copy_reg", "_reconstructor"): ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"): ("copyreg", "_reconstructor"),
    ("__builtin__", "object"): ("__builtin__", "object"),
    ("builtins", "object"): ("builtins", "object"),
    ("__builtin__", "set"): ("__builtin__", "set"),
    ("builtins", "set"): ("builtins", "set"),
    # Python 3 writes bytes (e.g. array buffers) at protocol 2 as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _RefusedError(ValueError):
    """A file-naming error raised while unpickling; passed through unchanged."""


class _Stub:
    """Inert stand-in for a class of a pickled object; keeps whatever the pickle hands it."""

    stub_module = ""
    stub_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state  # stored as is: no chumpy / scipy logic runs


class _ChumpyStub(_Stub):
    pass


class _SparseStub(_Stub):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: str) -> None:
        super().__init__(file, encoding="latin1")  # Python-2 byte strings hold array buffers
        self._path = path
        self._stubs: dict[tuple[str, str], type] = {}

    def _stub(self, base: type, module: str, name: str) -> type:
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = type(name, (base,), {"stub_module": module, "stub_name": name})
        return self._stubs[key]

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return self._stub(_ChumpyStub, module, name)
        if module.startswith("scipy.sparse"):
            return self._stub(_SparseStub, module, name)
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise _RefusedError(
                f"{self._path}: refusing to unpickle global {module}.{name}: a MANO-format file may only "
                "contain numpy arrays, chumpy nodes and scipy sparse matrices"
            )
        return super().find_class(*target)


def _state_dict(obj: _Stub, path: str, key: str) -> dict:
    if not isinstance(obj.state, dict):
        raise ValueError(
            f"{path}: key {key!r} holds a {obj.stub_module}.{obj.stub_name} whose pickled state is "
            f"{type(obj.state).__name__}, expected a dict"
        )
    return obj.state


def _state_entry(state: dict, name: str, obj: _Stub, path: str, key: str) -> Any:
    if name not in state:
        raise ValueError(
            f"{path}: key {key!r} holds a {obj.stub_module}.{obj.stub_name} without the state entry {name!r}"
        )
    return state[name]


def _densify_sparse(obj: _SparseStub, path: str, key: str) -> np.ndarray:
    """CSC / CSR stub -> dense float64 array, summing duplicate entries as scipy does."""
    fmt = obj.stub_name.split("_")[0]
    if fmt not in ("csc", "csr"):
        raise ValueError(
            f"{path}: key {key!r} holds unsupported sparse class {obj.stub_module}.{obj.stub_name} "
            "(expected csc_matrix or csr_matrix)"
        )
    state = _state_dict(obj, path, key)
    shape = state.get("_shape", state.get("shape"))
    if shape is None:
        raise ValueError(f"{path}: key {key!r} holds a sparse matrix without '_shape' in its state")
    data = np.asarray(_state_entry(state, "data", obj, path, key), dtype=np.float64)
    indices = np.asarray(_state_entry(state, "indices", obj, path, key), dtype=np.int64)
    indptr = np.asarray(_state_entry(state, "indptr", obj, path, key), dtype=np.int64)
    n_rows, n_cols = (int(s) for s in shape)
    n_major, n_minor = (n_cols, n_rows) if fmt == "csc" else (n_rows, n_cols)
    if (
        indptr.shape != (n_major + 1,)
        or indptr[0] != 0
        or np.any(np.diff(indptr) < 0)
        or indptr[-1] != data.size
        or indices.shape != data.shape
        or np.any((indices < 0) | (indices >= n_minor))
    ):
        raise ValueError(f"{path}: key {key!r} holds an inconsistent {fmt} matrix of shape {(n_rows, n_cols)}")
    major = np.repeat(np.arange(n_major), np.diff(indptr))
    dense = np.zeros((n_rows, n_cols))
    rows, cols = (indices, major) if fmt == "csc" else (major, indices)
    np.add.at(dense, (rows, cols), data)
    return dense


def _resolve(value: Any, path: str, key: str) -> Any:
    """Replaces chumpy and sparse stubs by the arrays they stand for (data_formats.md 1.3)."""
    if isinstance(value, _ChumpyStub):
        state = _state_dict(value, path, key)
        if value.stub_name == "Ch":
            return np.asarray(_resolve(_state_entry(state, "x", value, path, key), path, key))
        if value.stub_name == "Select":
            source = np.asarray(_resolve(_state_entry(state, "a", value, path, key), path, key))
            idxs = np.asarray(_state_entry(state, "idxs", value, path, key), dtype=np.int64).ravel()
            if np.any((idxs < 0) | (idxs >= source.size)):
                raise ValueError(f"{path}: key {key!r}: chumpy Select indices fall outside its source array")
            gathered = source.ravel()[idxs]
            shape = state.get("preferred_shape")
            return gathered if shape is None else gathered.reshape(tuple(int(s) for s in shape))
        raise ValueError(
            f"{path}: key {key!r} holds chumpy class {value.stub_module}.{value.stub_name}, which this loader "
            "cannot evaluate (supported: Ch, Select)"
        )
    if isinstance(value, _SparseStub):
        return _densify_sparse(value, path, key)
    if isinstance(value, _Stub):  # pragma: no cover - only chumpy / sparse stubs exist
        raise ValueError(f"{path}: key {key!r} holds an unsupported object")
    return value


def _as_str(value: Any, path: str, key: str) -> str:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if not isinstance(value, str):
        raise ValueError(f"{path}: key {key!r} must be a string, got {type(value).__name__}")
    return value


def _float_array(raw: dict, key: str, shape: tuple, path: str) -> np.ndarray:
    """Dense float64 array with the expected shape (None = any size), or a ValueError naming it."""
    try:
        arr = np.asarray(raw[key], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: key {key!r} is not a numeric array ({err})") from None
    if arr.ndim != len(shape) or any(e is not None and a != e for a, e in zip(arr.shape, shape, strict=True)):
        expected = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ")"
        raise ValueError(f"{path}: key {key!r} has shape {arr.shape}, expected {expected}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: key {key!r} contains non-finite values")
    return arr


def _int_array(raw: dict, key: str, shape: tuple, path: str) -> np.ndarray:
    arr = np.asarray(raw[key])
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{path}: key {key!r} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(e is not None and a != e for a, e in zip(arr.shape, shape, strict=True)):
        expected = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ")"
        raise ValueError(f"{path}: key {key!r} has shape {arr.shape}, expected {expected}")
    return arr.astype(np.int64)


def _validated(raw: dict, path: str) -> dict:
    """Checks keys, shapes and ranges; returns the 13 keys in their canonical dtypes."""
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise KeyError(f"{path}: missing key {key!r} (a MANO-format file needs {', '.join(REQUIRED_KEYS)})")
    v_template = _float_array(raw, "v_template", (None, 3), path)
    num_vertices = v_template.shape[0]
    out: dict[str, Any] = {"v_template": v_template}
    out["shapedirs"] = _float_array(raw, "shapedirs", (num_vertices, 3, None), path)
    out["posedirs"] = _float_array(raw, "posedirs", (num_vertices, 3, NUM_POSE_BLEND), path)
    out["J_regressor"] = _float_array(raw, "J_regressor", (NUM_MANO_JOINTS, num_vertices), path)
    out["weights"] = _float_array(raw, "weights", (num_vertices, NUM_MANO_JOINTS), path)
    kintree = _int_array(raw, "kintree_table", (2, NUM_MANO_JOINTS), path)
    out["kintree_table"] = kintree
    faces = _int_array(raw, "f", (None, 3), path)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ValueError(f"{path}: key 'f' has vertex indices outside 0..{num_vertices - 1}")
    out["f"] = faces.astype(np.int32)
    out["hands_components"] = _float_array(raw, "hands_components", (NUM_FINGER_POSE, NUM_FINGER_POSE), path)
    out["hands_mean"] = _float_array(raw, "hands_mean", (NUM_FINGER_POSE,), path)
    if "J" in raw:
        out["J"] = _float_array(raw, "J", (NUM_MANO_JOINTS, 3), path)
    else:  # the release's J equals the regressor applied to the template (data_formats.md 1.2)
        out["J"] = out["J_regressor"] @ v_template
    if "hands_coeffs" in raw:
        out["hands_coeffs"] = _float_array(raw, "hands_coeffs", (None, NUM_FINGER_POSE), path)
    else:
        out["hands_coeffs"] = np.zeros((0, NUM_FINGER_POSE))
    for key, expected in (("bs_style", "lbs"), ("bs_type", "lrotmin")):
        value = _as_str(raw[key], path, key) if key in raw else expected
        if value != expected:
            raise ValueError(f"{path}: key {key!r} is {value!r}; only {expected!r} models are supported")
        out[key] = value
    return out


def _load_pickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = _RestrictedUnpickler(f, path).load()
    except _RefusedError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
            ValueError) as err:
        raise ValueError(f"{path}: not a readable MANO pickle ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a pickled dict of MANO arrays, got {type(raw).__name__}")
    # Only the keys used are resolved: extra entries of the release (e.g. priors) may hold
    # chumpy or sparse objects this loader has no need to evaluate.
    return {key: _resolve(value, path, key) for key, value in raw.items() if key in MANO_KEYS}


def _load_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as err:  # object arrays (allow_pickle) or a corrupt archive
        raise ValueError(f"{path}: not a readable MANO .npz archive of plain arrays ({err})") from None
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable MANO .npz archive ({err})") from None


def load_mano_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a MANO-format ``.pkl`` or ``.npz`` file into plain arrays.

    Returns the 13 keys of data_formats.md 1.2 (extra keys such as ``pose``/``trans``/``betas``
    are ignored): float64 ``v_template`` [V,3], ``shapedirs`` [V,3,S], ``posedirs`` [V,3,135],
    ``J_regressor`` dense [16,V], ``J`` [16,3], ``weights`` [V,16], ``hands_components``
    [45,45], ``hands_mean`` [45], ``hands_coeffs`` [N,45]; int64 ``kintree_table`` [2,16] (as
    stored: the root's parent stays 2**32-1); int32 ``f`` [F,3]; str ``bs_style``, ``bs_type``.
    ``J``, ``hands_coeffs``, ``bs_style`` and ``bs_type`` are optional in the file (defaults:
    ``J_regressor @ v_template``, an empty [0,45] array, ``'lbs'``, ``'lrotmin'``).

    Raises:
      FileNotFoundError: no such file.
      KeyError: a required key is missing (message names file and key).
      ValueError: unknown suffix, unreadable file, not a dict, a refused pickle global, an
        unsupported chumpy/sparse class, or a wrong shape/dtype (message names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MANO model file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".pkl":
        raw = _load_pickle(path)
    elif suffix == ".npz":
        raw = _load_npz(path)
    else:
        raise ValueError(f"{path}: expected a MANO-format .pkl or .npz file, got suffix {suffix!r}")
    return _validated(raw, path)


def save_mano_dict(mano: dict[str, Any], path: str | os.PathLike[str], *, sparse_j_regressor: bool = False) -> None:
    """Writes a MANO-format file that :func:`load_mano_dict` and body-models both read.

    ``.pkl``: a protocol-2 pickle of a dict of plain numpy arrays (float64; ``f`` uint32 and the
    root parent stored as 2**32-1, as in the release); ``J_regressor`` dense, or a real
    ``scipy.sparse.csc_matrix`` when ``sparse_j_regressor``. ``.npz``: the same arrays, strings
    as 0-d unicode arrays (readable with ``allow_pickle=False``). The file is written to a
    temporary name and renamed, so a reader never sees half a file.

    Args:
      mano: the keys of :data:`REQUIRED_KEYS` (optional keys are filled in as by the loader).
      path: destination ending in ``.pkl`` or ``.npz``.
      sparse_j_regressor: store ``J_regressor`` as scipy CSC (``.pkl`` only).

    Raises:
      KeyError / ValueError: as :func:`load_mano_dict` would for the same content; ValueError
      for an unknown suffix or ``sparse_j_regressor`` with ``.npz``.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".pkl", ".npz"):
        raise ValueError(f"{path}: expected a destination ending in .pkl or .npz, got suffix {suffix!r}")
    if sparse_j_regressor and suffix == ".npz":
        raise ValueError(f"{path}: sparse_j_regressor is only supported for .pkl files")
    data = _validated(dict(mano), f"mano dict for {path}")
    kintree = data["kintree_table"].copy()
    kintree[0, kintree[0] < 0] = ROOT_PARENT_STORED
    data["kintree_table"] = kintree
    data["f"] = data["f"].astype(np.uint32)
    if sparse_j_regressor:
        import scipy.sparse

        data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".mano_tmp_", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            if suffix == ".pkl":
                pickle.dump(data, f, protocol=2)
            else:
                arrays = {k: (np.asarray(v, dtype=np.str_) if isinstance(v, str) else v) for k, v in data.items()}
                np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
