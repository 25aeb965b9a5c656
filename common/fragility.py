"""What a model costs a site in production: error bounds, FPs/day, alert budgets, shortcuts.

Symbols as in docs/metrics.md: V = benign events/day, pi = base rate (share of all events that are
malicious), A = alert budget/day. Rates are in [0, 1]; volumes are events/day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta
from sklearn.metrics import roc_curve

from common.metrics import check_scores_labels, confusion_at_thresholds, roc_auc

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "HOST_METRICS",
    "BudgetPoint",
    "HostDays",
    "QueryUniqueFpr",
    "alert_budget_per_day",
    "alerts_per_incident",
    "analyst_hours_per_day",
    "best_single_feature_auc",
    "budget_utilisation",
    "char_entropy",
    "clopper_pearson_upper",
    "expected_alerts_per_day",
    "fp_per_day",
    "fpr_query_vs_unique",
    "host_alerts",
    "host_metrics",
    "hosts_per_day",
    "per_family_recall",
    "positive_events_per_day",
    "precision_at_base_rate",
    "registered_label",
    "shortcut_ratio",
    "single_feature_scores",
    "threshold_at_budget",
    "unseen_family_recall",
]


def _check_rate(name: str, value: float, *, allow_nan: bool = False) -> None:
    if math.isnan(value) and allow_nan:
        return
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value}")


def _check_base_rate(base_rate: float) -> None:
    if isinstance(base_rate, str):
        raise ValueError(f"base_rate must be a number; resolve {base_rate!r} before calling")
    if not 0.0 < base_rate < 1.0:
        raise ValueError(
            f"base_rate must be in (0, 1) (share of all events that are malicious); got {base_rate}"
        )


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0; got {value}")


# --- uncertainty -------------------------------------------------------------------------------


def clopper_pearson_upper(*, successes: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial rate (e.g. FPR from FP of negatives).

    The p with P(X <= successes | trials, p) = 1 - confidence: the ``confidence`` quantile of
    Beta(successes + 1, trials - successes), from ``scipy.stats.beta.ppf``. 0 of n gives
    1 - (1 - confidence) ** (1 / n); 0 trials (or all successes) give 1.
    """
    if int(successes) != successes or int(trials) != trials:
        raise ValueError(f"successes and trials must be whole counts; got {successes} and {trials}")
    successes, trials = int(successes), int(trials)
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials; got {successes} of {trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if trials == 0 or successes == trials:
        return 1.0
    # beta.ppf rather than binomtest(...).proportion_ci(method="exact"): the latter root-finds
    # to ~1e-4 relative at 1e9+ trials; beta.ppf is within ~1e-8 relative there, 1e-15 at 100.
    return float(beta.ppf(confidence, successes + 1, trials - successes))


# --- volumes and costs -------------------------------------------------------------------------


def fp_per_day(*, fpr: float, benign_events_per_day: float) -> float:
    """False positives per day: fpr x V."""
    _check_rate("fpr", fpr, allow_nan=True)
    _check_non_negative("benign_events_per_day", benign_events_per_day)
    return fpr * benign_events_per_day


def positive_events_per_day(*, benign_events_per_day: float, base_rate: float) -> float:
    """Malicious events per day implied by V benign events/day: V x pi / (1 - pi)."""
    _check_non_negative("benign_events_per_day", benign_events_per_day)
    _check_base_rate(base_rate)
    return benign_events_per_day * base_rate / (1.0 - base_rate)


def expected_alerts_per_day(
    *, tpr: float, fpr: float, benign_events_per_day: float, base_rate: float
) -> float:
    """Alerts per day (TP + FP): tpr x V x pi / (1 - pi) + fpr x V."""
    _check_rate("tpr", tpr, allow_nan=True)
    _check_rate("fpr", fpr, allow_nan=True)
    positives = positive_events_per_day(
        benign_events_per_day=benign_events_per_day, base_rate=base_rate
    )
    return tpr * positives + fpr * benign_events_per_day


def precision_at_base_rate(*, tpr: float, fpr: float, base_rate: float) -> float:
    """Precision in deployment: tpr pi / (tpr pi + fpr (1 - pi)); nan if nothing is flagged."""
    _check_rate("tpr", tpr, allow_nan=True)
    _check_rate("fpr", fpr, allow_nan=True)
    _check_base_rate(base_rate)
    flagged = tpr * base_rate + fpr * (1.0 - base_rate)
    return float("nan") if flagged == 0.0 else tpr * base_rate / flagged


def alerts_per_incident(*, precision: float) -> float:
    """Alerts opened per true incident: 1 / precision (inf at precision 0, nan stays nan)."""
    _check_rate("precision", precision, allow_nan=True)
    return math.inf if precision == 0.0 else 1.0 / precision


def alert_budget_per_day(
    *, analysts: int, productive_hours_per_day: float, minutes_per_alert: float
) -> float:
    """Alerts per day the team can triage: analysts x productive hours x 60 / minutes per alert."""
    _check_non_negative("analysts", analysts)
    if not 0.0 <= productive_hours_per_day <= 24.0:
        raise ValueError(
            f"productive_hours_per_day must be in [0, 24]; got {productive_hours_per_day}"
        )
    if not minutes_per_alert > 0.0:
        raise ValueError(f"minutes_per_alert must be > 0; got {minutes_per_alert}")
    return analysts * productive_hours_per_day * 60.0 / minutes_per_alert


def analyst_hours_per_day(*, alerts_per_day: float, minutes_per_alert: float) -> float:
    """Analyst hours per day spent on triage: alerts/day x minutes per alert / 60."""
    _check_non_negative("alerts_per_day", alerts_per_day)
    _check_non_negative("minutes_per_alert", minutes_per_alert)
    return alerts_per_day * minutes_per_alert / 60.0


def budget_utilisation(*, alerts_per_day: float, alert_budget_per_day: float) -> float:
    """Alerts/day / budget/day (above 1 = over budget); zero budget: inf, or 0 without alerts."""
    _check_non_negative("alerts_per_day", alerts_per_day)
    _check_non_negative("alert_budget_per_day", alert_budget_per_day)
    if alert_budget_per_day == 0.0:
        return 0.0 if alerts_per_day == 0.0 else math.inf
    return alerts_per_day / alert_budget_per_day


@dataclass(frozen=True)
class QueryUniqueFpr:
    """FPR per query (weighted by query counts) and per unique domain, with their counts."""

    fpr_query: float
    fpr_unique: float
    fp_queries: float
    benign_queries: float
    fp_domains: int
    benign_domains: int


def fpr_query_vs_unique(
    *, scores: ArrayLike, labels: ArrayLike, query_counts: ArrayLike, threshold: float
) -> QueryUniqueFpr:
    """FPR over queries vs over unique domains at ``threshold``.

    One row per domain; ``query_counts`` is how many times each domain was queried, so one false
    positive on a popular domain weighs its full query volume in ``fpr_query``.
    """
    confusion_unique = confusion_at_thresholds(scores=scores, labels=labels, thresholds=[threshold])
    confusion_query = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=[threshold], weights=query_counts
    )
    return QueryUniqueFpr(
        fpr_query=float(confusion_query.fpr[0]),
        fpr_unique=float(confusion_unique.fpr[0]),
        fp_queries=float(confusion_query.fp[0]),
        benign_queries=float(confusion_query.fp[0] + confusion_query.tn[0]),
        fp_domains=int(confusion_unique.fp[0]),
        benign_domains=int(confusion_unique.fp[0] + confusion_unique.tn[0]),
    )


