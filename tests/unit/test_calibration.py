"""Calibration and round-to-round stability: hand-computed fixtures and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.calibration import (
    brier_score_loss,
    decision_churn,
    expected_calibration_error,
    new_fp_rate,
    population_stability_index,
)

quick = settings(max_examples=60, deadline=None)
probabilities = st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=50)
masks = st.integers(0, 40).flatmap(
    lambda size: st.tuples(
        st.lists(st.booleans(), min_size=size, max_size=size),
        st.lists(st.booleans(), min_size=size, max_size=size),
    )
)


# --- expected_calibration_error ----------------------------------------------------------------


def test_ece_hand_computed() -> None:
    # 0.1 (label 0) and 0.9 (label 1) each sit in their own bin, off by 0.1.
    assert expected_calibration_error(scores=[0.1, 0.9], labels=[0, 1]) == pytest.approx(0.1)
    # Two bins: |0.5 - 0.2| x 1/2 + |1.0 - 0.8| x 1/2.
    ece = expected_calibration_error(scores=[0.2, 0.2, 0.8, 0.8], labels=[0, 1, 1, 1], bins=2)
    assert ece == pytest.approx(0.25)
    assert expected_calibration_error(scores=[0.5] * 4, labels=[0, 1, 0, 1]) == 0.0


def test_ece_edges_of_the_unit_interval() -> None:
    assert expected_calibration_error(scores=[0.0, 1.0], labels=[0, 1]) == 0.0
    assert expected_calibration_error(scores=[1.0], labels=[0]) == 1.0
    # With one bin everything is pooled: rate 1/2 vs mean score 1/2, then rate 1 vs mean 1/2.
    assert expected_calibration_error(scores=[0.0, 1.0], labels=[0, 1], bins=1) == 0.0
    assert expected_calibration_error(scores=[0.0, 1.0], labels=[1, 1], bins=1) == 0.5


def test_ece_undefined_and_malformed() -> None:
    assert math.isnan(expected_calibration_error(scores=[], labels=[]))
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(scores=[1.2], labels=[1])
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error(scores=[0.2], labels=[1], bins=0)


# --- brier_score_loss --------------------------------------------------------------------------


def test_brier_hand_computed() -> None:
    assert brier_score_loss(scores=[0.1, 0.9, 0.8], labels=[0, 1, 0]) == pytest.approx(0.22)
    assert brier_score_loss(scores=[0.0, 1.0], labels=[0, 1]) == 0.0
    assert brier_score_loss(scores=[1.0, 0.0], labels=[0, 1]) == 1.0
    assert math.isnan(brier_score_loss(scores=[], labels=[]))
    with pytest.raises(ValueError, match="probabilities"):
        brier_score_loss(scores=[-0.1], labels=[0])


@quick
@given(rows=probabilities, bins=st.integers(1, 20))
def test_calibration_losses_stay_in_unit_interval(rows, bins) -> None:
    scores = [score for score, _ in rows]
    labels = [label for _, label in rows]
    assert 0.0 <= expected_calibration_error(scores=scores, labels=labels, bins=bins) <= 1.0
    assert 0.0 <= brier_score_loss(scores=scores, labels=labels) <= 1.0


@quick
@given(rows=probabilities, bins=st.integers(1, 20))
def test_ece_matches_per_bin_loop(rows, bins) -> None:
    scores = np.array([score for score, _ in rows])
    labels = np.array([label for _, label in rows], dtype=float)
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        in_bin = (scores >= low) & ((scores < high) if b < bins - 1 else (scores <= 1.0))
        if in_bin.any():
            gap = abs(labels[in_bin].mean() - scores[in_bin].mean())
            total += in_bin.mean() * gap
    # Bin edges b/bins are not exact in binary; allow a score on an edge to land either side.
    edge_scores = np.isclose((scores * bins) % 1, 0) | np.isclose((scores * bins) % 1, 1)
    if not edge_scores.any():
        ece = expected_calibration_error(scores=scores, labels=labels, bins=bins)
        assert ece == pytest.approx(total, abs=1e-12)


# --- population_stability_index ----------------------------------------------------------------


def test_psi_hand_computed() -> None:
    # Quantile edge 2.5 splits the reference 50/50; actual is 75/25.
    psi = population_stability_index(
        expected_scores=[1, 2, 3, 4], actual_scores=[1, 1, 1, 4], bins=2
    )
    assert psi == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2))
    same = population_stability_index(expected_scores=[1, 2, 3, 4], actual_scores=[1, 2, 3, 4])
    assert same == 0.0


def test_psi_empty_bin_uses_epsilon() -> None:
    psi = population_stability_index(expected_scores=[1, 2, 3, 4], actual_scores=[1, 1], bins=2)
    epsilon = 1e-4
    assert psi == pytest.approx(0.5 * math.log(2) + (epsilon - 0.5) * math.log(epsilon / 0.5))
    assert math.isfinite(psi)


def test_psi_open_outer_bins_and_constant_reference() -> None:
    wide = population_stability_index(
        expected_scores=[1, 2, 3, 4], actual_scores=[-100, 100], bins=2
    )
    assert wide == 0.0
    constant = population_stability_index(expected_scores=[5] * 4, actual_scores=[5, 5])
    assert constant == 0.0
    shifted = population_stability_index(expected_scores=[5] * 4, actual_scores=[1, 1])
    epsilon = 1e-4
    assert shifted == pytest.approx(2 * (1 - epsilon) * math.log(1 / epsilon))


def test_psi_undefined_and_malformed() -> None:
    assert math.isnan(population_stability_index(expected_scores=[], actual_scores=[0.1]))
    with pytest.raises(ValueError, match="finite"):
        population_stability_index(expected_scores=[0.1, np.nan], actual_scores=[0.1])
    with pytest.raises(ValueError, match="bins"):
        population_stability_index(expected_scores=[0.1], actual_scores=[0.1], bins=0)


@quick
@given(
    expected=st.lists(st.floats(-5, 5), min_size=1, max_size=50),
    actual=st.lists(st.floats(-5, 5), min_size=1, max_size=50),
    bins=st.integers(1, 12),
)
def test_psi_is_non_negative_and_zero_against_itself(expected, actual, bins) -> None:
    assert (
        population_stability_index(expected_scores=expected, actual_scores=actual, bins=bins) >= 0.0
    )
    assert population_stability_index(
        expected_scores=expected, actual_scores=expected, bins=bins
    ) == pytest.approx(0.0, abs=1e-12)


# --- decision_churn / new_fp_rate --------------------------------------------------------------


def test_churn_and_new_fps_hand_computed() -> None:
    churn = decision_churn(
        previous_decisions=[True, True, False, False], current_decisions=[True, False, True, False]
    )
    assert churn == 0.5
    rate = new_fp_rate(
        previous_fp_mask=[True, False, False, True], current_fp_mask=[True, True, True, False]
    )
    assert rate == pytest.approx(2 / 3)
    assert new_fp_rate(previous_fp_mask=[1, 0], current_fp_mask=[0, 0]) == 0.0
    assert math.isnan(decision_churn(previous_decisions=[], current_decisions=[]))


def test_churn_rejects_different_probe_sets() -> None:
    with pytest.raises(ValueError, match="same probe set"):
        decision_churn(previous_decisions=[True], current_decisions=[True, False])
    with pytest.raises(ValueError, match="booleans"):
        new_fp_rate(previous_fp_mask=[0.5], current_fp_mask=[1])


@quick
@given(pair=masks)
def test_churn_and_new_fp_rate_stay_in_unit_interval(pair) -> None:
    previous, current = pair
    churn = decision_churn(previous_decisions=previous, current_decisions=current)
    rate = new_fp_rate(previous_fp_mask=previous, current_fp_mask=current)
    assert 0.0 <= rate <= 1.0
    if previous:
        assert 0.0 <= churn <= 1.0
        assert decision_churn(previous_decisions=current, current_decisions=current) == 0.0
    else:
        assert math.isnan(churn)
