"""experiments.occlusion_stats: classifier precision / recall and fusion weights against a
per-sample float64 loop and a hand-worked example; evaluate's report carries them."""

import numpy as np
import pytest

from experiments import evaluate
from experiments.occlusion_stats import HEAD_NAMES, OcclusionStats, format_occlusion_table, roc_auc
from test_evaluate import cached_restore, make_run, records, restored, run_dir  # noqa: F401  (fixtures)


def _pairwise_auc(scores, positive):
    """The AUC by definition: over all (positive, negative) pairs, 1 if the positive scores
    higher, 1/2 on a tie."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(11)
    for trial in range(5):
        n = int(rng.integers(5, 60))
        scores = np.round(rng.normal(size=n), 1)  # rounding makes ties
        positive = rng.random(n) < 0.3
        positive[0], positive[1] = True, False
        assert roc_auc(scores, positive) == pytest.approx(_pairwise_auc(scores, positive), abs=1e-12)
    assert roc_auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert roc_auc(np.array([0.9, 0.1]), np.array([False, True])) == 0.0
    assert roc_auc(np.ones(4), np.array([True, False, True, False])) == 0.5
    assert roc_auc(np.arange(3.0), np.zeros(3, bool)) is None
    with pytest.raises(ValueError, match="scores and positive must both have shape"):
        roc_auc(np.zeros(3), np.zeros(4, bool))


def _reference(logits, labels, mask, keep):
    """Loops over samples in float64 with the formulas written out (no shared code)."""
    counts = {name: dict(tp=0, fp=0, fn=0, tn=0) for name in HEAD_NAMES}
    occluded_w, visible_w, seen_before_w = [], [], []
    batch, frames = logits.shape[:2]
    for b in range(batch):
        if not keep[b]:
            continue
        if mask[b, 0]:
            for head, name in enumerate(HEAD_NAMES):
                pred = logits[b, 0, head, 1] > logits[b, 0, head, 0]
                true = labels[b, 0, head] == 1
                counts[name]["tp" if pred and true else "fp" if pred else "fn" if true else "tn"] += 1
        if not mask[b].all():
            continue
        for finger in range(5):
            visible_prob = [1 / (1 + np.exp(logits[b, t, finger, 1] - logits[b, t, finger, 0])) for t in range(frames)]
            weights = np.exp(visible_prob) / np.sum(np.exp(visible_prob))
            for t in range(frames):
                (occluded_w if labels[b, t, finger] else visible_w).append(weights[t])
            if labels[b, 0, finger] and not all(labels[b, 1:, finger]):
                seen_before_w.append(weights[0])
    return counts, np.array(occluded_w), np.array(visible_w), np.array(seen_before_w)


def test_counts_and_weights_match_a_per_sample_loop_on_random_batches():
    rng = np.random.default_rng(7)
    stats = OcclusionStats()
    all_parts = []
    auc_rows = []
    for batch in (5, 8, 3):
        logits = rng.normal(size=(batch, 3, 6, 2)) * 2
        labels = rng.integers(0, 2, (batch, 3, 6))
        mask = rng.random((batch, 3)) > 0.2
        keep = rng.random(batch) > 0.15
        stats.add(logits, labels, mask, keep)
        all_parts.append(_reference(logits, labels, mask, keep))
        rows = keep & mask[:, 0]
        auc_rows.append((logits[rows, 0, :, 1] - logits[rows, 0, :, 0], labels[rows, 0] == 1))
    results = stats.results()
    auc_inputs = {name: (np.concatenate([m[:, h] for m, _ in auc_rows]), np.concatenate([p[:, h] for _, p in auc_rows]))
                  for h, name in enumerate(HEAD_NAMES)}
    for name in HEAD_NAMES:
        c = {k: sum(p[0][name][k] for p in all_parts) for k in ("tp", "fp", "fn", "tn")}
        got = results["classifier"][name]
        assert (got["true_positive"], got["false_positive"], got["false_negative"], got["true_negative"]) == \
            (c["tp"], c["fp"], c["fn"], c["tn"])
        assert got["precision"] == pytest.approx(c["tp"] / (c["tp"] + c["fp"]), rel=1e-12)
        assert got["recall"] == pytest.approx(c["tp"] / (c["tp"] + c["fn"]), rel=1e-12)
        assert got["accuracy"] == pytest.approx((c["tp"] + c["tn"]) / sum(c.values()), rel=1e-12)
        assert got["roc_auc"] == pytest.approx(_pairwise_auc(*auc_inputs[name]), abs=1e-12)
    fusion = results["fusion_weights"]
    assert fusion["uniform"] == pytest.approx(1 / 3)
    for key, index in (("occluded", 1), ("visible", 2), ("frame0_occluded_seen_before", 3)):
        expected = np.concatenate([p[index] for p in all_parts])
        assert fusion[key]["count"] == len(expected) > 0
        assert fusion[key]["mean"] == pytest.approx(expected.mean(), rel=1e-6)
        assert fusion[key]["p50"] == pytest.approx(np.median(expected), rel=1e-6)
    assert "precision" in format_occlusion_table(results) and "ROC AUC" in format_occlusion_table(results)


def test_hand_worked_example():
    # One sample, 2 frames. Thumb: occluded in frame 0 and predicted so (TP); index: visible,
    # predicted occluded (FP); the others visible and predicted visible (TN).
    logits = np.zeros((1, 2, 6, 2))
    logits[0, :, :, 0] = 1.0                       # visible favoured everywhere ...
    logits[0, 0, 0] = [0.0, 1.0]                   # ... except thumb and index of frame 0
    logits[0, 0, 1] = [0.0, 1.0]
    labels = np.zeros((1, 2, 6), int)
    labels[0, 0, 0] = 1
    stats = OcclusionStats()
    stats.add(logits, labels, np.ones((1, 2)))
    results = stats.results()
    assert results["classifier"]["thumb"]["precision"] == 1.0 and results["classifier"]["thumb"]["recall"] == 1.0
    assert results["classifier"]["index"]["precision"] == 0.0 and results["classifier"]["index"]["recall"] is None
    assert results["classifier"]["middle"]["accuracy"] == 1.0 and results["classifier"]["middle"]["precision"] is None
    # One occluded thumb scoring 1 against visible thumbs: none here (a single sample) -> undefined.
    assert results["classifier"]["thumb"]["roc_auc"] is None
    # Thumb: visible probabilities sigmoid(-1) and sigmoid(1) -> weights softmax over the two frames.
    p0, p1 = 1 / (1 + np.e), 1 / (1 + np.exp(-1))
    w0 = np.exp(p0) / (np.exp(p0) + np.exp(p1))
    assert results["fusion_weights"]["frame0_occluded_seen_before"]["mean"] == pytest.approx(w0)
    assert results["fusion_weights"]["occluded"]["count"] == 1
    assert results["fusion_weights"]["visible"]["count"] == 9


def test_bad_shapes_name_the_input():
    stats = OcclusionStats()
    with pytest.raises(ValueError, match="occ_logits must have shape"):
        stats.add(np.zeros((2, 3, 6)), np.zeros((2, 3, 6)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="occ_labels must have shape"):
        stats.add(np.zeros((2, 3, 6, 2)), np.zeros((2, 6)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="label_mask must have shape"):
        stats.add(np.zeros((2, 3, 6, 2)), np.zeros((2, 3, 6)), np.ones(2))
    with pytest.raises(ValueError, match="occ_labels must hold 0"):
        stats.add(np.zeros((2, 3, 6, 2)), np.full((2, 3, 6), 2), np.ones((2, 3)))
    stats.add(np.zeros((2, 3, 6, 2)), np.zeros((2, 3, 6)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="T=2 frames but earlier batches had 3"):
        stats.add(np.zeros((2, 2, 6, 2)), np.zeros((2, 2, 6)), np.ones((2, 2)))


def test_evaluation_report_includes_the_classifier_and_fusion(run_dir, cached_restore, records, tmp_path):  # noqa: F811
    seen = []

    def perfect_classifier(batch):
        labels = np.asarray(batch["occ_labels"])
        logits = np.stack([1.0 - labels, labels.astype(float)], -1)  # class 1 wins where occluded
        seen.append((labels, np.asarray(batch["occ_label_mask"]), np.asarray(batch["mask"])))
        return {"joints_r_m": batch["joints_r_m"][:, 0], "verts_r_m": batch["verts_r_m"][:, 0], "occ_logits": logits}

    report = evaluate.run_evaluation(run_dir, limit=6, batch_size=2, out_dir=str(tmp_path), predict_fn=perfect_classifier)
    classifier = report["occlusion"]["classifier"]
    labels = np.concatenate([s[0] for s in seen])[:6]
    label_mask = np.concatenate([s[1] for s in seen])[:6, 0] > 0
    assert set(classifier) == set(HEAD_NAMES)
    for head, name in enumerate(HEAD_NAMES):
        assert classifier[name]["num_samples"] == label_mask.sum()
        assert classifier[name]["num_occluded"] == labels[label_mask, 0, head].sum()
        assert classifier[name]["false_positive"] == classifier[name]["false_negative"] == 0
        assert classifier[name]["accuracy"] == 1.0
        both_classes = 0 < classifier[name]["num_occluded"] < classifier[name]["num_samples"]
        assert classifier[name]["roc_auc"] == (1.0 if both_classes else None)
