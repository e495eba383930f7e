"""Import official PyTorch H2ONet checkpoints (single- and multi-frame) into this port: the
mapping between official state dicts and our variables (numpy arrays, no PyTorch needed) and the
`.pth` reader (PyTorch: `pip install '.[convert]'`).

The command line that turns a `.pth` into a work directory is `python -m experiments.convert`
(experiments/convert.py): this library module does not depend on the application layer.

Which network: the official single-frame `H2ONet_SF` is our variant "single_frame"; the official
multi-frame `H2ONet_MF` is "B+D+MF+FO+HO" with the default (official) switches of `ModelConfig`.

Layer correspondence (official state-dict name -> our variable; built by `official_name` from our
own parameter tree, so every name of the official network has exactly one place here):

| official | ours | layout |
|---|---|---|
| `mano_joint_reg` | params `mano_joint_reg` | [21, 778] as is |
| `decoder3d.upsample` (lifting P) | params `decoder3d/upsample` | [49, 21] as is |
| `backbone.X.i...` (Sequential / ModuleList index) | `backbone/X_i/...` | |
| conv_layer `.0` / `.1` | `conv` / `bn` | Conv2d O,I,kh,kw -> kh,kw,I,O (depthwise C,1,3,3 -> 3,3,1,C) |
| SE linear_layer `fc1.0` / `fc1.1` | `fc1/linear` / `fc1/bn` | Linear O,I -> I,O |
| `mid_proj.0`, `reduce.0`, `decoder3d.de_layer_conv.0` | `mid_proj`, `reduce`, `decoder3d/de_layer_conv` | conv, no BN |
| `uv_reg.i.0` | `uv_reg_i` | Linear, no BN, no bias |
| `decoder3d.de_layer.i.conv.layer`, `decoder3d.head.layer` | `decoder3d/de_layer_i/layer`, `decoder3d/head/layer` | spiral Linear(9C, C') -> [9C, C'] (both neighbour-major: input k*C + c) |
| `decoder3d.rot_reg.conv_block.{0,2}` | `rot_reg/conv_block_{0,2}` | Conv1d(k=1) O,I,1 -> I,O |
| `decoder3d.rot_reg.{pre_block,fc_block,fc_block1,fc_block2}.i` | `rot_reg/..._i` | Linear O,I -> I,O |
| `decoder3d.occ_pred.pre_layer.{0,3}` / `.{1,4}` | `occ_pred/pre_layer_{0,3}` / `_{1,4}` | Conv1d(k=1) -> I,O / BN |
| `decoder3d.occ_pred.{base_layer,glob_cls_layer,finger_cls_layer_list.k}.i` | `occ_pred/..._i` (`finger_cls_layer_list_k_i`) | Linear / BN |
| `decoder3d.offset_pred.block.i.layer`, `.head.layer` | `offset_pred/block_i/layer`, `offset_pred/head/layer` | spiral Linear |
| BatchNorm `weight`, `bias` | params `scale`, `bias` | as is |
| BatchNorm `running_mean`, `running_var` | batch_stats `mean`, `var` | as is |

Official entries with no counterpart (accepted and dropped, see `dropped_entries`):
`*.num_batches_tracked` (BatchNorm step counters; our BatchNorm has a fixed momentum);
`backbone.dense_stack1.senet3.*` (built but never executed by the official network);
`decoder3d.occ_pred.finger_cls_layer.*` (an alias of `finger_cls_layer_list.4.*`: checked equal);
`mano_layer.*` (manopth MANO buffers of real checkpoints: model data, not network weights) and
`mano_joint_reg_copy` (an unused duplicate of the regressor some upstream versions register).
The spiral tables and up-sampling matrices are not in any state dict: they come from the topology
(the official template folder via `h2o_jax.hand.official_import.load_official_topology`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.nn import H2ONet

SINGLE_FRAME_VARIANT = "single_frame"
MULTI_FRAME_VARIANT = "B+D+MF+FO+HO"

# Official entries that have no counterpart here (module docstring).
_DROPPED_PREFIXES = ("backbone.dense_stack1.senet3.", "mano_layer.")
_DROPPED_NAMES = ("mano_joint_reg_copy",)
_ALIAS_PREFIX = "decoder3d.occ_pred.finger_cls_layer."
_ALIAS_TARGET_PREFIX = "decoder3d.occ_pred.finger_cls_layer_list.4."
# Sub-modules of the official decoder that our model keeps at the top level.
_DECODER_CHILDREN_AT_TOP = ("occ_pred", "offset_pred", "rot_reg")
# conv_layer / linear_layer blocks built without BatchNorm: the official name keeps the Sequential
# index `.0` of the lone Conv/Linear, our module holds the kernel directly.
_BARE_BLOCK = re.compile(r"^(mid_proj|reduce|de_layer_conv|uv_reg_\d+)$")
_LEAF_TO_OFFICIAL = {"kernel": "weight", "scale": "weight", "bias": "bias",
                     "mean": "running_mean", "var": "running_var"}
_MAX_LISTED = 200  # per category; a wholly different network would list ~900


@dataclass(frozen=True)
class Entry:
    """Where one official state-dict entry lives here.

    Attributes:
      collection: "params" or "batch_stats".
      path: key path inside that collection.
      shape: our shape (Flax layout).
      official_shape: the PyTorch shape of the entry.
    """

    collection: str
    path: tuple[str, ...]
    shape: tuple[int, ...]
    official_shape: tuple[int, ...]


def _is_conv1d(path: tuple[str, ...]) -> bool:
    """Dense kernels that the official network stores as Conv1d(k=1) weights [O, I, 1]."""
    return path[-1] == "kernel" and (
        (path[0] == "rot_reg" and path[1].startswith("conv_block_"))
        or (path[0] == "occ_pred" and path[1].startswith("pre_layer_")))


def official_name(collection: str, path: Sequence[str]) -> str:
    """The official state-dict name of our variable `collection`/`path` (module docstring table).

    Raises ValueError for a collection other than params/batch_stats or an empty path.
    """
    if collection not in ("params", "batch_stats"):
        raise ValueError(f"collection must be 'params' or 'batch_stats', got {collection!r}")
    path = tuple(path)
    if not path:
        raise ValueError("path must name a variable, got an empty path")
    parts: list[str] = []
    if path[0] in _DECODER_CHILDREN_AT_TOP:
        parts.append("decoder3d")
    *modules, leaf = path
    for depth, module in enumerate(modules):
        if module in ("conv", "linear"):  # conv_layer / linear_layer Sequential index 0
            parts.append("0")
        elif module == "bn":  # ... and the BatchNorm at index 1
            parts.append("1")
        else:
            # A Sequential/ModuleList index `X.i` is spelled `X_i` here.
            parts.append(re.sub(r"_(\d+)(?=_|$)", r".\1", module))
            if _BARE_BLOCK.match(module):
                parts.append("0")
            elif path[0] == "decoder3d" and depth == 1 and re.fullmatch(r"de_layer_\d+", module):
                parts.append("conv")  # SpiralDeblock.conv (our deblock holds the SpiralConv)
    parts.append(_LEAF_TO_OFFICIAL.get(leaf, leaf) if modules else leaf)
    return ".".join(parts)


def official_layout_shape(path: Sequence[str], shape: Sequence[int]) -> tuple[int, ...]:
    """PyTorch shape of our variable of `shape` at `path`."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 4:  # kh, kw, I, O -> O, I, kh, kw
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2 and path[-1] == "kernel":  # I, O -> O, I (x 1 for Conv1d)
        return (shape[1], shape[0], 1) if _is_conv1d(tuple(path)) else (shape[1], shape[0])
    return shape