@dataclass(frozen=True)
class BudgetPoint:
    """Operating point inside the alert budget; not ``feasible`` if even the top score overflows.

    ``alerts_per_day`` is the expected (TP + FP)/day at ``threshold``.
    """

    threshold: float
    tpr: float
    fpr: float
    alerts_per_day: float
    feasible: bool


def threshold_at_budget(
    *,
    scores: ArrayLike,
    labels: ArrayLike,
    benign_events_per_day: float,
    base_rate: float,
    alert_budget_per_day: float,
) -> BudgetPoint:
    """The smallest score threshold whose expected (TP + FP)/day stays <= the budget A.

    Expected alerts/day at a threshold = tpr x V x pi / (1 - pi) + fpr x V, with TPR and FPR from
    ``sklearn.metrics.roc_curve``. Candidates are the observed scores; if the highest one already
    exceeds A, the threshold is set just above the maximum score (no alerts, tpr 0) and
    ``feasible`` is False. All nan if a class is absent.
    """
    _check_non_negative("alert_budget_per_day", alert_budget_per_day)
    positives = positive_events_per_day(
        benign_events_per_day=benign_events_per_day, base_rate=base_rate
    )
    scores_array, labels_array, _ = check_scores_labels(scores=scores, labels=labels)
    if labels_array.all() or not labels_array.any():
        nan = float("nan")
        return BudgetPoint(threshold=nan, tpr=nan, fpr=nan, alerts_per_day=nan, feasible=False)
    fpr, tpr, thresholds = roc_curve(labels_array, scores_array, drop_intermediate=False)
    # Thresholds fall from sklearn's +inf (flags nothing) through every distinct score.
    thresholds[0] = np.nextafter(scores_array.max(), np.inf)
    alerts = tpr * positives + fpr * benign_events_per_day
    # Alerts rise as the threshold falls; the first candidate (above the max) always fits.
    index = int(np.flatnonzero(alerts <= alert_budget_per_day)[-1])
    return BudgetPoint(
        threshold=float(thresholds[index]),
        tpr=float(tpr[index]),
        fpr=float(fpr[index]),
        alerts_per_day=float(alerts[index]),
        feasible=index > 0,
    )


