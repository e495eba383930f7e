"""TFDS builder `ho3d_v2`: HO3D-v2 training and evaluation frames (data_formats.md 3, 4).

Reads the user's extracted HO3D-v2 tree (train.txt, evaluation.txt, `<split>/<SEQ>/rgb|meta|seg`)
and writes one frame record per listed frame (`data_loaders.records`).

Decisions (documented here because the record format fixes them):
- Splits: `train` (train.txt, records sorted by the line text, i.e. sequence then frame, as H2ONet
  re-sorts its list) and `evaluation` (evaluation.txt in its line order = the submission order).
  Records keep that order (no TFDS shuffling). H2ONet's "val" split (every 20th training record)
  is left to the pipeline.
- Coordinates: HO3D's OpenGL camera frame is converted to OpenCV by F = diag(1, -1, -1); joints
  are reordered from MANO-native to the common order with P (data_formats 0.3).
- `pose`: HO3D's `handPose` is already a flat-hand-mean pose; its root becomes F R_root (the
  record's root lives in the OpenCV camera frame), the 45 finger values are kept. `verts_cam_m`:
  MANO at that pose and `handBeta`, translated so that its wrist joint equals the annotated wrist.
- Training frames whose box from the projected joints is degenerate are dropped (data_formats 4.3).
- Evaluation frames have no hand labels (`label_valid` = 0). What the submission needs is kept in
  the record: `sample_id` (the image path, e.g. `evaluation/SM1/rgb/0000.png`) in evaluation.txt
  order, the root joint (OpenCV frame) in `joints_cam_m[0]` and its crop projection in
  `joints_img_px[0]`, all other joints, `verts_cam_m`, `pose` and `shape` zero. The crop box is the
  dataset's `handBoundingBox` (xyxy -> xywh) through `process_bbox` with expansion 1.5; a
  degenerate one falls back to the whole image.
- `hand_mask`: from `seg/NNNN.jpg` resized to the image size (bilinear, as H2ONet's script), hand =
  the chosen RGB channel > 200 (red for v2, `seg_hand_channel`), else all zeros.
- Occlusion labels: `occ_v2/NNNN.json` if present, else computed from the mesh and the seg mask
  (training frames, `compute_occlusion`), else `occ_label_valid` = 0.
- `sequence_index`: dense per split over the sorted sequence names; `frame_number` = NNNN.
- Not supported: HandOccNet's HO3D JSON route (data_formats 3.7); the meta pickles are the source.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from scipy.spatial.transform import Rotation

from data_loaders import crop
from data_loaders.dexycb import frames
from data_loaders.records import tfds_features
from h2o_jax.hand.mano import NATIVE_TO_COMMON as _NATIVE_TO_COMMON

# data_formats 0.3: common = native[P].
NATIVE_TO_COMMON = np.asarray(_NATIVE_TO_COMMON)
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])  # F: y -> -y, z -> -z; its own inverse
SPLITS = {"train": "train.txt", "evaluation": "evaluation.txt"}

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
HO3D-v2 needs registration and cannot be downloaded by this builder. Set the manual dir to the
extracted HO3D_v2 root (https://github.com/shreyashampali/ho3d) holding:

  <manual_dir>/train.txt, <manual_dir>/evaluation.txt   lines '<SEQ>/<NNNN>'
  <manual_dir>/train/<SEQ>/rgb/NNNN.png                 RGB frames
  <manual_dir>/train/<SEQ>/meta/NNNN.pkl                annotations (handPose, handBeta, handJoints3D, camMat)
  <manual_dir>/train/<SEQ>/seg/NNNN.jpg                 optional: hand segmentation (hand in red)
  <manual_dir>/train/<SEQ>/occ_v2/NNNN.json             optional: H2ONet occlusion labels
  <manual_dir>/evaluation/<SEQ>/rgb/NNNN.png, meta/NNNN.pkl  (root joint, hand box, camMat)

Ground-truth meshes need MANO: pass the path of MANO_RIGHT.pkl (MANO v1.2, https://mano.is.tue.mpg.de)
as `mano_path`, e.g. tfds.builder("ho3d_v2", mano_path="/path/MANO_RIGHT.pkl"). Build with
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=...)).
"""


@dataclasses.dataclass(eq=False)
class HO3DV2Config(tfds.core.BuilderConfig):
    """Builder options.

    Attributes:
      mano_path: path of MANO_RIGHT.pkl (needed to build, not to read).
      compute_occlusion: compute occlusion labels from `seg` where no occ_v2 JSON exists.
      seg_hand_channel: RGB channel (0 red, 1 green, 2 blue) that marks hand pixels in `seg/*.jpg`.
    """

    mano_path: str | None = None
    compute_occlusion: bool = True
    seg_hand_channel: int = 0


