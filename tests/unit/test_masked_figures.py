"""Share level `aggregate`: nothing in clear, a fixed masked vocabulary, no mean from < 3 sites."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.check import share_lines
from common.config import parse_site_config
from common.protocol import FAMILY_RECALL_PREFIX, RATE_METRICS, VOLUME_METRICS
from common.share import (
    FEDERATION_FRACTIONS,
    FEDERATION_KEYS,
    MASKED_RANGE,
    MIN_CONTRIBUTORS,
    SHARE_KEYS,
    SHARE_LEVELS,
    federation_means,
    is_shared,
    masked_figures,
    round_significant,
    share_subset,
    share_train_metrics,
    shared_weight,
)

quick = settings(max_examples=200, deadline=None)


def figures(**values: float) -> dict[str, float]:
    return dict(values)


def at(key: str, vector: np.ndarray) -> float:
    return float(vector[FEDERATION_KEYS.index(key)])


def test_aggregate_is_a_level_and_sends_nothing_in_clear() -> None:
    assert "aggregate" in SHARE_LEVELS and SHARE_KEYS["aggregate"] == frozenset()
    metrics = {key: 0.5 for key in RATE_METRICS | VOLUME_METRICS} | {"recall_family_locky": 0.5}
    assert share_subset(metrics, level="aggregate") == {"ack": 1.0, "aggregate_only": 1.0}
    assert not any(is_shared(key, level="aggregate") for key in metrics)
    assert share_train_metrics({"train_loss": 0.3, "delta_norm": 2.0}, level="aggregate") == {}
    assert shared_weight(1234, level="aggregate", masked=True) == 1
    assert shared_weight(1234, level="aggregate", masked=False) == 1200  # FedAvg: as at `none`


def test_a_site_config_may_choose_aggregate() -> None:
    config = parse_site_config(
        {
            "site_id": "a",
            "logs": {"paths": ["logs/*"]},
            "deployment": {"benign_events_per_day": 1e6},
            "analysts": {"count": 1, "productive_hours_per_day": 6, "minutes_per_alert": 5},
            "share": {"level": "aggregate"},
        },
        source="site.toml",
    )
    assert config.share.level == "aggregate"


def test_the_masked_vocabulary_is_fixed_bounded_and_never_a_volume() -> None:
    assert list(FEDERATION_KEYS) == sorted(set(FEDERATION_KEYS))
    assert not set(FEDERATION_KEYS) & VOLUME_METRICS
    unbounded = {rate for rate, _ in FEDERATION_FRACTIONS.values()}
    assert unbounded == {"budget_utilisation", "shortcut_ratio", "psi_score"}
    assert not set(FEDERATION_KEYS) & unbounded
    assert RATE_METRICS - unbounded <= set(FEDERATION_KEYS)
    family_keys = [key for key in FEDERATION_KEYS if key.startswith(FAMILY_RECALL_PREFIX)]
    assert "recall_family_conficker" in family_keys
    assert not any(key.startswith(f"{FAMILY_RECALL_PREFIX}local_") for key in family_keys)


def test_masked_figures_are_rounded_and_invalid_ones_are_zero() -> None:
    values, valid = masked_figures(
        figures(
            auc=0.98765,
            brier=math.nan,
            ece=math.inf,
            fpr=0.0,
            **{"tpr_at_fpr_1e-4": 0.8, "tpr_at_fpr_1e-4_resolvable": 0.0},
            **{"federated_gain_tpr_at_fpr_1e-4": 0.1},  # shares the TPR's flag: left out
            **{"tpr_at_fpr_1e-3": 0.7, "tpr_at_fpr_1e-3_resolvable": 1.0},
            **{"federated_gain_recall_at_budget": -0.25},
            recall_family_locky=0.5,
            recall_family_local_1=0.9,  # a site-local index: not in the vocabulary
            test_domains=1234.0,  # a volume: not in the vocabulary
        )
    )
    assert at("auc", values) == 0.99 and at("auc", valid) == 1
    assert at("brier", valid) == 0 and at("ece", valid) == 0 and at("brier", values) == 0
    assert at("fpr", valid) == 1 and at("fpr", values) == 0
    assert at("tpr_at_fpr_1e-4", valid) == 0 and at("federated_gain_tpr_at_fpr_1e-4", valid) == 0
    assert at("tpr_at_fpr_1e-4_resolvable", valid) == 1  # the flag itself is a figure
    assert at("tpr_at_fpr_1e-3", values) == 0.7
    assert at("federated_gain_recall_at_budget", values) == -0.25
    assert at("recall_family_locky", values) == 0.5
    assert int(valid.sum()) == 7
    assert values.dtype == np.float64 and values.shape == valid.shape == (len(FEDERATION_KEYS),)


def test_unbounded_rates_travel_as_past_the_limit_or_not() -> None:
    values, valid = masked_figures(
        figures(budget_utilisation=math.inf, shortcut_ratio=0.951, psi_score=math.nan)
    )
    assert at("fraction_over_budget", values) == 1 and at("fraction_over_budget", valid) == 1
    # 0.951 is 0.95 at 2 significant figures, what `rates` would send: not past 0.95.
    assert at("fraction_shortcut", values) == 0 and at("fraction_shortcut", valid) == 1
    assert at("fraction_psi_major_shift", valid) == 0
    values, _ = masked_figures(figures(budget_utilisation=3.7, shortcut_ratio=1.2))
    assert at("fraction_over_budget", values) == 1 and at("fraction_shortcut", values) == 1


@quick
@given(
    metrics=st.dictionaries(
        st.sampled_from(
            sorted(RATE_METRICS | VOLUME_METRICS | {"recall_family_locky", "recall_family_x"})
        ),
        st.floats(allow_nan=True, allow_infinity=True),
        max_size=40,
    )
)
def test_masked_values_fit_the_clipping_range(metrics: dict[str, float]) -> None:
    values, valid = masked_figures(metrics)
    assert np.all(np.abs(values) <= MASKED_RANGE) and set(np.unique(valid)) <= {0.0, 1.0}
    assert not np.any(values[valid == 0])
    for key, value, flag in zip(FEDERATION_KEYS, values, valid, strict=True):
        if flag and key not in FEDERATION_FRACTIONS:
            assert value == round_significant(metrics[key])


def _sum(*sites: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """What SecAgg+ hands back: the mean of the sites' vectors, each weighted 1."""
    return np.mean([v for v, _ in sites], axis=0), np.mean([c for _, c in sites], axis=0)