# --- hosts ------------------------------------------------------------------------------------

HOST_METRICS = (
    "host_days",
    "hosts_per_day",
    "host_alerts_per_day",
    "host_fpr",
    "host_fpr_upper95",
    "host_fp_per_day",
    "host_fp_per_day_upper95",
    "host_fp_per_day_resolvable",
)
"""The host-level figures of docs/metrics.md ("Hosts"), all nan when the logs name no client."""


@dataclass(frozen=True, eq=False)
class HostDays:
    """One row per (test day, client host) that queried at least one labelled test name.

    What a host-day needs to be judged at *any* threshold, so the logs are read once before
    tau is known: the highest score among its benign names and among its blocklisted names
    (-inf when it queried none), and its queries of benign names (for the volume scaling).
    """

    max_benign: np.ndarray  # float64
    max_malicious: np.ndarray  # float64
    benign_queries: np.ndarray  # int64 or float64

    def __post_init__(self) -> None:
        sizes = {self.max_benign.shape, self.max_malicious.shape, self.benign_queries.shape}
        if len(sizes) != 1 or self.max_benign.ndim != 1:
            raise ValueError(f"host-day columns must be 1-D and of one length; got {sizes}")

    def __len__(self) -> int:
        return int(self.max_benign.size)


def hosts_per_day(host_days: HostDays, *, benign_events_per_day: float) -> float:
    """Hosts a day at the site's volume: host-days x V / their benign queries (nan without any).

    The site's V benign queries a day are taken to come from hosts that each send as many
    benign queries a day as the test days' hosts did on average, so the hosts scale with V.
    """
    _check_non_negative("benign_events_per_day", benign_events_per_day)
    queries = float(np.sum(host_days.benign_queries))
    return len(host_days) * benign_events_per_day / queries if queries > 0 else math.nan


