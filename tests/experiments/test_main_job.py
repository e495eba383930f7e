"""The training command end to end on synthetic/tiny, in its two-stage form (the official
schedule, `train.single_frame_steps` > 0; the main job's `cpu` preset is one single-frame stage
since 2026-12-03): the single-frame stage, then the multi-frame run from it, validation slice,
final test score with the constant baselines, curves.png and predictions.png."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from experiments import train


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    import tensorflow_datasets as tfds

    import data_loaders.synthetic  # noqa: F401  (registers the builder)

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("synthetic/tiny", data_dir=data_dir, num_workers=1).download_and_prepare()
    return data_dir


def test_main_job_validates_on_held_out_sequences_and_scores_test_once(tiny_data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    train.main(["--config", "experiments/configs/synthetic.py:tiny", "--workdir", str(workdir),
                f"--config.data.data_dir={tiny_data_dir}", "--config.data.val_sequences=1",
                "--config.data.eval_limit=8", "--config.train.single_frame_steps=2",
                "--config.train.single_frame_batch_size=4"])
    out = capsys.readouterr().out
    # The two stages: a single-frame stage-1 run, whose weights start the multi-frame run.
    stage = json.loads((workdir / "single_frame" / "config.json").read_text())
    assert stage["model"]["variant"] == "single_frame" and stage["loss"]["stage"] == 1
    assert stage["train"]["num_steps"] == 2 and (workdir / "single_frame" / "eval_2.json").exists()
    assert f"initialised from {workdir / 'single_frame'} (step 2)" in out
    periodic = json.loads((workdir / "eval_4.json").read_text())
    # synthetic/tiny: 4 train sequences x 12 frames; the held-out one, every 4th sample -> 3.
    assert periodic["overall"]["num_samples"] == 3
    assert set(periodic["baselines"]) == {"mean_hand", "mean_pose_hand", "rest_hand"}
    final = json.loads((workdir / "eval_test.json").read_text())
    assert final["split"] == "test" and final["num_labelled"] == 8
    for name in ("mean_hand", "mean_pose_hand", "rest_hand"):
        report = final["baselines"][name]
        assert report["overall"]["num_samples"] == 8 and report["overall"]["j_pe_mm"] > 0
        assert sum(r["num_samples"] for r in report["by_occlusion"].values()) == 8
    assert "constant mean hand" in out and "constant mean pose hand" in out and "constant rest hand" in out
    for picture in ("curves.png", "predictions.png"):
        image = cv2.imread(str(workdir / picture))
        assert image is not None and image.std() > 5, picture
    # predictions.png: one labelled row per sample from distinct test sequences (2 in tiny).
    assert cv2.imread(str(workdir / "predictions.png")).shape[0] == 18 + 2 * (14 + 128)


def test_pick_display_samples_spreads_over_sequences_and_includes_occlusion():
    from experiments.visualize import pick_display_samples

    samples = []
    for sequence in range(6):
        for frame in range(5):
            occ = np.zeros((3, 6), np.int32)
            occ[0, 1] = int(sequence in (4, 5))  # only the last two sequences show occlusion
            samples.append({"sequence_index": np.int32(sequence), "occ_labels": occ})
    picked = pick_display_samples(samples, 3)
    sequences = [int(samples[i]["sequence_index"]) for i in picked]
    assert len(set(sequences)) == 3
    assert any(s in (4, 5) for s in sequences)
