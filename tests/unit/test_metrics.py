"""Ranking metrics: hand-computed fixtures, brute-force cross-checks and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.metrics import (
    confusion_at_thresholds,
    partial_auc_mcclish,
    roc_auc,
    score_thresholds,
    threshold_for_fpr,
    tpr_at_fpr,
)

# The sklearn documentation example: one positive outranked by one negative.
SCORES = [0.1, 0.4, 0.35, 0.8]
LABELS = [0, 0, 1, 1]

# Scores on a coarse grid so that ties are common.
samples = st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=1, max_size=40)
both_classes = samples.filter(lambda rows: len({label for _, label in rows}) == 2)
quick = settings(max_examples=60, deadline=None)


def split(rows: list[tuple[int, bool]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([score / 8 for score, _ in rows]), np.array([label for _, label in rows])


def brute_confusion(scores, labels, threshold, weights=None) -> tuple[float, float, float, float]:
    weights = np.ones(len(scores)) if weights is None else weights
    tp = fp = tn = fn = 0.0
    for score, label, weight in zip(scores, labels, weights, strict=True):
        flagged = score >= threshold
        if label and flagged:
            tp += weight
        elif label:
            fn += weight
        elif flagged:
            fp += weight
        else:
            tn += weight
    return tp, fp, tn, fn


def brute_auc(scores, labels) -> float:
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


# --- confusion_at_thresholds -------------------------------------------------------------------


def test_confusion_hand_computed_in_threshold_order() -> None:
    thresholds = [0.9, 0.8, 0.4, 0.35, 0.1, -np.inf, 0.37]
    confusion = confusion_at_thresholds(scores=SCORES, labels=LABELS, thresholds=thresholds)
    assert confusion.tp.tolist() == [0, 1, 1, 2, 2, 2, 1]
    assert confusion.fp.tolist() == [0, 0, 1, 1, 2, 2, 1]
    assert confusion.tn.tolist() == [2, 2, 1, 1, 0, 0, 1]
    assert confusion.fn.tolist() == [2, 1, 1, 0, 0, 0, 1]
    assert confusion.tpr.tolist() == [0, 0.5, 0.5, 1, 1, 1, 0.5]
    assert confusion.fpr.tolist() == [0, 0, 0.5, 0.5, 1, 1, 0.5]
    assert confusion.thresholds.tolist() == thresholds


def test_query_count_weights_change_the_fpr() -> None:
    # One benign domain queried 1000 times is flagged; two rare benign domains are not.
    scores, labels, query_counts = [0.9, 0.2, 0.7, 0.1], [0, 0, 1, 0], [1000, 1, 5, 1]
    unweighted = confusion_at_thresholds(scores=scores, labels=labels, thresholds=[0.5])
    weighted = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=[0.5], weights=query_counts
    )
    assert unweighted.fpr[0] == pytest.approx(1 / 3)
    assert weighted.fpr[0] == pytest.approx(1000 / 1002)
    assert (weighted.tp[0], weighted.fn[0]) == (5, 0)


def test_confusion_without_a_class_gives_nan_rates() -> None:
    confusion = confusion_at_thresholds(scores=[0.2, 0.7], labels=[0, 0], thresholds=[0.5])
    assert math.isnan(confusion.tpr[0])
    assert confusion.fpr[0] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [0.1, 0.2], "labels": [0]}, "differ in length"),
        ({"scores": [0.1, np.nan], "labels": [0, 1]}, "finite"),
        ({"scores": [0.1, 0.2], "labels": [0, 2]}, "0/1"),
        ({"scores": [[0.1]], "labels": [[0]]}, "1-D"),
        ({"scores": [0.1, 0.2], "labels": [0, 1], "weights": [1, -1]}, "weights"),
        ({"scores": [0.1, 0.2], "labels": [0, 1], "weights": [1]}, "weights"),
    ],
)
def test_confusion_rejects_malformed_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        confusion_at_thresholds(thresholds=[0.5], **kwargs)


def test_confusion_rejects_nan_threshold() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        confusion_at_thresholds(scores=SCORES, labels=LABELS, thresholds=[np.nan])


@quick
@given(rows=samples, weights=st.lists(st.integers(0, 1000), min_size=40, max_size=40))
def test_confusion_matches_brute_force_and_sums_to_totals(rows, weights) -> None:
    scores, labels = split(rows)
    weights = np.array(weights[: len(rows)], dtype=float)
    thresholds = np.concatenate([score_thresholds(scores), [-1.0, 0.3, 2.0]])
    confusion = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=thresholds, weights=weights
    )
    positive_total, negative_total = weights[labels].sum(), weights[~labels].sum()
    for i, threshold in enumerate(thresholds):
        expected = brute_confusion(scores, labels, threshold, weights)
        got = (confusion.tp[i], confusion.fp[i], confusion.tn[i], confusion.fn[i])
        assert got == pytest.approx(expected)
        assert confusion.tp[i] + confusion.fn[i] == pytest.approx(positive_total)
        assert confusion.fp[i] + confusion.tn[i] == pytest.approx(negative_total)


# --- roc_auc ------------------------------------------------------------------------------------


def test_roc_auc_hand_computed() -> None:
    assert roc_auc(scores=SCORES, labels=LABELS) == 0.75
    assert roc_auc(scores=[0.1, 0.2, 0.8, 0.9], labels=[0, 0, 1, 1]) == 1.0
    assert roc_auc(scores=[0.9, 0.8, 0.2, 0.1], labels=[0, 0, 1, 1]) == 0.0
    # A positive tied with a negative counts half: pairs (0.5 vs 0.5) = 0.5, (0.5 vs 0.1) = 1.
    assert roc_auc(scores=[0.5, 0.5, 0.1], labels=[1, 0, 0]) == 0.75


def test_roc_auc_all_scores_equal_is_one_half() -> None:
    assert roc_auc(scores=[0.3] * 5, labels=[0, 1, 0, 1, 1]) == 0.5


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1], []])
def test_roc_auc_is_nan_without_both_classes(labels: list[int]) -> None:
    assert math.isnan(roc_auc(scores=[0.1, 0.5, 0.9][: len(labels)], labels=labels))


def test_roc_auc_matches_pairwise_count_on_random_data() -> None:
    rng = np.random.default_rng(20240601)
    for _ in range(20):
        size = int(rng.integers(2, 300))
        labels = rng.random(size) < 0.3
        labels[:2] = [True, False]
        scores = np.round(rng.normal(size=size) + labels, 1)  # rounding makes ties
        assert roc_auc(scores=scores, labels=labels) == pytest.approx(brute_auc(scores, labels))


@quick
@given(rows=both_classes)
def test_roc_auc_matches_pairwise_count(rows) -> None:
    scores, labels = split(rows)
    auc = roc_auc(scores=scores, labels=labels)
    assert auc == pytest.approx(brute_auc(scores, labels))
    assert 0.0 <= auc <= 1.0


# --- partial_auc_mcclish -----------------------------------------------------------------------


def test_partial_auc_hand_computed() -> None:
    # ROC vertices: (0, 0) (0, .5) (.5, .5) (.5, 1) (1, 1).
    # max_fpr .5: area .25, min .125, max .5 -> .5 (1 + .125 / .375) = 2/3.
    assert partial_auc_mcclish(scores=SCORES, labels=LABELS, max_fpr=0.5) == pytest.approx(2 / 3)
    # max_fpr .25: area .125, min .03125, max .25 -> .5 (1 + .09375 / .21875).
    expected = 0.5 * (1 + 0.09375 / 0.21875)
    assert partial_auc_mcclish(scores=SCORES, labels=LABELS, max_fpr=0.25) == pytest.approx(
        expected
    )


def test_partial_auc_bounds_and_full_range() -> None:
    perfect = {"scores": [0.1, 0.2, 0.8, 0.9], "labels": [0, 0, 1, 1]}
    inverted = {"scores": [0.9, 0.8, 0.2, 0.1], "labels": [0, 0, 1, 1]}
    assert partial_auc_mcclish(**perfect, max_fpr=1e-3) == pytest.approx(1.0)
    fpr = 1e-3
    assert partial_auc_mcclish(**inverted, max_fpr=fpr) == pytest.approx(
        0.5 * (1 - fpr / (2 - fpr))
    )
    assert partial_auc_mcclish(scores=SCORES, labels=LABELS, max_fpr=1.0) == 0.75
    assert partial_auc_mcclish(scores=[0.5] * 4, labels=LABELS, max_fpr=0.1) == pytest.approx(0.5)


def test_partial_auc_nan_without_both_classes_and_rejects_bad_range() -> None:
    assert math.isnan(partial_auc_mcclish(scores=[0.1, 0.2], labels=[1, 1]))
    with pytest.raises(ValueError, match="max_fpr"):
        partial_auc_mcclish(scores=SCORES, labels=LABELS, max_fpr=0.0)


def numeric_partial_auc(scores, labels, max_fpr: float) -> float:
    """Midpoint-rule integral of the interpolated ROC; independent of the library code."""
    vertices = [(0.0, 0.0)]
    for threshold in sorted(set(scores), reverse=True):
        tp, fp, tn, fn = brute_confusion(scores, labels, threshold)
        vertices.append((fp / (fp + tn), tp / (tp + fn)))
    grid = (np.arange(20_000) + 0.5) / 20_000 * max_fpr
    tpr = np.empty_like(grid)
    for i, fpr in enumerate(grid):
        for (x0, y0), (x1, y1) in zip(vertices, vertices[1:], strict=False):
            if x0 <= fpr < x1:
                tpr[i] = y0 + (y1 - y0) * (fpr - x0) / (x1 - x0)
                break
    area = tpr.mean() * max_fpr
    return 0.5 * (1 + (area - max_fpr**2 / 2) / (max_fpr - max_fpr**2 / 2))


def test_partial_auc_matches_numeric_integration() -> None:
    rng = np.random.default_rng(7)
    labels = rng.random(60) < 0.5
    scores = np.round(rng.normal(size=60) + labels, 1)
    for max_fpr in (0.05, 0.2, 0.5):
        assert partial_auc_mcclish(scores=scores, labels=labels, max_fpr=max_fpr) == pytest.approx(
            numeric_partial_auc(scores, labels, max_fpr), abs=2e-3
        )


@quick
@given(rows=both_classes, max_fpr=st.sampled_from([1e-3, 0.1, 0.5, 0.99]))
def test_partial_auc_stays_in_unit_interval(rows, max_fpr) -> None:
    scores, labels = split(rows)
    assert 0.0 <= partial_auc_mcclish(scores=scores, labels=labels, max_fpr=max_fpr) <= 1.0


# --- tpr_at_fpr / threshold_for_fpr ------------------------------------------------------------

NEGATIVE_SCORES = [i / 10 for i in range(10)]  # 0.0 .. 0.9
POSITIVE_SCORES = [0.95, 0.85, 0.5, 0.05]
OPERATING = {
    "scores": NEGATIVE_SCORES + POSITIVE_SCORES,
    "labels": [0] * 10 + [1] * 4,
}


def test_tpr_at_fpr_hand_computed() -> None:
    # 1 FP allowed of 10: lowest threshold is 0.85 (flags negative 0.9), catching 0.95 and 0.85.
    point = tpr_at_fpr(**OPERATING, target_fpr=0.1)
    assert (point.tpr, point.fpr, point.threshold, point.resolvable) == (0.5, 0.1, 0.85, False)
    # 5 FPs allowed: threshold 0.5 flags negatives 0.5..0.9 and positives 0.95, 0.85, 0.5.
    point = tpr_at_fpr(**OPERATING, target_fpr=0.5)
    assert (point.tpr, point.fpr, point.threshold, point.resolvable) == (0.75, 0.5, 0.5, True)
    assert threshold_for_fpr(**OPERATING, target_fpr=0.5) == 0.5


def test_tpr_at_fpr_zero_allowed_fps_sits_above_the_top_negative() -> None:
    point = tpr_at_fpr(**OPERATING, target_fpr=0.01)
    assert (point.tpr, point.fpr, point.threshold) == (0.25, 0.0, 0.95)


def test_tpr_at_fpr_all_scores_equal() -> None:
    point = tpr_at_fpr(scores=[0.5] * 4, labels=LABELS, target_fpr=0.25)
    assert (point.tpr, point.fpr) == (0.0, 0.0)
    assert point.threshold > 0.5
    point = tpr_at_fpr(scores=[0.5] * 4, labels=LABELS, target_fpr=1.0)
    assert (point.tpr, point.fpr, point.threshold) == (1.0, 1.0, 0.5)


@pytest.mark.parametrize(
    ("negatives", "target_fpr", "resolvable"),
    [
        (3000, 1e-3, True),
        (2999, 1e-3, False),
        (300_000, 1e-5, True),
        (299_999, 1e-5, False),
        (600_000, 5 * 10**-6, True),  # 600_000 x 4.9999999999999996e-06 rounds below 3
    ],
)
def test_resolvable_needs_three_over_fpr_negatives(negatives, target_fpr, resolvable) -> None:
    scores = np.linspace(0.0, 0.5, negatives + 1)
    labels = np.zeros(negatives + 1, dtype=bool)
    labels[-1] = True
    point = tpr_at_fpr(scores=scores, labels=labels, target_fpr=target_fpr)
    assert point.resolvable is resolvable
    assert point.tpr == 1.0  # still computed when not resolvable


def test_tpr_at_fpr_missing_classes() -> None:
    no_negatives = tpr_at_fpr(scores=[0.2, 0.9], labels=[1, 1], target_fpr=0.1)
    assert math.isnan(no_negatives.tpr) and math.isnan(no_negatives.threshold)
    assert no_negatives.resolvable is False
    no_positives = tpr_at_fpr(scores=[0.2, 0.9], labels=[0, 0], target_fpr=0.5)
    assert math.isnan(no_positives.tpr)
    assert (no_positives.fpr, no_positives.threshold) == (0.5, 0.9)


@pytest.mark.parametrize("target_fpr", [0.0, -0.1, 1.5])
def test_tpr_at_fpr_rejects_bad_target(target_fpr: float) -> None:
    with pytest.raises(ValueError, match="target_fpr"):
        tpr_at_fpr(**OPERATING, target_fpr=target_fpr)


@quick
@given(rows=both_classes, target_fpr=st.sampled_from([0.01, 0.1, 0.25, 0.5, 1.0]))
def test_tpr_at_fpr_is_the_best_point_within_target(rows, target_fpr) -> None:
    scores, labels = split(rows)
    point = tpr_at_fpr(scores=scores, labels=labels, target_fpr=target_fpr)
    assert point.fpr <= target_fpr
    tp, fp, tn, fn = brute_confusion(scores, labels, point.threshold)
    assert (point.tpr, point.fpr) == (tp / (tp + fn), fp / (fp + tn))
    best_tpr = 0.0
    for threshold in set(scores):
        tp, fp, tn, fn = brute_confusion(scores, labels, threshold)
        if fp / (fp + tn) <= target_fpr:
            best_tpr = max(best_tpr, tp / (tp + fn))
            assert threshold >= point.threshold
    assert point.tpr == best_tpr