def host_alerts(host_days: HostDays, *, threshold: float) -> tuple[int, int]:
    """(alerting host-days, false-positive host-days) at ``threshold``."""
    benign_hit = host_days.max_benign >= threshold
    malicious_hit = host_days.max_malicious >= threshold
    return int(np.sum(benign_hit | malicious_hit)), int(np.sum(benign_hit & ~malicious_hit))


def host_metrics(
    host_days: HostDays | None, *, threshold: float, benign_events_per_day: float
) -> dict[str, float]:
    """The HOST_METRICS at ``threshold``: a host-day alerts when one of its names scores >= it,
    and is a false positive when it alerts and none of its alerting names is blocklisted.

    ``None`` (no client column) gives nan everywhere: the figures are absent, never guessed.
    """
    nan = math.nan
    if host_days is None:
        return dict.fromkeys(HOST_METRICS, nan)
    count = len(host_days)
    hosts = hosts_per_day(host_days, benign_events_per_day=benign_events_per_day)
    metrics = dict.fromkeys(HOST_METRICS, nan)
    metrics["host_days"] = float(count)
    metrics["hosts_per_day"] = hosts
    # One false positive host a day is resolvable when the test days hold >= 3/(1/H) host-days.
    metrics["host_fp_per_day_resolvable"] = float(math.isfinite(hosts) and count >= 3.0 * hosts)
    if count == 0 or math.isnan(threshold):
        return metrics
    alerting, false_positives = host_alerts(host_days, threshold=threshold)
    rate = false_positives / count
    upper = clopper_pearson_upper(successes=false_positives, trials=count)
    metrics |= {
        "host_alerts_per_day": alerting / count * hosts,
        "host_fpr": rate,
        "host_fpr_upper95": upper,
        "host_fp_per_day": rate * hosts,
        "host_fp_per_day_upper95": upper * hosts,
    }
    return metrics


# --- families ----------------------------------------------------------------------------------


def per_family_recall(
    *, scores: ArrayLike, families: ArrayLike, threshold: float
) -> dict[str, float]:
    """Recall per DGA family at ``threshold``; ``families`` holds '' for benign rows (skipped)."""
    families_array = np.asarray(families, dtype=str)
    scores_array, _, _ = check_scores_labels(scores=scores, labels=families_array != "")
    names, family_index = np.unique(families_array, return_inverse=True)
    flagged = np.bincount(family_index, weights=scores_array >= threshold, minlength=names.size)
    totals = np.bincount(family_index, minlength=names.size)
    return {str(name): float(flagged[i] / totals[i]) for i, name in enumerate(names) if name != ""}


def unseen_family_recall(
    *, scores: ArrayLike, families: ArrayLike, seen_families: set[str], threshold: float
) -> float:
    """Recall over malicious rows whose family is not in ``seen_families``; nan if there are none.

    Pooled over rows (a large unseen family weighs more), ``families`` holds '' for benign rows.
    """
    families_array = np.asarray(families, dtype=str)
    scores_array, _, _ = check_scores_labels(scores=scores, labels=families_array != "")
    unseen = (families_array != "") & ~np.isin(families_array, sorted(seen_families))
    if not unseen.any():
        return float("nan")
    return float(np.mean(scores_array[unseen] >= threshold))


# --- shortcut baselines ------------------------------------------------------------------------


def shortcut_ratio(*, baseline_auc: float, model_auc: float) -> float:
    """Best single-feature AUC / model AUC: near or above 1, the model adds little to one feature.

    inf when the model AUC is 0 and the baseline AUC is not; nan stays nan.
    """
    _check_rate("baseline_auc", baseline_auc, allow_nan=True)
    _check_rate("model_auc", model_auc, allow_nan=True)
    if model_auc == 0.0:
        return math.inf if baseline_auc > 0.0 else float("nan")
    return baseline_auc / model_auc


