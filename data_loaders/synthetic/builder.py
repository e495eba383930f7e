"""TFDS builder `synthetic`: the embedded occluded-hand video dataset (no download, no licence).

    import data_loaders.synthetic, tensorflow_datasets as tfds
    builder = tfds.builder("synthetic/small", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()          # generates in parallel worker processes
    source = builder.as_data_source("train")

Configs (sequences x frames per sequence, train / test):
  tiny     4 x 12 /  2 x 12   CI-sized
  small  600 x 16 / 20 x 16   the README's main job (about 2 minutes to generate on 2 cores);
                               many short sequences: many distinct wrist orientations
  default 500 x 100 / 50 x 100  55,000 frames, the study of the README

Splits are fixed by sequence (train and test draw from disjoint seeds). Records follow
`data_loaders.records` with the built-in hand (V = 719, S = 10), or MANO's 778 vertices when
`mano_path` is given (then also pass a matching topology to training).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os

import numpy as np
import tensorflow_datasets as tfds

from data_loaders.records import tfds_features
from data_loaders.synthetic.scene import SceneConfig

_SPLIT_IDS = {"train": 0, "test": 1}


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    train_sequences: int = 4
    test_sequences: int = 2
    frames_per_sequence: int = 12
    seed: int = 0


class Synthetic(tfds.core.GeneratorBasedBuilder):
    """Rendered sequences of a hand grasping objects while occluders pass in front of it."""

    name = "synthetic"
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Built-in hand, held objects, passing occluders, paper occlusion labels.",
        "2.0.0": "The forearm points away from the camera (SceneConfig.max_forearm_angle_deg); "
                 "small is 600 x 16 / 20 x 16 sequences (was 48 x 40 / 8 x 40).",
    }
    BUILDER_CONFIGS = [
        SyntheticConfig(name="tiny", description="CI-sized", train_sequences=4, test_sequences=2,
                        frames_per_sequence=12),
        SyntheticConfig(name="small", description="main job", train_sequences=600, test_sequences=20,
                        frames_per_sequence=16),
        SyntheticConfig(name="default", description="55,000 frames", train_sequences=500, test_sequences=50,
                        frames_per_sequence=100),
    ]
    DEFAULT_CONFIG_NAME = "small"

    def __init__(self, *, num_workers: int | None = None, mano_path: str | None = None, **kwargs):
        # Set before super().__init__, which already asks _info() for the features.
        self._num_workers = num_workers or max(1, os.cpu_count() or 1)
        self._mano_path = mano_path
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        num_vertices, num_shape = (719, 10) if self._mano_path is None else (778, 10)
        return tfds.core.DatasetInfo(builder=self, description=__doc__.split("\n\n")[0],
                                     features=tfds_features(num_vertices, num_shape),
                                     disable_shuffling=True)

    def _split_generators(self, dl_manager):
        del dl_manager
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.train_sequences),
            "test": self._generate_examples("test", config.test_sequences),
        }

    def _generate_examples(self, split: str, num_sequences: int):
        config = self.builder_config
        scene = SceneConfig(frames_per_sequence=config.frames_per_sequence)
        seed = (config.seed, _SPLIT_IDS[split])
        jobs = [(scene, seed, i) for i in range(num_sequences)]
        from tqdm import tqdm

        progress = tqdm(total=num_sequences, desc=f"synthetic/{config.name} {split} sequences", unit="seq")
        if self._num_workers == 1:
            _init_worker(self._mano_path)
            results = map(_generate, jobs)
            pool = None
        else:
            # spawn: JAX (the hand model's forward pass) is not fork-safe.
            pool = multiprocessing.get_context("spawn").Pool(
                min(self._num_workers, num_sequences), initializer=_init_worker, initargs=(self._mano_path,))
            results = pool.imap(_generate, jobs)
        try:
            for records in results:
                for record in records:
                    yield record["sample_id"].decode(), record
                progress.update(1)
        finally:
            progress.close()
            if pool is not None:
                pool.close()
                pool.join()


_WORKER_RIG = {}  # one hand rig per worker process (built once, reused for every sequence)


def _init_worker(mano_path):
    from data_loaders.synthetic.rig import make_rig

    _WORKER_RIG["rig"] = make_rig(mano_path)


def _generate(job):
    from data_loaders.synthetic.scene import generate_sequence

    scene, seed, index = job
    return generate_sequence(_WORKER_RIG["rig"], scene, seed, index)


def occlusion_shares(records) -> dict[str, float]:
    """Share of frames with >= 1 occluded finger and with the whole hand occluded."""
    labels = np.stack([np.asarray(r["occ_labels"]) for r in records])
    return {"any_finger_occluded": float(labels[:, :5].any(1).mean()),
            "hand_occluded": float(labels[:, 5].mean()), "frames": len(labels)}
