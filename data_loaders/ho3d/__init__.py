"""HO3D-v2 TFDS builder `ho3d_v2`; importing this package registers it with TFDS."""

from data_loaders.ho3d.builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    NATIVE_TO_COMMON,
    OPENGL_TO_OPENCV,
    HO3DV2,
    HO3DV2Config,
    ho3d_record,
    load_meta,
)

__all__ = [
    "HO3DV2",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "NATIVE_TO_COMMON",
    "OPENGL_TO_OPENCV",
    "HO3DV2Config",
    "ho3d_record",
    "load_meta",
]
