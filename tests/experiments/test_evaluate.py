"""experiments.evaluate: the paper's metrics end to end on a tiny fake run, against hand-computed
values and an independent float64 numpy transcription of metrics.md."""

import copy
import json
import os
import pathlib
import shutil
import sys
import zipfile

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import experiments.common
from experiments.common import UserError
from experiments import evaluate
from experiments.configs.synthetic import get_config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
from record_fixtures import make_records  # noqa: E402

TOPOLOGY = "random:48,24,12,6,3"
REPORT_KEYS = {"num_samples", "j_pe_mm", "v_pe_mm", "pa_j_pe_mm", "pa_v_pe_mm", "j_auc", "v_auc", "pa_j_auc",
               "pa_v_auc", "f5", "f15", "pa_f5", "pa_f15"}


def _random_variables(model, seed=0):
    """Random weights of the model's shapes without compiling `model.init` (minutes on CPU):
    kernels ~ N(0, 1/fan_in), biases 0, norm scales 1, BatchNorm statistics (0, 1), the
    topology's joint regressor."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, model.config.num_frames, 128, 128, 3),
                                                                          np.float32)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "mano_joint_reg":
            return np.asarray(model.topology.joint_regressor, np.float32)
        if name in ("scale", "var"):
            return np.ones(leaf.shape, leaf.dtype)
        if len(leaf.shape) >= 2:
            return (rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(leaf.dtype)
        return np.zeros(leaf.shape, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def make_run(workdir, variant="single_frame"):
    """A run directory as `experiments.train` leaves it: config.json (with the topology's hash),
    topology.npz and a step-0 checkpoint."""
    from experiments.checkpointing import Checkpoints
    from h2o_jax.config import model_config_for
    from h2o_jax.nn import H2ONet
    from h2o_jax.training import TrainState

    from h2o_jax.hand.topology import topology_hash

    config = get_config("tiny")
    config.model.update(topology=TOPOLOGY, variant=variant, width_divisor=8)
    os.makedirs(workdir, exist_ok=True)
    topology = experiments.common.build_topology(TOPOLOGY)
    experiments.common.save_run_topology(str(workdir), topology)
    experiments.common.write_run_config(str(workdir), config, topology_hash(topology))
    model = H2ONet(topology, model_config_for(variant, width_divisor=8))
    variables = _random_variables(model)
    # An empty optimiser state: evaluation reads params and batch_stats only, and restoring
    # Adam's two moment trees too triples orbax's restore time.
    state = TrainState(np.zeros((), np.int32), variables["params"], variables["batch_stats"], ())
    checkpoints = Checkpoints(str(workdir), keep=1)
    checkpoints.save(0, state, None)
    checkpoints.wait()
    checkpoints.close()
    return str(workdir)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def restored(run_dir):
    return experiments.common.restore_run(run_dir, "best")


@pytest.fixture
def cached_restore(restored, monkeypatch):
    """Tests of what follows the restore skip orbax (the end-to-end test covers it)."""
    monkeypatch.setattr(evaluate, "restore_run", lambda workdir, which, **kwargs: restored)


@pytest.fixture
def records(monkeypatch):
    data = make_records(num_vertices=48)
    monkeypatch.setattr(experiments.common, "open_records", lambda config, split: data)
    return data


# ---- an independent float64 reference of metrics.md (numpy only) ----

def _procrustes_ref(pred, gt):
    """metrics.md section 3, per sample: centroids, Frobenius norms (+1e-8), SVD, no reflection fix."""
    mu_p, mu_g = pred.mean(0), gt.mean(0)
    p, g = pred - mu_p, gt - mu_g
    norm_p, norm_g = np.linalg.norm(p) + 1e-8, np.linalg.norm(g) + 1e-8
    p, g = p / norm_p, g / norm_g
    u, s, vt = np.linalg.svd(g.T @ p)
    rotation = u @ vt
    return (p @ rotation.T) * s.sum() * norm_g + mu_g


def _auc_ref(errors):
    thresholds = np.linspace(0, 0.05, 100)
    areas = []
    for point in errors.T:
        pck = [(point <= t).mean() for t in thresholds]
        areas.append(sum((pck[i] + pck[i + 1]) / 2 * (thresholds[i + 1] - thresholds[i]) for i in range(99)) / 0.05)
    return float(np.mean(areas))


def _f_ref(pred, gt, t):
    d = np.sqrt(((pred[:, None] - gt[None]) ** 2).sum(-1))
    a, b = (d.min(1) < t).mean(), (d.min(0) < t).mean()
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def reference_report(pred_j, pred_v, gt_j, gt_v):
    pred_v, gt_v = pred_v - pred_j[:, :1], gt_v - gt_j[:, :1]
    pred_j, gt_j = pred_j - pred_j[:, :1], gt_j - gt_j[:, :1]
    out = {"num_samples": len(pred_j)}
    for name, p, g in (("j", pred_j, gt_j), ("v", pred_v, gt_v)):
        err = np.linalg.norm(p - g, axis=-1)
        pa = np.stack([np.linalg.norm(_procrustes_ref(a, b) - b, axis=-1) for a, b in zip(p, g)])
        out.update({f"{name}_pe_mm": err.mean() * 1000, f"pa_{name}_pe_mm": pa.mean() * 1000,
                    f"{name}_auc": _auc_ref(err), f"pa_{name}_auc": _auc_ref(pa)})
    aligned = [_procrustes_ref(a, b) for a, b in zip(pred_v, gt_v)]
    for t in (5, 15):
        out[f"f{t}"] = np.mean([_f_ref(a, b, t / 1000) for a, b in zip(pred_v, gt_v)])
        out[f"pa_f{t}"] = np.mean([_f_ref(a, b, t / 1000) for a, b in zip(aligned, gt_v)])
    return out


def assert_report_close(report, expected, abs_mm=1e-6, abs_fraction=1e-9):
    assert report["num_samples"] == expected["num_samples"]
    for key in REPORT_KEYS - {"num_samples"}:
        assert report[key] == pytest.approx(expected[key], abs=abs_mm if key.endswith("_mm") else abs_fraction), key


# ---- evaluate_predictions ----

def test_evaluate_predictions_matches_the_float64_reference_on_random_hands():
    rng = np.random.default_rng(7)
    samples, num_vertices = 7, 30  # not a multiple of the chunk: the padded tail must not count
    gt_j = rng.uniform(-0.08, 0.08, (samples, 21, 3)) + [0, 0, 0.5]
    gt_v = rng.uniform(-0.09, 0.09, (samples, num_vertices, 3)) + [0, 0, 0.5]
    # Noisy joints; noisy, slightly rotated, scaled and shifted vertices (metrics off their bounds).
    noise = 0.006
    pred_j = gt_j + rng.normal(scale=noise, size=gt_j.shape)
    small = Rotation.from_rotvec(rng.normal(scale=0.1, size=(samples, 3))).as_matrix()
    pred_v = 1.05 * np.einsum("sij,snj->sni", small, gt_v) + rng.normal(scale=noise, size=gt_v.shape) + 0.01
    occ = rng.integers(0, 2, (samples, 6))
    results = evaluate.evaluate_predictions(pred_j, pred_v, gt_j, gt_v, occ, chunk_size=4)
    assert_report_close(results["overall"], reference_report(pred_j, pred_v, gt_j, gt_v))
    for index, name in enumerate(("none", "fingers", "hand")):
        hand = occ[:, 5] == 1
        select = hand if index == 2 else (~hand & occ[:, :5].any(1)) if index == 1 else ~hand & ~occ[:, :5].any(1)
        if select.any():
            assert_report_close(results["by_occlusion"][name],
                                reference_report(pred_j[select], pred_v[select], gt_j[select], gt_v[select]))
        else:
            assert name not in results["by_occlusion"]


def _spread_points(rng, count, spacing_m=0.05):
    """Points on a jittered grid, neighbours > 45 mm apart: a shift of at most 20 mm keeps every
    point's nearest neighbour its own original (F-scores are then hand-computable)."""
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (grid[rng.permutation(len(grid))[:count]] * spacing_m + rng.uniform(-0.002, 0.002, (count, 3)))


def test_hand_computed_offsets_scale_and_occlusion_groups():
    rng = np.random.default_rng(3)
    gt_v = np.stack([_spread_points(rng, 40) for _ in range(3)]) + [0.1, -0.05, 0.6]
    gt_j = np.stack([_spread_points(rng, 21) for _ in range(3)]) + [0.1, -0.05, 0.6]
    # Vertices: sample 0 shifted 10 mm along x, sample 1 20 mm along z, sample 2 exact; the joints
    # (hence the root) stay, so root alignment keeps the shift. Joints: scaled 1.5x about joint 0.
    shifts = np.array([[0.010, 0, 0], [0, 0, 0.020], [0, 0, 0]])
    pred_v = gt_v + shifts[:, None]
    root = gt_j[:, :1]
    pred_j = root + 1.5 * (gt_j - root)
    occ = np.array([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]])
    occ_valid = np.array([1, 1, 0])  # sample 2 has no labels: overall only
    results = evaluate.evaluate_predictions(pred_j, pred_v, gt_j, gt_v, occ, occ_valid)
    overall, groups = results["overall"], results["by_occlusion"]
    assert set(groups) == {"none", "hand"}
    assert overall["num_samples"] == 3 and groups["none"]["num_samples"] == groups["hand"]["num_samples"] == 1
    assert overall["v_pe_mm"] == pytest.approx(10.0, abs=1e-9)
    assert groups["none"]["v_pe_mm"] == pytest.approx(10.0, abs=1e-9)
    assert groups["hand"]["v_pe_mm"] == pytest.approx(20.0, abs=1e-9)
    # J-PE = 0.5 x mean distance to the root (the root's own 0 counts in the mean).
    expected_j = [0.5 * np.linalg.norm(gt_j[i] - root[i], axis=-1).mean() * 1000 for i in range(3)]
    assert overall["j_pe_mm"] == pytest.approx(np.mean(expected_j), abs=1e-9)
    assert groups["hand"]["j_pe_mm"] == pytest.approx(expected_j[1], abs=1e-9)
    # A shift and a uniform scale are similarities: Procrustes removes them (up to the official
    # 1e-8 added to both norms, which leaves ~1e-9 m after a 1.5x scale).
    for key in ("pa_v_pe_mm", "pa_j_pe_mm"):
        assert overall[key] == pytest.approx(0.0, abs=1e-4)
    assert overall["pa_f5"] == overall["pa_f15"] == 1.0
    # Every error 10 mm: PCK is 1 from the threshold index 20 (20 x 50/99 mm >= 10 mm) on, so the
    # trapezoid area is 79.5 of 99 steps; F@5 = 0 (nearest neighbours 10 mm away), F@15 = 1.
    assert groups["none"]["v_auc"] == pytest.approx(79.5 / 99, abs=1e-12)
    assert groups["none"]["f5"] == 0.0 and groups["none"]["f15"] == 1.0
    # 20 mm along z: index 40 (40 x 50/99 = 20.2 mm) is the first threshold >= 20 mm -> 59.5 / 99.
    assert groups["hand"]["v_auc"] == pytest.approx(59.5 / 99, abs=1e-12)
    assert groups["hand"]["f5"] == groups["hand"]["f15"] == 0.0
    assert overall["f15"] == pytest.approx(2 / 3)


