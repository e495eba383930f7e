"""What every entry point shares: topology specs, datasets by name, runs restored from a workdir.

Topology specs (config field `model.topology`):
  builtin                  the shipped built-in hand (default)
  random[:N0,N1,...]       a random hierarchy (benchmarks and tests only)
  official:DIR[:REGRESSOR] the official H2ONet template folder (+ 21 x 778 regressor .npy)
  mano:MANO_RIGHT.pkl      the user's MANO (hierarchy built on the fly, ~10 s)
  PATH.npz                 a topology saved by `h2o_jax.hand.topology.save_topology`

Dataset names (config field `data.name`): `synthetic/tiny|small|default`, `dexycb`, `ho3d_v2`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from h2o_jax.hand.topology import MeshTopology, load_topology


class UserError(Exception):
    """A problem the user fixes (missing file, unprepared dataset, bad config): printed in one line."""


def build_topology(spec: str) -> MeshTopology:
    """The `MeshTopology` named by `spec` (module docstring)."""
    if spec == "builtin":
        from h2o_jax.hand import builtin_topology

        return builtin_topology()
    if spec == "random" or spec.startswith("random:"):
        from h2o_jax.hand.random_topology import random_topology

        return random_topology(tuple(int(n) for n in spec.split(":", 1)[1].split(","))) if ":" in spec \
            else random_topology()
    if spec.startswith("official:"):
        from h2o_jax.hand.official_import import load_official_topology

        parts = spec.split(":")
        return load_official_topology(parts[1], joint_regressor_path=parts[2] if len(parts) > 2 else None)
    if spec.startswith("mano:"):
        from h2o_jax.hand.build_topology import MANO_FINGERTIPS, hand_vertex_parts, topology_from_mano_dict
        from h2o_jax.hand.mano_io import load_mano_dict

        mano = load_mano_dict(spec[len("mano:"):])
        return topology_from_mano_dict(mano, hand_vertex_parts(mano["weights"]), MANO_FINGERTIPS)
    if spec.endswith(".npz"):
        if not os.path.exists(spec):
            raise UserError(f"topology file {spec!r} does not exist")
        return load_topology(spec)
    raise UserError(f"unknown topology spec {spec!r}: use builtin, random[:sizes], official:DIR, mano:PKL or a .npz")


DATASET_GAPS = {"dexycb": 5, "ho3d_v2": 30}  # frames between t, t-k, t-2k (data_formats 2.9, 3.6)


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def open_records(data: ml_collections.ConfigDict, split: str):
    """The random-access frame records of `split`; builds the synthetic data on first use.

    Real datasets must have been prepared (their README commands); otherwise a UserError says how.
    """
    import tensorflow_datasets as tfds

    name = data.name
    data_dir = data.get("data_dir") or default_data_dir()
    if name.startswith("synthetic"):
        import data_loaders.synthetic  # noqa: F401  (registers the builder)

        builder = tfds.builder(name, data_dir=data_dir, num_workers=data.get("build_workers") or None)
        if not builder.is_prepared():
            print(f"generating {name} into {data_dir} (once; later runs reuse it)", flush=True)
            builder.download_and_prepare()
    elif name in DATASET_GAPS:
        if name == "dexycb":
            import data_loaders.dexycb  # noqa: F401
        else:
            import data_loaders.ho3d  # noqa: F401
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            raise UserError(
                f"dataset {name!r} is not prepared in {data_dir}: download it by hand and build it with "
                f"tfds.builder({name!r}, mano_path=...).download_and_prepare(download_config="
                "tfds.download.DownloadConfig(manual_dir=...)) (README 'Data')")
    else:
        raise UserError(f"unknown dataset {name!r}: use synthetic/tiny, synthetic/small, synthetic/default, "
                        "dexycb or ho3d_v2")
    if split not in builder.info.splits:
        raise UserError(f"dataset {name!r} has no split {split!r} (it has {sorted(builder.info.splits)})")
    return builder.as_data_source(split)


def sample_source(data: ml_collections.ConfigDict, split: str, train: bool):
    """A `data_loaders.pipeline.SampleSource` of triplets over `split`."""
    from data_loaders.pipeline import SampleSource
    from data_loaders.triplets import HO3D_JITTER, DEXYCB_JITTER

    records = open_records(data, split)
    jitter = HO3D_JITTER if data.name == "ho3d_v2" else DEXYCB_JITTER
    return SampleSource(records, gap=int(data.gap), policy=data.triplet_policy,
                        train_jitter=train and bool(data.train_jitter), jitter=jitter)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a training run wrote to `<workdir>/config.json`."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} holds no config.json: is it a training workdir "
                        "(`python -m experiments.train --workdir ...`) or a converted checkpoint?")
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_run(workdir: str, which: str = "best") -> tuple[ml_collections.ConfigDict, Any, Any, int]:
    """(config, model, variables {params, batch_stats}, step) of a run's `best` or `latest` checkpoint
    (falls back to latest when no evaluation has produced a best one)."""
    from experiments.checkpointing import Checkpoints
    from h2o_jax.config import model_config_for
    from h2o_jax.nn import H2ONet

    config = load_run_config(workdir)
    topology = build_topology(config.model.topology)
    model = H2ONet(topology, model_config_for(config.model.variant, width_divisor=config.model.width_divisor))
    checkpoints = Checkpoints(workdir, keep=config.train.keep_checkpoints)
    try:
        variables, step = checkpoints.restore_variables(best=which == "best")
    except FileNotFoundError as err:
        raise UserError(f"{err}: train first (python -m experiments.train) or check --workdir") from None
    finally:
        checkpoints.close()
    return config, model, variables, step