class HO3DV2(tfds.core.GeneratorBasedBuilder):
    """HO3D-v2 frame records (see module docstring)."""

    name = "ho3d_v2"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "train (meta pickles, OpenCV frame) and evaluation (submission order)."}
    BUILDER_CONFIGS = [HO3DV2Config(name="default", description="HO3D-v2 from the meta pickles")]
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
            description="HO3D-v2 hand frames cropped to 128 x 128 (H2ONet/HandOccNet convention).",
            features=tfds_features(frames.MANO_NUM_VERTICES, frames.NUM_BETAS),
            homepage="https://github.com/shreyashampali/ho3d",
            disable_shuffling=True,  # keep the list order (submission order for evaluation)
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        for list_name in SPLITS.values():
            if not os.path.isfile(os.path.join(root, list_name)):
                raise FileNotFoundError(
                    f"HO3D-v2 manual dir {root!r} lacks {list_name!r} (expected the extracted HO3D_v2 root)."
                    f"\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
                )
        if not self._mano_path:
            raise ValueError(
                "ho3d_v2 needs MANO to build ground-truth meshes: set mano_path to MANO_RIGHT.pkl, e.g. "
                "tfds.builder('ho3d_v2', mano_path=...) or HO3DV2(mano_path=...) or HO3DV2Config(mano_path=...)"
            )
        runner = frames.HandModelRunner(self._mano_path)
        return {split: self._generate_examples(root, split, runner) for split in SPLITS}

    def _generate_examples(self, root: str, split: str, runner: frames.HandModelRunner) -> Iterator:
        entries = read_frame_list(os.path.join(root, SPLITS[split]))
        if split == "train":
            entries = sorted(entries, key=lambda e: f"{e[0]}/{e[1]}")
        sequences = {name: i for i, name in enumerate(sorted({seq for seq, _ in entries}))}
        config = self.builder_config
        key = 0
        for seq, frame in entries:
            record = ho3d_record(
                root, split, seq, frame, runner=runner, sequence_index=sequences[seq],
                compute_occlusion=config.compute_occlusion, seg_hand_channel=config.seg_hand_channel,
            )
            if record is not None:
                yield key, record
                key += 1


def read_frame_list(path: str) -> list[tuple[str, str]]:
    """(sequence, 'NNNN') pairs of train.txt / evaluation.txt, in line order; blank lines skipped."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("/")
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{path!r} line {number}: {line!r} is not '<SEQ>/<NNNN>'")
            entries.append((parts[0], parts[1]))
    return entries


class _MetaUnpickler(pickle.Unpickler):
    """Unpickles HO3D meta files (Python-2 dicts of numpy arrays) and refuses every other global."""

    _NUMPY = {"_reconstruct", "scalar"}

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in self._NUMPY:
            return getattr(_numpy_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        # `_codecs.encode` appears in protocol-2 pickles written by Python 3 (bytes -> latin1 str);
        # it only encodes a string.
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
                              ("__builtin__", "object"), ("builtins", "object"), ("_codecs", "encode")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _numpy_multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2; avoids numpy.core's deprecation warning
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def load_meta(path: str) -> dict:
    """The dict of one `meta/NNNN.pkl` (latin1, numpy arrays only); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HO3D meta file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            meta = _MetaUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"HO3D meta file {path!r} could not be read: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"HO3D meta file {path!r} holds a {type(meta).__name__}, expected a dict")
    return meta


def _meta_array(meta: dict, key: str, size: int | tuple[int, ...], path: str) -> np.ndarray:
    if key not in meta or meta[key] is None:
        raise KeyError(f"HO3D meta file {path!r} lacks {key!r}")
    array = np.asarray(meta[key], dtype=np.float64)
    sizes = size if isinstance(size, tuple) else (size,)
    if array.size not in sizes:
        raise ValueError(f"HO3D meta file {path!r}: {key!r} has shape {array.shape}, expected {sizes} values")
    return array


def _image_path(root: str, split: str, seq: str, frame: str) -> str:
    png = os.path.join(root, split, seq, "rgb", f"{frame}.png")
    jpg = png[:-4] + ".jpg"  # HO3D-v3 layout
    return jpg if not os.path.exists(png) and os.path.exists(jpg) else png


def read_seg_mask(path: str, image_hw: tuple[int, int], channel: int) -> np.ndarray:
    """[H, W] bool hand mask of a `seg/NNNN.jpg` (resized to the image, chosen RGB channel > 200)."""
    import cv2

    seg = frames.read_image_rgb(path)
    seg = cv2.resize(seg, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_LINEAR)
    return seg[:, :, channel] > 200