def to_flax_layout(value: np.ndarray, path: Sequence[str]) -> np.ndarray:
    """An official tensor (PyTorch layout) -> our layout for the variable at `path`."""
    value = np.asarray(value)
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if path[-1] == "kernel" and value.ndim == 3:  # Conv1d(k=1)
        return value[:, :, 0].T
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T
    return value


def to_torch_layout(value: np.ndarray, path: Sequence[str]) -> np.ndarray:
    """Our variable at `path` -> the official PyTorch layout (inverse of `to_flax_layout`)."""
    value = np.asarray(value)
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T[:, :, None] if _is_conv1d(tuple(path)) else value.T
    return value


def _abstract_variables(model: H2ONet) -> dict[str, Any]:
    frames = model.config.num_frames
    images = jax.ShapeDtypeStruct((2, frames, 128, 128, 3), jnp.float32)
    occ_labels = jax.ShapeDtypeStruct((2, frames, 6), jnp.int32)
    return jax.eval_shape(lambda x, o: model.init(jax.random.key(0), x, train=True, occ_labels=o),
                          images, occ_labels)


_ENTRIES_CACHE: dict[Any, dict[str, Entry]] = {}


def official_entries(model: H2ONet) -> dict[str, Entry]:
    """Every official state-dict entry that `model` holds, by official name, in our tree order."""
    # The variable shapes depend only on the config and the topology's array shapes: memoise on
    # those (tracing the full network takes seconds).
    key = (model.config, tuple(np.shape(x) for x in jax.tree.leaves(model.topology)))
    if key not in _ENTRIES_CACHE:
        _ENTRIES_CACHE[key] = _build_entries(model)
    return dict(_ENTRIES_CACHE[key])


