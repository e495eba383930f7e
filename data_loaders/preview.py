"""Preview a dataset split as a PNG grid: crops with 2D joints, skeleton, mesh and occlusion flags.

    python -m data_loaders.preview synthetic/tiny --split train --num 16 --out preview.png
    python -m data_loaders.preview dexycb --data-dir ~/tensorflow_datasets --augment

NAME is a TFDS dataset of this project ("synthetic/tiny", "dexycb", "ho3d_v2"), read with
``tfds.builder(NAME, data_dir=...).as_data_source(split)``. Each sample is drawn as a strip of its
T frames [t, t-k, t-2k]; under each frame a banner shows the frame number and the six occlusion
heads (T I M R L G: red = occluded, green = visible, grey = no label). On the crop: projected
mesh vertices (or mesh edges when faces are given) in grey, the skeleton and joints coloured by
finger (thumb red, index orange, middle yellow, ring green, little blue, wrist white).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import cv2
import numpy as np

from data_loaders import augment as augment_lib
from data_loaders.features import CROP_SIZE_PX

# (parent, child) bones of the common 21-joint order (data_formats.md 0.2).
SKELETON_EDGES = tuple((0 if j % 4 == 1 else j - 1, j) for j in range(1, 21))
# RGB per finger (thumb, index, middle, ring, little) and for the wrist.
FINGER_COLOURS_RGB = ((230, 40, 40), (255, 150, 0), (240, 230, 0), (40, 200, 60), (50, 110, 255))
WRIST_COLOUR_RGB = (255, 255, 255)
MESH_COLOUR_RGB = (170, 170, 170)
OCCLUDED_RGB, VISIBLE_RGB, NO_LABEL_RGB = (220, 30, 30), (30, 170, 60), (110, 110, 110)
OCC_HEAD_LETTERS = "TIMRLG"
BANNER_PX = 22
FLAG_BOX_PX = 16
FLAG_X0_PX = 70  # left edge of the first flag box inside the banner
FLAG_STEP_PX = 19
GAP_PX = 4  # separator between tiles and strips
DEFAULT_GAPS = {"dexycb": 5, "ho3d_v2": 30}
# Builder modules that register the project's TFDS datasets when imported.
_BUILDER_MODULES = ("data_loaders.synthetic", "data_loaders.dexycb", "data_loaders.ho3d")


def joint_colour(joint: int) -> tuple[int, int, int]:
    """RGB colour of joint `joint` (common order): the wrist white, others by finger."""
    return WRIST_COLOUR_RGB if joint == 0 else FINGER_COLOURS_RGB[(joint - 1) // 4]


def _to_canvas(points_px: np.ndarray, tile_scale: int) -> np.ndarray:
    # Crop pixel centres are integers; pixel p covers canvas pixels [p*s, p*s + s - 1].
    return points_px * tile_scale + (tile_scale - 1) / 2.0


def _project(points_m: np.ndarray, focal_px: np.ndarray, principal_px: np.ndarray) -> np.ndarray:
    depth = np.maximum(points_m[:, 2:], 1e-4)
    return points_m[:, :2] / depth * focal_px + principal_px


def _point(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _finite_in_canvas(p: np.ndarray, size: int) -> bool:
    return bool(np.all(np.isfinite(p)) and np.all(p > -size) and np.all(p < 2 * size))


def draw_frame(sample: dict[str, np.ndarray], t: int, faces: np.ndarray | None = None,
               tile_scale: int = 2) -> np.ndarray:
    """One frame of one sample: ``[S*128 + BANNER_PX, S*128, 3]`` uint8 RGB (S = tile_scale)."""
    size = CROP_SIZE_PX * tile_scale
    image = np.clip(np.asarray(sample["image"][t], np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    canvas = np.ascontiguousarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST))
    if "verts_cam_m" in sample and "focal_px" in sample:
        verts = _to_canvas(_project(np.asarray(sample["verts_cam_m"][t], np.float64), np.asarray(sample["focal_px"][t]),
                                    np.asarray(sample["principal_px"][t])), tile_scale)
        if faces is not None:
            for face in np.asarray(faces):
                for a, b in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
                    if _finite_in_canvas(verts[a], size) and _finite_in_canvas(verts[b], size):
                        cv2.line(canvas, _point(verts[a]), _point(verts[b]), MESH_COLOUR_RGB, 1, cv2.LINE_AA)
        else:
            for v in verts:
                if _finite_in_canvas(v, size):
                    cv2.circle(canvas, _point(v), 1, MESH_COLOUR_RGB, -1)
    joints = _to_canvas(np.asarray(sample["joints_img"][t], np.float64) * CROP_SIZE_PX, tile_scale)
    for parent, child in SKELETON_EDGES:
        if _finite_in_canvas(joints[parent], size) and _finite_in_canvas(joints[child], size):
            cv2.line(canvas, _point(joints[parent]), _point(joints[child]), joint_colour(child), 2)
    for j, p in enumerate(joints):
        if _finite_in_canvas(p, size):
            cv2.circle(canvas, _point(p), 3, joint_colour(j), -1)
    banner = np.zeros((BANNER_PX, size, 3), np.uint8)
    frame_number = int(sample["frame_index"][t]) if "frame_index" in sample else t
    cv2.putText(banner, f"f{frame_number}", (3, BANNER_PX - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    label_mask = sample.get("occ_label_mask", np.ones(len(sample["image"])))
    has_labels = "occ_labels" in sample and float(np.asarray(label_mask)[t]) > 0
    for head, letter in enumerate(OCC_HEAD_LETTERS):
        x0 = FLAG_X0_PX + head * FLAG_STEP_PX
        if has_labels:
            colour = OCCLUDED_RGB if int(sample["occ_labels"][t][head]) == 1 else VISIBLE_RGB
        else:
            colour = NO_LABEL_RGB
        cv2.rectangle(banner, (x0, 3), (x0 + FLAG_BOX_PX - 1, 3 + FLAG_BOX_PX - 1), colour, -1)
        cv2.putText(banner, letter, (x0 + 3, 3 + FLAG_BOX_PX - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return np.concatenate([canvas, banner], axis=0)


def render_preview(samples: Sequence[dict[str, np.ndarray]], faces: np.ndarray | None = None,
                   tile_scale: int = 2, columns: int = 2) -> np.ndarray:
    """A grid of samples (each a strip of its T frames): ``[H, W, 3]`` uint8 RGB.

    Strip i sits in grid row ``i // columns``, column ``i % columns``; frame t of a strip starts
    ``t * (S*128 + GAP_PX)`` pixels right of the strip's left edge (S = tile_scale).
    """
    if len(samples) == 0:
        raise ValueError("render_preview needs at least one sample")
    if tile_scale < 1 or columns < 1:
        raise ValueError(f"tile_scale and columns must be >= 1; got {tile_scale}, {columns}")
    strips = []
    for sample in samples:
        tiles = [draw_frame(sample, t, faces, tile_scale) for t in range(len(sample["image"]))]
        sep = np.zeros((tiles[0].shape[0], GAP_PX, 3), np.uint8)
        strips.append(np.concatenate([x for tile in tiles for x in (tile, sep)][:-1], axis=1))
    height = max(s.shape[0] for s in strips)
    width = max(s.shape[1] for s in strips)
    rows = -(-len(strips) // columns)
    grid = np.zeros((rows * (height + GAP_PX) - GAP_PX, columns * (width + GAP_PX) - GAP_PX, 3), np.uint8)
    for i, strip in enumerate(strips):
        y, x = (i // columns) * (height + GAP_PX), (i % columns) * (width + GAP_PX)
        grid[y:y + strip.shape[0], x:x + strip.shape[1]] = strip
    return grid


def register_builders() -> list[str]:
    """Imports the project's builder modules that exist (registering their TFDS datasets)."""
    loaded = []
    for module in _BUILDER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name is None or not module.startswith(error.name):
                raise  # the module exists but one of ITS imports is missing: report that
            continue
        loaded.append(module)
    return loaded


