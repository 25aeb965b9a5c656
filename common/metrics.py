"""Ranking metrics over scores: counts at thresholds, ROC AUC, partial AUC, TPR at a fixed FPR.

Conventions shared by every metric module in `common/`:
- a sample is flagged when ``score >= threshold``;
- labels are 1/True for malicious (positive) and 0/False for benign (negative);
- a value that is undefined for the data (for example AUC with one class absent) is ``nan``;
  malformed input (wrong shape, non-finite score, label outside {0, 1}) raises ``ValueError``.

The curve maths is scikit-learn's (``roc_curve``, ``roc_auc_score``); this module validates input
and keeps the conventions above. Confusion counts at arbitrary, optionally weighted thresholds stay
here (one sort, then a binary search per threshold): sklearn has no public function for them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "Confusion",
    "OperatingPoint",
    "check_scores_labels",
    "confusion_at_thresholds",
    "partial_auc_mcclish",
    "roc_auc",
    "score_thresholds",
    "threshold_for_fpr",
    "tpr_at_fpr",
]

# A target FPR is resolvable when the test set holds at least this many times 1/FPR negatives.
MIN_NEGATIVES_PER_RESOLVABLE_FPR = 3.0


def check_scores_labels(
    *, scores: ArrayLike, labels: ArrayLike, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert to float64 scores, bool labels, float64 weights or None (1-D)."""
    scores_array = np.asarray(scores, dtype=np.float64)
    labels_array = np.asarray(labels)
    if scores_array.ndim != 1 or labels_array.ndim != 1:
        raise ValueError(
            "scores and labels must be 1-D; "
            f"got shapes {scores_array.shape} and {labels_array.shape}"
        )
    if scores_array.shape != labels_array.shape:
        raise ValueError(
            f"scores and labels differ in length: {scores_array.size} vs {labels_array.size}"
        )
    if not np.all(np.isfinite(scores_array)):
        index = int(np.flatnonzero(~np.isfinite(scores_array))[0])
        raise ValueError(f"scores must be finite; score {index} is {scores_array[index]}")
    if labels_array.dtype != np.bool_:
        if labels_array.size and not np.all((labels_array == 0) | (labels_array == 1)):
            bad = np.unique(labels_array[(labels_array != 0) & (labels_array != 1)])[:5]
            raise ValueError(f"labels must be 0/1 or bool (1 = malicious); found {bad.tolist()}")
        labels_array = labels_array.astype(bool)
    weights_array = None
    if weights is not None:
        weights_array = np.asarray(weights, dtype=np.float64)
        if weights_array.shape != scores_array.shape:
            raise ValueError(
                "weights must match scores in shape; "
                f"got {weights_array.shape} vs {scores_array.shape}"
            )
        if not np.all(np.isfinite(weights_array) & (weights_array >= 0)):
            raise ValueError(
                "weights must be finite and >= 0 (for example query counts per domain)"
            )
    return scores_array, labels_array, weights_array


@dataclass(frozen=True, eq=False)
class Confusion:
    """Confusion counts (sums of weights) per threshold; flagged means score >= threshold."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray

    @property
    def tpr(self) -> np.ndarray:
        """Recall at each threshold; nan where there are no positives."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.tp / (self.tp + self.fn)

    @property
    def fpr(self) -> np.ndarray:
        """False-positive rate at each threshold; nan where there are no negatives."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.fp / (self.fp + self.tn)


def confusion_at_thresholds(
    *, scores: ArrayLike, labels: ArrayLike, thresholds: ArrayLike, weights: ArrayLike | None = None
) -> Confusion:
    """TP, FP, TN, FN at every threshold, each a sum of per-sample ``weights`` (1 each when None).

    O((n + k) log n) for n samples and k thresholds: one sort, then a binary search per threshold.
    ``thresholds`` may be in any order and may include +-inf; the output keeps their order.
    """
    scores_array, labels_array, weights_array = check_scores_labels(
        scores=scores, labels=labels, weights=weights
    )
    thresholds_array = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if thresholds_array.ndim != 1 or np.any(np.isnan(thresholds_array)):
        raise ValueError("thresholds must be a 1-D array without NaN")
    if weights_array is None:
        weights_array = np.ones_like(scores_array)
    order = np.argsort(scores_array, kind="stable")
    sorted_scores = scores_array[order]
    positive_weights = np.where(labels_array, weights_array, 0.0)[order]
    negative_weights = np.where(labels_array, 0.0, weights_array)[order]
    # Cumulative weight of samples strictly below each cut; samples at or above the cut are flagged.
    positives_below = np.concatenate(([0.0], np.cumsum(positive_weights)))
    negatives_below = np.concatenate(([0.0], np.cumsum(negative_weights)))
    cut = np.searchsorted(sorted_scores, thresholds_array, side="left")
    fn = positives_below[cut]
    tn = negatives_below[cut]
    return Confusion(
        thresholds=thresholds_array,
        tp=positives_below[-1] - fn,
        fp=negatives_below[-1] - tn,
        tn=tn,
        fn=fn,
    )


def score_thresholds(scores: np.ndarray) -> np.ndarray:
    """Every distinct score ascending, then one value just above the maximum (flags nothing)."""
    unique_scores = np.unique(scores)
    if unique_scores.size == 0:
        return unique_scores
    return np.append(unique_scores, np.nextafter(unique_scores[-1], np.inf))


def roc_auc(*, scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve, in [0, 1]; tied scores count half (average ranks).

    nan if a class is absent. Computed by ``sklearn.metrics.roc_auc_score``.

    >>> roc_auc(scores=[0.1, 0.4, 0.35, 0.8], labels=[0, 0, 1, 1])
    0.75
    """
    scores_array, labels_array, _ = check_scores_labels(scores=scores, labels=labels)
    if labels_array.all() or not labels_array.any():
        return float("nan")
    return float(roc_auc_score(labels_array, scores_array))


