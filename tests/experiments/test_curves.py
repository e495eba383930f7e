"""curves.png from metrics.jsonl."""

from __future__ import annotations

import json

import cv2
import numpy as np

from experiments.curves import smoothed, write_curves_png


def test_smoothed_is_a_trailing_mean():
    values = np.random.default_rng().random(10)
    out = smoothed(values, 3)
    np.testing.assert_allclose(out, [values[max(0, i - 2):i + 1].mean() for i in range(10)])


def test_curves_png_survives_a_cut_last_line(tmp_path):
    lines = [json.dumps({"step": s, "split": "train", "time": 0.0, "total": 1.0 / s, "joint_img_loss": 0.5 / s})
             for s in range(1, 30)]
    lines += [json.dumps({"step": s, "split": "eval", "time": 0.0, "j_pe_mm": 100.0 / s, "pa_j_pe_mm": 20.0 / s})
              for s in (10, 20)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 31, "spl')
    path = write_curves_png(str(tmp_path), {"mean_hand": {"overall": {"j_pe_mm": 90.0, "pa_j_pe_mm": 30.0}}})
    image = cv2.imread(path)
    assert image is not None and image.shape[0] > 300 and image.std() > 10
    assert write_curves_png(str(tmp_path / "missing")) is None
