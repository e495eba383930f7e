"""The embedded synthetic occluded-hand video dataset (importing registers the TFDS builder)."""

from data_loaders.synthetic.builder import Synthetic, SyntheticConfig, occlusion_shares

__all__ = ["Synthetic", "SyntheticConfig", "occlusion_shares"]
