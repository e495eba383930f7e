"""experiments.study: the comparison table holds each run's evaluation, and its timing."""

import json

import pytest

from experiments import study
from experiments.common import UserError
from test_evaluate import make_run, records  # noqa: F401  (fixture)


def test_training_seconds_from_metrics_records(tmp_path):
    lines = [{"step": 1, "split": "train", "time": 100.0, "steps_per_s": 0.02},   # first step: 50 s
             {"step": 10, "split": "train", "time": 130.0, "steps_per_s": 1.0},
             {"step": 10, "split": "eval", "time": 145.5}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert study.training_seconds(str(tmp_path)) == pytest.approx(50.0 + 45.5)
    assert study.training_seconds(str(tmp_path / "missing")) is None


def test_study_table_lists_every_run_and_group(tmp_path, records):  # noqa: F811
    single = make_run(tmp_path / "sf", variant="single_frame")
    multi = make_run(tmp_path / "mf", variant="B+D+MF+FO+HO")
    out = tmp_path / "study.md"
    rows = study.main(["--run", f"SF={single}", "--run", f"MF={multi}", "--limit", "4", "--batch-size", "2",
                       "--out", str(out), "--offset-ablation"])
    assert [r["name"] for r in rows] == ["SF", "MF", "MF, offset zeroed"]
    # Zeroing the offset changes frame 0's mesh (random weights give a non-zero offset) and not
    # the occlusion classifier.
    assert rows[2]["report"]["overall"]["pa_v_pe_mm"] != rows[1]["report"]["overall"]["pa_v_pe_mm"]
    assert rows[2]["report"]["occlusion"] == rows[1]["report"]["occlusion"]
    rows = rows[:2]
    text = out.read_text()
    saved = json.loads((tmp_path / "study.json").read_text())
    assert [r["name"] for r in saved] == ["SF", "MF", "MF, offset zeroed"]
    for row in rows:
        overall = row["report"]["overall"]
        assert f"| {row['name']} | all | {overall['num_samples']} | {overall['pa_j_pe_mm']:.2f} | " in text
        for key, group in row["report"]["by_occlusion"].items():
            assert f"{group['pa_v_pe_mm']:.2f}" in text
        assert (tmp_path / row["workdir"].split("/")[-1] / "study" / "eval_test.json").exists()
    # Only the multi-frame model has an occlusion classifier.
    assert "occlusion" in rows[1]["report"] and "occlusion" not in rows[0]["report"]
    assert "| MF | " in text.split("Occlusion classifier")[1] and "| SF | " not in text.split("Occlusion classifier")[1]
    mf_line = next(line for line in text.split("Occlusion classifier")[1].splitlines() if line.startswith("| MF | "))
    for head, c in rows[1]["report"]["occlusion"]["classifier"].items():
        if c["roc_auc"] is not None:
            assert f"AUC {c['roc_auc']:.2f})" in mf_line, head
    with pytest.raises(SystemExit, match="--run must be NAME=WORKDIR"):
        study.main(["--run", single, "--out", str(out)])


def test_without_offset_zeroes_only_the_offset_heads_last_layer():
    import numpy as np

    variables = {"params": {"offset_pred": {"head": {"layer": {"kernel": np.ones((2, 3)), "bias": np.ones(3)}},
                                            "block_0": {"layer": {"kernel": np.ones((2, 2))}}},
                            "backbone": {"w": np.ones(2)}}, "batch_stats": {"m": np.ones(1)}}
    zeroed = study.without_offset(variables)
    assert not np.any(zeroed["params"]["offset_pred"]["head"]["layer"]["kernel"])
    assert not np.any(zeroed["params"]["offset_pred"]["head"]["layer"]["bias"])
    assert np.all(zeroed["params"]["offset_pred"]["block_0"]["layer"]["kernel"] == 1)
    assert zeroed["params"]["backbone"] is variables["params"]["backbone"]
    assert np.all(variables["params"]["offset_pred"]["head"]["layer"]["kernel"] == 1)  # input untouched
    assert study.without_offset({"params": {"backbone": {}}, "batch_stats": {}}) is None


def test_runs_with_inference_switches(tmp_path, records):  # noqa: F811
    multi = make_run(tmp_path / "mf", variant="B+D+MF+FO+HO")
    assert study.parse_run(f"MF copy={multi}@enquiry_rotation=copy,gate_logit_offset=2") == (
        "MF copy", str(multi), {"enquiry_rotation": "copy", "gate_logit_offset": 2.0})
    assert study.parse_run(f"MF={multi}") == ("MF", str(multi), {})
    for bad, message in (("MF=x@width_divisor=2", "KEY one of"), ("MF=x@gate_logit_offset=high", "is not a float"),
                         ("MF@x", "must be NAME=WORKDIR")):
        with pytest.raises(UserError, match=message):
            study.parse_run(bad)
    rows = study.main(["--run", f"MF={multi}", "--run", f"MF copy={multi}@enquiry_rotation=copy,gate_logit_offset=3",
                       "--limit", "4", "--batch-size", "2", "--out", str(tmp_path / "study.md")])
    assert rows[0]["report"]["model_overrides"] == {}
    assert rows[1]["report"]["model_overrides"] == {"enquiry_rotation": "copy", "gate_logit_offset": 3.0}
    assert (tmp_path / "mf" / "study_enquiry_rotation-copy_gate_logit_offset-3.0" / "eval_test.json").exists()
    # Same weights, same classifier; the vertices' rotation differs (random weights: the official
    # Delta R R_t is not f(G'), while the joints take the base rotation f(G_t) in both when the
    # gate keeps frame t).
    assert rows[1]["report"]["occlusion"]["classifier"] == rows[0]["report"]["occlusion"]["classifier"]
    assert rows[1]["report"]["overall"]["v_pe_mm"] != rows[0]["report"]["overall"]["v_pe_mm"]
    with pytest.raises(SystemExit, match="enquiry_rotation must be 'offset' or 'copy'"):
        study.main(["--run", f"MF={multi}@enquiry_rotation=swap", "--out", str(tmp_path / "s.md")])
