"""experiments.precision: bfloat16 against float32 on a run's samples, checked against the two
networks applied directly and a float64 numpy distance."""

import dataclasses
import os
import sys

import jax
import numpy as np
import pytest

import experiments.common
from experiments import precision
from h2o_jax.metrics import MetricAccumulator, root_align, sample_metrics
from h2o_jax.nn import H2ONet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
from record_fixtures import make_records  # noqa: E402
from test_evaluate import make_run  # noqa: E402  the tiny run directory (same folder)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def records(monkeypatch):
    data = make_records(num_vertices=48)
    monkeypatch.setattr(experiments.common, "open_records", lambda config, split: data)
    return data


def _direct_outputs(model, variables, dtype, images):
    """Frame-0 camera-space mesh and joints of the run's network applied without the tool."""
    model = H2ONet(model.topology, dataclasses.replace(model.config, dtype=dtype))
    outputs = jax.jit(lambda v, x: model.apply(v, x))(variables, images[:, :1])
    return np.asarray(outputs["verts_r_m"][:, 0], np.float64), np.asarray(outputs["joints_r_m"][:, 0], np.float64)


def test_bfloat16_differences_and_metrics_match_the_networks_applied_directly(run_dir, records, capsys):
    config, model, variables, _ = experiments.common.restore_run(run_dir, "best")
    source = experiments.common.sample_source(config.data, "test", train=False)
    samples = [source[i] for i in range(len(source))]
    # One batch, as below: reduced-precision results may depend on how the batch is tiled.
    report = precision.compare_precision(run_dir, "test", limit=0, batch_size=len(samples))
    images = np.stack([s["image"] for s in samples])
    verts32, joints32 = _direct_outputs(model, variables, "float32", images)
    verts16, joints16 = _direct_outputs(model, variables, "bfloat16", images)
    vert_mm = np.sqrt(((verts16 - verts32) ** 2).sum(-1)) * 1000
    joint_mm = np.sqrt(((joints16 - joints32) ** 2).sum(-1)) * 1000
    assert report["num_samples"] == len(samples) > 5
    assert vert_mm.max() > 0  # bfloat16 does change the outputs
    np.testing.assert_allclose(report["verts_diff_max_mm"], vert_mm.max(), rtol=1e-4)
    np.testing.assert_allclose(report["verts_diff_mean_mm"], vert_mm.mean(), rtol=1e-4)
    np.testing.assert_allclose(report["joints_diff_max_mm"], joint_mm.max(), rtol=1e-4)
    np.testing.assert_allclose(report["joints_diff_mean_mm"], joint_mm.mean(), rtol=1e-4)
    # Metrics of both against the labelled samples (the fixture has records without 3D labels).
    labelled = np.array([s["mask"] > 0 for s in samples])
    for name, (verts, joints) in {"float32": (verts32, joints32), "reduced": (verts16, joints16)}.items():
        accumulator = MetricAccumulator()
        gt_j, gt_v = (np.stack([s[k][0] for s in samples]) for k in ("joints_r_m", "verts_r_m"))
        pred = root_align(joints.astype(np.float32), verts.astype(np.float32))
        accumulator.add(sample_metrics(*pred, *root_align(gt_j, gt_v)), mask=labelled)
        want = accumulator.results()["overall"]
        for key in precision.METRICS:
            np.testing.assert_allclose(report["metrics"][name][key], want[key], rtol=1e-4, err_msg=f"{name} {key}")
    text = precision.format_report(report)
    assert f"bfloat16 against float32, {len(samples)} samples" in text and "vertices: max" in text


def test_float32_against_itself_is_exactly_zero_and_a_bad_dtype_is_one_line(run_dir, records, tmp_path):
    report = precision.compare_precision(run_dir, "test", limit=3, batch_size=2, dtype="float32")
    assert report["num_samples"] == 3
    assert report["verts_diff_max_mm"] == report["joints_diff_max_mm"] == 0.0
    with pytest.raises(SystemExit, match=r"^error: --dtype 'float16': dtype must be 'float32' or 'bfloat16'"):
        precision.main(["--workdir", run_dir, "--dtype", "float16", "--out", str(tmp_path / "p.json")])