def test_evaluate_predictions_rejects_bad_shapes():
    good = np.zeros((2, 21, 3))
    with pytest.raises(ValueError, match="pred_joints_m"):
        evaluate.evaluate_predictions(np.zeros((21, 3)), good, good, good)
    with pytest.raises(ValueError, match="gt_verts_m"):
        evaluate.evaluate_predictions(good, np.zeros((2, 5, 3)), good, np.zeros((3, 5, 3)))
    with pytest.raises(ValueError, match="vertices"):
        evaluate.MetricCollector().add(good, np.zeros((2, 5, 3)), good, np.zeros((2, 6, 3)))


# ---- the command, end to end ----

def test_command_end_to_end_on_a_tiny_run(run_dir, records, tmp_path, monkeypatch):
    recorded = []
    real_predict_function = evaluate._predict_function

    def recording_predict_function(model, variables):
        predict = real_predict_function(model, variables)

        def run(batch):
            outputs = predict(batch)
            recorded.append((batch, outputs))
            return outputs
        return run

    monkeypatch.setattr(evaluate, "_predict_function", recording_predict_function)
    out = tmp_path / "out"
    evaluate.main(["--workdir", run_dir, "--limit", "5", "--batch-size", "2", "--out", str(out),
                   "--checkpoint", "latest"])
    report = json.loads((out / "eval_test.json").read_text())
    assert (out / "auc_test.png").stat().st_size > 0
    assert not (out / "pred.zip").exists()
    # Records 0-4 of sequence 0; record 3 has no 3D labels (fixture): 4 evaluated, 1 skipped.
    assert report["num_labelled"] == 4 and report["num_unlabelled"] == 1 and report["step"] == 0
    assert set(report["overall"]) == REPORT_KEYS
    for group in [report["overall"], *report["by_occlusion"].values()]:
        assert set(group) == REPORT_KEYS and all(np.isfinite(v) for v in group.values())
    assert sum(g["num_samples"] for g in report["by_occlusion"].values()) == 4
    # Three padded batches of 2 (the last holds one pad); the network's frame-0 outputs of the
    # labelled samples, evaluated directly, give the same report.
    assert len(recorded) == 3
    batch = {k: np.concatenate([b[k] for b, _ in recorded])[:5] for k in recorded[0][0]}
    outputs = {k: np.concatenate([o[k] for _, o in recorded])[:5] for k in recorded[0][1]}
    labelled = batch["mask"] > 0
    np.testing.assert_array_equal(labelled, [1, 1, 1, 0, 1])
    expected = reference_report(*(np.asarray(a, np.float64)[labelled] for a in (
        outputs["joints_r_m"], outputs["verts_r_m"], batch["joints_r_m"][:, 0], batch["verts_r_m"][:, 0])))
    assert_report_close(report["overall"], expected, abs_mm=1e-5, abs_fraction=1e-6)