def test_federation_means_need_three_contributors() -> None:
    sites = [
        masked_figures(figures(auc=0.9, brier=0.1, ece=0.2)),
        masked_figures(figures(auc=0.8, brier=0.2)),
        masked_figures(figures(auc=0.7)),
        masked_figures(figures()),  # a site with nothing valid still counts as a site
    ]
    means, contributors = federation_means(*_sum(*sites), sites=len(sites))
    assert means == {"auc": pytest.approx(0.8)}
    assert contributors == {"auc": 3, "brier": 2, "ece": 1}
    means, contributors = federation_means(*_sum(*sites[:2]), sites=2)
    assert means == {} and contributors == {"auc": 2, "brier": 2, "ece": 1}
    assert MIN_CONTRIBUTORS == 3


def test_federation_means_round_away_quantisation_noise() -> None:
    values, valid = _sum(*(masked_figures(figures(fpr=0.0, auc=1.0)) for _ in range(3)))
    means, _ = federation_means(values - 3e-7, valid, sites=3)
    assert means["fpr"] == 0.0 and math.copysign(1, means["fpr"]) == 1
    assert means["auc"] == 1.0
    means, _ = federation_means(values + 3e-7, valid, sites=3)
    assert means["auc"] == 1.0  # clipped to the range


def test_federation_means_refuse_a_vector_of_another_shape() -> None:
    with pytest.raises(ValueError, match="2 x"):
        federation_means(np.zeros(3), np.zeros(3), sites=3)
    with pytest.raises(ValueError, match="sites"):
        federation_means(np.zeros(len(FEDERATION_KEYS)), np.zeros(len(FEDERATION_KEYS)), sites=0)


def test_fedsec_check_says_what_leaves_at_aggregate() -> None:
    text = "\n".join(share_lines("aggregate"))
    assert "share level 'aggregate'" in text and "no metric" in text
    assert "masks" in text and f"at least {MIN_CONTRIBUTORS}" in text
    assert "mode=fedavg" in text and "no training figure" in text