def ho3d_record(
    root: str,
    split: str,
    seq: str,
    frame: str,
    *,
    runner: frames.HandModelRunner,
    sequence_index: int,
    compute_occlusion: bool = True,
    seg_hand_channel: int = 0,
) -> dict | None:
    """The record of one HO3D-v2 frame, or None for a dropped training frame (no box)."""
    meta_path = os.path.join(root, split, seq, "meta", f"{frame}.pkl")
    meta = load_meta(meta_path)
    cam = _meta_array(meta, "camMat", 9, meta_path).reshape(3, 3)
    focal = np.array([cam[0, 0], cam[1, 1]])
    principal = np.array([cam[0, 2], cam[1, 2]])
    joints_native = _meta_array(meta, "handJoints3D", (3, 63), meta_path)
    is_eval = joints_native.size == 3

    image_path = _image_path(root, split, seq, frame)
    image = frames.read_image_rgb(image_path)
    image_h, image_w = image.shape[:2]
    sample_id = os.path.relpath(image_path, root).replace(os.sep, "/")
    folder = os.path.join(root, split, seq)
    seg_path = os.path.join(folder, "seg", f"{frame}.jpg")
    hand_mask = read_seg_mask(seg_path, (image_h, image_w), seg_hand_channel) if os.path.isfile(seg_path) else None

    if is_eval:
        root_cam = OPENGL_TO_OPENCV @ joints_native.reshape(3)
        box_xyxy = _meta_array(meta, "handBoundingBox", 4, meta_path).reshape(4)
        box = np.array([box_xyxy[0], box_xyxy[1], box_xyxy[2] - box_xyxy[0], box_xyxy[3] - box_xyxy[1]])
        bbox = crop.process_bbox(box, image_w, image_h, expansion=crop.BBOX_EXPANSION_HO3D_EVAL)
        if bbox is None:
            bbox = crop.whole_image_bbox(image_w, image_h)
        joints_cam = np.zeros((21, 3))
        joints_cam[0] = root_cam
        joints_img = np.zeros((21, 2))
        joints_img[0] = focal * root_cam[:2] / root_cam[2] + principal
        return _finish(
            image, bbox, focal, principal, joints_img, joints_cam, np.zeros((frames.MANO_NUM_VERTICES, 3)),
            np.zeros(48), np.zeros(frames.NUM_BETAS), hand_mask, None, False, sequence_index, frame, sample_id,
        )

    joints_cam = (joints_native.reshape(21, 3) @ OPENGL_TO_OPENCV)[NATIVE_TO_COMMON]
    if np.any(joints_cam[:, 2] <= 0):
        raise ValueError(f"HO3D meta file {meta_path!r}: handJoints3D must lie at negative z (OpenGL frame)")
    joints_img = focal * joints_cam[:, :2] / joints_cam[:, 2:] + principal
    bbox = crop.process_bbox(crop.bbox_from_joints(joints_img), image_w, image_h)
    if bbox is None:
        return None
    hand_pose = _meta_array(meta, "handPose", 48, meta_path).reshape(48)
    betas = _meta_array(meta, "handBeta", frames.NUM_BETAS, meta_path).reshape(frames.NUM_BETAS)
    root_rot = OPENGL_TO_OPENCV @ Rotation.from_rotvec(hand_pose[:3]).as_matrix()
    pose = np.concatenate([Rotation.from_matrix(root_rot).as_rotvec(), hand_pose[3:]])
    verts_cam = runner.mesh_at_root(pose, betas, joints_cam[0])

    occ_path = os.path.join(folder, "occ_v2", f"{frame}.json")
    occ = None
    if os.path.isfile(occ_path):
        occ = frames.read_occlusion_json(occ_path)
    elif compute_occlusion and hand_mask is not None:
        occ = runner.occlusion(verts_cam, focal, principal, (image_h, image_w), hand_mask)
    return _finish(image, bbox, focal, principal, joints_img, joints_cam, verts_cam, pose, betas, hand_mask,
                   occ, True, sequence_index, frame, sample_id)


def _finish(image, bbox, focal, principal, joints_img, joints_cam, verts_cam, pose, betas, hand_mask, occ,
            label_valid, sequence_index, frame, sample_id):
    return frames.make_record(
        image_rgb=image, bbox=bbox, mirror_width_px=None, focal_px=focal, principal_px=principal,
        joints_img_px=joints_img, joints_cam_m=joints_cam, verts_cam_m=verts_cam, pose=pose, shape=betas,
        hand_mask=hand_mask, occ_labels=occ, label_valid=label_valid, sequence_index=sequence_index,
        frame_number=int(frame), sample_id=sample_id,
    )
