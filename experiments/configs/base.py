"""Fields every training config has; dataset configs start from `base_config()` and lock it."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.distributed = False  # multi-host: call jax.distributed.initialize() (env-configured) first
    config.model = ml_collections.ConfigDict(dict(
        variant="B+D+MF+FO+HO",  # or single_frame, B, B+D, B+D+MF, B+D+MF+FS, B+D+MF+FO (Table 5)
        width_divisor=1,         # 1 = the official network; 2/4/8 shrink every channel count
        topology="builtin",      # experiments/common.py: builtin, official:DIR, mano:PKL, PATH.npz
        template_residual=False,  # True: the mesh head predicts offsets from the template (not official)
        sf_root_grad=True,        # False: a single-frame net's root is detached as the multi-frame net's
        scratch_encoder=False,    # True: identity paths + constant SE gates in the encoder (not official)
        stack_out_channels=0,     # hourglass output channels (0: 24 / width_divisor, official)
        occlusion_guidance="predicted",  # "labels_in_training": GT labels steer fusion + enquiry
                                         # while training (not official; ModelConfig)
        enquiry_rotation="offset",  # "copy": frame t takes f(G') of the enquired frame (not official)
        gate_logit_offset=0.0,    # added to the finger heads' occluded logits in the Eq. 5 gate only
        hand_reading="A",         # Eq. 5 reading (A official; ModelConfig)
    ))
    config.data = ml_collections.ConfigDict(dict(
        name="synthetic/default", data_dir="", build_workers=0, batch_size=32, gap=5,
        triplet_policy="by_frame", train_jitter=True, augment=True, workers=0, eval_split="test",
        eval_limit=0,            # evaluate on N samples spread evenly over the split only (0 = all)
        val_sequences=0,         # > 0: hold out that many train sequences for the periodic evaluation
                                 # (curves, best checkpoint); the test split is scored once at the end
    ))
    config.loss = ml_collections.ConfigDict(dict(stage=1, normal_weight=0.1, rot_weight=1.0,
                                                  mesh_weight=1.0,  # not official when != 1 (LossConfig)
                                                  occ_positive_weight=1.0))  # likewise
    config.optim = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, milestones_epochs=(10, 20), decay=0.1, grad_clip_norm=0.1,
        schedule="multistep",    # or "cosine": linear warm-up, cosine decay over train.num_steps
        warmup_steps=0, final_fraction=0.01,
        rotation_lr_scale=1.0,   # learning-rate factor of the orientation head (rot_reg)
        joint_regressor_lr_scale=1.0,  # ... of the learnable joint regressor (0 freezes it)
        backbone_lr_scale=1.0,   # ... of the encoder (stem, hourglasses, uv head)
    ))
    config.train = ml_collections.ConfigDict(dict(
        num_steps=40_000, log_every=50, checkpoint_every=1000, eval_every=5000, keep_checkpoints=3,
        init_from="",            # a workdir whose best weights start this run: stage 1 -> stage 2,
                                 # or a single-frame run -> a multi-frame one (architecture.md C.8)
        single_frame_steps=0,    # > 0: first a single-frame stage-1 run of that many steps into
        single_frame_batch_size=24,  # <workdir>/single_frame, which then starts this run (C.8)
        predictions_png=True,
    ))
    return config