def test_ground_truth_predictions_score_perfectly(run_dir, cached_restore, records, tmp_path):
    def ground_truth(batch):
        return {"joints_r_m": batch["joints_r_m"][:, 0], "verts_r_m": batch["verts_r_m"][:, 0]}

    report = evaluate.run_evaluation(run_dir, limit=6, batch_size=2, out_dir=str(tmp_path), predict_fn=ground_truth)
    overall = report["overall"]
    assert overall["num_samples"] == 5
    for key in ("j_pe_mm", "v_pe_mm", "pa_j_pe_mm", "pa_v_pe_mm"):
        assert overall[key] == pytest.approx(0.0, abs=1e-4 if key.startswith("pa") else 0.0), key
    # Exact zeros give AUC 1; Procrustes leaves ~1e-17 m, so PA-AUC is 1 or loses the half step
    # at the threshold 0 (metrics.md 4).
    assert overall["j_auc"] == overall["v_auc"] == 1.0
    assert overall["pa_j_auc"] >= 1 - 0.5 / 99 - 1e-12 and overall["pa_v_auc"] >= 1 - 0.5 / 99 - 1e-12
    for key in ("f5", "f15", "pa_f5", "pa_f15"):
        assert overall[key] == 1.0, key


def test_spread_limit_scores_samples_from_the_whole_split(run_dir, cached_restore, records, tmp_path):
    seen = []

    def ground_truth(batch):
        seen.extend(np.asarray(batch["frame_index"])[:, 0][np.asarray(batch["mask"]) > 0].tolist())
        return {"joints_r_m": batch["joints_r_m"][:, 0], "verts_r_m": batch["verts_r_m"][:, 0]}

    first = evaluate.run_evaluation(run_dir, limit=2, batch_size=2, out_dir=str(tmp_path), predict_fn=ground_truth)
    first_seen, seen[:] = list(seen), []
    spread = evaluate.run_evaluation(run_dir, limit=2, batch_size=2, out_dir=str(tmp_path), predict_fn=ground_truth,
                                     spread=True)
    assert first["overall"]["num_samples"] == spread["overall"]["num_samples"] == 2
    assert first_seen == [0, 1]
    assert seen[0] == 0 and seen[1] > 1  # the second sample from the split's second half


