"""Losses against float64 numpy transcriptions of architecture.md 12 / C.7."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from h2o_jax.config import LossConfig
from h2o_jax.losses import edge_per_row, h2onet_loss, normal_per_row, occlusion_ce_per_row


def unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def numpy_normal(pred, gt, faces):
    out = np.zeros(pred.shape[:2])
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            vals = []
            for i0, i1, i2 in faces:
                p0, p1, p2 = pred[b, t, [i0, i1, i2]]
                g0, g1, g2 = gt[b, t, [i0, i1, i2]]
                n = unit(np.cross(unit(g1 - g0), unit(g2 - g0)))
                vals += [abs(unit(p1 - p0) @ n), abs(unit(p2 - p0) @ n), abs(unit(p2 - p1) @ n)]
            out[b, t] = np.mean(vals)
    return out


def numpy_edge(pred, gt, faces):
    out = np.zeros(pred.shape[:2])
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            vals = []
            for face in faces:
                for a, c in ((0, 1), (0, 2), (1, 2)):
                    vals.append(abs(np.linalg.norm(pred[b, t, face[a]] - pred[b, t, face[c]])
                                    - np.linalg.norm(gt[b, t, face[a]] - gt[b, t, face[c]])))
            out[b, t] = np.mean(vals)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_normal_and_edge_losses_match_reference(seed):
    rng = np.random.default_rng(seed)
    faces = np.stack([rng.choice(12, 3, replace=False) for _ in range(15)])
    pred, gt = rng.normal(size=(2, 3, 12, 3)), rng.normal(size=(2, 3, 12, 3))
    np.testing.assert_allclose(jax.jit(lambda p, g: normal_per_row(p, g, faces))(pred, gt),
                               numpy_normal(pred, gt, faces), rtol=1e-5)
    np.testing.assert_allclose(edge_per_row(pred.astype(np.float32), gt.astype(np.float32), faces),
                               numpy_edge(pred, gt, faces), rtol=1e-5, atol=1e-6)
    # Gradients stay finite on a collapsed mesh (all vertices equal), as at initialisation.
    collapsed = jnp.zeros((1, 1, 12, 3))
    for fn in (normal_per_row, edge_per_row):
        grad = jax.grad(lambda p: jnp.sum(fn(p, jnp.asarray(gt[:1, :1], jnp.float32), faces)))(collapsed)
        assert np.isfinite(np.asarray(grad)).all()


def test_occlusion_cross_entropy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 6, 2))
    labels = rng.integers(0, 2, (2, 3, 6))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0].mean(-1)
    np.testing.assert_allclose(occlusion_ce_per_row(logits.astype(np.float32), labels), expected, rtol=1e-5)


def test_occlusion_cross_entropy_positive_weight():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 3, 6, 2))
    labels = rng.integers(0, 2, (3, 3, 6))
    # Per head -log p(label) in float64, times 2.5 where the label is "occluded", mean over heads.
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = -np.log(np.where(labels == 1, probs[..., 1], probs[..., 0]))
    expected = np.mean(np.where(labels == 1, 2.5, 1.0) * nll, axis=-1)
    got = jax.jit(occlusion_ce_per_row, static_argnums=2)(jnp.asarray(logits, jnp.float32), labels, 2.5)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The gradient of an occluded head's occluded logit is 2.5 / H (p - 1); visible ones unscaled.
    grad = jax.grad(lambda x: jnp.sum(occlusion_ce_per_row(x, labels, 2.5)))(jnp.asarray(logits))
    one_hot = np.stack([labels == 0, labels == 1], -1)
    expected_grad = np.where(labels == 1, 2.5, 1.0)[..., None] * (probs - one_hot) / 6
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
    # Through the total loss: only occ_loss moves, by exactly the weighted CE.
    outputs, targets, faces = make_case(np.random.default_rng(5))
    plain = h2onet_loss(outputs, targets, faces, LossConfig(stage=2), multi_frame=True)
    weighted = h2onet_loss(outputs, targets, faces, LossConfig(stage=2, occ_positive_weight=2.5), multi_frame=True)
    ce = occlusion_ce_per_row(outputs["occ_logits"], targets["occ_labels"], 2.5)
    np.testing.assert_allclose(weighted["occ_loss"], np.mean(ce), rtol=1e-5)
    assert weighted["occ_loss"] > plain["occ_loss"]
    for name in set(plain) - {"occ_loss", "total"}:
        np.testing.assert_allclose(weighted[name], plain[name], rtol=1e-7, err_msg=name)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="occ_positive_weight"):
            LossConfig(occ_positive_weight=bad)


def make_case(rng, batch=3, frames=3, vertices=10):
    faces = np.stack([rng.choice(vertices, 3, replace=False) for _ in range(8)])
    shapes = {"verts_c_m": (vertices, 3), "verts_r_m": (vertices, 3), "joints_c_m": (21, 3),
              "joints_r_m": (21, 3), "rot_mat": (3, 3), "joints_img": (21, 2)}
    outputs = {k: rng.normal(size=(batch, frames, *s)) for k, s in shapes.items()}
    outputs["uv"] = outputs.pop("joints_img")
    outputs["occ_logits"] = rng.normal(size=(batch, frames, 6, 2))
    targets = {k: rng.normal(size=(batch, frames, *s)) for k, s in shapes.items()}
    targets["occ_labels"] = rng.integers(0, 2, (batch, frames, 6))
    targets["occ_label_mask"] = np.ones((batch, frames))
    targets["mask"] = np.ones(batch)
    return outputs, targets, faces


def test_total_loss_terms_weights_and_stages():
    rng = np.random.default_rng(4)
    outputs, targets, faces = make_case(rng)
    l1 = lambda a, b: np.mean(np.abs(a - b))  # noqa: E731
    stage1 = h2onet_loss(outputs, targets, faces, LossConfig(stage=1), multi_frame=True)
    assert set(stage1) == {"verts_wo_gr_loss", "joints_wo_gr_loss", "normal_wo_gr_loss", "edge_wo_gr_loss",
                           "joint_img_loss", "occ_loss", "total"}
    np.testing.assert_allclose(stage1["verts_wo_gr_loss"], l1(outputs["verts_c_m"], targets["verts_c_m"]), rtol=1e-6)
    np.testing.assert_allclose(stage1["joint_img_loss"], l1(outputs["uv"], targets["joints_img"]), rtol=1e-6)
    np.testing.assert_allclose(stage1["normal_wo_gr_loss"],
                               0.1 * numpy_normal(outputs["verts_c_m"], targets["verts_c_m"], faces).mean(), rtol=1e-5)
    stage2 = h2onet_loss(outputs, targets, faces, LossConfig(stage=2), multi_frame=True)
    assert {"verts_w_gr_loss", "joints_w_gr_loss", "glob_rot_loss", "normal_w_gr_loss", "edge_w_gr_loss"} < set(stage2)
    np.testing.assert_allclose(stage2["glob_rot_loss"], np.mean((outputs["rot_mat"] - targets["rot_mat"]) ** 2), rtol=1e-6)
    np.testing.assert_allclose(stage2["total"], sum(v for k, v in stage2.items() if k != "total"), rtol=1e-6)
    single = h2onet_loss(outputs, targets, faces, LossConfig(stage=2), multi_frame=False)
    assert "occ_loss" not in single and "normal_w_gr_loss" not in single
    summed = h2onet_loss(outputs, targets, faces, LossConfig(stage=1, frame_reduction="sum"), multi_frame=True)
    np.testing.assert_allclose(summed["verts_wo_gr_loss"], 3 * stage1["verts_wo_gr_loss"], rtol=1e-6)


def test_mesh_weight_scales_every_mesh_term_and_nothing_else():
    rng = np.random.default_rng()
    outputs, targets, faces = make_case(rng)
    weight = float(rng.uniform(2.0, 50.0))
    l1 = lambda a, b: np.mean(np.abs(np.asarray(a, np.float64) - b))  # noqa: E731
    plain = h2onet_loss(outputs, targets, faces, LossConfig(stage=2), multi_frame=True)
    weighted = h2onet_loss(outputs, targets, faces, LossConfig(stage=2, mesh_weight=weight), multi_frame=True)
    mesh_terms = {"verts_wo_gr_loss", "joints_wo_gr_loss", "normal_wo_gr_loss", "edge_wo_gr_loss",
                  "verts_w_gr_loss", "joints_w_gr_loss", "normal_w_gr_loss", "edge_w_gr_loss"}
    assert mesh_terms < set(weighted)
    # Independent reference for two of them, the rest relative to the official weighting.
    np.testing.assert_allclose(weighted["verts_w_gr_loss"], weight * l1(outputs["verts_r_m"], targets["verts_r_m"]),
                               rtol=1e-5)
    np.testing.assert_allclose(weighted["edge_wo_gr_loss"],
                               weight * numpy_edge(outputs["verts_c_m"], targets["verts_c_m"], faces).mean(), rtol=1e-5)
    for name in set(plain) - {"total"}:
        expected = plain[name] * (weight if name in mesh_terms else 1.0)
        np.testing.assert_allclose(weighted[name], expected, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(weighted["total"], sum(v for k, v in weighted.items() if k != "total"), rtol=1e-6)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_loss_weights_must_be_finite_and_non_negative(bad):
    for name in ("mesh_weight", "rot_weight", "normal_weight"):
        with pytest.raises(ValueError, match=name):
            LossConfig(**{name: bad})


def test_masks_drop_padded_samples_and_missing_labels():
    rng = np.random.default_rng(5)
    outputs, targets, faces = make_case(rng)
    targets["mask"] = np.array([1.0, 1.0, 0.0])
    targets["occ_label_mask"] = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    loss = h2onet_loss(outputs, targets, faces, LossConfig(stage=1), multi_frame=True)
    np.testing.assert_allclose(loss["verts_wo_gr_loss"],
                               np.mean(np.abs(outputs["verts_c_m"][:2] - targets["verts_c_m"][:2])), rtol=1e-6)
    ce = occlusion_ce_per_row(outputs["occ_logits"], targets["occ_labels"])
    keep = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0]], bool)
    np.testing.assert_allclose(loss["occ_loss"], np.asarray(ce)[keep].mean(), rtol=1e-5)
    # Garbage in a masked-out sample changes nothing.
    outputs["verts_c_m"][2] = 1e6
    again = h2onet_loss(outputs, targets, faces, LossConfig(stage=1), multi_frame=True)
    np.testing.assert_allclose(again["verts_wo_gr_loss"], loss["verts_wo_gr_loss"], rtol=1e-6)
