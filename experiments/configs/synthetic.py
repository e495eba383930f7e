"""H2ONet on the embedded synthetic occluded-hand videos (no download, no licence).

    python -m experiments.train --config experiments/configs/synthetic.py:cpu --workdir runs/synthetic_cpu
    python -m experiments.train --config experiments/configs/synthetic.py --workdir runs/synthetic
    python -m experiments.train --config experiments/configs/synthetic.py --config.model.variant=single_frame ...

Presets (the `:arg`):
  default  the full network on synthetic/default (55,000 frames), batch 32, 25 epochs in two
           stages as the official multi-frame schedule; for a GPU
  cpu      the README's main job, the official two-stage schedule shortened: a quarter-width
           single-frame network, mesh terms only (stage 1), 200 steps of batch 24 into
           <workdir>/single_frame, then the multi-frame network from its weights with all loss
           terms (stage 2) for 200 steps of batch 8 triplets; warm-up + cosine learning rate, the
           mesh head predicting offsets from the template (ModelConfig.template_residual);
           evaluated on 24 training sequences (of 600) held out for validation, the test split
           scored once at the end (README gives the time and the scores)
  cpu_long one stage: the multi-frame network with all terms from scratch for 2,000 steps (35
           minutes on a 2-core CPU with the data generated: README)
  tiny     tests: synthetic/tiny, 1/8 width, a few steps
"""

from experiments.configs.base import base_config


def get_config(preset: str = "default"):
    config = base_config()
    config.data.gap = 3  # synthetic frames move faster than 30 fps video
    if preset == "default":
        config.data.name = "synthetic/default"
        config.train.num_steps = 40_000
    elif preset in ("cpu", "cpu_long"):
        long = preset == "cpu_long"
        config.model.update(width_divisor=4, template_residual=True)  # a hand-shaped mesh from step 0
        config.loss.stage = 2  # the multi-frame run trains every term (its single-frame stage: 1 only)
        config.data.update(name="synthetic/small", batch_size=8, eval_limit=64, val_sequences=24)
        config.optim.update(learning_rate=1e-3, grad_clip_norm=1.0, schedule="cosine",
                            warmup_steps=50 if long else 20)
        config.train.update(num_steps=2000 if long else 200, log_every=10, checkpoint_every=50,
                            eval_every=250 if long else 100, single_frame_steps=0 if long else 200)
    elif preset == "tiny":
        config.model.width_divisor = 8
        config.data.update(name="synthetic/tiny", batch_size=4, build_workers=1, eval_limit=8)
        config.optim.update(learning_rate=1e-3, grad_clip_norm=1.0)
        config.train.update(num_steps=4, log_every=1, checkpoint_every=2, eval_every=4, keep_checkpoints=2)
    else:
        raise ValueError(f"unknown preset {preset!r}: use default, cpu, cpu_long or tiny")
    config.lock()
    return config
