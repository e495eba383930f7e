"""experiments.publish: a run's weights without optimiser state, loadable by evaluate, benchmark
and as train.init_from wherever a workdir is; and the synthetic demo clip."""

import json
import os
import pathlib

import jax
import numpy as np
import pytest

import experiments.common
from experiments import benchmark, evaluate, publish
from test_evaluate import make_run, records  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def run_and_published(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("run"), variant="B+D+MF+FO+HO")
    out = str(tmp_path_factory.mktemp("published") / "multi_frame")
    publish.main(["--workdir", run_dir, "--out", out, "--checkpoint", "latest"])
    return run_dir, out


def test_published_folder_restores_the_same_network_and_weights(run_and_published):
    run_dir, out = run_and_published
    assert sorted(os.listdir(out)) == ["config.json", "published.json", "topology.npz", "weights.npz"]
    record = json.loads(pathlib.Path(out, "published.json").read_text())
    assert record["step"] == 0 and record["weights_bytes"] == os.path.getsize(os.path.join(out, "weights.npz"))
    config, model, variables, step = experiments.common.restore_run(run_dir, "latest")
    config2, model2, variables2, step2 = experiments.common.restore_run(out, "best")
    assert config.to_dict() == config2.to_dict() and model.config == model2.config and step2 == 0
    assert model2.topology.num_vertices == model.topology.num_vertices
    assert set(variables2) == {"params", "batch_stats"}  # no optimiser state
    flat, flat2 = jax.tree_util.tree_leaves_with_path(variables), jax.tree_util.tree_leaves_with_path(variables2)
    assert [p for p, _ in flat] == [p for p, _ in flat2]
    for (path, a), (_, b) in zip(flat, flat2):
        np.testing.assert_array_equal(np.asarray(a), b, err_msg=jax.tree_util.keystr(path))


def test_evaluate_and_benchmark_take_the_published_folder(run_and_published, records, tmp_path):  # noqa: F811
    run_dir, out = run_and_published
    from_run = evaluate.run_evaluation(run_dir, checkpoint="latest", limit=3, batch_size=2, out_dir=str(tmp_path / "a"))
    from_published = evaluate.run_evaluation(out, limit=3, batch_size=2, out_dir=str(tmp_path / "b"))
    assert from_published["overall"] == from_run["overall"]
    assert from_published["occlusion"] == from_run["occlusion"]  # the multi-frame classifier's statistics
    bench_json = tmp_path / "bench.json"
    results = benchmark.main(["--preset", "tiny", "--workdir", out, "--skip-train", "--iters", "1",
                              "--batch-iters", "1", "--out", str(bench_json)])
    assert [(r.case, r.batch) for r in results] == [("three-frame", 1), ("three-frame", 4), ("streaming", 1)]
    report = json.loads(bench_json.read_text())
    assert report["workdir"] == out and "B+D+MF+FO+HO" in report["topology"]
    with pytest.raises(SystemExit, match="^error: --topology and --workdir exclude each other"):
        benchmark.main(["--preset", "tiny", "--workdir", out, "--topology", "tiny", "--out", str(bench_json)])


def test_check_file_holds_the_folders_own_metrics(run_and_published, records, tmp_path):  # noqa: F811
    run_dir, _ = run_and_published
    out = str(tmp_path / "checked")
    publish.main(["--workdir", run_dir, "--out", out, "--checkpoint", "latest", "--check-limit", "3"])
    check = json.loads(pathlib.Path(out, "check.json").read_text())
    again = evaluate.run_evaluation(out, limit=3, out_dir=str(tmp_path / "again"))
    assert check["limit"] == 3 and check["split"] == "test" and check["num_labelled"] == again["num_labelled"]
    assert check["overall"] == again["overall"] and check["by_occlusion"] == again["by_occlusion"]


def test_bad_folders_are_one_line_errors(run_and_published, tmp_path):
    run_dir, out = run_and_published
    with pytest.raises(SystemExit, match="^error: --out must differ"):
        publish.main(["--workdir", run_dir, "--out", run_dir])
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("config.json", "topology.npz", "published.json"):
        (damaged / name).write_bytes(pathlib.Path(out, name).read_bytes())
    (damaged / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(experiments.common.UserError, match="weights.npz' cannot be read"):
        experiments.common.restore_run(str(damaged))


def test_demo_clip_is_one_generated_sequence_of_its_own_seed(tmp_path):
    from data_loaders.synthetic import video
    from data_loaders.synthetic.rig import make_rig
    from data_loaders.synthetic.scene import SceneConfig, generate_sequence
    from experiments.demo import read_frames

    frames = video.render_clip(num_frames=3, sequence=1)
    records = generate_sequence(make_rig(None), SceneConfig(frames_per_sequence=3), (0, 2), 1)
    np.testing.assert_array_equal(frames, np.stack([r["image"] for r in records]))
    path = str(tmp_path / "clip.mp4")
    video.main(["--out", path, "--frames", "3", "--sequence", "1"])
    back = list(read_frames(path))
    assert len(back) == 3 and back[0].shape == (128, 128, 3)
    # MP4 is lossy: the frames come back close, not equal.
    assert np.abs(back[0].astype(float) - frames[0]).mean() < 12
    with pytest.raises(SystemExit, match="^error: num_frames must be >= 1"):
        video.main(["--out", path, "--frames", "0"])