def _build_entries(model: H2ONet) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for collection, tree in _abstract_variables(model).items():
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            path = tuple(k.key for k in key_path)
            name = official_name(collection, path)
            if name in entries:  # would mean two of our variables claim one official name
                raise AssertionError(f"official name {name!r} is claimed twice ({entries[name].path}, {path})")
            entries[name] = Entry(collection, path, tuple(leaf.shape), official_layout_shape(path, leaf.shape))
    return entries


def is_dropped(name: str) -> bool:
    """Whether `name` is an official entry with no counterpart here (module docstring)."""
    return (name.endswith(".num_batches_tracked") or name.startswith(_DROPPED_PREFIXES)
            or name in _DROPPED_NAMES or name.startswith(_ALIAS_PREFIX))


def dropped_entries(names: Sequence[str]) -> list[str]:
    """The names among `names` that `state_dict_to_variables` accepts but does not map."""
    return [n for n in names if is_dropped(n)]


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def _check_model(model: Any, multi_frame: bool) -> None:
    if not isinstance(model, H2ONet):
        raise ValueError(f"model must be an h2o_jax.nn.H2ONet, got {type(model).__name__}")
    if model.config.multi_frame != multi_frame:
        want = MULTI_FRAME_VARIANT if multi_frame else SINGLE_FRAME_VARIANT
        raise ValueError(
            f"multi_frame={multi_frame} but the model has num_frames={model.config.num_frames}: build "
            f"the model with model_config_for({want!r})")


def state_dict_to_variables(state_dict: Mapping[str, Any], model: H2ONet, *,
                            multi_frame: bool) -> dict[str, Any]:
    """Maps an official H2ONet state dict onto `model`'s variables.

    Args:
      state_dict: official name -> array (numpy, or anything `np.asarray` reads: CPU torch
        tensors), without the DataParallel `module.` prefix (`strip_checkpoint` removes it).
      model: the H2ONet to fill (variant "single_frame" or "B+D+MF+FO+HO", width_divisor 1); its
        topology sets the level sizes and must be the official hierarchy.
      multi_frame: whether the state dict is the official multi-frame network.

    Returns:
      {"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays in our layout.

    Raises:
      ValueError listing every missing, unexpected, mis-shaped, non-float or non-finite entry (all
      problems at once), an alias that differs from its target, or a model of the other kind.
    """
    _check_model(model, multi_frame)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
    bad_keys = [repr(k) for k in state_dict if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"state_dict keys must be strings, got {', '.join(bad_keys[:10])}")
    entries = official_entries(model)
    missing = [name for name in entries if name not in state_dict]
    unexpected = [name for name in state_dict if name not in entries and not is_dropped(name)]
    misshaped, wrong_dtype, non_finite = [], [], []
    variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for name, entry in entries.items():
        if name not in state_dict:
            continue
        value = np.asarray(state_dict[name])
        if tuple(value.shape) != entry.official_shape:
            misshaped.append(f"{name}: expected {_shape_text(entry.official_shape)}, got {_shape_text(value.shape)}")
            continue
        if not np.issubdtype(value.dtype, np.floating):
            wrong_dtype.append(f"{name}: expected a float tensor, got {value.dtype}")
            continue
        if not np.all(np.isfinite(value)):
            non_finite.append(name)
            continue
        node = variables[entry.collection]
        for key in entry.path[:-1]:
            node = node.setdefault(key, {})
        node[entry.path[-1]] = np.ascontiguousarray(to_flax_layout(value, entry.path), dtype=np.float32)
    alias_problems = _check_alias(state_dict)
    if missing or unexpected or misshaped or wrong_dtype or non_finite or alias_problems:
        sections = [_listing(title, items) for title, items in (
            ("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped),
            ("wrong dtype", wrong_dtype), ("non-finite values", non_finite),
            ("alias differs from finger_cls_layer_list.4", alias_problems)) if items]
        kind = "multi-frame" if multi_frame else "single-frame"
        raise ValueError(f"state_dict does not match the official {kind} H2ONet:{_kind_hint(state_dict, multi_frame)}\n"
                         + "\n".join(sections))
    return variables


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape) if len(shape) else "scalar"


