"""experiments.diagnose: the learning diagnostics against numpy / scipy references, and end to end
on a tiny fake run."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from experiments import diagnose
from experiments.baselines import training_mean_canonical_hand
from test_evaluate import make_run, records  # noqa: F401  (fixture)


def test_spread_distance_and_angle_match_references():
    rng = np.random.default_rng()
    points = rng.normal(size=(7, 11, 3)) * 0.01
    # Population standard deviation per coordinate, averaged, in mm.
    manual = np.mean([[np.sqrt(np.mean((points[:, p, k] - points[:, p, k].mean()) ** 2)) for k in range(3)]
                      for p in range(11)]) * 1000
    assert diagnose.spread_mm(points) == pytest.approx(manual, rel=1e-12)
    assert diagnose.spread_mm(np.broadcast_to(points[0], points.shape)) == pytest.approx(0.0, abs=1e-9)
    other = rng.normal(size=points.shape) * 0.01
    assert diagnose.mean_distance_mm(points, other) == pytest.approx(
        np.mean(np.sqrt(((points - other) ** 2).sum(-1))) * 1000, rel=1e-12)
    a, b = Rotation.random(9, random_state=int(rng.integers(1 << 31))), Rotation.random(9, random_state=int(rng.integers(1 << 31)))
    expected = np.degrees(np.mean((a.inv() * b).magnitude()))
    # float32 (h2o_jax.ops.geodesic_distance): about 1e-5 degrees.
    assert diagnose.mean_angle_deg(a.as_matrix(), b.as_matrix()) == pytest.approx(expected, abs=1e-3)


def test_activation_stats_by_hand():
    # Unit 0 varies over the two samples (-1, 3), unit 1 does not (2, 2).
    values = np.array([[-1.0, 2.0], [3.0, 2.0]])
    stats = diagnose.activation_stats(values)
    assert stats["alive_fraction"] == pytest.approx(3 / 4)
    assert stats["relative_spread"] == pytest.approx(((2.0 + 0.0) / 2) / ((1 + 2 + 3 + 2) / 4))
    assert diagnose.activation_stats(np.zeros((3, 4))) == {"alive_fraction": 0.0, "relative_spread": 0.0}


def test_diagnose_tells_a_constant_from_a_perfect_prediction():
    rng = np.random.default_rng()
    n = 6
    targets = {"verts_c_m": rng.normal(size=(n, 20, 3)) * 0.01,
               "rot_mat": Rotation.random(n, random_state=int(rng.integers(1 << 31))).as_matrix(),
               "joints_img": rng.uniform(size=(n, 21, 2))}
    constants = {"verts_c_m": targets["verts_c_m"].mean(0), "rot_mat": np.eye(3), "joints_img": np.full((21, 2), 0.5)}
    perfect = diagnose.diagnose({"verts_c_m": targets["verts_c_m"], "rot_mat": targets["rot_mat"],
                                 "uv": targets["joints_img"]}, targets, constants)
    assert perfect["articulation"]["pred_spread_mm"] == pytest.approx(perfect["articulation"]["target_spread_mm"])
    assert perfect["articulation"]["canonical_error_mm"] == 0.0
    assert perfect["rotation"]["angle_deg"] == pytest.approx(0.0, abs=1e-3)
    assert perfect["joints_2d"]["l1"] == 0.0
    constant = diagnose.diagnose({"verts_c_m": np.broadcast_to(constants["verts_c_m"], (n, 20, 3)),
                                  "rot_mat": np.broadcast_to(np.eye(3), (n, 3, 3)),
                                  "uv": np.full((n, 21, 2), 0.5)}, targets, constants)
    assert constant["articulation"]["pred_spread_mm"] == pytest.approx(0.0, abs=1e-9)
    assert constant["articulation"]["canonical_error_mm"] == pytest.approx(
        constant["articulation"]["constant_canonical_error_mm"], rel=1e-12)
    assert constant["rotation"]["angle_deg"] == pytest.approx(constant["rotation"]["constant_angle_deg"], rel=1e-12)
    assert constant["joints_2d"]["l1"] == pytest.approx(np.mean(np.abs(targets["joints_img"] - 0.5)), rel=1e-12)


@pytest.mark.parametrize("variant", ["single_frame", "B+D+MF+FO+HO"])
def test_diagnosis_of_a_run_end_to_end(tmp_path, records, variant):  # noqa: F811
    workdir = make_run(tmp_path / "run", variant=variant)
    report = diagnose.main(["--workdir", workdir, "--limit", "5", "--batch-size", "2"])
    saved = json.loads((tmp_path / "run" / "diagnose.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert report["num_samples"] == 5 and report["step"] == 0
    # The tiny run evaluates on the test split (no held-out sequences); the targets' spread and
    # the constant's canonical error, recomputed from the records without the tool.
    from data_loaders.validation import SpreadSamples
    from experiments.common import load_run_config, sample_source

    config = load_run_config(workdir)
    source = SpreadSamples(sample_source(config.data, config.data.eval_split, train=False), 5)
    verts_c = np.stack([source[i]["verts_c_m"][0] for i in range(5)]).astype(np.float64)
    assert report["articulation"]["target_spread_mm"] == pytest.approx(verts_c.std(0).mean() * 1000, rel=1e-9)
    train_records = [r for r in records]  # the fixture serves every split the same records
    _, mean_verts_c, _ = training_mean_canonical_hand(train_records)
    expected = np.mean(np.linalg.norm(mean_verts_c[None] - verts_c, axis=-1)) * 1000
    assert report["articulation"]["constant_canonical_error_mm"] == pytest.approx(expected, rel=1e-9)
    # The predictions: frame 0 of the network's own forward on the same images.
    from experiments.common import restore_run

    _, model, variables, _ = restore_run(workdir)
    images = np.stack([source[i]["image"][:model.config.num_frames] for i in range(5)])
    outputs = model.apply(variables, images, train=False, all_frames=False)
    pred = np.asarray(outputs["verts_c_m"][:, 0], np.float64)
    assert report["articulation"]["pred_spread_mm"] == pytest.approx(pred.std(0).mean() * 1000, rel=1e-4)
    assert report["articulation"]["canonical_error_mm"] == pytest.approx(
        np.mean(np.linalg.norm(pred - verts_c, axis=-1)) * 1000, rel=1e-4)
    uv = np.asarray(outputs["uv"][:, 0], np.float64)
    target_uv = np.stack([source[i]["joints_img"][0] for i in range(5)])
    assert report["joints_2d"]["l1"] == pytest.approx(np.mean(np.abs(uv - target_uv)), rel=1e-4)
    # The four spiral layers of the decoder, coarse to fine, with fractions in [0, 1].
    assert list(report["decoder"]) == [f"de_layer_{i}" for i in range(4)]
    for stats in report["decoder"].values():
        assert 0.0 < stats["alive_fraction"] < 1.0 and stats["relative_spread"] > 0.0
    assert 0.0 <= report["rotation"]["angle_deg"] <= 180.0


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="--limit must be >= 0"):
        diagnose.main(["--workdir", str(tmp_path), "--limit", "-1"])
    with pytest.raises(SystemExit, match="error: "):
        diagnose.main(["--workdir", str(tmp_path / "missing")])
