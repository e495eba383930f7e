"""A trained run as a small folder for others: weights only, loadable wherever a workdir is.

    python -m experiments.publish --workdir runs/study/mf_full --out models/synthetic/multi_frame

Writes to `--out`: the run's `config.json` and `topology.npz` (copied), `weights.npz` (the
best checkpoint's params and BatchNorm statistics, float32, flat keys "params/..." and
"batch_stats/...": no optimiser state, about a third of a checkpoint) and `published.json` (the
source run, its step), and with `--check-limit N` `check.json` (the folder's metrics on the
first N samples of the evaluation split, for a test to reproduce). `experiments.evaluate`,
`experiments.demo` and `experiments.benchmark` take the folder as `--workdir`
(`experiments.common.restore_variables` reads `weights.npz` when the folder has no checkpoints). Resuming training from it is not possible (no optimiser
state); `train.init_from` accepts it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import traverse_util

WEIGHTS_FILE = "weights.npz"
PUBLISHED_FILE = "published.json"
CHECK_FILE = "check.json"
_SEP = "/"


def save_weights(path: str, variables: dict[str, Any]) -> int:
    """Writes {params, batch_stats} to `path` (npz, float32 arrays); returns the file's bytes."""
    flat = traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats")}, sep=_SEP)
    arrays = {}
    for key, value in flat.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32)
        arrays[key] = value
    with open(path, "wb") as file:
        np.savez_compressed(file, **arrays)
    return os.path.getsize(path)


def load_weights(path: str) -> dict[str, Any]:
    """{params, batch_stats} nested dicts of numpy arrays from a `save_weights` file."""
    with np.load(path) as data:
        flat = {key: data[key] for key in data.files}
    missing = {"params", "batch_stats"} - {key.split(_SEP, 1)[0] for key in flat}
    if missing:
        raise ValueError(f"{path} holds no {sorted(missing)} arrays: not a file written by experiments.publish")
    return traverse_util.unflatten_dict(flat, sep=_SEP)


def published_step(workdir: str) -> int:
    """The training step of a published folder's weights (0 when published.json is absent)."""
    path = os.path.join(workdir, PUBLISHED_FILE)
    if not os.path.exists(path):
        return 0
    with open(path) as file:
        return int(json.load(file)["step"])


def publish(workdir: str, out_dir: str, which: str = "best", check_limit: int = 0) -> dict[str, Any]:
    """Copies a run's config and topology and writes its weights to `out_dir`; returns the
    published.json record. `check_limit` > 0 also scores the published folder on the first that
    many samples of the run's evaluation split and keeps the metrics in `check.json` (what a test
    reproduces later from the folder alone)."""
    from experiments.common import TOPOLOGY_FILE, UserError, restore_run

    if os.path.abspath(workdir) == os.path.abspath(out_dir):
        raise UserError(f"--out must differ from --workdir ({workdir!r})")
    _, _, variables, step = restore_run(workdir, which)
    os.makedirs(out_dir, exist_ok=True)
    for name in ("config.json", TOPOLOGY_FILE):
        shutil.copyfile(os.path.join(workdir, name), os.path.join(out_dir, name))
    size = save_weights(os.path.join(out_dir, WEIGHTS_FILE), variables)
    record = {"source_workdir": os.path.normpath(workdir), "checkpoint": which, "step": int(step),
              "weights_bytes": size}
    with open(os.path.join(out_dir, PUBLISHED_FILE), "w") as file:
        json.dump(record, file, indent=1)
    print(f"published {workdir} ({which}, step {step}) to {out_dir}: {WEIGHTS_FILE} {size / 1e6:.1f} MB")
    if check_limit > 0:
        import tempfile

        from experiments.evaluate import run_evaluation

        with tempfile.TemporaryDirectory() as scratch:
            report = run_evaluation(out_dir, limit=check_limit, out_dir=scratch)
        check = {key: report[key] for key in ("dataset", "split", "step", "num_labelled", "overall", "by_occlusion")}
        check["limit"] = check_limit
        with open(os.path.join(out_dir, CHECK_FILE), "w") as file:
            json.dump(check, file, indent=1)
    return record


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m experiments.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training run directory (config.json + checkpoints)")
    parser.add_argument("--out", required=True, help="output folder, e.g. models/synthetic/multi_frame")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.add_argument("--check-limit", type=int, default=0,
                        help="also score the folder on the first N samples of the evaluation split into check.json")
    args = parser.parse_args(argv)
    from experiments.common import UserError

    try:
        return publish(args.workdir, args.out, args.checkpoint, args.check_limit)
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
