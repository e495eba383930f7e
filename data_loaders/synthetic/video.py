"""One synthetic occluded-hand video for the demo: no download, no licence.

    python -m data_loaders.synthetic.video --out synthetic_clip.mp4
    python -m experiments.demo --workdir models/synthetic/multi_frame --input synthetic_clip.mp4 --out demo_out

Renders one sequence of the synthetic generator (`scene.generate_sequence`) with a seed of its
own (split id 2: neither the train nor the test split of any `synthetic/*` config) and writes its
128 x 128 hand crops as an MP4 ('mp4v'). The crops follow the hand as a hand tracker's would, so
the demo's default box (the whole frame) is the right one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import cv2
import numpy as np

DEMO_SPLIT_ID = 2  # builder._SPLIT_IDS uses 0 (train) and 1 (test)


def render_clip(num_frames: int = 48, sequence: int = 0, seed: int = 0) -> np.ndarray:
    """[num_frames, 128, 128, 3] uint8 RGB crops of one generated sequence."""
    from data_loaders.synthetic.rig import make_rig
    from data_loaders.synthetic.scene import SceneConfig, generate_sequence

    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    records = generate_sequence(make_rig(None), SceneConfig(frames_per_sequence=num_frames),
                                (seed, DEMO_SPLIT_ID), sequence)
    return np.stack([np.asarray(r["image"], np.uint8) for r in records])


def write_clip(path: str, frames_rgb: np.ndarray, fps: float = 15.0) -> None:
    """Writes [N, H, W, 3] uint8 RGB frames to an MP4 at `path`."""
    height, width = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot open {path!r} for writing an MP4")
    try:
        for frame in frames_rgb:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
    finally:
        writer.release()


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m data_loaders.synthetic.video", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="synthetic_clip.mp4", help="MP4 path")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--sequence", type=int, default=0, help="which sequence of the demo seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=15.0)
    args = parser.parse_args(argv)
    try:
        frames = render_clip(args.frames, args.sequence, args.seed)
        write_clip(args.out, frames, args.fps)
    except (ValueError, OSError) as err:
        sys.exit(f"error: {err}")
    print(f"wrote {args.out}: {len(frames)} frames of {frames.shape[2]} x {frames.shape[1]} px")
    return args.out


if __name__ == "__main__":
    main()