def test_unlabelled_split_writes_the_ho3d_submission(run_dir, cached_restore, monkeypatch, tmp_path):
    pairs = tuple((s, f) for s in range(3) for f in range(14))
    data = make_records(num_vertices=48, unlabelled=pairs)
    monkeypatch.setattr(experiments.common, "open_records", lambda config, split: data)
    rng = np.random.default_rng(0)
    pred_j, pred_v = rng.normal(size=(5, 21, 3)) * 0.05, rng.normal(size=(5, 48, 3)) * 0.05
    calls = []

    def fixed_prediction(batch):
        start = 2 * len(calls)
        calls.append(start)
        index = np.minimum(np.arange(start, start + 2), 4)
        return {"joints_r_m": pred_j[index], "verts_r_m": pred_v[index]}

    report = evaluate.run_evaluation(run_dir, split="evaluation", limit=5, batch_size=2, out_dir=str(tmp_path),
                                     predict_fn=fixed_prediction)
    assert report["num_labelled"] == 0 and report["num_unlabelled"] == 5 and "overall" not in report
    with zipfile.ZipFile(tmp_path / "pred.zip") as archive:
        xyz, verts = (np.array(a) for a in json.loads(archive.read("pred.json")))
    assert xyz.shape == (5, 21, 3) and verts.shape == (5, 48, 3)
    # Wrist on the given root (joints_cam_m[0] of the record), OpenGL frame (y, z negated).
    roots = np.array([data[i]["joints_cam_m"][0] for i in range(5)], np.float64)
    np.testing.assert_allclose(xyz[:, 0], roots * [1, -1, -1], atol=1e-7)
    np.testing.assert_allclose(verts, (pred_v - pred_j[:, :1] + roots[:, None]) * [1, -1, -1], atol=1e-7)
    assert json.loads((tmp_path / "eval_evaluation.json").read_text())["submission"].endswith("pred.zip")


