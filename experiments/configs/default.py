"""Default training run: the full multi-frame model (stage 1) on the embedded synthetic data.

    python -m experiments.train --config experiments/configs/default.py --workdir runs/default

Hardware: any; schedule as the official MF DexYCB stage 1 (Adam 1e-4, x0.1 at epochs 10, 20,
grad-norm clip 0.1). The synthetic dataset is not part of this version yet (README "Status").
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.model = ml_collections.ConfigDict(dict(variant="B+D+MF+FO+HO", width_divisor=1, topology="random"))
    config.data = ml_collections.ConfigDict(dict(name="synthetic", batch_size=32))
    config.loss = ml_collections.ConfigDict(dict(stage=1))
    config.optim = ml_collections.ConfigDict(dict(learning_rate=1e-4, milestones_epochs=(10, 20), decay=0.1,
                                                  grad_clip_norm=0.1))
    config.train = ml_collections.ConfigDict(dict(num_steps=100_000, log_every=50, checkpoint_every=1000,
                                                  eval_every=5000, keep_checkpoints=3))
    return config
