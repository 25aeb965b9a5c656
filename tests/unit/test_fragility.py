"""Cost and operations metrics: hand-computed fixtures, known values and invariants."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.fragility import (
    alert_budget_per_day,
    alerts_per_incident,
    analyst_hours_per_day,
    best_single_feature_auc,
    budget_utilisation,
    char_entropy,
    clopper_pearson_upper,
    expected_alerts_per_day,
    fp_per_day,
    fpr_query_vs_unique,
    per_family_recall,
    positive_events_per_day,
    precision_at_base_rate,
    registered_label,
    shortcut_ratio,
    single_feature_scores,
    threshold_at_budget,
    unseen_family_recall,
)
from common.metrics import confusion_at_thresholds, score_thresholds

quick = settings(max_examples=60, deadline=None)
samples = st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=2, max_size=40).filter(
    lambda rows: len({label for _, label in rows}) == 2
)


def split(rows: list[tuple[int, bool]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([score / 8 for score, _ in rows]), np.array([label for _, label in rows])


# --- clopper_pearson_upper ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        # Beta(x + 1, n - x) quantiles, checked with mpmath at 40 digits.
        (5, 100, 0.102253377643275),
        (1, 10, 0.394163302436505),
        (10, 1000, 0.0169031751205625),
        (50, 100, 0.586378285369088),
        (99, 100, 0.999487198583738),
        (2000, 10**12, 2.075142590966306e-09),
    ],
)
def test_clopper_pearson_known_values(successes: int, trials: int, expected: float) -> None:
    upper = clopper_pearson_upper(successes=successes, trials=trials)
    assert upper == pytest.approx(expected, rel=1e-9)


def test_clopper_pearson_zero_successes_closed_form() -> None:
    assert clopper_pearson_upper(successes=0, trials=100) == pytest.approx(0.029513049607040)
    assert clopper_pearson_upper(successes=0, trials=100) == pytest.approx(1 - 0.05 ** (1 / 100))
    # 0 FPs on 100k benign samples still means FPR <= 3e-5, not 0.
    zero_of_100k = clopper_pearson_upper(successes=0, trials=100_000)
    assert 2.99e-5 < zero_of_100k < 3.0e-5


def test_clopper_pearson_edges_and_confidence() -> None:
    assert clopper_pearson_upper(successes=0, trials=0) == 1.0
    assert clopper_pearson_upper(successes=7, trials=7) == 1.0
    at_95 = clopper_pearson_upper(successes=3, trials=50)
    assert clopper_pearson_upper(successes=3, trials=50, confidence=0.99) > at_95
    assert clopper_pearson_upper(successes=3.0, trials=50.0) == at_95


@pytest.mark.parametrize(
    "kwargs",
    [
        {"successes": 5, "trials": 4},
        {"successes": -1, "trials": 4},
        {"successes": 1.5, "trials": 4},
        {"successes": 1, "trials": 4, "confidence": 1.0},
    ],
)
def test_clopper_pearson_rejects_bad_input(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        clopper_pearson_upper(**kwargs)


def binomial_cdf(successes: int, trials: int, probability: float) -> float:
    return sum(
        math.comb(trials, k) * probability**k * (1 - probability) ** (trials - k)
        for k in range(successes + 1)
    )


@quick
@given(trials=st.integers(1, 150), data=st.data())
def test_clopper_pearson_solves_the_binomial_tail(trials: int, data) -> None:
    successes = data.draw(st.integers(0, trials - 1))
    upper = clopper_pearson_upper(successes=successes, trials=trials)
    assert binomial_cdf(successes, trials, upper) == pytest.approx(0.05, rel=1e-6)
    assert successes / trials <= upper <= 1.0


@quick
@given(successes=st.integers(0, 20), extra=st.integers(1, 200), scale=st.integers(2, 50))
def test_upper_bound_covers_estimate_and_shrinks_with_more_benign(successes, extra, scale) -> None:
    trials = successes + extra
    small = clopper_pearson_upper(successes=successes, trials=trials)
    large = clopper_pearson_upper(successes=successes * scale, trials=trials * scale)
    assert small >= successes / trials and large >= successes / trials
    assert large < small  # same rate, more benign samples
    assert clopper_pearson_upper(successes=successes + 1, trials=trials + 1) > small


# --- volumes and costs -------------------------------------------------------------------------


def test_volume_and_cost_arithmetic() -> None:
    assert fp_per_day(fpr=1e-5, benign_events_per_day=2e9) == pytest.approx(2e4)
    assert positive_events_per_day(benign_events_per_day=2e9, base_rate=1e-5) == pytest.approx(
        20_000.2
    )
    alerts = expected_alerts_per_day(tpr=0.5, fpr=1e-3, benign_events_per_day=1e6, base_rate=0.01)
    assert alerts == pytest.approx(0.5 * 1e6 * 0.01 / 0.99 + 1000)
    assert alert_budget_per_day(analysts=5, productive_hours_per_day=5.6, minutes_per_alert=20) == (
        pytest.approx(84.0)
    )
    assert alert_budget_per_day(analysts=0, productive_hours_per_day=5.6, minutes_per_alert=20) == 0
    assert analyst_hours_per_day(alerts_per_day=84, minutes_per_alert=20) == pytest.approx(28.0)
    assert budget_utilisation(alerts_per_day=42, alert_budget_per_day=84) == 0.5
    assert budget_utilisation(alerts_per_day=0, alert_budget_per_day=0) == 0.0
    assert budget_utilisation(alerts_per_day=3, alert_budget_per_day=0) == math.inf


def test_precision_and_alerts_per_incident() -> None:
    precision = precision_at_base_rate(tpr=0.9, fpr=1e-3, base_rate=1e-5)
    assert precision == pytest.approx(9e-6 / (9e-6 + 1e-3 * (1 - 1e-5)))
    assert precision_at_base_rate(tpr=1.0, fpr=0.0, base_rate=0.5) == 1.0
    assert math.isnan(precision_at_base_rate(tpr=0.0, fpr=0.0, base_rate=0.5))
    assert alerts_per_incident(precision=0.25) == 4.0
    assert alerts_per_incident(precision=0.0) == math.inf
    assert math.isnan(alerts_per_incident(precision=float("nan")))


@pytest.mark.parametrize(
    ("function", "kwargs"),
    [
        (fp_per_day, {"fpr": 1.5, "benign_events_per_day": 10}),
        (fp_per_day, {"fpr": 0.1, "benign_events_per_day": -1}),
        (precision_at_base_rate, {"tpr": 0.5, "fpr": 0.1, "base_rate": 0.0}),
        (precision_at_base_rate, {"tpr": 0.5, "fpr": 0.1, "base_rate": "measured"}),
        (alerts_per_incident, {"precision": 1.5}),
        (
            alert_budget_per_day,
            {"analysts": 2, "productive_hours_per_day": 25, "minutes_per_alert": 5},
        ),
        (
            alert_budget_per_day,
            {"analysts": 2, "productive_hours_per_day": 5, "minutes_per_alert": 0},
        ),
        (budget_utilisation, {"alerts_per_day": 1, "alert_budget_per_day": -1}),
    ],
)
def test_cost_functions_reject_bad_input(function, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        function(**kwargs)


@quick
@given(
    # Rates are counts over at most ~1e12 samples: subnormal rates only test float underflow.
    tpr=st.one_of(st.just(0.0), st.floats(1e-12, 1)),
    fpr=st.one_of(st.just(0.0), st.floats(1e-12, 1)),
    base_rate=st.floats(1e-9, 0.5),
    volume=st.floats(1, 1e10),
)
def test_precision_agrees_with_alert_volumes(tpr, fpr, base_rate, volume) -> None:
    precision = precision_at_base_rate(tpr=tpr, fpr=fpr, base_rate=base_rate)
    alerts = expected_alerts_per_day(
        tpr=tpr, fpr=fpr, benign_events_per_day=volume, base_rate=base_rate
    )
    true_alerts = tpr * positive_events_per_day(benign_events_per_day=volume, base_rate=base_rate)
    if alerts > 0:
        assert 0.0 <= precision <= 1.0
        assert precision == pytest.approx(true_alerts / alerts, rel=1e-6, abs=1e-12)


@quick
@given(rows=samples, volume=st.floats(1, 1e10))
def test_fp_per_day_never_increases_with_the_threshold(rows, volume) -> None:
    scores, labels = split(rows)
    thresholds = score_thresholds(scores)
    fpr = confusion_at_thresholds(scores=scores, labels=labels, thresholds=thresholds).fpr
    per_day = [fp_per_day(fpr=rate, benign_events_per_day=volume) for rate in fpr]
    assert all(later <= earlier for earlier, later in zip(per_day, per_day[1:], strict=False))


def test_fpr_query_vs_unique_hand_computed() -> None:
    # One popular benign domain is flagged: 1 of 3 domains, but 1e6 of 1e6 + 10 queries.
    result = fpr_query_vs_unique(
        scores=[0.9, 0.1, 0.2, 0.95],
        labels=[0, 0, 0, 1],
        query_counts=[1_000_000, 4, 6, 3],
        threshold=0.5,
    )
    assert result.fpr_unique == pytest.approx(1 / 3)
    assert result.fpr_query == pytest.approx(1e6 / (1e6 + 10))
    assert (result.fp_domains, result.benign_domains) == (1, 3)
    assert (result.fp_queries, result.benign_queries) == (1e6, 1e6 + 10)


# --- threshold_at_budget -----------------------------------------------------------------------

# 4 benign, 3 malicious; V = 1000/day and pi = 0.5 give 1000 malicious events/day.
BUDGET_CASE = {
    "scores": [0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.9],
    "labels": [0, 0, 0, 0, 1, 1, 1],
    "benign_events_per_day": 1000.0,
    "base_rate": 0.5,
}


def test_threshold_at_budget_hand_computed() -> None:
    # alerts/day: 0.9 -> 333.3, 0.6 -> 666.7, 0.4 -> 916.7, 0.35 -> 1250.
    point = threshold_at_budget(**BUDGET_CASE, alert_budget_per_day=1000)
    assert (point.threshold, point.feasible) == (0.4, True)
    assert (point.tpr, point.fpr) == (pytest.approx(2 / 3), 0.25)
    assert point.alerts_per_day == pytest.approx(2000 / 3 + 250)
    point = threshold_at_budget(**BUDGET_CASE, alert_budget_per_day=700)
    assert (point.threshold, point.tpr, point.fpr) == (0.6, pytest.approx(2 / 3), 0.0)


def test_threshold_at_budget_infeasible_goes_above_the_top_score() -> None:
    point = threshold_at_budget(**BUDGET_CASE, alert_budget_per_day=300)
    assert point.feasible is False
    assert point.threshold > 0.9
    assert (point.tpr, point.fpr, point.alerts_per_day) == (0.0, 0.0, 0.0)
    assert threshold_at_budget(**BUDGET_CASE, alert_budget_per_day=0).feasible is False


def test_threshold_at_budget_below_one_alert_per_day() -> None:
    # pi = 1e-6 on 1e6 benign/day: ~1 malicious event/day, so one caught family is 1/3 alert/day.
    case = {**BUDGET_CASE, "benign_events_per_day": 1e6, "base_rate": 1e-6}
    point = threshold_at_budget(**case, alert_budget_per_day=0.5)
    assert (point.threshold, point.feasible) == (0.9, True)
    assert point.alerts_per_day == pytest.approx(1 / 3, rel=1e-5)
    assert threshold_at_budget(**case, alert_budget_per_day=0.2).feasible is False


def test_threshold_at_budget_without_both_classes_is_nan() -> None:
    case = {**BUDGET_CASE, "labels": [0] * 7}
    point = threshold_at_budget(**case, alert_budget_per_day=100)
    assert math.isnan(point.threshold) and math.isnan(point.tpr) and point.feasible is False
    with pytest.raises(ValueError, match="base_rate"):
        threshold_at_budget(**{**case, "base_rate": 1.0}, alert_budget_per_day=100)


@quick
@given(
    rows=samples,
    volume=st.floats(1, 1e9),
    base_rate=st.floats(1e-7, 0.5),
    budget=st.floats(0, 1e6),
)
def test_budget_threshold_is_the_smallest_within_budget(rows, volume, base_rate, budget) -> None:
    scores, labels = split(rows)
    point = threshold_at_budget(
        scores=scores,
        labels=labels,
        benign_events_per_day=volume,
        base_rate=base_rate,
        alert_budget_per_day=budget,
    )
    assert point.alerts_per_day <= budget
    assert 0.0 <= point.tpr <= 1.0 and 0.0 <= point.fpr <= 1.0

    def alerts_at(threshold: float) -> float:
        flagged = scores >= threshold
        return expected_alerts_per_day(
            tpr=flagged[labels].mean(),
            fpr=flagged[~labels].mean(),
            benign_events_per_day=volume,
            base_rate=base_rate,
        )

    fitting = [t for t in set(scores) if alerts_at(t) <= budget]
    assert point.feasible == bool(fitting)
    if fitting:
        assert point.threshold == min(fitting)
    else:
        assert point.threshold > scores.max() and point.tpr == 0.0


# --- families -----------------------------------------------------------------------------------

FAMILY_CASE = {
    "scores": [0.9, 0.2, 0.8, 0.6, 0.7, 0.95],
    "families": ["a", "a", "b", "b", "", ""],
}


def test_per_family_recall_skips_benign_rows() -> None:
    assert per_family_recall(**FAMILY_CASE, threshold=0.5) == {"a": 0.5, "b": 1.0}
    assert per_family_recall(**FAMILY_CASE, threshold=0.85) == {"a": 0.5, "b": 0.0}
    assert per_family_recall(scores=[0.3], families=[""], threshold=0.5) == {}


def test_unseen_family_recall() -> None:
    assert unseen_family_recall(**FAMILY_CASE, seen_families={"a"}, threshold=0.5) == 1.0
    assert unseen_family_recall(**FAMILY_CASE, seen_families=set(), threshold=0.5) == 0.75
    assert math.isnan(unseen_family_recall(**FAMILY_CASE, seen_families={"a", "b"}, threshold=0.5))


@quick
@given(
    rows=st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["", "a", "b", "c"])), max_size=30),
    seen=st.sets(st.sampled_from(["a", "b", "c"])),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
)
def test_family_recalls_stay_in_unit_interval(rows, seen, threshold) -> None:
    scores = [score / 8 for score, _ in rows]
    families = [family for _, family in rows]
    recalls = per_family_recall(scores=scores, families=families, threshold=threshold)
    assert set(recalls) == set(families) - {""}
    assert all(0.0 <= recall <= 1.0 for recall in recalls.values())
    unseen = unseen_family_recall(
        scores=scores, families=families, seen_families=seen, threshold=threshold
    )
    assert math.isnan(unseen) == (not set(families) - {""} - seen)
    assert math.isnan(unseen) or 0.0 <= unseen <= 1.0


def test_family_functions_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        per_family_recall(scores=[0.1, 0.2], families=["a"], threshold=0.5)


# --- shortcut baselines ------------------------------------------------------------------------


def test_shortcut_ratio() -> None:
    assert shortcut_ratio(baseline_auc=0.9, model_auc=0.95) == pytest.approx(0.9 / 0.95)
    assert math.isnan(shortcut_ratio(baseline_auc=float("nan"), model_auc=0.9))
    assert shortcut_ratio(baseline_auc=0.5, model_auc=0.0) == math.inf


def test_registered_label_uses_the_public_suffix() -> None:
    assert registered_label("www.google.co.uk") == "google"
    assert registered_label("A.B.Example.COM.") == "example"
    assert registered_label("localhost") == "localhost"
    assert registered_label("") == ""


def reference_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values()) if text else 0.0


def test_char_entropy_hand_computed() -> None:
    entropy = char_entropy(["www.abcd.co.uk", "aaaa.com", "ab.net", "www.google.co.uk", ""])
    # google: g, o twice; l, e once -> 2/3 log2 3 + 1/3 log2 6.
    expected = [2.0, 0.0, 1.0, 2 / 3 * math.log2(3) + 1 / 3 * math.log2(6), 0.0]
    assert entropy == pytest.approx(expected)
    assert char_entropy([]).shape == (0,)
    with pytest.raises(TypeError):
        char_entropy("example.com")


@quick
@given(labels=st.lists(st.text("abcdexyz0129-", min_size=1, max_size=20), max_size=10))
def test_char_entropy_matches_reference(labels: list[str]) -> None:
    domains = [f"{label}.com" for label in labels]
    expected = [reference_entropy(registered_label(domain)) for domain in domains]
    assert char_entropy(domains) == pytest.approx(expected)


def test_single_feature_scores_hand_computed() -> None:
    features = single_feature_scores(["xkcdqz9p.com", "strength.net", "aaaa.org", ""])
    assert features["char_entropy"] == pytest.approx([3.0, 2.75, 0.0, 0.0])
    assert features["label_length"].tolist() == [8, 8, 4, 0]
    assert features["digit_ratio"].tolist() == [0.125, 0.0, 0.0, 0.0]
    assert features["max_consonant_run"].tolist() == [6, 4, 0, 0]
    assert features["non_vowel_ratio"].tolist() == [1.0, 0.875, 0.0, 0.0]


@quick
@given(labels=st.lists(st.text("abeiouxyz019-", min_size=1, max_size=20), max_size=10))
def test_consonant_run_matches_reference(labels: list[str]) -> None:
    domains = [f"{label}.net" for label in labels]
    consonants = set("bcdfghjklmnpqrstvwxyz")
    expected = []
    for domain in domains:
        longest = run = 0
        for char in registered_label(domain):
            run = run + 1 if char in consonants else 0
            longest = max(longest, run)
        expected.append(longest)
    assert single_feature_scores(domains)["max_consonant_run"].tolist() == expected


def test_best_single_feature_auc_is_reported_as_oriented() -> None:
    # Malicious names here are short, vowel-only and low-entropy: every feature points the wrong
    # way, so the honest answer is AUC 0, not a flipped 1.
    domains = ["aaaa.com", "eeee.net", "ioio.org", "xkcdqz9p.com", "bv7rt9kz.net", "qwrtzp12.org"]
    labels = [1, 1, 1, 0, 0, 0]
    assert best_single_feature_auc(domains=domains, labels=labels) == ("char_entropy", 0.0)
    flipped = [1 - label for label in labels]
    name, auc = best_single_feature_auc(domains=domains, labels=flipped)
    assert auc == 1.0 and name in single_feature_scores(domains)
    name, auc = best_single_feature_auc(domains=domains, labels=[0] * 6)
    assert math.isnan(auc)