def test_user_errors_are_one_line(run_dir, restored, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match=r"^error: .*config\.json"):
        evaluate.main(["--workdir", str(tmp_path / "missing")])
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    for name in ("config.json", "topology.npz"):
        (empty / name).write_bytes(pathlib.Path(run_dir, name).read_bytes())
    with pytest.raises(SystemExit, match=r"^error: no checkpoint .*train first"):
        evaluate.main(["--workdir", str(empty)])
    # An unprepared real dataset: the run's config names Dex-YCB in an empty data folder.
    config, model, variables, step = restored
    config = copy.deepcopy(config)
    config.data.update(name="dexycb", data_dir=str(tmp_path / "tfds"))
    monkeypatch.setattr(evaluate, "restore_run", lambda workdir, which, **kwargs: (config, model, variables, step))
    with pytest.raises(SystemExit, match=r"^error: dataset 'dexycb' is not prepared in .*download_and_prepare"):
        evaluate.main(["--workdir", run_dir])


def test_dataset_and_data_dir_flags_choose_the_scored_dataset(run_dir, cached_restore, monkeypatch, tmp_path):
    data = make_records(num_vertices=48)
    opened = []

    def open_records(config, split):
        opened.append((config.name, config.data_dir, config.gap, split))
        return data

    monkeypatch.setattr(experiments.common, "open_records", open_records)

    def ground_truth(batch):
        return {"joints_r_m": batch["joints_r_m"][:, 0], "verts_r_m": batch["verts_r_m"][:, 0]}

    report = evaluate.run_evaluation(run_dir, limit=2, batch_size=2, out_dir=str(tmp_path), predict_fn=ground_truth,
                                     dataset="dexycb", data_dir="/data/tfds")
    assert ("dexycb", "/data/tfds", 5, "test") in opened  # Dex-YCB's gap and split, not the run's
    assert {o[:2] for o in opened} == {("dexycb", "/data/tfds")}
    assert report["dataset"] == "dexycb" and (tmp_path / "eval_dexycb_test.json").exists()
    before = len(opened)
    evaluate.run_evaluation(run_dir, limit=2, batch_size=2, out_dir=str(tmp_path), predict_fn=ground_truth,
                            data_dir="/other")
    assert ("synthetic/tiny", "/other", 3, "test") in opened[before:]  # the run's own dataset elsewhere
    with pytest.raises(SystemExit, match=r"^error: unknown dataset 'nope'"):
        evaluate.main(["--workdir", run_dir, "--dataset", "nope"])