def load_records(name: str, split: str, data_dir: str | None):
    """``tfds.builder(name, data_dir=...).as_data_source(split)`` with clear errors."""
    import tensorflow_datasets as tfds

    register_builders()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError / registration errors
        raise KeyError(f"dataset {name!r} is not a registered TFDS dataset of this project "
                       f"(e.g. 'synthetic/tiny', 'dexycb', 'ho3d_v2'): {error}") from error
    if not builder.is_prepared():
        raise FileNotFoundError(f"dataset {name!r} is not built under data_dir={builder.data_dir!r}; "
                                f"run its builder (tfds build / download_and_prepare) first")
    if split not in builder.info.splits:
        raise KeyError(f"dataset {name!r} has no split {split!r}; it has {sorted(builder.info.splits)}")
    return builder.as_data_source(split)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m data_loaders.preview", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="TFDS dataset name, e.g. synthetic/tiny, dexycb, ho3d_v2")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num", type=int, default=16, help="number of samples (evenly spaced)")
    parser.add_argument("--out", default="preview.png")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--gap", type=int, default=None, help="k; default 5 (30 for ho3d_v2)")
    parser.add_argument("--limit", type=int, default=5000,
                        help="only the first LIMIT records are indexed (triplets resolved within them)")
    parser.add_argument("--augment", action="store_true", help="apply one random training augmentation per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--columns", type=int, default=2)
    args = parser.parse_args(argv)
    if args.num < 1 or args.limit < 1:
        parser.error("--num and --limit must be >= 1")
    from data_loaders.pipeline import FirstSamples, SampleSource

    records = load_records(args.name, args.split, args.data_dir)
    if len(records) == 0:
        raise ValueError(f"split {args.split!r} of {args.name!r} is empty")
    window = FirstSamples(records, args.limit)
    gap = args.gap if args.gap is not None else DEFAULT_GAPS.get(args.name.split("/")[0], 5)
    source = SampleSource(window, gap=gap)
    indices = np.unique(np.linspace(0, len(source) - 1, min(args.num, len(source))).round().astype(int))
    rng = np.random.default_rng(args.seed)
    samples = []
    for i in indices:
        sample = source[int(i)]
        if args.augment:
            sample = augment_lib.augment_sample(sample, augment_lib.sample_augment_params(rng))
        samples.append(sample)
    image = render_preview(samples, columns=args.columns)
    if not cv2.imwrite(args.out, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise FileNotFoundError(f"could not write {args.out!r} (does its folder exist?)")
    print(f"wrote {args.out} ({len(samples)} samples of {args.name}:{args.split}, gap {gap})")
    return args.out


if __name__ == "__main__":
    main(sys.argv[1:])
