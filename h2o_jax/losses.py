"""H2ONet losses (paper Eq. 8-11) as the official code weights and reduces them.

Shape letters: B samples, T frames, V vertices, F faces, J = 21 joints, H occlusion heads.
Every term is a masked mean over the B x T rows (each row first averaged over its elements),
as the official multi-frame loss (architecture.md C.7); `frame_reduction="sum"` multiplies by
T (the paper's sum over frames). Per-row terms are exposed for callers that reduce differently.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from h2o_jax.config import LossConfig

_EPS = 1e-12


def _safe_norm(v: jax.Array, keepdims: bool = False) -> jax.Array:
    """max(|v|, 1e-12) with a zero (not NaN) gradient at v = 0: at initialisation every vertex
    of the decoder is identical (the lifting matrix starts constant), so edges have length 0."""
    return jnp.sqrt(jnp.maximum(jnp.sum(v * v, axis=-1, keepdims=keepdims), _EPS * _EPS))


def _unit(v: jax.Array) -> jax.Array:
    return v / _safe_norm(v, keepdims=True)


def l1_per_row(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error per row: [B, T, ...] x2 -> [B, T]."""
    return jnp.mean(jnp.abs(pred - target).reshape(*pred.shape[:2], -1), axis=-1)


def normal_per_row(pred_verts: jax.Array, gt_verts: jax.Array, faces: np.ndarray) -> jax.Array:
    """NormalVectorLoss: mean over faces of |e_k . n_gt| for the 3 unit edges of each predicted
    face against the ground-truth unit normal. [B, T, V, 3] x2 -> [B, T]."""
    p = [pred_verts[..., faces[:, k], :] for k in range(3)]
    g = [gt_verts[..., faces[:, k], :] for k in range(3)]
    normal = _unit(jnp.cross(_unit(g[1] - g[0]), _unit(g[2] - g[0])))
    edges = [_unit(p[1] - p[0]), _unit(p[2] - p[0]), _unit(p[2] - p[1])]
    cosines = jnp.stack([jnp.abs(jnp.sum(e * normal, -1)) for e in edges], -1)  # [B, T, F, 3]
    return jnp.mean(cosines.reshape(*cosines.shape[:2], -1), axis=-1)


def edge_per_row(pred_verts: jax.Array, gt_verts: jax.Array, faces: np.ndarray) -> jax.Array:
    """EdgeLengthLoss: mean over the 3 edges of every face of | |p_a - p_b| - |g_a - g_b| |."""
    terms = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        pred_len = _safe_norm(pred_verts[..., faces[:, a], :] - pred_verts[..., faces[:, b], :])
        gt_len = _safe_norm(gt_verts[..., faces[:, a], :] - gt_verts[..., faces[:, b], :])
        terms.append(jnp.abs(pred_len - gt_len))
    stacked = jnp.stack(terms, -1)
    return jnp.mean(stacked.reshape(*stacked.shape[:2], -1), axis=-1)


def occlusion_ce_per_row(logits: jax.Array, labels: jax.Array, positive_weight: float = 1.0) -> jax.Array:
    """Softmax cross-entropy averaged over heads: logits [B, T, H, 2], labels int [B, T, H];
    each head's term is multiplied by `positive_weight` where its label is 1 (occluded)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    weights = jnp.where(labels == 1, positive_weight, 1.0)
    return -jnp.mean(weights * picked, axis=-1)


def _reduce(per_row: jax.Array, weights: jax.Array, frame_reduction: str) -> jax.Array:
    total = jnp.sum(per_row * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    return total * per_row.shape[1] if frame_reduction == "sum" else total


def h2onet_loss(
    outputs: dict[str, jax.Array],
    batch: dict[str, jax.Array],
    faces: np.ndarray,
    config: LossConfig,
    multi_frame: bool,
) -> dict[str, jax.Array]:
    """All loss terms (already weighted) and their sum under the key "total".

    Args:
      outputs: the model's outputs for all frames (`all_frames=True`), shapes as in
        h2o_jax/nn/h2onet.py.
      batch: targets per data_loaders/features.py: verts_c_m, joints_c_m, verts_r_m, joints_r_m
        [B, T, ., 3], rot_mat [B, T, 3, 3], joints_img [B, T, J, 2], optionally occ_labels
        [B, T, 6] with occ_label_mask [B, T], and mask [B] (0 for padded samples).
      faces: [F, 3] level-0 faces of the topology.
      config: weights and the stage switch.
      multi_frame: the official multi-frame loss (adds the occlusion CE and, in stage 2, the
        rotated normal/edge terms) rather than the single-frame one.
    """
    faces = np.asarray(faces)
    num_frames = outputs["verts_c_m"].shape[1]
    sample_mask = batch.get("mask")
    if sample_mask is None:
        sample_mask = jnp.ones(outputs["verts_c_m"].shape[0])
    row_weights = jnp.broadcast_to(jnp.asarray(sample_mask, jnp.float32)[:, None],
                                   outputs["verts_c_m"].shape[:2])

    def reduce(per_row, weights=row_weights):
        return _reduce(per_row, weights, config.frame_reduction)

    sliced = {k: batch[k][:, :num_frames] for k in
              ("verts_c_m", "joints_c_m", "verts_r_m", "joints_r_m", "rot_mat", "joints_img")}
    mesh = config.mesh_weight
    terms = {
        "verts_wo_gr_loss": mesh * reduce(l1_per_row(outputs["verts_c_m"], sliced["verts_c_m"])),
        "joints_wo_gr_loss": mesh * reduce(l1_per_row(outputs["joints_c_m"], sliced["joints_c_m"])),
        "normal_wo_gr_loss": mesh * config.normal_weight
        * reduce(normal_per_row(outputs["verts_c_m"], sliced["verts_c_m"], faces)),
        "edge_wo_gr_loss": mesh * reduce(edge_per_row(outputs["verts_c_m"], sliced["verts_c_m"], faces)),
        "joint_img_loss": reduce(l1_per_row(outputs["uv"], sliced["joints_img"])),
    }
    if multi_frame and "occ_logits" in outputs:
        label_weights = row_weights * batch["occ_label_mask"][:, :num_frames]
        terms["occ_loss"] = reduce(
            occlusion_ce_per_row(outputs["occ_logits"], batch["occ_labels"][:, :num_frames],
                                 config.occ_positive_weight), label_weights)
    if config.stage == 2:
        terms["verts_w_gr_loss"] = mesh * reduce(l1_per_row(outputs["verts_r_m"], sliced["verts_r_m"]))
        terms["joints_w_gr_loss"] = mesh * reduce(l1_per_row(outputs["joints_r_m"], sliced["joints_r_m"]))
        terms["glob_rot_loss"] = config.rot_weight * reduce(
            jnp.mean(((outputs["rot_mat"] - sliced["rot_mat"]) ** 2).reshape(*row_weights.shape, 9), -1))
        if multi_frame and config.rotated_shape_losses:
            terms["normal_w_gr_loss"] = mesh * config.normal_weight * reduce(
                normal_per_row(outputs["verts_r_m"], sliced["verts_r_m"], faces))
            terms["edge_w_gr_loss"] = mesh * reduce(edge_per_row(outputs["verts_r_m"], sliced["verts_r_m"], faces))
    terms["total"] = sum(terms.values())
    return terms