@cache
def _public_suffix_list() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList  # imported on first use: it parses ~10k rules

    return PublicSuffixList(only_icann=True)


def registered_label(domain: str) -> str:
    """The label left of the ICANN public suffix, lower-cased: 'www.google.co.uk' -> 'google'.

    Names without a registrable part ('localhost', 'co.uk') give their leftmost label.
    """
    name = domain.strip().rstrip(".").lower()
    registered = _public_suffix_list().privatesuffix(name) if name else None
    return (registered or name).split(".")[0]


def _code_points(domains: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Registered labels as (all their code points concatenated, row of each, label lengths)."""
    if isinstance(domains, (str, bytes)):
        raise TypeError("expected a sequence of domain names, not a single string")
    labels = [registered_label(domain) for domain in domains]
    lengths = np.fromiter((len(label) for label in labels), dtype=np.int64, count=len(labels))
    code_points = np.frombuffer("".join(labels).encode("utf-32-le"), dtype=np.uint32).astype(
        np.int64
    )
    rows = np.repeat(np.arange(len(labels)), lengths)
    return code_points, rows, lengths


def _entropy_bits(code_points: np.ndarray, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    keys = rows * 0x110000 + code_points
    unique_keys, counts = np.unique(keys, return_counts=True)
    key_rows = unique_keys // 0x110000
    shares = counts / lengths[key_rows]
    return np.bincount(key_rows, weights=-shares * np.log2(shares), minlength=lengths.size) + 0.0


def char_entropy(domains: Sequence[str]) -> np.ndarray:
    """Shannon entropy (bits per character) of each domain's registered label; 0 if empty.

    >>> char_entropy(["www.abcd.co.uk", "aaaa.com"]).tolist()
    [2.0, 0.0]
    """
    return _entropy_bits(*_code_points(domains))


_VOWELS = np.array([ord(c) for c in "aeiou"])
_DIGITS = np.array([ord(c) for c in "0123456789"])
_CONSONANTS = np.array([ord(c) for c in "bcdfghjklmnpqrstvwxyz"])


def single_feature_scores(domains: Sequence[str]) -> dict[str, np.ndarray]:
    """Simple features of each registered label, oriented a priori so higher = more DGA-like."""
    code_points, rows, lengths = _code_points(domains)
    is_consonant = np.isin(code_points, _CONSONANTS)
    # Run length at each position = distance to the last non-consonant (or to the label start).
    positions = np.arange(code_points.size)
    run_boundary = np.where(is_consonant, -1, positions)
    starts = (np.cumsum(lengths) - lengths)[lengths > 0]
    run_boundary[starts] = np.maximum(run_boundary[starts], starts - 1)
    longest_run = np.zeros(lengths.size)
    np.maximum.at(longest_run, rows, positions - np.maximum.accumulate(run_boundary))

    def share(mask: np.ndarray) -> np.ndarray:
        return np.bincount(rows, weights=mask, minlength=lengths.size) / np.maximum(lengths, 1)

    return {
        "char_entropy": _entropy_bits(code_points, rows, lengths),
        "label_length": lengths.astype(np.float64),
        "digit_ratio": share(np.isin(code_points, _DIGITS)),
        "max_consonant_run": longest_run,
        "non_vowel_ratio": share(~np.isin(code_points, _VOWELS)),
    }


def best_single_feature_auc(*, domains: Sequence[str], labels: ArrayLike) -> tuple[str, float]:
    """The single feature with the highest ROC AUC in its fixed orientation (never 1 - AUC).

    Returns (feature name, AUC); the AUC is nan when a class is absent.
    """
    features = single_feature_scores(domains)
    aucs = {name: roc_auc(scores=values, labels=labels) for name, values in features.items()}
    defined = {name: auc for name, auc in aucs.items() if not math.isnan(auc)}
    if not defined:
        return "char_entropy", float("nan")
    best = max(defined, key=defined.__getitem__)
    return best, defined[best]
