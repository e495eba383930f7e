"""H2ONet on Dex-YCB S0 as the official multi-frame configs (stage 1; `:stage2` continues).

    python -m experiments.train --config experiments/configs/dexycb.py --workdir runs/dexycb_s1
    python -m experiments.train --config experiments/configs/dexycb.py:stage2 \
        --config.train.init_from=runs/dexycb_s1 --workdir runs/dexycb_s2

Needs the prepared `dexycb` dataset (README "Data") and MANO's topology:
--config.model.topology=mano:/path/MANO_RIGHT.pkl (or official:TEMPLATE_DIR:J_REG.npy).
Schedule: Adam 1e-4, x0.1 at epochs 10 and 20, 25 epochs, batch 32 (official cfg.json); the
epoch count is converted to steps from the dataset size at start.
"""

from experiments.configs.base import base_config


def get_config(preset: str = "stage1"):
    config = base_config()
    config.model.topology = "mano:MANO_RIGHT.pkl"
    config.data.update(name="dexycb", gap=5, eval_split="test")
    config.train.num_steps = 25 * (406_888 // 32)  # 25 epochs of the S0 train split (paper: 406,888)
    if preset == "stage2":
        config.loss.stage = 2
    elif preset != "stage1":
        raise ValueError(f"unknown preset {preset!r}: use stage1 or stage2")
    config.lock()
    return config
