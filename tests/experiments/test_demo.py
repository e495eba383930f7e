"""experiments.demo: the root-translation solver against exact projections and a brute-force
minimiser, the crop geometry, and the command end to end on a tiny run (streaming inference)."""

import os
import sys

import cv2
import jax
import numpy as np
import pytest
from scipy.optimize import minimize

import h2o_jax.nn.streaming
from data_loaders.crop import crop_image
from experiments import demo
from experiments.common import UserError, build_topology
from test_evaluate import TOPOLOGY, make_run  # the tiny run directory (same folder)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def _frames_folder(path, count, pixel=None, size=(96, 120)):
    path.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8) if pixel is None else np.full((*size, 3), pixel,
                                                                                                  np.uint8)
        cv2.imwrite(str(path / f"frame_{index}.png"), image)
    return str(path)


def _project(points_m, focal, principal):
    return points_m[:, :2] / points_m[:, 2:] * focal + principal


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solver_recovers_the_translation_of_exact_projections(seed):
    rng = np.random.default_rng(seed)
    joints_rel = rng.uniform(-0.08, 0.08, (21, 3))
    joints_rel[0] = 0
    translation = np.r_[rng.uniform(-0.1, 0.1, 2), rng.uniform(0.3, 1.0)]
    focal, principal = rng.uniform(100, 300, 2), rng.uniform(40, 90, 2)  # fx != fy on purpose
    joints_px = _project(joints_rel + translation, focal, principal)
    np.testing.assert_allclose(demo.solve_root_translation(joints_rel, joints_px, focal, principal), translation,
                               atol=1e-10)
    # A scalar focal is (f, f).
    px_square = _project(joints_rel + translation, focal[0], principal)
    np.testing.assert_allclose(demo.solve_root_translation(joints_rel, px_square, focal[0], principal), translation,
                               atol=1e-10)


def test_solver_recovers_the_root_of_dataset_records_from_their_2d_labels():
    # The records' crop camera and joints_img_px (the network's uv x 128) follow the data contract.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
    from record_fixtures import make_records

    for record in make_records(num_sequences=2, frames_per_sequence=3, num_vertices=8):
        joints = np.asarray(record["joints_cam_m"], np.float64)
        solved = demo.solve_root_translation(joints - joints[0], record["joints_img_px"], record["focal_px"],
                                             record["principal_px"])
        np.testing.assert_allclose(solved, joints[0], atol=2e-5)  # float32 storage of the 2D labels


def test_solver_minimises_the_depth_weighted_residual_on_noisy_joints():
    rng = np.random.default_rng(4)
    joints_rel = rng.uniform(-0.08, 0.08, (21, 3))
    focal, principal = np.array([180.0, 170.0]), np.array([64.0, 60.0])
    joints_px = _project(joints_rel + [0.02, -0.01, 0.5], focal, principal) + rng.normal(scale=2.0, size=(21, 2))

    def cost(t):
        # Reprojection error times depth, the residual the linear system minimises.
        depth = joints_rel[:, 2:] + t[2]
        return np.sum(((joints_px - principal) * depth - focal * (joints_rel[:, :2] + t[:2])) ** 2)

    solved = demo.solve_root_translation(joints_rel, joints_px, focal, principal)
    brute = minimize(cost, np.array([0.0, 0.0, 0.4]), method="Nelder-Mead",
                     options=dict(xatol=1e-12, fatol=1e-16, maxiter=20000)).x
    np.testing.assert_allclose(solved, brute, atol=1e-6)
    assert cost(solved) <= cost(brute) + 1e-12


def test_solver_rejects_bad_input_and_place_root_falls_back():
    joints = np.random.default_rng(0).normal(size=(21, 3))
    with pytest.raises(ValueError, match="joints_px"):
        demo.solve_root_translation(joints, np.zeros((20, 2)), 100.0, (64, 64))
    with pytest.raises(ValueError, match="joints_rel_m"):
        demo.solve_root_translation(joints[:, :2], np.zeros((21, 2)), 100.0, (64, 64))
    with pytest.raises(ValueError, match="degenerate"):
        demo.solve_root_translation(joints, np.full((21, 2), 64.0), 100.0, (64, 64))
    with pytest.raises(ValueError, match="finite"):
        demo.solve_root_translation(joints, np.full((21, 2), np.nan), 100.0, (64, 64))
    # Joints projecting behind the camera: the fallback puts the root 0.5 m deep on the 2D root's ray.
    rel = np.zeros((21, 3))
    rel[1:, 0] = np.linspace(0.01, 0.05, 20)
    behind = _project(rel + [0, 0, -0.5], 100.0, np.array([64.0, 64.0]))
    root, solved = demo.place_root(rel, behind, 100.0, (64.0, 64.0))
    assert not solved
    np.testing.assert_allclose(root, [(behind[0, 0] - 64) / 100 * 0.5, (behind[0, 1] - 64) / 100 * 0.5, 0.5])


