"""Demo: a trained run over a folder of frames or a video -> frames with the mesh drawn on them, a
side view, and an MP4 (or GIF).

    python -m experiments.demo --workdir runs/synthetic_cpu --input my_frames/ --out demo_out
    python -m experiments.demo --workdir runs/dexycb_s2 --input clip.mp4 --out demo_out --box 600,300,250,250 --gif
    python -m data_loaders.synthetic.video --out clip.mp4 && python -m experiments.demo --input clip.mp4 --out demo_out

Without `--workdir` the demo runs the multi-frame model published in `models/synthetic/multi_frame`.

Every frame is cropped to 128 x 128 with one fixed box (`--box x,y,w,h` in frame pixels, squared
about its centre as the datasets' crop; default: the centred square of the frame) and fed to the
network in STREAMING mode (`h2o_jax.nn.streaming`): one encoder pass per new frame, frames t-k and
t-2k come from the feature cache, k = the run's `data.gap` (`--frame-gap` overrides it: k counts
frames of YOUR input, so a video at another frame rate than the training data may want another k).

The network predicts a root-relative mesh and 2D joints. The mesh is placed in the crop camera
(focal `--focal-px` in crop pixels, default 1.2 x 128; principal point = the frame centre mapped
into the crop) by the root translation that best reprojects the predicted 3D joints onto the
predicted 2D joints (`solve_root_translation`, linear least squares), then drawn over the crop,
next to a side view. Outputs in `--out`: `frames/frame_NNNNN.png`, `demo.mp4` ('mp4v') or
`demo.gif`, and `predictions.npz` (per frame: joints_cam_m [N, 21, 3], verts_cam_m [N, V, 3],
joints_px [N, 21, 2] in crop pixels, root_solved [N]).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np

from data_loaders.crop import CROP_SIZE_PX, crop_affine, crop_image, process_bbox, transform_points
from experiments.common import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOCAL_FACTOR = 1.2  # default crop-camera focal = 1.2 x crop side (about a 45 degree view)
DISPLAY_SCALE = 2  # the 128 px crop is drawn at 256 px
# The multi-frame model trained on synthetic/small and published with the repository (README "Study").
PUBLISHED_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "synthetic",
                                   "multi_frame")
MIN_DEPTH_M = 0.05  # a root closer than this (or behind the camera) is not a plausible hand
FALLBACK_DEPTH_M = 0.5


def solve_root_translation(joints_rel_m: np.ndarray, joints_px: np.ndarray, focal_px, principal_px) -> np.ndarray:
    """The translation t [3] (metres) that best projects `joints_rel_m + t` onto `joints_px`.

    Pinhole u = fx (X + tx) / (Z + tz) + cx is linear in t after multiplying by the depth:
    fx tx - (u - cx) tz = (u - cx) Z - fx X (and likewise for v, fy, cy), two equations per joint,
    solved by linear least squares (float64). Exact projections give the exact translation.

    Args:
      joints_rel_m: [J, 3] root-relative 3D joints (camera axes).
      joints_px: [J, 2] their 2D positions in pixels (x = column, y = row).
      focal_px: f or (fx, fy) in pixels.
      principal_px: (cx, cy) in pixels.

    Returns:
      [3] float64 translation (the root joint's camera position when joint 0 is at the origin).
    """
    joints = np.asarray(joints_rel_m, np.float64)
    points = np.asarray(joints_px, np.float64)
    if joints.ndim != 2 or joints.shape[1] != 3 or joints.shape[0] < 2:
        raise ValueError(f"joints_rel_m must have shape [J >= 2, 3]; got {joints.shape}")
    if points.shape != (joints.shape[0], 2):
        raise ValueError(f"joints_px must have shape [J={joints.shape[0]}, 2]; got {points.shape}")
    focal = np.broadcast_to(np.asarray(focal_px, np.float64), (2,))
    principal = np.asarray(principal_px, np.float64)
    if principal.shape != (2,) or not np.all(focal > 0):
        raise ValueError(f"focal_px must be positive (f or (fx, fy)) and principal_px [2]; got {focal_px}, "
                         f"{principal_px}")
    if not (np.all(np.isfinite(joints)) and np.all(np.isfinite(points)) and np.all(np.isfinite(principal))):
        raise ValueError("joints_rel_m, joints_px and principal_px must be finite")
    offsets = points - principal  # [J, 2] (u - cx, v - cy)
    rows, rhs = [], []
    for axis in range(2):
        block = np.zeros((len(joints), 3))
        block[:, axis] = focal[axis]
        block[:, 2] = -offsets[:, axis]
        rows.append(block)
        rhs.append(offsets[:, axis] * joints[:, 2] - focal[axis] * joints[:, axis])
    matrix, target = np.concatenate(rows), np.concatenate(rhs)
    solution, _, rank, _ = np.linalg.lstsq(matrix, target, rcond=None)
    if rank < 3:
        # All 2D points on the principal point (both axes): the depth is not observable.
        raise ValueError("joints_px do not determine the depth (degenerate: all on the principal point)")
    return solution


def place_root(joints_rel_m: np.ndarray, joints_px: np.ndarray, focal_px, principal_px) -> tuple[np.ndarray, bool]:
    """(translation [3], solved): `solve_root_translation`, or when it fails or lands closer than
    MIN_DEPTH_M (an untrained network's joints can), a root FALLBACK_DEPTH_M deep on the ray of
    the predicted 2D root, so that something is still drawn."""
    try:
        translation = solve_root_translation(joints_rel_m, joints_px, focal_px, principal_px)
        if np.all(np.isfinite(translation)) and translation[2] >= MIN_DEPTH_M:
            return translation, True
    except ValueError:
        pass
    focal = np.broadcast_to(np.asarray(focal_px, np.float64), (2,))
    root_px = np.asarray(joints_px, np.float64)[0]
    if not np.all(np.isfinite(root_px)):
        root_px = np.asarray(principal_px, np.float64)
    xy = (root_px - np.asarray(principal_px, np.float64)) / focal * FALLBACK_DEPTH_M
    return np.array([xy[0], xy[1], FALLBACK_DEPTH_M]), False


def parse_box(text: str) -> np.ndarray:
    """'x,y,w,h' -> [4] float64 (pixels; positive width and height)."""
    try:
        box = np.array([float(v) for v in text.split(",")])
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise UserError(f"--box must be x,y,w,h in pixels with w, h > 0; got {text!r}")
    return box


def crop_camera(frame_hw: tuple[int, int], box: np.ndarray | None, focal_px: float) -> dict[str, np.ndarray]:
    """The fixed crop of a frame size: {"affine" [2, 3], "focal_px" [2], "principal_px" [2]}.

    `box` None = the centred square of side min(H, W); a given box is sanitised and squared about
    its centre (`data_loaders.crop.process_bbox`). The frame's principal point is assumed at its
    centre ((W - 1) / 2, (H - 1) / 2); `focal_px` is the crop camera's focal length (crop pixels).
    """
    height, width = frame_hw
    if box is None:
        side = float(min(height, width))
        square = np.array([(width - side) / 2, (height - side) / 2, side, side])
    else:
        square = process_bbox(box, width, height)
        if square is None:
            raise UserError(f"--box {box.tolist()} does not overlap the {width}x{height} frames")
    affine = crop_affine(square)
    principal = transform_points(np.array([[(width - 1) / 2, (height - 1) / 2]]), affine)[0]
    return {"affine": affine, "focal_px": np.full(2, float(focal_px)), "principal_px": principal}


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_frames(path: str, max_frames: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 frames [H, W, 3] of a folder of images (natural name order) or a video file."""
    if os.path.isdir(path):
        names = sorted((n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)
        if not names:
            raise UserError(f"folder {path!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        for count, name in enumerate(names):
            if max_frames and count >= max_frames:
                return
            image = cv2.imread(os.path.join(path, name), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"cannot read image {os.path.join(path, name)!r}")
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return
    if not os.path.isfile(path):
        raise UserError(f"--input {path!r} is neither a folder of images nor a video file")
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise UserError(f"OpenCV cannot open the video {path!r}")
        count = 0
        while not max_frames or count < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise UserError(f"the video {path!r} has no readable frames")
    finally:
        capture.release()


def video_fps(path: str, default: float = 15.0) -> float:
    """Frame rate of a video file (`default` for folders or when the container has none)."""
    if os.path.isdir(path):
        return default
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else default


def draw_panel(crop_rgb: np.ndarray, verts_cam_m: np.ndarray, verts_rel_m: np.ndarray, faces: np.ndarray,
               focal_px: np.ndarray, principal_px: np.ndarray) -> np.ndarray:
    """[S, 2S, 3] uint8 (S = 128 x DISPLAY_SCALE): the crop with the mesh | the side view."""
    from experiments.visualize import overlay_mesh, side_view

    size = CROP_SIZE_PX * DISPLAY_SCALE
    image = cv2.resize(crop_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    # cv2.resize maps pixel centres x -> s x + (s - 1) / 2: the camera scales the same way.
    principal = np.asarray(principal_px, np.float64) * DISPLAY_SCALE + (DISPLAY_SCALE - 1) / 2
    front = overlay_mesh(image, verts_cam_m, faces, np.asarray(focal_px, np.float64) * DISPLAY_SCALE, principal)
    return np.concatenate([front, side_view(verts_rel_m, faces, size_px=size)], axis=1)


def write_animation(frames: Sequence[np.ndarray], path: str, fps: float) -> None:
    """RGB uint8 frames -> an MP4 ('mp4v', by OpenCV) or, for a .gif path, a looping GIF (imageio)."""
    if not frames:
        raise ValueError("write_animation needs at least one frame")
    if path.lower().endswith(".gif"):
        import imageio.v3 as iio

        iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write an mp4v video to {path!r} (try --gif)")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def run_demo(workdir: str, input_path: str, out_dir: str, box: str | None = None, focal_px: float | None = None,
             gif: bool = False, max_frames: int = 0, checkpoint: str = "best", frame_gap: int | None = None,
             fps: float | None = None, topology: str | None = None) -> dict[str, Any]:
    """Runs the demo (module docstring); returns {"frames": [png paths], "animation": path, ...}.
    `topology`, when given, must be the run's own (its topology.npz is used either way)."""
    import jax

    from experiments.common import restore_run
    from h2o_jax.nn.streaming import init_stream, stream_step

    if max_frames < 0 or (fps is not None and not fps > 0):
        raise UserError(f"--max-frames must be >= 0 and --fps > 0; got {max_frames} and {fps}")
    focal = DEFAULT_FOCAL_FACTOR * CROP_SIZE_PX if focal_px is None else float(focal_px)
    if not focal > 0:
        raise UserError(f"--focal-px must be positive; got {focal_px}")
    box_array = None if box is None else parse_box(box)
    frames_in = read_frames(input_path, max_frames)  # checks the input before the slow restore
    first = next(frames_in)
    config, model, variables, step = restore_run(workdir, checkpoint, topology=topology)
    gap = int(config.data.gap if frame_gap is None else frame_gap)
    if gap < 1:
        raise UserError(f"--frame-gap must be >= 1; got {gap}")
    faces = np.asarray(model.topology.faces)
    camera = crop_camera(first.shape[:2], box_array, focal)
    state = init_stream(model, variables, batch_size=1, frame_gap=gap)
    step_fn = jax.jit(lambda v, s, x: stream_step(model, v, s, x))

    frame_dir = os.path.join(out_dir, "frames")
    os.makedirs(frame_dir, exist_ok=True)
    panels, paths, records = [], [], {"joints_cam_m": [], "verts_cam_m": [], "joints_px": [], "root_solved": []}
    for index, frame in enumerate(_chain(first, frames_in)):
        if frame.shape[:2] != first.shape[:2]:
            raise UserError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                            f"{first.shape[1]}x{first.shape[0]}: one fixed crop needs one frame size")
        crop = crop_image(frame, camera["affine"])
        outputs, state = step_fn(variables, state, jax.numpy.asarray(crop[None], np.float32) / 255.0)
        outputs = jax.device_get(outputs)
        joints_r = np.asarray(outputs["joints_r_m"][0, 0], np.float64)
        verts_rel = np.asarray(outputs["verts_r_m"][0, 0], np.float64) - joints_r[0]
        joints_rel = joints_r - joints_r[0]
        joints_px = np.asarray(outputs["uv"][0, 0], np.float64) * CROP_SIZE_PX
        root, solved = place_root(joints_rel, joints_px, camera["focal_px"], camera["principal_px"])
        panel = draw_panel(crop, verts_rel + root, verts_rel, faces, camera["focal_px"], camera["principal_px"])
        path = os.path.join(frame_dir, f"frame_{index:05d}.png")
        cv2.imwrite(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        panels.append(panel)
        paths.append(path)
        for key, value in (("joints_cam_m", joints_rel + root), ("verts_cam_m", verts_rel + root),
                           ("joints_px", joints_px), ("root_solved", solved)):
            records[key].append(value)
        print(f"\rframe {index + 1}", end="", flush=True)
    print(flush=True)

    animation = os.path.join(out_dir, "demo.gif" if gif else "demo.mp4")
    write_animation(panels, animation, fps or video_fps(input_path))
    np.savez(os.path.join(out_dir, "predictions.npz"), **{k: np.stack(v) for k, v in records.items()})
    unsolved = len(paths) - int(np.sum(records["root_solved"]))
    if unsolved:
        print(f"note: in {unsolved} of {len(paths)} frames the 2D and 3D joints gave no root in front of the "
              f"camera; the mesh was drawn at {FALLBACK_DEPTH_M} m on the ray of the 2D root")
    print(f"{len(paths)} frames (checkpoint step {step}, gap k = {gap}) -> {frame_dir}, {animation}")
    return {"frames": paths, "animation": animation, "step": step, "frame_gap": gap, "unsolved": unsolved}


def _chain(first, rest):
    yield first
    yield from rest


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=PUBLISHED_MODEL_DIR,
                        help="training run directory (config.json + checkpoints) or published model folder "
                             "(default: the repository's multi-frame model, models/synthetic/multi_frame)")
    parser.add_argument("--input", required=True, help="a folder of frames (natural name order) or a video file "
                                                       "(a synthetic clip: python -m data_loaders.synthetic.video)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--box", default=None, help="x,y,w,h crop box in frame pixels (default: centred square)")
    parser.add_argument("--focal-px", type=float, default=None,
                        help=f"crop-camera focal length in crop pixels (default {DEFAULT_FOCAL_FACTOR} x 128); "
                             "a camera focal f in frame pixels is f x 128 / box side")
    parser.add_argument("--gif", action="store_true", help="write demo.gif instead of demo.mp4")
    parser.add_argument("--max-frames", type=int, default=0, help="use the first N frames only (0 = all)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.add_argument("--frame-gap", type=int, default=None, help="k of frames t-k, t-2k (default: the run's)")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the video's, or 15)")
    parser.add_argument("--topology", default=None, help="a topology spec that must be the run's own (checked; "
                                                          "the run's topology.npz is used)")
    args = parser.parse_args(argv)
    from experiments.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    try:
        return run_demo(args.workdir, args.input, args.out, args.box, args.focal_px, args.gif, args.max_frames,
                        args.checkpoint, args.frame_gap, args.fps, topology=args.topology)
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
