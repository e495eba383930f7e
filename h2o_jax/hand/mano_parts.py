"""MANO part labels of H2ONet's occlusion-label script (architecture.md 16.1), for the 778-vertex mesh.

Part ids as everywhere in h2o_jax: 0 thumb, 1 index, 2 middle, 3 ring, 4 little, 5 palm. The
released script lists vertex and face sets by hand (occ_label_preparation/seg.py); both sets
partition the mesh. Faces are labelled from the face sets rather than from a vertex majority so
computed labels follow the released generator. The multi-frame network fuses per-finger
features with the same vertex lists (architecture.md C.3), so MANO topologies take their
``vertex_part`` from here too; the Dex-YCB and HO3D-v2 builders use both lists for labels.
"""

from __future__ import annotations

import numpy as np

from h2o_jax.hand.topology import PALM_PART

MANO_NUM_VERTICES = 778
MANO_NUM_FACES = 1538

# Inclusive ranges per finger part (thumb, index, middle, ring, little); the palm is the rest.
_FINGER_VERTEX_RANGES = (
    ((6, 10), (28, 31), (43, 43), (89, 89), (104, 105), (123, 126), (240, 240), (248, 253),
     (266, 267), (286, 287), (697, 768)),
    ((46, 49), (56, 59), (86, 87), (133, 140), (155, 156), (164, 177), (186, 186), (189, 189),
     (194, 195), (212, 213), (221, 226), (237, 238), (245, 245), (258, 258), (260, 261), (263, 263),
     (272, 274), (280, 283), (294, 355)),
    ((185, 185), (187, 187), (246, 246), (262, 262), (269, 270), (277, 277), (356, 467)),
    ((76, 76), (141, 141), (162, 163), (197, 198), (247, 247), (276, 276), (290, 293), (468, 579)),
    ((161, 161), (199, 199), (201, 202), (289, 289), (580, 696)),
)
_FINGER_FACE_RANGES = (
    ((16, 17), (72, 73), (92, 93), (233, 236), (259, 259), (330, 331), (334, 335), (360, 361),
     (1231, 1382), (1462, 1463), (1472, 1472), (1474, 1479), (1530, 1537)),
    ((28, 29), (34, 35), (52, 53), (100, 103), (116, 117), (128, 135), (146, 149), (154, 157),
     (184, 185), (195, 200), (203, 204), (219, 220), (229, 230), (253, 254), (264, 265), (274, 277),
     (286, 289), (298, 307), (314, 315), (320, 321), (346, 347), (350, 353), (364, 365), (368, 369),
     (374, 375), (381, 532)),
    ((533, 764),),
    ((342, 343), (377, 377), (379, 380), (773, 1000), (1387, 1388), (1395, 1396)),
    ((1001, 1230), (1433, 1434)),
)


def _labels(count: int, finger_ranges) -> np.ndarray:
    labels = np.full(count, PALM_PART, dtype=np.int32)
    for part, ranges in enumerate(finger_ranges):
        for lo, hi in ranges:
            labels[lo:hi + 1] = part
    return labels


def mano_vertex_part() -> np.ndarray:
    """[778] int32 part id of every MANO vertex."""
    return _labels(MANO_NUM_VERTICES, _FINGER_VERTEX_RANGES)


def mano_face_part() -> np.ndarray:
    """[1538] int32 part id of every MANO face."""
    return _labels(MANO_NUM_FACES, _FINGER_FACE_RANGES)
