"""Convert an official PyTorch H2ONet checkpoint into a work directory of this port.

    python -m experiments.convert CHECKPOINT.pth OUT_DIR --template-dir DIR [--joint-regressor FILE]
        [--multi-frame]

writes OUT_DIR/config.json (with the topology's sha256, as a training run records it),
OUT_DIR/topology.npz and an orbax checkpoint at step 0 (OUT_DIR/checkpoints/latest/0, items
`state` and `data`), the layout of a training work directory, so every tool that restores a run
restores the converted weights. PyTorch is needed to read the `.pth` (`pip install
'.[convert]'`). The mapping itself (layer table, checks) is `h2o_jax.convert`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from experiments.checkpointing import Checkpoints
from experiments.common import TOPOLOGY_FILE, save_run_topology, write_run_config
from experiments.configs.default import get_config
from h2o_jax.config import model_config_for
from h2o_jax.convert import (MULTI_FRAME_VARIANT, SINGLE_FRAME_VARIANT, build_train_state, load_torch_checkpoint,
                             state_dict_to_variables)
from h2o_jax.hand.official_import import load_official_topology
from h2o_jax.hand.topology import topology_hash
from h2o_jax.nn import H2ONet
from h2o_jax.training import OptimConfig


def convert_checkpoint(checkpoint_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       template_dir: str | os.PathLike[str], *,
                       joint_regressor_path: str | os.PathLike[str] | None = None,
                       multi_frame: bool = False) -> str:
    """The command line's work (module docstring); returns the absolute OUT_DIR.

    Without `joint_regressor_path` the topology takes the checkpoint's own `mano_joint_reg` (the
    learnt regressor the official network uses). Nothing is written unless the conversion succeeds.
    """
    state_dict = load_torch_checkpoint(checkpoint_path)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.isdir(os.path.join(out_dir, "checkpoints")):
        raise ValueError(f"{out_dir!r} already holds checkpoints: choose a new OUT_DIR")
    with tempfile.TemporaryDirectory() as scratch:
        regressor_path = joint_regressor_path
        if regressor_path is None:
            if "mano_joint_reg" not in state_dict:
                raise KeyError(
                    f"checkpoint {os.fspath(checkpoint_path)!r} has no 'mano_joint_reg': pass --joint-regressor")
            regressor_path = os.path.join(scratch, "joint_regressor.npy")
            np.save(regressor_path, np.asarray(state_dict["mano_joint_reg"], np.float32))
        topology = load_official_topology(template_dir, joint_regressor_path=regressor_path)
    variant = MULTI_FRAME_VARIANT if multi_frame else SINGLE_FRAME_VARIANT
    model = H2ONet(topology, model_config_for(variant))
    # Everything is checked before OUT_DIR is written.
    variables = state_dict_to_variables(state_dict, model, multi_frame=multi_frame)

    os.makedirs(out_dir, exist_ok=True)
    save_run_topology(out_dir, topology)
    config = get_config()
    config.model.variant = variant
    config.model.width_divisor = 1
    config.model.topology = os.path.join(out_dir, TOPOLOGY_FILE)
    with config.unlocked():
        config.converted_from = os.path.abspath(os.fspath(checkpoint_path))
    optim = OptimConfig(learning_rate=config.optim.learning_rate,
                        milestones_epochs=tuple(config.optim.milestones_epochs),
                        decay=config.optim.decay, grad_clip_norm=config.optim.grad_clip_norm)
    state = build_train_state(model, variables, optim)
    write_run_config(out_dir, config, topology_hash(topology))
    checkpoints = Checkpoints(out_dir, keep=config.train.keep_checkpoints)
    checkpoints.save(0, state, None)
    checkpoints.wait()
    checkpoints.close()
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.convert",
        description="Convert an official PyTorch H2ONet checkpoint into an h2o_jax work directory.")
    parser.add_argument("checkpoint", help="official .pth (raw state dict or {'state_dict': ...})")
    parser.add_argument("out_dir", help="new work directory: config.json, topology.npz, checkpoints/")
    parser.add_argument("--template-dir", required=True,
                        help="official template folder (template.ply, transform.pkl)")
    parser.add_argument("--joint-regressor", default=None,
                        help="[21, 778] .npy for the topology (default: the checkpoint's mano_joint_reg)")
    parser.add_argument("--multi-frame", action="store_true", help="the checkpoint is the multi-frame H2ONet_MF")
    args = parser.parse_args(argv)
    try:
        out = convert_checkpoint(args.checkpoint, args.out_dir, args.template_dir,
                                 joint_regressor_path=args.joint_regressor, multi_frame=args.multi_frame)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"out_dir": out, "variant": MULTI_FRAME_VARIANT if args.multi_frame else SINGLE_FRAME_VARIANT}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
