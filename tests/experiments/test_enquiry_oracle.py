"""experiments.enquiry_oracle: the oracle frame choice and the report against hand-worked
values; the CLI on a random multi-frame run."""

import json

import numpy as np
import pytest

from experiments import enquiry_oracle
from test_evaluate import make_run, records  # noqa: F401  (fixture)


def test_oracle_choice_takes_the_most_recent_visible_frame():
    occluded = np.array([[0, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
    np.testing.assert_array_equal(enquiry_oracle.oracle_choice(occluded), [0, 1, 2, 0, 0])
    with pytest.raises(ValueError, match="hand_occluded must have shape"):
        enquiry_oracle.oracle_choice(np.zeros(3, bool))


def test_report_hand_worked():
    # Three samples. 0: hand visible (own 10 deg). 1: hand occluded in t, visible in t-k (own 120,
    # t-k's 20). 2: occluded in every frame (own 90; the oracle keeps it).
    own = np.array([[10.0, 30.0, 50.0], [120.0, 20.0, 40.0], [90.0, 100.0, 110.0]])
    hand = np.array([[0, 0, 0], [1, 0, 1], [1, 1, 1]], bool)
    usable = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], float)
    fingers = np.zeros((3, 3, 5), bool)
    fingers[1, 0] = fingers[2] = True  # reading A on the labels: sample 1's t and all of sample 2
    delta = np.array([1.0, 2.0, 6.0])
    report = enquiry_oracle.enquiry_report(own, hand, usable, fingers, delta)
    assert (report["num_samples"], report["num_hand_occluded"], report["num_with_visible_earlier_frame"]) == (3, 2, 1)
    np.testing.assert_allclose(report["gate"]["usable_share"], [1.0, 1.0, 2 / 3])
    np.testing.assert_allclose(report["gate"]["ground_truth_usable_share"], [1 / 3, 2 / 3, 2 / 3])
    assert report["delta_deg"]["mean"] == pytest.approx(3.0) and report["delta_deg"]["max"] == 6.0
    np.testing.assert_allclose(report["own_rotation_deg"]["hand_occluded"], [105.0, 60.0, 75.0])
    np.testing.assert_allclose(report["own_rotation_deg"]["hand_visible"], [10.0, 30.0, 50.0])
    np.testing.assert_allclose(report["oracle"]["all"], [(10 + 20 + 90) / 3, (10 + 120 + 90) / 3])
    np.testing.assert_allclose(report["oracle"]["hand_occluded"], [55.0, 105.0])
    np.testing.assert_allclose(report["oracle"]["with_visible_earlier_frame"], [20.0, 120.0])
    assert "with_visible_earlier_frame  20.0 vs 120.0" in enquiry_oracle.format_report(report)
    with pytest.raises(ValueError, match="delta_deg must have shape"):
        enquiry_oracle.enquiry_report(own, hand, usable, fingers, delta[:2])


def test_cli_on_a_random_multi_frame_run(tmp_path, records):  # noqa: F811
    single = make_run(tmp_path / "sf", variant="single_frame")
    with pytest.raises(SystemExit, match="needs an HO variant"):
        enquiry_oracle.main(["--workdir", str(single), "--split", "test"])
    multi = make_run(tmp_path / "mf", variant="B+D+MF+FO+HO")
    report = enquiry_oracle.main(["--workdir", str(multi), "--split", "test", "--batch-size", "8",
                                  "--out", str(tmp_path / "out")])
    assert json.loads((tmp_path / "out" / "enquiry_oracle.json").read_text())["num_samples"] == report["num_samples"]
    # The fixture's records: every labelled triplet whose three frames carry occlusion labels.
    assert 0 < report["num_samples"] <= len(records)
    own = report["own_rotation_deg"]["all"]
    assert len(own) == 3 and all(0.0 <= v <= 180.0 for v in own)
    assert report["oracle"]["all"][1] == pytest.approx(own[0])
    assert all(0.0 <= v <= 1.0 for v in report["gate"]["usable_share"])
