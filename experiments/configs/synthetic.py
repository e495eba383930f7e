"""H2ONet on the embedded synthetic occluded-hand videos (no download, no licence).

    python -m experiments.train --config experiments/configs/synthetic.py:cpu --workdir runs/synthetic_cpu
    python -m experiments.train --config experiments/configs/synthetic.py --workdir runs/synthetic
    python -m experiments.train --config experiments/configs/synthetic.py --config.model.variant=single_frame ...

Presets (the `:arg`):
  default  the full network on synthetic/default (55,000 frames), batch 32, 25 epochs in two
           stages as the official multi-frame schedule; for a GPU
  cpu      the README's main job: a quarter-width single-frame network trained with every loss
           term from scratch, CPU_STEPS steps of batch 24 (Adam 1e-3, 50 warm-up steps, cosine
           decay), with the non-official options that let it learn on a CPU budget (the mesh head
           predicting offsets from the template, identity paths in the encoder, 24-channel
           hourglass outputs, the root joint detached from the rotated terms); validated on 24
           training sequences (of 600) held out, the test split scored once at the end (README
           gives the time and the scores)
  cpu_long the same for 3,000 steps (about an hour on 2 cores: README)
  cpu_v1   the main job until 2026-12-03: the official two-stage schedule shortened (a
           quarter-width single-frame stage 1 of 200 steps of batch 24, then the multi-frame
           network with all terms, 200 steps of batch 8 triplets, Adam 1e-3, 20 warm-up steps),
           without the encoder options; it learns nothing a constant hand does not give (README)
  tiny     tests: synthetic/tiny, 1/8 width, a few steps
"""

from experiments.configs.base import base_config

CPU_STEPS = 800  # the main job: about 15 minutes of 2 cores with the data generated (README)


def get_config(preset: str = "default"):
    config = base_config()
    config.data.gap = 3  # synthetic frames move faster than 30 fps video
    if preset == "default":
        config.data.name = "synthetic/default"
        config.train.num_steps = 40_000
    elif preset in ("cpu", "cpu_long"):
        long = preset == "cpu_long"
        # What learns within a CPU budget (README "The main job"): the single-frame network with
        # every loss term from step 0, the encoder options that let it learn from scratch, and the
        # mesh head predicting offsets from the template. None of these is official.
        config.model.update(variant="single_frame", width_divisor=4, template_residual=True,
                            sf_root_grad=False, scratch_encoder=True, stack_out_channels=24)
        config.loss.stage = 2
        config.data.update(name="synthetic/small", batch_size=24, eval_limit=64, val_sequences=24)
        config.optim.update(learning_rate=1e-3, grad_clip_norm=1.0, schedule="cosine", warmup_steps=50)
        config.train.update(num_steps=3000 if long else CPU_STEPS, log_every=10, checkpoint_every=50,
                            eval_every=500 if long else 250, single_frame_steps=0)
    elif preset == "cpu_v1":
        # The main job until 2026-12-03 (commit 0583665), kept so that the README's earlier
        # commands (`synthetic.py:cpu_v1` plus flags) still make the runs they describe.
        config.model.update(width_divisor=4, template_residual=True)
        config.loss.stage = 2
        config.data.update(name="synthetic/small", batch_size=8, eval_limit=64, val_sequences=24)
        config.optim.update(learning_rate=1e-3, grad_clip_norm=1.0, schedule="cosine", warmup_steps=20)
        config.train.update(num_steps=200, log_every=10, checkpoint_every=50, eval_every=100, single_frame_steps=200)
    elif preset == "tiny":
        config.model.width_divisor = 8
        config.data.update(name="synthetic/tiny", batch_size=4, build_workers=1, eval_limit=8)
        config.optim.update(learning_rate=1e-3, grad_clip_norm=1.0)
        config.train.update(num_steps=4, log_every=1, checkpoint_every=2, eval_every=4, keep_checkpoints=2)
    else:
        raise ValueError(f"unknown preset {preset!r}: use default, cpu, cpu_long, cpu_v1 or tiny")
    config.lock()
    return config
