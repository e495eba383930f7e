"""Eq. 5-6 (hand-level occlusion and the enquiry) against the paper's case-by-case rule."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from h2o_jax.ops import enquire, enquiry_weights, hand_usable


def paper_enquiry(usable, features):
    """The paper's description as plain control flow: G of the first usable frame in the order
    t, t-k, t-2k; G_t when the hand is occluded in all three."""
    if usable[0]:
        return features[0]
    if usable[1]:
        return features[1]
    if usable[2]:
        return features[2]
    return features[0]


def logits_for(occluded_fingers):
    """[5, 2] logits with the given fingers predicted occluded."""
    logits = np.zeros((5, 2), np.float32)
    logits[:, 0] = 1.0
    logits[list(occluded_fingers), :] = [0.0, 1.0]
    return logits


@pytest.mark.parametrize("pattern", list(itertools.product([0, 1], repeat=3)))
def test_enquiry_all_eight_patterns(pattern):
    rng = np.random.default_rng(sum(p << i for i, p in enumerate(pattern)))
    features = rng.normal(size=(3, 8)).astype(np.float32)
    # Usable frame: some fingers visible; unusable frame: all five fingers occluded (Reading A).
    logits = np.stack([logits_for([0, 3] if u else range(5)) for u in pattern])
    usable = jax.jit(hand_usable)(logits)
    np.testing.assert_array_equal(usable, pattern)
    weights = enquiry_weights(usable)
    assert np.asarray(weights).sum() == pytest.approx(1.0)
    assert sorted(np.asarray(weights).tolist()) == [0.0, 0.0, 1.0]
    np.testing.assert_array_equal(jax.jit(enquire)(features, usable), paper_enquiry(pattern, features))


def test_reading_b_needs_all_fingers_visible():
    logits = np.stack([logits_for([]), logits_for([2]), logits_for(range(5))])
    np.testing.assert_array_equal(hand_usable(logits, reading="B"), [1, 0, 0])
    np.testing.assert_array_equal(hand_usable(logits, reading="A"), [1, 1, 0])
    with pytest.raises(ValueError, match="reading"):
        hand_usable(logits, reading="C")


def test_global_head_is_ignored():
    logits = np.concatenate([logits_for(range(5)), [[0.0, 5.0]]])[None]  # 6 heads
    logits_visible_global = logits.copy()
    logits_visible_global[0, 5] = [5.0, 0.0]
    np.testing.assert_array_equal(hand_usable(logits), hand_usable(logits_visible_global))


def test_enquiry_batched_equals_vmapped_and_soft_weights_sum_to_one():
    rng = np.random.default_rng(0)
    usable = rng.random((6, 3)).astype(np.float32)
    features = rng.normal(size=(6, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(enquire(features, usable), jax.vmap(enquire)(features, usable), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(enquiry_weights(usable)).sum(-1), 1.0, rtol=1e-6)
    # Closed form of Eq. 6 for T = 3 with soft values.
    u0, u1, u2 = usable.T
    expected = np.stack([u0 + (1 - u0) * (1 - u1) * (1 - u2), (1 - u0) * u1, (1 - u0) * (1 - u1) * u2], -1)
    np.testing.assert_allclose(enquiry_weights(usable), expected, rtol=1e-6, atol=1e-7)


def test_gradient_reaches_only_the_selected_frame():
    features = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), jnp.float32)
    usable = jnp.array([0.0, 1.0, 1.0])
    grad = jax.grad(lambda g: jnp.sum(enquire(g, usable) ** 2))(features)
    np.testing.assert_array_equal(np.asarray(grad)[[0, 2]], 0.0)
    np.testing.assert_allclose(grad[1], 2 * features[1])
    # The argmax gate itself carries no gradient to the classifier.
    logit_grad = jax.grad(lambda l: jnp.sum(hand_usable(l)))(jnp.ones((3, 5, 2)))
    np.testing.assert_array_equal(logit_grad, 0.0)


def test_enquiry_shape_errors():
    with pytest.raises(ValueError, match="usable"):
        enquire(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="finger_logits"):
        hand_usable(np.zeros((3, 4, 2)))


def test_occluded_logit_offset_moves_the_decision_threshold():
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(50, 3, 6, 2)).astype(np.float32)
    for offset in (0.0, 0.7, 2.0, -1.0):
        got = jax.jit(hand_usable, static_argnums=1)(logits, "A", offset)
        # Reference: a finger is called occluded when l_occ + offset > l_vis; usable unless all five are.
        occluded = logits[..., :5, 1] + offset > logits[..., :5, 0]
        np.testing.assert_array_equal(got, 1.0 - occluded.all(-1))
    # A large offset calls every finger occluded; a large negative one none.
    np.testing.assert_array_equal(hand_usable(logits, "A", 100.0), np.zeros((50, 3)))
    np.testing.assert_array_equal(hand_usable(logits, "B", -100.0), np.ones((50, 3)))
