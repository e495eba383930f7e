"""Occlusion-weighted fusion (Eq. 2-3, official MF form) against float64 numpy references."""

import jax
import numpy as np
import pytest
from jax.test_util import check_grads

from h2o_jax.ops import finger_scores, guidance_logits, occlusion_fusion_weights, occlusion_weighted_fusion


def numpy_fusion(features, logits, vertex_part, score, palm_score=1.0):
    """Reference written from architecture.md C.3 with explicit loops over vertices."""
    logits = logits[..., :5, :]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    per_finger = {"visible_prob": probs[..., 0], "occluded_prob": probs[..., 1],
                  "visible_logit": logits[..., 0] - logits[..., 1]}[score]  # [B, T, 5]
    batch, frames, num_vertices, channels = features.shape
    weights = np.zeros((batch, frames, num_vertices))
    fused = np.zeros((batch, num_vertices, channels))
    for b in range(batch):
        for v in range(num_vertices):
            part = vertex_part[v]
            sigma = per_finger[b, :, part] if part < 5 else np.full(frames, palm_score)
            w = np.exp(sigma) / np.exp(sigma).sum()
            weights[b, :, v] = w
            fused[b, v] = (w[:, None] * features[b, :, v]).sum(0)
    return weights, fused


@pytest.mark.parametrize("score", ["visible_prob", "occluded_prob", "visible_logit"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("num_heads", [5, 6])
def test_fusion_matches_reference(score, seed, num_heads):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, 3, 17, 4))
    logits = rng.normal(size=(2, 3, num_heads, 2)) * 2
    vertex_part = rng.integers(0, 6, size=17)
    weights_ref, fused_ref = numpy_fusion(features, logits, vertex_part, score)
    fn = jax.jit(lambda f, l: (occlusion_fusion_weights(l, vertex_part, score),
                               occlusion_weighted_fusion(f, l, vertex_part, score)))
    weights, fused = fn(features.astype(np.float32), logits.astype(np.float32))
    np.testing.assert_allclose(weights, weights_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused, fused_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(weights).sum(1), 1.0, rtol=1e-6)
    vmapped = jax.vmap(lambda f, l: occlusion_weighted_fusion(f, l, vertex_part, score))(
        features.astype(np.float32), logits.astype(np.float32))
    np.testing.assert_allclose(vmapped, fused, rtol=1e-6, atol=1e-6)


def test_palm_vertices_weigh_frames_equally():
    rng = np.random.default_rng(2)
    weights = occlusion_fusion_weights(rng.normal(size=(3, 6, 2)) * 5, np.array([5, 5, 0, 5]))
    np.testing.assert_allclose(np.asarray(weights)[:, [0, 1, 3]], 1 / 3, rtol=1e-6)


def test_worked_example_of_the_official_weights():
    # architecture.md C.3: visible probabilities (0.88, 0.50, 0.12) -> weights (0.465, 0.318, 0.217).
    visible = np.array([0.88, 0.50, 0.12])
    logits = np.zeros((3, 5, 2))
    logits[:, 0, 0] = np.log(visible / (1 - visible))  # class-0 softmax probability = visible
    weights = occlusion_fusion_weights(logits, np.array([0]))
    np.testing.assert_allclose(np.asarray(weights)[:, 0], [0.465, 0.318, 0.217], atol=5e-4)


def test_dominant_frame_is_selected():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(3, 6, 2)).astype(np.float32)
    logits = np.zeros((3, 5, 2), np.float32)
    logits[:, :, 1] = 40.0  # every finger occluded in every frame ...
    logits[1, :, :] = [40.0, 0.0]  # ... except in frame 1, where all are visible
    fused = occlusion_weighted_fusion(features, logits, np.zeros(6, np.int32), score="visible_logit")
    np.testing.assert_allclose(fused, features[1], atol=1e-6)


def test_fusion_gradients():
    rng = np.random.default_rng(4)
    vertex_part = np.array([0, 1, 2, 3, 4, 5, 1])
    with jax.enable_x64(True):
        check_grads(lambda f, l: occlusion_weighted_fusion(f, l, vertex_part),
                    (rng.normal(size=(3, 7, 2)), rng.normal(size=(3, 6, 2))), order=2, modes=["rev"])


def test_fusion_errors():
    with pytest.raises(ValueError, match="vertex_part values"):
        occlusion_fusion_weights(np.zeros((3, 5, 2)), np.array([0, 6]))
    with pytest.raises(ValueError, match="finger_logits"):
        occlusion_fusion_weights(np.zeros((3, 4, 2)), np.array([0]))
    with pytest.raises(ValueError, match="score"):
        finger_scores(np.zeros((3, 5, 2)), "bogus")
    with pytest.raises(ValueError, match="T = 3"):
        occlusion_weighted_fusion(np.zeros((3, 2, 1)), np.zeros((2, 5, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="vertex_part"):
        occlusion_weighted_fusion(np.zeros((3, 2, 1)), np.zeros((3, 5, 2)), np.array([0]))


def test_guidance_logits_follow_labels_where_labelled_and_predictions_elsewhere():
    rng = np.random.default_rng(21)
    predicted = rng.normal(size=(4, 3, 6, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (4, 3, 6))
    mask = (rng.random((4, 3)) > 0.3).astype(np.float32)
    got = np.asarray(jax.jit(guidance_logits)(predicted, labels, mask))
    # Loop reference: a labelled head gets (margin, 0) if visible, (0, margin) if occluded.
    for b in range(4):
        for t in range(3):
            for h in range(6):
                expected = ((8.0, 0.0) if labels[b, t, h] == 0 else (0.0, 8.0)) if mask[b, t] else predicted[b, t, h]
                np.testing.assert_array_equal(got[b, t, h], expected)
    # Five-head classifiers read the first five labels; vmap over a leading axis matches.
    five = np.asarray(guidance_logits(predicted[:, :, :5], labels, mask, margin=3.0))
    np.testing.assert_array_equal(five[mask > 0], 3.0 * np.stack([1 - labels, labels], -1)[:, :, :5][mask > 0])
    batched = jax.vmap(guidance_logits)(predicted[None], labels[None], mask[None])[0]
    np.testing.assert_array_equal(batched, got)
    # The softmax of a labelled head is the label to 3e-4 (what the fusion weights see).
    probs = np.asarray(jax.nn.softmax(got, -1))[..., 1][mask > 0]
    np.testing.assert_allclose(probs, labels[mask > 0], atol=4e-4)


def test_guidance_logits_bad_shapes_name_the_input():
    logits = np.zeros((2, 3, 6, 2))
    with pytest.raises(ValueError, match="labels must have shape"):
        guidance_logits(logits, np.zeros((2, 3, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="label_mask must have shape"):
        guidance_logits(logits, np.zeros((2, 3, 6)), np.ones((2,)))
    with pytest.raises(ValueError, match="predicted_logits"):
        guidance_logits(np.zeros((2, 3, 6)), np.zeros((2, 3, 6)), np.ones((2, 3)))
