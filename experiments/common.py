"""What every entry point shares: topology specs, datasets by name, runs restored from a workdir.

Topology specs (config field `model.topology`):
  builtin                  the shipped built-in hand (default)
  random[:N0,N1,...]       a random hierarchy (benchmarks and tests only)
  official:DIR[:REGRESSOR] the official H2ONet template folder (+ 21 x 778 regressor .npy)
  mano:MANO_RIGHT.pkl      the user's MANO (hierarchy built on the fly, ~10 s)
  PATH.npz                 a topology saved by `h2o_jax.hand.topology.save_topology`

Dataset names (config field `data.name`): `synthetic/tiny|small|default`, `dexycb`, `ho3d_v2`.

A run directory holds `config.json` (with `model.topology_sha256`, the `topology_hash` of the
topology it trained with), `topology.npz` (that topology) and `checkpoints/`. Every restore
uses the saved topology: rebuilding a `mano:` spec can give another hierarchy on a machine whose
BLAS kernels differ.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import ml_collections

from h2o_jax.hand.topology import MeshTopology, load_topology, save_topology, topology_hash

TOPOLOGY_FILE = "topology.npz"


class UserError(Exception):
    """A problem the user fixes (missing file, unprepared dataset, bad config): printed in one line."""


def build_topology(spec: str) -> MeshTopology:
    """The `MeshTopology` named by `spec` (module docstring); a file that cannot be read is a
    UserError naming the spec."""
    try:
        return _build_topology(spec)
    except (FileNotFoundError, KeyError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"topology {spec!r}: {reason}") from None


def _build_topology(spec: str) -> MeshTopology:
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


# Frames between t, t-k, t-2k (data_formats 2.9, 3.6; synthetic as experiments/configs/synthetic.py).
DATASET_GAPS = {"dexycb": 5, "ho3d_v2": 30, "synthetic": 3}


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
    elif name in ("dexycb", "ho3d_v2"):
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
    if name.startswith("synthetic"):
        advice = f"delete {builder.data_dir} and rerun: the data is generated again"
    else:
        advice = f"delete {builder.data_dir} and prepare the dataset again (README 'Data')"
    return CheckedRecords(builder.as_data_source(split), f"{name!r} split {split!r}", advice)


class CheckedRecords:
    """Records of one split whose read errors (a truncated or missing shard file) become a
    one-line UserError naming the dataset, split, record, file and what to do."""

    def __init__(self, records, what: str, advice: str) -> None:
        self.records, self.what, self.advice = records, what, advice

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        try:
            return self.records[index]
        except IndexError:
            raise
        except Exception as err:  # noqa: BLE001  (whatever the storage layer raises)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"cannot read record {index} of {self.what} in {self._file(index)}: {reason}; the "
                            f"prepared data is damaged: {self.advice}") from None

    def _file(self, index: int) -> str:
        """The shard file holding record `index` (TFDS sources list their files in order)."""
        try:
            instructions = self.records.dataset_info.splits[self.records.split].file_instructions
        except (AttributeError, KeyError, TypeError):
            return "its files"
        for instruction in instructions:
            if index < instruction.take:
                return instruction.filename
            index -= instruction.take
        return "its files"


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


def write_run_config(workdir: str, config: ml_collections.ConfigDict, digest: str) -> None:
    """Writes `<workdir>/config.json`: `config` plus `model.topology_sha256` (atomically)."""
    content = json.loads(config.to_json_best_effort())
    content["model"]["topology_sha256"] = digest
    path = os.path.join(workdir, "config.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2)
    os.replace(path + ".tmp", path)


def save_run_topology(workdir: str, topology: MeshTopology) -> None:
    """Writes `<workdir>/topology.npz` atomically (a kill leaves the old file or the new one)."""
    path = os.path.join(workdir, TOPOLOGY_FILE)
    save_topology(topology, path + ".tmp.npz")
    os.replace(path + ".tmp.npz", path)


def run_topology(workdir: str) -> tuple[MeshTopology, str, str] | None:
    """(topology, sha256, spec) a run trained with: its topology.npz, checked against the hash
    in its config.json; None for a run that records no hash (made before runs saved it)."""
    config = load_run_config(workdir)
    digest = config.model.get("topology_sha256")
    if not digest:
        return None
    path = os.path.join(workdir, TOPOLOGY_FILE)
    if not os.path.exists(path):
        raise UserError(f"{path!r} is missing: {workdir}/config.json records the topology sha256 {digest[:12]}..., "
                        "put the run's topology.npz back")
    try:
        topology = load_topology(path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(f"{path!r} cannot be read ({type(err).__name__}: {err}): put the run's topology.npz "
                        "back") from None
    if topology_hash(topology) != digest:
        raise UserError(f"{path!r} is not the topology recorded in {workdir}/config.json (sha256 "
                        f"{topology_hash(topology)[:12]}... != {digest[:12]}...): the file was changed or damaged")
    return topology, digest, config.model.topology


def require_topology(spec: str, digest: str, owner: str, hint: str) -> None:
    """Refuses a topology given explicitly (`spec`) whose hash is not `digest` (`owner`'s)."""
    given = topology_hash(build_topology(spec))
    if given != digest:
        raise UserError(f"topology {spec!r} (sha256 {given[:12]}...) is not the one {owner} trained with "
                        f"({digest[:12]}...): {hint}")


def _legacy_topology(workdir: str, spec: str) -> MeshTopology:
    print(f"warning: {workdir}/config.json records no topology hash (a run from before runs saved their "
          f"topology): rebuilding it from {spec!r}, which for a mano: spec can differ between machines",
          flush=True)
    return build_topology(spec)


def training_topology(config: ml_collections.ConfigDict, workdir: str) -> tuple[MeshTopology, str]:
    """(topology, sha256) a training run uses, saved as `<workdir>/topology.npz`.

    A workdir that already has one (a resumed run) keeps it, and so does a stage-2 run with the
    topology of its `train.init_from` run; `config.model.topology` is then only checked (rebuilt
    and hashed when it differs from the spec the run recorded) and refused when it differs.
    """
    spec = config.model.topology
    sources = [(workdir, f"use --config.model.topology={os.path.join(workdir, TOPOLOGY_FILE)} "
                         "(or a new --workdir)")]
    init_from = config.train.get("init_from", "")
    if init_from:
        sources.append((init_from, f"use --config.model.topology={os.path.join(init_from, TOPOLOGY_FILE)}"))
    for run_dir, hint in sources:
        recorded = run_topology(run_dir) if os.path.exists(os.path.join(run_dir, "config.json")) else None
        if recorded is not None:
            topology, digest, recorded_spec = recorded
            if spec != recorded_spec:
                require_topology(spec, digest, f"the run in {run_dir!r}", hint)
            break
    else:
        has_run = os.path.isdir(os.path.join(workdir, "checkpoints"))
        topology = _legacy_topology(workdir, spec) if has_run else build_topology(spec)
        digest = topology_hash(topology)
    if not os.path.exists(os.path.join(workdir, TOPOLOGY_FILE)):
        save_run_topology(workdir, topology)
    return topology, digest


def restore_variables(workdir: str, which: str = "best", what: str = "") -> tuple[Any, int]:
    """({params, batch_stats}, step) of a run's `best` or `latest` checkpoint (latest when no
    evaluation has produced a best one). A folder written by `experiments.publish` (weights.npz,
    no checkpoints) gives its published weights for either `which`."""
    from experiments.checkpointing import Checkpoints
    from experiments.publish import WEIGHTS_FILE, load_weights, published_step

    weights = os.path.join(workdir, WEIGHTS_FILE)
    if os.path.exists(weights) and not os.path.isdir(os.path.join(workdir, "checkpoints")):
        try:
            return load_weights(weights), published_step(workdir)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise UserError(f"{weights!r} cannot be read ({type(err).__name__}: {err})") from None
    checkpoints = Checkpoints(workdir, keep=1_000_000)  # reading only: no save prunes anything
    try:
        return checkpoints.restore_variables(best=which == "best")
    except FileNotFoundError as err:
        prefix = f"{what}: " if what else ""
        raise UserError(f"{prefix}{err}: train first (python -m experiments.train) or check --workdir") from None
    finally:
        checkpoints.close()


def model_config_from(config: ml_collections.ConfigDict):
    """The `h2o_jax.config.ModelConfig` of a run config (`model.variant`, `width_divisor`,
    `template_residual`, `sf_root_grad`, `scratch_encoder`, `stack_out_channels`,
    `occlusion_guidance`, `enquiry_rotation`, `gate_logit_offset`, `hand_reading`; runs saved
    before a field existed get its default)."""
    from h2o_jax.config import model_config_for

    return model_config_for(config.model.variant, width_divisor=config.model.width_divisor,
                            template_residual=bool(config.model.get("template_residual", False)),
                            sf_root_grad=bool(config.model.get("sf_root_grad", True)),
                            scratch_encoder=bool(config.model.get("scratch_encoder", False)),
                            stack_out_channels=int(config.model.get("stack_out_channels", 0)),
                            occlusion_guidance=str(config.model.get("occlusion_guidance", "predicted")),
                            enquiry_rotation=str(config.model.get("enquiry_rotation", "offset")),
                            gate_logit_offset=float(config.model.get("gate_logit_offset", 0.0)),
                            hand_reading=str(config.model.get("hand_reading", "A")))


# Model switches that change what a trained network computes at inference, not its parameters:
# `--model-set` of evaluate / study / enquiry_oracle may override them on a restored run.
INFERENCE_SWITCHES = {"enquiry_rotation": str, "gate_logit_offset": float, "hand_reading": str}


def parse_model_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["key=value", ...] -> {key: typed value} for the keys of INFERENCE_SWITCHES."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.removeprefix("model.")
        if not sep or key not in INFERENCE_SWITCHES:
            raise UserError(f"--model-set takes KEY=VALUE with KEY one of {sorted(INFERENCE_SWITCHES)}; got {item!r}")
        try:
            overrides[key] = INFERENCE_SWITCHES[key](value)
        except ValueError:
            raise UserError(f"--model-set {item!r}: {value!r} is not a {INFERENCE_SWITCHES[key].__name__}") from None
    return overrides


def restore_run(workdir: str, which: str = "best", topology: str | None = None,
                model_overrides: dict[str, Any] | None = None) -> tuple[ml_collections.ConfigDict, Any, Any, int]:
    """(config, model, variables {params, batch_stats}, step) of a run's `best` or `latest` checkpoint
    (falls back to latest when no evaluation has produced a best one).

    The model gets the run's own topology.npz; `topology`, a spec given explicitly, must be that
    same topology (else a UserError says which file to use). `model_overrides` (keys of
    INFERENCE_SWITCHES) replace the run's `model.*` values; the returned config shows them.
    """
    from h2o_jax.nn import H2ONet

    config = load_run_config(workdir)
    for key, value in (model_overrides or {}).items():
        if key not in INFERENCE_SWITCHES:
            raise UserError(f"cannot override model.{key} at inference; only {sorted(INFERENCE_SWITCHES)}")
        with config.unlocked():
            config.model[key] = value
    recorded = run_topology(workdir)
    if recorded is None:
        mesh_topology = _legacy_topology(workdir, topology or config.model.topology)
    else:
        mesh_topology, digest, _ = recorded
        if topology:
            require_topology(topology, digest, f"the run in {workdir!r}",
                             f"use {os.path.join(workdir, TOPOLOGY_FILE)} (or give no topology)")
    try:
        model_config = model_config_from(config)
    except ValueError as err:
        raise UserError(f"{workdir}/config.json: {err}") from None
    model = H2ONet(mesh_topology, model_config)
    variables, step = restore_variables(workdir, which)
    return config, model, variables, step
