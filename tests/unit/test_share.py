"""The share policy: exact key sets per level, rounding, and that nothing unlisted leaves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.share import SHARE_KEYS, SHARE_LEVELS, is_shared, round_significant, share_subset

quick = settings(max_examples=200, deadline=None)

RATES = {
    "auc",
    "pauc_fpr_1e-3",
    "tpr_at_fpr_1e-3",
    "tpr_at_fpr_1e-4",
    "tpr_at_fpr_1e-5",
    "tpr_at_fpr_1e-3_resolvable",
    "tpr_at_fpr_1e-4_resolvable",
    "tpr_at_fpr_1e-5_resolvable",
    "fpr",
    "fpr_upper95",
    "fpr_query",
    "fpr_unique",
    "precision_at_base_rate",
    "recall_at_budget",
    "budget_utilisation",
    "threshold_feasible",
    "ece",
    "brier",
    "churn",
    "new_fp_rate",
    "recall_family_conficker",
    "recall_family_gamma_2",
    "unseen_family_recall",
    "psi_score",
    "shortcut_ratio",
    "malformed_rate",
    "duplicate_rate",
    "label_conflict_rate",
    "leakage_rate",
    "federated_gain_tpr_at_fpr_1e-4",
    "federated_gain_recall_at_budget",
}
VOLUMES = {
    "fp_per_day",
    "fp_per_day_upper95",
    "alerts_per_day",
    "alerts_per_incident",
    "alert_budget_per_day",
    "analyst_hours_per_day",
    "test_domains",
    "test_positives",
    "test_queries",
    "unseen_families",
    "federated_gain_fp_per_day",
}
LOCAL_ONLY = {
    "threshold",
    "threshold_at_budget",
    "operating_mode_budget",
    "baseline_auc",
    "tpr",
    "train_domains",
    "top_fp_domain_count",
    "auc_extra",
    "recall_family",
    "xrecall_family_a",
}


def realistic_metrics() -> dict[str, float]:
    """Every key a site computes, all finite (0.123 for rates, 1234.5 for volumes)."""
    metrics = {key: 0.123 for key in RATES | LOCAL_ONLY}
    metrics |= {key: 1234.5 for key in VOLUMES}
    return metrics


def test_none_sends_only_an_acknowledgement() -> None:
    assert share_subset(realistic_metrics(), level="none") == {"ack": 1.0}
    assert share_subset({}, level="none") == {"ack": 1.0}


def test_rates_level_key_set() -> None:
    assert set(share_subset(realistic_metrics(), level="rates")) == RATES


def test_rates_and_volumes_level_key_set() -> None:
    assert set(share_subset(realistic_metrics(), level="rates+volumes")) == RATES | VOLUMES


def test_levels_are_nested() -> None:
    assert SHARE_KEYS["none"] < SHARE_KEYS["rates"] < SHARE_KEYS["rates+volumes"]


def test_values_are_rounded_plain_floats() -> None:
    metrics = {
        "auc": np.float64(0.987654),
        "test_domains": np.int64(123456),
        "threshold_feasible": True,
        "fp_per_day": 12,
    }
    shared = share_subset(metrics, level="rates+volumes")
    assert shared == {
        "auc": 0.99,
        "test_domains": 120000.0,
        "threshold_feasible": 1.0,
        "fp_per_day": 12.0,
    }
    assert all(type(value) is float for value in shared.values())


def test_non_finite_values_are_not_sent() -> None:
    metrics = {
        "auc": float("nan"),
        "alerts_per_incident": float("inf"),
        "budget_utilisation": -float("inf"),
        "fpr": 0.0,
        "fp_per_day": 1.7976931348623157e308,
    }  # rounds up past the largest float
    assert share_subset(metrics, level="rates+volumes") == {"fpr": 0.0}


def test_unknown_keys_are_dropped() -> None:
    metrics = {
        "auc": 0.9,
        "top_fp_example.com": 1.0,
        "domain_count": 5.0,
        "AUC": 0.9,
        "recall_family": 0.5,
        "recall_family_": 0.5,
        "recall_family_evil.example": 0.5,
        "recall_family_Conficker": 0.5,
        "recall_family_gamma_2": 0.5,
    }
    # Per-family keys pass only with a slug suffix: no dotted name can ride along in a key.
    assert share_subset(metrics, level="rates") == {"auc": 0.9, "recall_family_gamma_2": 0.5}


def test_a_non_numeric_allowed_value_is_a_bug() -> None:
    with pytest.raises(TypeError, match="auc"):
        share_subset({"auc": "0.9"}, level="rates")
    # A non-numeric value under a key that is not shared is simply never looked at.
    assert share_subset({"note": "local"}, level="rates") == {}


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="share level"):
        share_subset({"auc": 0.9}, level="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="share level"):
        is_shared("auc", level="all")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0123456, 0.012),
        (123456, 120000.0),
        (0, 0.0),
        (-0.0, 0.0),
        (-0.0123456, -0.012),
        (-987.6, -990.0),
        (0.995, 0.99),  # 0.995 is stored as 0.99499999...
        (0.996, 1.0),
        (1.0, 1.0),
        (3e-9, 3e-9),
        (2.5e-5, 2.5e-5),
        (99.5, 100.0),
    ],
)
def test_round_significant_two_digits(value: float, expected: float) -> None:
    assert round_significant(value) == expected


def test_round_significant_other_digits_and_non_finite() -> None:
    assert round_significant(123456, digits=1) == 100000.0
    assert round_significant(0.0123456, digits=4) == 0.01235
    assert math.isnan(round_significant(float("nan")))
    assert round_significant(float("inf")) == float("inf")
    with pytest.raises(ValueError, match="digits"):
        round_significant(1.0, digits=0)


finite = st.floats(allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
metric_names = st.one_of(
    st.sampled_from(sorted(RATES | VOLUMES | LOCAL_ONLY)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.-0123456789", max_size=30),
    st.text(max_size=10).map(lambda text: "recall_family_" + text),
)


@quick
@given(
    metrics=st.dictionaries(metric_names, any_float, max_size=40),
    level=st.sampled_from(SHARE_LEVELS),
)
def test_shared_keys_are_allowed_and_values_finite(metrics: dict, level: str) -> None:
    shared = share_subset(metrics, level=level)
    if level in ("none", "aggregate"):  # an acknowledgement only, whatever the metrics
        assert shared == share_subset({}, level=level)
        assert set(shared) <= {"ack", "aggregate_only"} and set(shared.values()) == {1.0}
        return
    for key, value in shared.items():
        assert is_shared(key, level=level)
        assert key in metrics and math.isfinite(value) and type(value) is float
        assert value == round_significant(metrics[key])


@quick
@given(value=finite.filter(lambda value: abs(value) < 1e300))
def test_rounding_keeps_two_significant_figures(value: float) -> None:
    rounded = round_significant(value)
    assert math.isfinite(rounded)
    if value == 0.0:
        assert rounded == 0.0
        return
    assert math.copysign(1.0, rounded) == math.copysign(1.0, value)
    # Half a unit in the second significant figure, plus float slack.
    assert abs(rounded - value) <= 0.05 * 10 ** math.floor(math.log10(abs(value))) * (1 + 1e-9)
    assert round_significant(rounded) == rounded
