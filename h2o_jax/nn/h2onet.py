"""The H2ONet model (single-frame, multi-frame and the Table 5 ablations), Flax linen.

Shape letters: B samples, T frames (frame 0 = current t, then t-k, t-2k), V vertices, J = 21
joints, D global-feature size. Images are float32 RGB in [0, 1], NHWC.

Outputs of `H2ONet.__call__(images [B, T, 128, 128, 3], train, all_frames=None, occ_labels=None,
occ_label_mask=None)` (T' = T when `all_frames` (default: `train`), else 1 -- inference computes
only what frame 0 needs; the labels [B, T, 6] / mask [B, T] feed only the FS oracle and, in
training, `ModelConfig.occlusion_guidance`):

| key | shape | meaning |
|---|---|---|
| uv | [B, T', J, 2] | 2D joints / crop size |
| verts_c_m | [B, T', V, 3] | canonical mesh; frame 0 includes the fused offset (Eq. 4) |
| joints_c_m | [B, T', J, 3] | regressor (learnable J) applied to verts_c_m |
| rot_mat | [B, T', 3, 3] | base global rotation R_i (the official export, no Delta R; frame 0 f(G') under enquiry_rotation="copy") |
| verts_r_m | [B, T', V, 3] | R (v - r) + r about the root joint r; frame 0 uses Delta R R when HO |
| joints_r_m | [B, T', J, 3] | as verts_r_m with the base R (Delta R R with delta_r_scope="all") |
| occ_logits | [B, T, H, 2] | occlusion classifier (when the variant has it); class 1 = occluded |
| delta_rot_mat | [B, 3, 3] | Eq. 7 offset rotation (HO variants) |
| hand_usable | [B, T] | Eq. 5 gate of each frame (HO variants; from the labels under guidance) |
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.config import ModelConfig
from h2o_jax.hand.topology import MeshTopology
from h2o_jax.nn.decoder import MeshDecoder, OcclusionClassifier, OffsetHead
from h2o_jax.nn.encoder import Backbone
from h2o_jax.nn.orientation import RotationRegressor
from h2o_jax.ops import enquire, guidance_logits, hand_usable, occlusion_weighted_fusion, rot6d_to_rotmat


def _rotate_about_root(points: jax.Array, rotation: jax.Array, root: jax.Array) -> jax.Array:
    """R (p - r) + r with the stop-gradients of the official code: [..., P, 3], [..., 3, 3], [..., 3].

    Points and the subtracted root are detached; the added root keeps the caller's gradient.
    """
    sg = jax.lax.stop_gradient
    centred = sg(points) - sg(root)[..., None, :]
    return jnp.einsum("...pk,...jk->...pj", centred, rotation) + root[..., None, :]


IMAGE_SIZE_PX = 128  # the encoder's 16 x 16 joint maps feed a Linear(256): the size is fixed


def _check_images(images: jax.Array, num_frames: int | None = None) -> None:
    """Raises ValueError unless images is float [N, 128, 128, 3], or [B, num_frames, 128, 128, 3]
    when num_frames is given."""
    leading = "N" if num_frames is None else f"B, T={num_frames}"
    expected = f"[{leading}, {IMAGE_SIZE_PX}, {IMAGE_SIZE_PX}, 3]"
    shape = tuple(images.shape)
    if (len(shape) != (4 if num_frames is None else 5) or shape[-3:] != (IMAGE_SIZE_PX, IMAGE_SIZE_PX, 3)
            or (num_frames is not None and shape[1] != num_frames)):
        suffix = "" if num_frames is None else " (frame 0 = current)"
        raise ValueError(f"images must have shape {expected}{suffix}, got {shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be floating-point RGB in [0, 1], got dtype {images.dtype} "
                         "(for uint8 frames: images.astype(np.float32) / 255)")


class H2ONet(nn.Module):
    """H2ONet with the topology as a constant and the variant set by `config`."""

    topology: MeshTopology
    config: ModelConfig

    def setup(self) -> None:
        cfg, topo = self.config, self.topology
        d = cfg.width_divisor
        dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
        self.backbone = Backbone(d, cfg.dual_branch, dtype, shortcuts=cfg.scratch_encoder,
                                 constant_se_init=cfg.scratch_encoder, stack_out_channels=cfg.stack_out_channels)
        self.decoder3d = MeshDecoder(topo, tuple(c // d for c in (32, 64, 128, 256)), dtype, cfg.template_residual)
        if cfg.uses_occlusion_classifier:
            self.occ_pred = OcclusionClassifier(d, cfg.occ_joint_groups, cfg.occ_heads, dtype)
        if cfg.mesh_fusion in ("occlusion", "concat"):
            self.offset_pred = OffsetHead(np.asarray(topo.spirals[0]), d, dtype)
        self.rot_reg = RotationRegressor(
            d, "fc_block1" if cfg.multi_frame else "fc_block", cfg.orientation_fusion, dtype)
        regressor = np.asarray(topo.joint_regressor, np.float32)
        self.mano_joint_reg = self.param("mano_joint_reg", lambda _: jnp.asarray(regressor))

    def encode(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """Per-image features: images [N, 128, 128, 3] -> uv [N, J, 2], d3 [N, V, C0] (the
        feature before the head), rot_features [N, D], occ_logits [N, H, 2] (when used)."""
        _check_images(images)
        enc = self.backbone(images, train)
        joint_features, d3 = self.decoder3d(enc["latent"], enc["uv"])
        features = {
            "uv": enc["uv"],
            "d3": d3,
            "rot_features": self.rot_reg.global_features(enc["j_latent"], enc.get("rot_latent")),
        }
        if self.config.uses_occlusion_classifier:  # trained by its own loss only
            features["occ_logits"] = self.occ_pred(jax.lax.stop_gradient(joint_features), train)
        return features

    def fuse(self, frames: dict[str, jax.Array], all_frames: bool = False,
             occ_labels: jax.Array | None = None, train: bool = False,
             occ_label_mask: jax.Array | None = None) -> dict[str, jax.Array]:
        """Combines per-frame features [B, T, ...] (frame 0 current) into the outputs.
        `occ_labels` [B, T, 6] and `occ_label_mask` [B, T] feed the FS oracle and, in training
        with `occlusion_guidance="labels_in_training"`, the fusion and the enquiry."""
        cfg = self.config
        sg = jax.lax.stop_gradient
        d3 = frames["d3"]
        num_out = d3.shape[1] if all_frames else 1
        verts_c = self.decoder3d.apply_head(d3[:, :num_out])  # [B, T', V, 3]
        outputs: dict[str, jax.Array] = {"uv": frames["uv"][:, :num_out]}
        logits = frames.get("occ_logits")
        guide = None
        if logits is not None:
            outputs["occ_logits"] = logits
            guide = sg(logits)
            if cfg.occlusion_guidance == "labels_in_training" and train and occ_labels is not None:
                mask = jnp.ones(occ_labels.shape[:2]) if occ_label_mask is None else occ_label_mask
                guide = guidance_logits(guide, occ_labels, mask)
        if cfg.mesh_fusion == "occlusion":
            fused = occlusion_weighted_fusion(d3, guide, np.asarray(self.topology.vertex_part),
                                              cfg.occ_fusion_score)
            z = jnp.concatenate([fused, d3[:, 0]], -1) if cfg.offset_input == "concat" else fused
            verts_c = verts_c.at[:, 0].add(self.offset_pred(z))
        elif cfg.mesh_fusion == "concat":
            z = jnp.concatenate([d3[:, i] for i in range(d3.shape[1])], -1)
            verts_c = verts_c.at[:, 0].add(self.offset_pred(z))
        elif cfg.mesh_fusion == "select_gt":
            if occ_labels is None:
                raise ValueError("the FS variant (mesh_fusion='select_gt') needs occ_labels [B, T, 6]")
            occluded_fingers = jnp.sum(occ_labels[..., :5], axis=-1)  # [B, T]
            chosen = jnp.argmin(occluded_fingers, axis=-1)  # ties -> the most recent frame
            chosen_d3 = jnp.take_along_axis(d3, chosen[:, None, None, None], axis=1)[:, 0]
            verts_c = verts_c.at[:, 0].set(self.decoder3d.apply_head(chosen_d3))

        rot_features = frames["rot_features"]
        rot_mat = rot6d_to_rotmat(self.rot_reg.rotation_6d(rot_features[:, :num_out]))
        rot_frame0 = rot_mat[:, 0]
        if cfg.orientation_fusion:
            usable = hand_usable(guide, cfg.hand_reading, cfg.gate_logit_offset)
            enquired = enquire(rot_features, usable)
            if cfg.enquiry_rotation == "copy":
                rot_frame0 = rot6d_to_rotmat(self.rot_reg.rotation_6d(enquired))
                delta = rot_frame0 @ jnp.swapaxes(rot_mat[:, 0], -1, -2)  # reported so that Delta R R_t = f(G')
            else:
                delta = rot6d_to_rotmat(self.rot_reg.offset_6d(rot_features[:, 0], enquired))
                rot_frame0 = delta @ rot_mat[:, 0]
            outputs.update(delta_rot_mat=delta, hand_usable=usable)

        multi = cfg.multi_frame
        regressor = self.mano_joint_reg
        joints_c = jnp.einsum("jv,btvk->btjk", regressor,
                              sg(verts_c) if multi and not cfg.mf_joint_grad else verts_c)
        # The rotated terms move the root only in an official single-frame network (architecture.md 7.2).
        root = joints_c[..., 0, :] if not multi and cfg.sf_root_grad else sg(joints_c[..., 0, :])
        vert_rot = rot_mat.at[:, 0].set(rot_frame0)
        # "copy" replaces frame t's rotation everywhere; the official Delta R moves the vertices only.
        joint_rot = vert_rot if cfg.delta_r_scope == "all" or cfg.enquiry_rotation == "copy" else rot_mat
        outputs.update(
            verts_c_m=verts_c,
            joints_c_m=joints_c,
            rot_mat=joint_rot,
            verts_r_m=_rotate_about_root(verts_c, vert_rot, root),
            joints_r_m=_rotate_about_root(joints_c, joint_rot, root),
        )
        return outputs

    def __call__(self, images: jax.Array, train: bool = False, all_frames: bool | None = None,
                 occ_labels: jax.Array | None = None, occ_label_mask: jax.Array | None = None
                 ) -> dict[str, jax.Array]:
        frames = self.config.num_frames
        _check_images(images, frames)
        batch = images.shape[0]
        per_image = self.encode(images.reshape(batch * frames, *images.shape[2:]), train)
        per_frame = {k: v.reshape(batch, frames, *v.shape[1:]) for k, v in per_image.items()}
        return self.fuse(per_frame, train if all_frames is None else all_frames, occ_labels, train, occ_label_mask)
