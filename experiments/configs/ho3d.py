"""H2ONet on HO3D-v2 (train split; evaluation through the official submission file).

    python -m experiments.train --config experiments/configs/ho3d.py --workdir runs/ho3d_s1
    python -m experiments.evaluate --workdir runs/ho3d_s1 --split evaluation  # writes pred.json

Needs the prepared `ho3d_v2` dataset (README "Data") and MANO's topology. Gap k = 30 frames
(data_formats 3.6). HO3D's evaluation split has no public 3D labels: training evaluates nothing
periodically (eval_every = 0) and `experiments.evaluate` writes the submission instead.
"""

from experiments.configs.base import base_config


def get_config(preset: str = "stage1"):
    config = base_config()
    config.model.topology = "mano:MANO_RIGHT.pkl"
    config.data.update(name="ho3d_v2", gap=30, eval_split="evaluation")
    config.train.update(num_steps=25 * (66_034 // 32), eval_every=0)
    if preset == "stage2":
        config.loss.stage = 2
    elif preset != "stage1":
        raise ValueError(f"unknown preset {preset!r}: use stage1 or stage2")
    config.lock()
    return config