def test_crop_camera_maps_frame_pixels_as_warp_affine_samples_them():
    height, width = 100, 160
    # Pixel value = its column: the crop's values give the source column each crop pixel sampled.
    columns = np.tile(np.arange(width, dtype=np.float32), (height, 1))
    camera = demo.crop_camera((height, width), None, 150.0)
    crop = cv2.warpAffine(columns, camera["affine"], (128, 128), flags=cv2.INTER_LINEAR)
    # Centred square of side 100: x' = (x - 80) * 1.28 + 64 (box centre 30 + 50 = 80).
    expected = (np.arange(128) - 64) / 1.28 + 80
    np.testing.assert_allclose(crop[64, 2:-2], expected[2:-2], atol=1e-3)
    np.testing.assert_allclose(camera["principal_px"], [(79.5 - 80) * 1.28 + 64, (49.5 - 50) * 1.28 + 64])
    np.testing.assert_allclose(camera["focal_px"], [150.0, 150.0])
    # A non-square box is squared about its centre (side = the larger one, minus process_bbox's 1 px).
    boxed = demo.crop_camera((height, width), demo.parse_box("20,10,41,21"), 150.0)
    np.testing.assert_allclose(boxed["affine"][:, :2], np.eye(2) * 128 / 40)
    np.testing.assert_allclose(boxed["affine"][:, 2], 64 - 128 / 40 * np.array([40.0, 20.0]))
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,5"):
        with pytest.raises(UserError, match="--box"):
            demo.parse_box(bad)
    with pytest.raises(UserError, match="does not overlap"):
        demo.crop_camera((height, width), demo.parse_box("500,500,10,10"), 150.0)


