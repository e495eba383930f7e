"""TFDS builder `dexycb`: Dex-YCB setup S0 as H2ONet/HandOccNet consume it (data_formats.md 2, 4).

Reads the user's extracted Dex-YCB tree plus HandOccNet's annotation JSONs and writes one frame
record per annotation (`data_loaders.records`): the un-augmented 128 x 128 crop of the box from
the 2D joints, crop camera, joints, the ground-truth MANO mesh and occlusion labels.

Decisions (documented here because the record format fixes them):
- Splits `train` / `test` = the S0 JSON files. Records keep the JSON's annotation order (no TFDS
  shuffling), so H2ONet's index-offset triplet policy sees the official list order.
- Training annotations whose box is degenerate are dropped; test ones fall back to the whole
  image (data_formats 4.3).
- Left hands (`hand_type == "left"`) are stored mirrored to right hands (data_formats 2.7):
  image flipped, u -> W - 1 - u, camera-frame X -> -X (absolute coordinates, so the mirrored
  joints project with the mirrored principal point W - 1 - cx), each MANO axis-angle's y and z
  negated; `is_mirrored` = 1.
- `pose` = the JSON's mean-relative pose (mirrored if left) plus the right MANO's `hands_mean` on
  the 45 finger values, i.e. the flat-hand-mean pose the record expects; `verts_cam_m` = the right
  MANO layer at that pose and shape, translated so that its wrist joint equals the annotated
  wrist (`joints_cam_m[0]`). `joints_cam_m` are the annotated joints (mirrored if left).
- `hand_mask`: `labels_XXXXXX.npz` `seg > 200` when that file exists, else all zeros.
- Occlusion labels: `occ_v2_XXXXXX.json` next to the image (`occ_XXXXXX.json`, as the released
  generator names them, is accepted too); otherwise computed from the ground-truth mesh and the
  `seg` mask by the released rule (`h2o_jax.render.occlusion_labels`, MANO part sets of
  architecture.md 16.1); otherwise `occ_label_valid` = 0.
- `sequence_index`: dense per split over the sorted stream names `<subject>/<sequence>/<serial>`;
  `frame_number` from `color_XXXXXX.jpg`; `sample_id` = the image path relative to the manual dir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_loaders import crop
from data_loaders.dexycb import frames
from data_loaders.records import tfds_features

SPLIT_FILES = {
    "train": "annotations/DEX_YCB_s0_train_data.json",
    "test": "annotations/DEX_YCB_s0_test_data.json",
}
_FRAME_RE = re.compile(r"^color_(\d+)\.jpg$")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Dex-YCB needs registration and cannot be downloaded by this builder. Set the manual dir to the
extracted Dex-YCB root (https://dex-ycb.github.io) holding:

  <manual_dir>/<subject>/<YYYYMMDD_HHMMSS>/<serial>/color_XXXXXX.jpg   RGB frames (all subjects)
  <manual_dir>/<subject>/<YYYYMMDD_HHMMSS>/<serial>/labels_XXXXXX.npz  optional: hand mask `seg`
  <manual_dir>/annotations/DEX_YCB_s0_train_data.json                  HandOccNet's S0 annotations
  <manual_dir>/annotations/DEX_YCB_s0_test_data.json                   (from the HandOccNet repository)
  <manual_dir>/<subject>/<YYYYMMDD_HHMMSS>/<serial>/occ_v2_XXXXXX.json optional: H2ONet occlusion
                                                                       labels (occ_XXXXXX.json accepted)

Ground-truth meshes need MANO: pass the path of MANO_RIGHT.pkl (MANO v1.2, https://mano.is.tue.mpg.de)
as `mano_path`, e.g. tfds.builder("dexycb", mano_path="/path/MANO_RIGHT.pkl"). Build with
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=...)).
"""


@dataclasses.dataclass(eq=False)
class DexYCBConfig(tfds.core.BuilderConfig):
    """Builder options.

    Attributes:
      mano_path: path of MANO_RIGHT.pkl (needed to build, not to read).
      compute_occlusion: compute occlusion labels from `seg` where no occ_v2 JSON exists.
    """

    mano_path: str | None = None
    compute_occlusion: bool = True