def _kind_hint(state_dict: Mapping[str, Any], multi_frame: bool) -> str:
    if not multi_frame and "decoder3d.rot_reg.fc_block1.0.weight" in state_dict:
        return " (it looks like the multi-frame network: pass multi_frame=True / --multi-frame)"
    if multi_frame and "decoder3d.rot_reg.fc_block.0.weight" in state_dict:
        return " (it looks like the single-frame network: drop multi_frame / --multi-frame)"
    return ""


def _check_alias(state_dict: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in state_dict:
        if name.startswith(_ALIAS_PREFIX) and not name.endswith(".num_batches_tracked"):
            target = _ALIAS_TARGET_PREFIX + name[len(_ALIAS_PREFIX):]
            if target in state_dict:
                a, b = np.asarray(state_dict[name]), np.asarray(state_dict[target])
                if a.shape != b.shape or not np.array_equal(a, b):
                    problems.append(f"{name} != {target}")
    return problems


def variables_to_state_dict(variables: Mapping[str, Any], *, multi_frame: bool) -> dict[str, np.ndarray]:
    """The exact inverse of `state_dict_to_variables` on the mapped entries.

    Args:
      variables: {"params": ..., "batch_stats": ...} of a single-frame or multi-frame model.
      multi_frame: adds the `decoder3d.occ_pred.finger_cls_layer.*` alias (a copy of
        `finger_cls_layer_list.4.*`) as the official multi-frame state dict has it.

    Returns:
      official name -> float32 numpy array in PyTorch layout. Entries that carry no information
      here (`num_batches_tracked`, the never-executed `dense_stack1.senet3`, MANO buffers) are
      not produced.
    """
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError("variables must be a mapping with 'params' (and 'batch_stats')")
    out: dict[str, np.ndarray] = {}
    for collection in ("params", "batch_stats"):
        tree = variables.get(collection, {})
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            path = tuple(k.key for k in key_path)
            out[official_name(collection, path)] = np.asarray(
                to_torch_layout(np.asarray(leaf, np.float32), path))
    if multi_frame:
        for name in [n for n in out if n.startswith(_ALIAS_TARGET_PREFIX)]:
            out[_ALIAS_PREFIX + name[len(_ALIAS_TARGET_PREFIX):]] = out[name].copy()
    return out


# -- checkpoint files ---------------------------------------------------------------------------

_WRAPPER_KEYS = ("state_dict", "model", "net")


def strip_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint: a raw state dict, or a dict holding it under
    'state_dict' / 'model' / 'net' (the official trainer saves {'state_dict': ..., 'optimizer': ...});
    the DataParallel 'module.' prefix is removed."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    state = checkpoint
    for key in _WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    if not state or not all(isinstance(k, str) for k in state):
        raise ValueError(
            f"checkpoint holds no state dict: expected name -> tensor entries or a dict with one of "
            f"{list(_WRAPPER_KEYS)}, got keys {list(checkpoint)[:10]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def load_torch_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads an official .pth (weights only, on CPU) and returns its state dict as numpy arrays."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "reading .pth checkpoints needs PyTorch: pip install '.[convert]' (or pip install torch)") from error
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    # The official trainer also pickles its score dict, which may hold numpy floats.
    allowed = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64))]
    try:
        allowed.append(np._core.multiarray.scalar)
    except AttributeError:  # numpy < 2
        allowed.append(np.core.multiarray.scalar)
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError/RuntimeError subclasses
        raise ValueError(
            f"checkpoint {path!r} cannot be read with torch.load(weights_only=True): {error}. If you "
            "trust the file, re-save only its state dict with torch.save(torch.load(path, "
            "weights_only=False)['state_dict'], 'weights.pth') and convert that") from error
    state = strip_checkpoint(checkpoint)
    arrays = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint {path!r}: entry {name!r} is a {type(value).__name__}, not a tensor")
        arrays[name] = value.detach().cpu().numpy()
    return arrays


def build_train_state(model: H2ONet, variables: Mapping[str, Any], optim: Any = None):
    """TrainState at step 0 holding `variables` with a freshly initialised optimiser state
    (the optimiser of `experiments.train`, so a training run can resume from it)."""
    from h2o_jax.training import OptimConfig, TrainState, make_optimizer

    optimizer = make_optimizer(optim or OptimConfig(), steps_per_epoch=1)
    params, batch_stats = jax.device_put((variables["params"], variables["batch_stats"]))
    # Adam's fresh state is all zeros (moments and step counts): build it from the state's shapes
    # instead of dispatching ~1000 zeros_like one by one (or compiling them), seconds on CPU.
    opt_shapes = jax.eval_shape(optimizer.init, params)
    opt_state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), opt_shapes)
    return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, opt_state)
