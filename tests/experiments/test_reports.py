"""Evaluation outputs: HO3D submission layout, AUC plot and JSON report."""

import json
import zipfile

import numpy as np
import pytest

from experiments.reports import COMMON_TO_NATIVE, plot_auc, write_ho3d_submission, write_json_report

# native -> common permutation P of data_formats.md 0.3; Q must be its inverse.
NATIVE_TO_COMMON = np.array([0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20])


def test_common_to_native_is_the_inverse_permutation():
    native = np.arange(21) * 10
    np.testing.assert_array_equal(native[NATIVE_TO_COMMON][COMMON_TO_NATIVE], native)


def test_ho3d_submission_file(tmp_path):
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(2, 21, 3))
    verts = rng.normal(size=(2, 30, 3))
    roots = rng.normal(size=(2, 3)) + [0, 0, 0.5]
    path = tmp_path / "pred.zip"
    write_ho3d_submission(str(path), joints, verts, roots)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["pred.json"]
        xyz, mesh = json.loads(archive.read("pred.json"))
    xyz, mesh = np.array(xyz), np.array(mesh)
    assert xyz.shape == (2, 21, 3) and mesh.shape == (2, 30, 3)
    # Wrist on the given root, then OpenGL (y and z negated): z of the wrist is -root_z.
    np.testing.assert_allclose(xyz[:, 0], roots * [1, -1, -1])
    # Native joint i is common joint COMMON_TO_NATIVE[i]; the vertices move with the joints.
    shift = roots - joints[:, 0]
    np.testing.assert_allclose(xyz[:, 13], (joints[:, 1] + shift) * [1, -1, -1])  # native 13 = thumb 1
    np.testing.assert_allclose(mesh, (verts + shift[:, None]) * [1, -1, -1])
    with pytest.raises(ValueError, match="root_joint_cam_m"):
        write_ho3d_submission(str(path), joints, verts, roots[:1])


def test_auc_plot_and_report(tmp_path):
    errors = np.random.default_rng(1).uniform(0, 0.03, (20, 21))
    plot_auc({"ours": errors, "worse": errors * 1.5}, str(tmp_path / "auc.png"))
    assert (tmp_path / "auc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_json_report({"overall": {"j_pe_mm": 1.5}}, str(tmp_path / "eval" / "r.json"))
    assert json.loads((tmp_path / "eval" / "r.json").read_text()) == {"overall": {"j_pe_mm": 1.5}}