def test_a_topology_other_than_the_runs_is_refused(run_dir, records, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: topology 'random:50,25,12,6,3' .* is not the one the run in "
                                         rf".* trained with .*: use {run_dir}/topology\.npz"):
        evaluate.main(["--workdir", run_dir, "--topology", "random:50,25,12,6,3"])

    def ground_truth(batch):
        return {"joints_r_m": batch["joints_r_m"][:, 0], "verts_r_m": batch["verts_r_m"][:, 0]}

    report = evaluate.run_evaluation(run_dir, limit=2, batch_size=2, out_dir=str(tmp_path), predict_fn=ground_truth,
                                     topology=os.path.join(run_dir, "topology.npz"))  # its own: accepted
    assert report["num_labelled"] == 2


def test_a_run_saved_before_topology_hashes_is_rebuilt_from_its_spec_with_a_warning(run_dir, tmp_path, capsys):
    old = tmp_path / "old_run"
    shutil.copytree(run_dir, old)
    (old / "topology.npz").unlink()
    config = json.loads((old / "config.json").read_text())
    del config["model"]["topology_sha256"]
    (old / "config.json").write_text(json.dumps(config))
    _, model, _, _ = experiments.common.restore_run(str(old), "latest")
    assert "records no topology hash" in capsys.readouterr().out
    from h2o_jax.hand.topology import load_topology, topology_hash

    assert topology_hash(model.topology) == topology_hash(load_topology(os.path.join(run_dir, "topology.npz")))


def test_a_damaged_topology_file_is_a_one_line_error(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    data = (run / "topology.npz").read_bytes()
    (run / "topology.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match=r"^error: .*topology\.npz' cannot be read .*put the run's topology\.npz back"):
        evaluate.main(["--workdir", str(run)])


def test_validation_split_scores_the_held_out_train_sequences(run_dir, cached_restore, records, tmp_path, monkeypatch):
    # The run's config (tiny preset) holds nothing out: a clear error, not the whole train split.
    with pytest.raises(UserError, match="val_sequences"):
        evaluate.run_evaluation(run_dir, split="validation", out_dir=str(tmp_path))
    data = get_config("tiny").data
    with data.unlocked():
        data.val_sequences = 1
    source = evaluate.evaluation_source(data, "validation")
    # The fixture holds 3 sequences of 14 frames, one of them (0, 3) unlabelled: the last sequence
    # (index 2) is held out whole, and nothing else.
    last = [r for r in records if r["sequence_index"] == 2]
    assert len(source) == len(last) == 14
    assert {int(source[i]["sequence_index"]) for i in range(len(source))} == {2}
    # frame_index counts within the held-out subset; the frame-0 meshes name the records.
    got = sorted(np.asarray(source[i]["verts_cam_m"][0]).tobytes() for i in range(len(source)))
    assert got == sorted(r["verts_cam_m"].tobytes() for r in last)
    # Through the CLI path: a run whose config holds one sequence out scores exactly those samples.
    config, model, variables, step = evaluate.restore_run(run_dir, "best")
    config = copy.deepcopy(config)  # the restore is shared by the module's tests
    with config.data.unlocked():
        config.data.val_sequences = 1
    monkeypatch.setattr(evaluate, "restore_run", lambda workdir, which, **kwargs: (config, model, variables, step))
    seen = []

    def ground_truth(batch):
        seen.extend(np.asarray(batch["sequence_index"])[np.asarray(batch["mask"]) > 0].tolist())
        return {"joints_r_m": batch["joints_r_m"][:, 0], "verts_r_m": batch["verts_r_m"][:, 0]}

    report = evaluate.run_evaluation(run_dir, split="validation", batch_size=4, out_dir=str(tmp_path),
                                     predict_fn=ground_truth)
    assert report["split"] == "validation" and set(seen) == {2}
    assert report["overall"]["num_samples"] == 14 and report["overall"]["j_pe_mm"] == 0.0