class DexYCB(tfds.core.GeneratorBasedBuilder):
    """Dex-YCB S0 frame records (see module docstring)."""

    name = "dexycb"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "S0 train/test from HandOccNet's JSONs; left hands mirrored."}
    BUILDER_CONFIGS = [DexYCBConfig(name="s0", description="Dex-YCB setup S0 (HandOccNet annotation JSONs)")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    # TFDS would derive this from the module's package through `importlib_resources`; the file
    # itself is what it wants, and naming it keeps the builder independent of that lookup.
    code_path = epath.Path(__file__)

    def __init__(self, *, mano_path: str | os.PathLike[str] | None = None, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self._mano_path = os.fspath(mano_path) if mano_path is not None else self.builder_config.mano_path

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds_features(frames.MANO_NUM_VERTICES, frames.NUM_BETAS),
            homepage="https://dex-ycb.github.io",
            disable_shuffling=True,  # keep the JSON order (H2ONet's index-offset triplets rely on it)
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        for split, rel in SPLIT_FILES.items():
            if not os.path.isfile(os.path.join(root, rel)):
                raise FileNotFoundError(
                    f"Dex-YCB manual dir {root!r} lacks {rel!r} (expected the extracted Dex-YCB root with "
                    f"HandOccNet's annotation JSONs).\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
                )
        if not self._mano_path:
            raise ValueError(
                "dexycb needs MANO to build ground-truth meshes: set mano_path to MANO_RIGHT.pkl, e.g. "
                "tfds.builder('dexycb', mano_path=...) or DexYCB(mano_path=...) or DexYCBConfig(mano_path=...)"
            )
        runner = frames.HandModelRunner(self._mano_path)
        return {
            split: self._generate_examples(root, rel, split == "train", runner)
            for split, rel in SPLIT_FILES.items()
        }

    def _generate_examples(self, root: str, rel: str, is_train: bool, runner: frames.HandModelRunner) -> Iterator:
        json_path = os.path.join(root, rel)
        entries = load_annotations(json_path)
        streams = sorted({_stream_of(image["file_name"]) for image, _ in entries})
        stream_index = {name: i for i, name in enumerate(streams)}
        key = 0
        for image_info, ann in entries:
            record = dexycb_record(
                root, image_info, ann, is_train=is_train, runner=runner,
                sequence_index=stream_index[_stream_of(image_info["file_name"])],
                compute_occlusion=self.builder_config.compute_occlusion, where=json_path,
            )
            if record is not None:
                yield key, record
                key += 1


def load_annotations(json_path: str) -> list[tuple[dict, dict]]:
    """(image entry, annotation) pairs of a HandOccNet COCO-style JSON, in annotation order."""
    try:
        with open(json_path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"annotation file {json_path!r} is not valid JSON: {e}") from None
    for key in ("images", "annotations"):
        if not isinstance(content, dict) or key not in content:
            raise KeyError(f"annotation file {json_path!r} lacks the top-level key {key!r}")
    images = {}
    for image in content["images"]:
        for key in ("id", "file_name", "width", "height"):
            if key not in image:
                raise KeyError(f"annotation file {json_path!r}: an entry of 'images' lacks {key!r}")
        images[image["id"]] = image
    pairs = []
    for ann in content["annotations"]:
        if ann.get("image_id") not in images:
            raise KeyError(
                f"annotation file {json_path!r}: annotation {ann.get('id')!r} refers to image_id "
                f"{ann.get('image_id')!r}, which 'images' does not list"
            )
        pairs.append((images[ann["image_id"]], ann))
    return pairs


def _stream_of(file_name: str) -> str:
    return "/".join(file_name.split("/")[:3])


def _frame_number(file_name: str) -> int:
    match = _FRAME_RE.match(os.path.basename(file_name))
    if match is None or file_name.count("/") != 3:
        raise ValueError(
            f"image file name {file_name!r} is not '<subject>/<sequence>/<serial>/color_XXXXXX.jpg'"
        )
    return int(match.group(1))


def _array(ann: dict, key: str, shape: tuple[int, ...], where: str, columns_at_least: bool = False) -> np.ndarray:
    value = ann
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{where}: annotation {ann.get('id')!r} lacks {key!r}")
        value = value[part]
    array = np.asarray(value, dtype=np.float64)
    ok = array.shape == shape or (
        columns_at_least and array.ndim == 2 and array.shape[0] == shape[0] and array.shape[1] >= shape[1]
    )
    if not ok:
        raise ValueError(f"{where}: annotation {ann.get('id')!r} has {key!r} of shape {array.shape}, expected {shape}")
    return array[:, : shape[1]] if array.ndim == 2 else array


def dexycb_record(
    root: str,
    image_info: dict,
    ann: dict,
    *,
    is_train: bool,
    runner: frames.HandModelRunner,
    sequence_index: int,
    compute_occlusion: bool = True,
    where: str = "annotation file",
) -> dict | None:
    """The record of one Dex-YCB annotation, or None for a dropped training sample (no box)."""
    file_name = image_info["file_name"]
    frame_number = _frame_number(file_name)
    image_w, image_h = int(image_info["width"]), int(image_info["height"])
    joints_img = _array(ann, "joints_img", (21, 2), where, columns_at_least=True)
    joints_cam = _array(ann, "joints_coord_cam", (21, 3), where)
    focal = _array(ann, "cam_param.focal", (2,), where)
    principal = _array(ann, "cam_param.princpt", (2,), where)
    pose_rel = _array(ann, "mano_param.pose", (48,), where)
    betas = _array(ann, "mano_param.shape", (frames.NUM_BETAS,), where)
    hand_type = ann.get("hand_type")
    if hand_type not in ("right", "left"):
        raise ValueError(
            f"{where}: annotation {ann.get('id')!r} has hand_type {hand_type!r}, expected 'right' or 'left'"
        )

    bbox = crop.process_bbox(crop.bbox_from_joints(joints_img), image_w, image_h)
    if bbox is None:
        if is_train:
            return None
        bbox = crop.whole_image_bbox(image_w, image_h)

    image_path = os.path.join(root, file_name)
    image = frames.read_image_rgb(image_path)
    if image.shape[:2] != (image_h, image_w):
        raise ValueError(
            f"image file {image_path!r} is {image.shape[1]}x{image.shape[0]} but its annotation says "
            f"{image_w}x{image_h}"
        )
    folder = os.path.dirname(image_path)
    labels_path = os.path.join(folder, f"labels_{frame_number:06d}.npz")
    hand_mask = None
    if os.path.isfile(labels_path):
        with np.load(labels_path, allow_pickle=False) as labels:
            if "seg" not in labels.files:
                raise KeyError(f"label file {labels_path!r} lacks the key 'seg'")
            seg = labels["seg"]
        if seg.shape != (image_h, image_w):
            raise ValueError(f"label file {labels_path!r}: 'seg' has shape {seg.shape}, expected {(image_h, image_w)}")
        hand_mask = seg > 200  # hand pixels are 255 (data_formats 2.3)

    mirrored = hand_type == "left"
    if mirrored:
        image = image[:, ::-1].copy()
        joints_img = crop.mirror_points_px(joints_img, image_w)
        joints_cam = joints_cam * [-1.0, 1.0, 1.0]
        principal = np.array([image_w - 1.0 - principal[0], principal[1]])
        pose_rel = (pose_rel.reshape(16, 3) * [1.0, -1.0, -1.0]).reshape(48)
        if hand_mask is not None:
            hand_mask = hand_mask[:, ::-1]
    pose_flat = pose_rel + np.concatenate([np.zeros(3), runner.hands_mean])
    verts_cam = runner.mesh_at_root(pose_flat, betas, joints_cam[0])

    occ = None
    for occ_name in (f"occ_v2_{frame_number:06d}.json", f"occ_{frame_number:06d}.json"):
        if os.path.isfile(os.path.join(folder, occ_name)):
            occ = frames.read_occlusion_json(os.path.join(folder, occ_name))
            break
    if occ is None and compute_occlusion and hand_mask is not None:
        occ = runner.occlusion(verts_cam, focal, principal, (image_h, image_w), hand_mask)

    return frames.make_record(
        image_rgb=image, bbox=bbox, mirror_width_px=image_w if mirrored else None,
        focal_px=focal, principal_px=principal, joints_img_px=joints_img, joints_cam_m=joints_cam,
        verts_cam_m=verts_cam, pose=pose_flat, shape=betas, hand_mask=hand_mask, occ_labels=occ,
        label_valid=True, sequence_index=sequence_index, frame_number=frame_number, sample_id=file_name,
    )
