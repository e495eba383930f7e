"""Dex-YCB (setup S0) TFDS builder `dexycb`; importing this package registers it with TFDS."""

from data_loaders.dexycb.builder import MANUAL_DOWNLOAD_INSTRUCTIONS, DexYCB, DexYCBConfig, dexycb_record

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "DexYCB", "DexYCBConfig", "dexycb_record"]