def partial_auc_mcclish(*, scores: ArrayLike, labels: ArrayLike, max_fpr: float = 1e-3) -> float:
    """McClish-standardised partial AUC over FPR in [0, max_fpr], by sklearn's ``roc_auc_score``.

    0.5 is chance and 1.0 perfect inside that FPR range. nan if a class is absent.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1]; got {max_fpr}")
    scores_array, labels_array, _ = check_scores_labels(scores=scores, labels=labels)
    if labels_array.all() or not labels_array.any():
        return float("nan")
    return float(roc_auc_score(labels_array, scores_array, max_fpr=max_fpr))


@dataclass(frozen=True)
class OperatingPoint:
    """Best recall at an FPR target. ``resolvable`` is False when negatives < 3 / target_fpr."""

    tpr: float
    fpr: float
    threshold: float
    resolvable: bool


def tpr_at_fpr(*, scores: ArrayLike, labels: ArrayLike, target_fpr: float) -> OperatingPoint:
    """The highest TPR whose empirical FPR is <= ``target_fpr``, with the smallest threshold for it.

    Candidate thresholds are the observed scores plus one above the maximum (TPR = FPR = 0),
    read off ``sklearn.metrics.roc_curve``. No negatives: everything nan. No positives: TPR nan,
    but the threshold is still set.
    """
    if not 0.0 < target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in (0, 1]; got {target_fpr}")
    scores_array, labels_array, _ = check_scores_labels(scores=scores, labels=labels)
    negatives = int((~labels_array).sum())
    # Relative slack so that, e.g., 300_000 negatives resolve 1e-5 despite 3 / 1e-5 rounding up.
    resolvable = negatives * target_fpr >= MIN_NEGATIVES_PER_RESOLVABLE_FPR * (1.0 - 1e-9)
    if negatives == 0:
        return OperatingPoint(
            tpr=float("nan"), fpr=float("nan"), threshold=float("nan"), resolvable=False
        )
    if labels_array.any():
        fpr, tpr, thresholds = roc_curve(labels_array, scores_array, drop_intermediate=False)
    else:
        with warnings.catch_warnings():  # no positives: sklearn warns that TPR is nan, as meant
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            fpr, tpr, thresholds = roc_curve(labels_array, scores_array, drop_intermediate=False)
    # Thresholds fall from sklearn's +inf (flags nothing) through every distinct score; FPR rises.
    thresholds[0] = np.nextafter(scores_array.max(), np.inf)
    # The last index within the target is the lowest such threshold and has the highest TPR.
    index = int(np.flatnonzero(fpr <= target_fpr)[-1])
    return OperatingPoint(
        tpr=float(tpr[index]),
        fpr=float(fpr[index]),
        threshold=float(thresholds[index]),
        resolvable=bool(resolvable),
    )


def threshold_for_fpr(*, scores: ArrayLike, labels: ArrayLike, target_fpr: float) -> float:
    """The smallest score threshold with empirical FPR <= ``target_fpr`` (nan without negatives)."""
    return tpr_at_fpr(scores=scores, labels=labels, target_fpr=target_fpr).threshold
