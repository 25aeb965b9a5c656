"""Calibration and stability over rounds: ECE, Brier loss, PSI of scores, decision churn, new FPs.

Scores here are probabilities in [0, 1] (ECE, Brier) or any real (PSI). Lower is better for
every value in this module. Undefined values (empty input) are nan; malformed input raises.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as sklearn_metrics

from common.metrics import check_scores_labels

__all__ = [
    "brier_score_loss",
    "decision_churn",
    "expected_calibration_error",
    "new_fp_rate",
    "population_stability_index",
]


def _check_probabilities(scores: np.ndarray) -> None:
    if scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        raise ValueError(
            "scores must be probabilities in [0, 1] for calibration metrics; "
            f"got range [{scores.min()}, {scores.max()}] (apply the model's sigmoid first)"
        )


def expected_calibration_error(*, scores: ArrayLike, labels: ArrayLike, bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (share of samples) x |rate - mean score|.

    Bins split [0, 1] into ``bins`` equal parts, each closed on the left; 1.0 falls in the last.
    In [0, 1]; nan for empty input.

    >>> ece = expected_calibration_error(scores=[0.2, 0.2, 0.8, 0.8], labels=[0, 1, 1, 1], bins=2)
    >>> round(ece, 6)
    0.25
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a whole number >= 1; got {bins}")
    scores_array, labels_array, _ = check_scores_labels(scores=scores, labels=labels)
    _check_probabilities(scores_array)
    if scores_array.size == 0:
        return float("nan")
    # Not sklearn's calibration_curve: its bins are closed on the right, and it returns no bin
    # counts to weigh the gaps by. Neither library has ECE or PSI.
    bin_index = np.minimum((scores_array * bins).astype(np.int64), int(bins) - 1)
    counts = np.bincount(bin_index, minlength=bins)
    score_sums = np.bincount(bin_index, weights=scores_array, minlength=bins)
    positive_sums = np.bincount(bin_index, weights=labels_array, minlength=bins)
    # |sum(labels) - sum(scores)| per bin / n  ==  (n_bin / n) x |rate - mean score|.
    return float(np.abs(positive_sums - score_sums).sum() / counts.sum())


def brier_score_loss(*, scores: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared difference of probability and 0/1 label; in [0, 1], nan if empty.

    Computed by ``sklearn.metrics.brier_score_loss``.
    """
    scores_array, labels_array, _ = check_scores_labels(scores=scores, labels=labels)
    _check_probabilities(scores_array)
    if scores_array.size == 0:
        return float("nan")
    return float(sklearn_metrics.brier_score_loss(labels_array, scores_array))


def population_stability_index(
    *,
    expected_scores: ArrayLike,
    actual_scores: ArrayLike,
    bins: int = 10,
    epsilon: float = 1e-4,
) -> float:
    """PSI = sum over bins of (actual - expected share) x ln(actual / expected share); >= 0.

    Bin edges are the quantiles of ``expected_scores`` (the reference, e.g. training days), so each
    bin holds about 1/bins of it; the outer bins are open so that no actual score falls outside.
    Tied quantiles are merged, so a constant reference gives 2 bins. Shares below ``epsilon`` are
    raised to it so an empty bin costs a large but finite amount. Rule of thumb: < 0.1 stable,
    0.1-0.25 moderate shift, > 0.25 major shift. nan if either input is empty.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a whole number >= 1; got {bins}")
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon must be in (0, 1); got {epsilon}")
    expected = np.asarray(expected_scores, dtype=np.float64)
    actual = np.asarray(actual_scores, dtype=np.float64)
    for name, values in (("expected_scores", expected), ("actual_scores", actual)):
        if values.ndim != 1 or not np.all(np.isfinite(values)):
            raise ValueError(f"{name} must be a 1-D array of finite scores")
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    inner_edges = np.unique(np.quantile(expected, np.linspace(0.0, 1.0, int(bins) + 1)[1:-1]))
    expected_share = _bin_shares(expected, inner_edges)
    actual_share = _bin_shares(actual, inner_edges)
    expected_share = np.maximum(expected_share, epsilon)
    actual_share = np.maximum(actual_share, epsilon)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def _bin_shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    bin_index = np.searchsorted(inner_edges, values, side="right")
    return np.bincount(bin_index, minlength=inner_edges.size + 1) / values.size


def _check_masks(**masks: ArrayLike) -> list[np.ndarray]:
    arrays = [np.asarray(mask) for mask in masks.values()]
    names = list(masks)
    for name, array in zip(names, arrays, strict=True):
        if array.ndim != 1 or not (array.dtype == np.bool_ or np.isin(array, (0, 1)).all()):
            raise ValueError(f"{name} must be a 1-D array of booleans (or 0/1)")
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must cover the same probe set in the same order; "
            f"got lengths {arrays[0].size} and {arrays[1].size}"
        )
    return [array.astype(bool) for array in arrays]


def decision_churn(*, previous_decisions: ArrayLike, current_decisions: ArrayLike) -> float:
    """Share of a fixed probe set whose flag flipped since last round; in [0, 1], nan if empty."""
    previous, current = _check_masks(
        previous_decisions=previous_decisions, current_decisions=current_decisions
    )
    if current.size == 0:
        return float("nan")
    return float(np.mean(previous != current))


def new_fp_rate(*, previous_fp_mask: ArrayLike, current_fp_mask: ArrayLike) -> float:
    """Share of this round's false positives that were not false positives last round.

    Both masks index the same probe set. In [0, 1]; 0 when there are no current false positives.
    """
    previous, current = _check_masks(
        previous_fp_mask=previous_fp_mask, current_fp_mask=current_fp_mask
    )
    current_count = int(current.sum())
    if current_count == 0:
        return 0.0
    return float((current & ~previous).sum() / current_count)
