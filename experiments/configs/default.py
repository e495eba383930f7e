"""The default training config: the full multi-frame network on the synthetic default data
(= `experiments/configs/synthetic.py` without a preset)."""

from experiments.configs.synthetic import get_config as _synthetic


def get_config(preset: str = "default"):
    return _synthetic(preset)