def test_gif_writer_and_folder_order(tmp_path):
    frames = [np.full((8, 12, 3), i * 60, np.uint8) for i in range(3)]
    demo.write_animation(frames, str(tmp_path / "a.gif"), fps=10)
    import imageio.v3 as iio

    read = iio.imread(tmp_path / "a.gif", index=None)
    assert read.shape[:3] == (3, 8, 12)
    np.testing.assert_array_equal(read[:, 0, 0, 0], [0, 60, 120])
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (10, 2, 1):  # natural order 1, 2, 10
        cv2.imwrite(str(folder / f"f{index}.png"), np.full((4, 4, 3), index, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    assert [int(f[0, 0, 0]) for f in demo.read_frames(str(folder))] == [1, 2, 10]
    assert len(list(demo.read_frames(str(folder), max_frames=2))) == 2
    with pytest.raises(UserError, match="neither a folder"):
        next(demo.read_frames(str(tmp_path / "missing.mp4")))


def test_command_on_a_tiny_run_and_a_folder_of_frames(run_dir, tmp_path):
    folder = _frames_folder(tmp_path / "input", 4)
    out = tmp_path / "out"
    result = demo.main(["--workdir", run_dir, "--input", folder, "--out", str(out)])
    pngs = sorted(os.listdir(out / "frames"))
    assert pngs == [f"frame_{i:05d}.png" for i in range(4)] and len(result["frames"]) == 4
    panel = cv2.imread(str(out / "frames" / pngs[0]))
    assert panel.shape == (256, 512, 3)
    # The MP4 holds the four panels (read back through the demo's own video reader).
    video = list(demo.read_frames(str(out / "demo.mp4")))
    assert len(video) == 4 and video[0].shape == (256, 512, 3)
    predictions = np.load(out / "predictions.npz")
    assert predictions["verts_cam_m"].shape == (4, 48, 3) and predictions["joints_cam_m"].shape == (4, 21, 3)
    # Where the root was solved, the placed 3D joints reproject onto the predicted 2D joints in the
    # least-squares sense; the solver is exact, so re-solving from the placed joints gives their root.
    for joints, px, solved in zip(predictions["joints_cam_m"], predictions["joints_px"], predictions["root_solved"]):
        assert np.all(np.isfinite(joints)) and joints[0, 2] > 0
        if solved:
            camera = demo.crop_camera((96, 120), None, demo.DEFAULT_FOCAL_FACTOR * 128)
            again = demo.solve_root_translation(joints - joints[0], px, camera["focal_px"], camera["principal_px"])
            np.testing.assert_allclose(again, joints[0], atol=1e-9)
    assert result["frame_gap"] == 3  # the synthetic configs' gap


def test_command_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --input .* is neither"):
        demo.main(["--workdir", str(tmp_path), "--input", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"^error: folder .* holds no images"):
        demo.main(["--workdir", str(tmp_path), "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    cv2.imwrite(str(tmp_path / "empty" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit, match=r"^error: .*config\.json"):
        demo.main(["--workdir", str(tmp_path / "norun"), "--input", str(tmp_path / "empty"),
                   "--out", str(tmp_path / "o")])


def test_a_topology_other_than_the_runs_is_refused(run_dir, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit, match=rf"^error: topology 'builtin' .* is not the one .*: use {run_dir}/topology\.npz"):
        demo.main(["--workdir", run_dir, "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--topology", "builtin"])


def test_known_network_outputs_are_placed_and_drawn_where_they_project(run_dir, tmp_path, monkeypatch):
    """A stand-in network outputs a fixed hand whose 2D joints are its exact projection from a known
    root: the demo must recover that root and draw the mesh over exactly those crop pixels."""
    topology = build_topology(TOPOLOGY)
    verts = np.asarray(topology.template_vertices_m, np.float64) * 0.5
    joints = np.asarray(topology.joint_regressor, np.float64) @ verts
    joints_rel, verts_rel = joints - joints[0], verts - joints[0]
    root = np.array([0.01, -0.015, 0.35])
    camera = demo.crop_camera((96, 120), None, 200.0)
    uv = _project(joints_rel + root, camera["focal_px"], camera["principal_px"]) / 128
    calls = []

    def fake_stream_step(model, variables, state, images):
        calls.append(images.shape)
        outputs = {"uv": uv[None, None], "joints_r_m": (joints + 0.2)[None, None],  # any common offset
                   "verts_r_m": (verts + 0.2)[None, None]}
        return jax.tree.map(lambda a: jax.numpy.asarray(a, np.float32), outputs), state

    monkeypatch.setattr(h2o_jax.nn.streaming, "stream_step", fake_stream_step)
    folder = _frames_folder(tmp_path / "grey", 2, pixel=128)
    out = tmp_path / "out"
    result = demo.main(["--workdir", run_dir, "--input", folder, "--out", str(out), "--focal-px", "200", "--gif"])
    assert calls == [(1, 128, 128, 3)] and result["unsolved"] == 0  # traced once, then compiled
    predictions = np.load(out / "predictions.npz")
    np.testing.assert_allclose(predictions["joints_cam_m"][:, 0], [root, root], atol=1e-5)
    np.testing.assert_allclose(predictions["verts_cam_m"][0], verts_rel + root, atol=1e-5)
    assert (out / "demo.gif").exists() and not (out / "demo.mp4").exists()
    # The drawn pixels of the front view lie on the projected mesh (display scale 2: x -> 2x + 0.5).
    panel = cv2.cvtColor(cv2.imread(str(out / "frames" / "frame_00001.png")), cv2.COLOR_BGR2RGB)
    plain = cv2.resize(crop_image(np.full((96, 120, 3), 128, np.uint8), camera["affine"]), (256, 256))
    changed = np.argwhere(np.any(panel[:, :256] != plain, axis=-1))  # (row, col)
    projected = _project(verts_rel + root, camera["focal_px"], camera["principal_px"]) * 2 + 0.5
    assert len(changed) > 50
    np.testing.assert_allclose(changed[:, 1].min(), projected[:, 0].min(), atol=2)
    np.testing.assert_allclose(changed[:, 1].max(), projected[:, 0].max(), atol=2)
    np.testing.assert_allclose(changed[:, 0].min(), projected[:, 1].min(), atol=2)
    np.testing.assert_allclose(changed[:, 0].max(), projected[:, 1].max(), atol=2)
