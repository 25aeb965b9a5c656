"""Distributed DP: the noise each site adds, what survives SecAgg+'s quantised sum, and the ε ledger
against dp-accounting itself."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp
from flwr.common.secure_aggregation.quantization import dequantize, quantize

from common.config import ConfigError
from common.dp import (
    add_site_noise,
    effective_noise_multiplier,
    epsilon_of_rounds,
    noise_multiplier_for_epsilon,
    noised_clipping_range,
    secure_generator,
    site_noise_stddev,
)
from common.run_config import MODULUS_RANGE, QUANTIZATION_RANGE, RunSettings
from server.privacy import PrivacyLedger
from server.rounds import RoundRecorder, privacy_suffix


def test_site_share_of_the_noise_is_z_c_over_root_t():
    assert site_noise_stddev(noise_multiplier=1.0, clip_norm=10.0, threshold=4) == 5.0
    assert site_noise_stddev(noise_multiplier=0.5, clip_norm=2.0, threshold=1) == 1.0
    with pytest.raises(ValueError):
        site_noise_stddev(noise_multiplier=1.0, clip_norm=10.0, threshold=0)


def test_effective_multiplier_never_below_z_when_at_least_t_survive():
    assert effective_noise_multiplier(noise_multiplier=1.0, survivors=8, threshold=2) == 2.0
    for survivors in range(3, 12):
        assert effective_noise_multiplier(
            noise_multiplier=0.7, survivors=survivors, threshold=3
        ) >= 0.7 * (1 - 1e-12)


def test_noise_comes_from_the_os_not_a_seed():
    first = secure_generator().normal(size=8)
    second = secure_generator().normal(size=8)
    assert not np.array_equal(first, second)


def _secagg_sum(updates: list[list[np.ndarray]], *, clipping_range: float) -> list[np.ndarray]:
    """The sum flwr 1.42's SecAgg+ unmasks (weight 1 of max_weight 1; masks cancel): quantise
    each site's vector, add modulo 2^32, dequantise, remove the offset (secaggplus_workflow.py)."""
    quantised = [quantize(update, clipping_range, QUANTIZATION_RANGE) for update in updates]
    total = [
        sum(part.astype(np.int64) for part in parts) % MODULUS_RANGE
        for parts in zip(*quantised, strict=True)
    ]
    summed = dequantize(total, clipping_range, QUANTIZATION_RANGE)
    return [array - (len(updates) - 1) * clipping_range for array in summed]


@pytest.mark.parametrize("survivors", [5, 3])
def test_noise_in_the_secagg_sum_matches_the_configured_sigma(survivors):
    """Fixed clipped updates of 5 sites, threshold 3, z = 0.8, C = 2: over repeated rounds the
    quantised SecAgg+ sum of the k survivors varies around the true sum with variance
    k(zC)²/t per value, so never below (zC)² (the ledger's claim) when k ≥ t."""
    z, clip, threshold, dims, repeats = 0.8, 2.0, 3, 200, 300
    rng = np.random.default_rng(0)
    updates = []
    for _ in range(5):
        update = rng.normal(size=dims)
        updates.append([update * clip / np.linalg.norm(update)])
    stddev = site_noise_stddev(noise_multiplier=z, clip_norm=clip, threshold=threshold)
    clipping_range = noised_clipping_range(clip_norm=clip, site_stddev=stddev)
    true_sum = sum(update[0] for update in updates[:survivors])
    errors = []
    for _ in range(repeats):
        noised = [
            add_site_noise(update, stddev=stddev, generator=secure_generator())
            for update in updates[:survivors]
        ]
        errors.append(_secagg_sum(noised, clipping_range=clipping_range)[0] - true_sum)
    errors = np.concatenate(errors)
    expected = survivors * (z * clip) ** 2 / threshold
    assert abs(errors.mean()) < 4 * math.sqrt(expected / errors.size)
    # 60,000 values: the sample variance's relative standard error is sqrt(2/N) ≈ 0.6%.
    assert errors.var() == pytest.approx(expected, rel=0.04)
    assert errors.var() >= (z * clip) ** 2 * 0.96
    effective = effective_noise_multiplier(
        noise_multiplier=z, survivors=survivors, threshold=threshold
    )
    assert errors.var() == pytest.approx((effective * clip) ** 2, rel=0.04)


def test_epsilon_matches_dp_accounting_directly():
    multipliers = [1.1, 0.9, 1.3, 1.0]
    accountant = rdp.RdpAccountant()
    for multiplier in multipliers:
        accountant.compose(dp_accounting.GaussianDpEvent(multiplier))
    assert epsilon_of_rounds(multipliers, delta=1e-6) == accountant.get_epsilon(1e-6)
    sampled = rdp.RdpAccountant()
    sampled.compose(
        dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0)), 20
    )
    assert epsilon_of_rounds([1.0] * 20, sampling_rate=0.1, delta=1e-5) == pytest.approx(
        sampled.get_epsilon(1e-5), rel=1e-12
    )
    assert epsilon_of_rounds([], delta=1e-6) == 0.0
    assert epsilon_of_rounds([1.0, 0.0], delta=1e-6) == math.inf


def test_calibrated_multiplier_is_the_smallest_within_epsilon():
    z = noise_multiplier_for_epsilon(epsilon=4.0, delta=1e-6, num_rounds=5)
    assert epsilon_of_rounds([z] * 5, delta=1e-6) <= 4.0
    assert epsilon_of_rounds([z * 0.99] * 5, delta=1e-6) > 4.0


def test_run_settings_resolve_the_noise_multiplier_and_refuse_contradictions():
    assert not RunSettings().dp_enabled
    explicit = RunSettings.from_run_config({"dp-noise-multiplier": 1.5})
    assert explicit.dp_enabled and explicit.noise_multiplier() == 1.5
    target = RunSettings.from_run_config({"dp-epsilon": 8.0, "num-rounds": 3})
    assert target.noise_multiplier() == noise_multiplier_for_epsilon(
        epsilon=8.0, delta=1e-6, num_rounds=3
    )
    with pytest.raises(ConfigError, match="dp-noise-multiplier and dp-epsilon"):
        RunSettings.from_run_config({"dp-noise-multiplier": 1.0, "dp-epsilon": 4.0})
    with pytest.raises(ConfigError, match="dp-epsilon-budget needs"):
        RunSettings.from_run_config({"dp-epsilon-budget": 4.0})
    with pytest.raises(ConfigError, match="dp-delta"):
        RunSettings.from_run_config({"dp-noise-multiplier": 1.0, "dp-delta": 0.0})


def test_ledger_charges_the_noise_actually_present():
    ledger = PrivacyLedger(noise_multiplier=1.0, delta=1e-6)
    full = ledger.spend(survivors=8, threshold=2)  # 8 survivors of noise sized for 2
    assert full["effective_noise_multiplier"] == 2.0
    dropped = ledger.spend(survivors=2, threshold=2)  # the worst case the protocol allows
    assert dropped["effective_noise_multiplier"] == 1.0
    fedavg = ledger.spend(survivors=5, threshold=None)  # each delta seen alone: z
    assert fedavg["effective_noise_multiplier"] == 1.0
    assert ledger.released == [2.0, 1.0, 1.0]
    assert fedavg["epsilon"] == epsilon_of_rounds([2.0, 1.0, 1.0], delta=1e-6)
    assert dropped["epsilon_round"] == epsilon_of_rounds([1.0], delta=1e-6)
    assert full["epsilon"] < dropped["epsilon"] < fedavg["epsilon"]
    halted = ledger.nothing_released()
    assert halted["epsilon"] == fedavg["epsilon"] and halted["epsilon_round"] == 0.0


def test_budget_refuses_the_round_whose_worst_case_passes_it():
    ledger = PrivacyLedger(noise_multiplier=1.0, delta=1e-6)
    two_rounds = epsilon_of_rounds([1.0, 1.0], delta=1e-6)
    three_rounds = epsilon_of_rounds([1.0, 1.0, 1.0], delta=1e-6)
    ledger.epsilon_budget = (two_rounds + three_rounds) / 2
    assert ledger.budget_refusal(1) is None
    ledger.spend(survivors=2, threshold=2)
    assert ledger.budget_refusal(2) is None
    ledger.spend(survivors=2, threshold=2)
    refusal = ledger.budget_refusal(3)
    assert refusal["stopped_before_round"] == 3
    assert refusal["epsilon"] == two_rounds and refusal["epsilon_if_run"] == three_rounds
    assert PrivacyLedger(noise_multiplier=1.0, delta=1e-6).budget_refusal(9) is None  # no budget


def test_ledger_rebuilt_from_the_record_is_exact():
    ledger = PrivacyLedger(noise_multiplier=0.9, delta=1e-5)
    rounds = [
        {"round": 1, "privacy": ledger.spend(survivors=5, threshold=3)},
        {"round": 2, "privacy": ledger.nothing_released()},
        {"round": 3, "privacy": ledger.spend(survivors=3, threshold=3)},
    ]
    resumed = PrivacyLedger(noise_multiplier=0.9, delta=1e-5)
    resumed.load_rounds(reversed(rounds))
    assert resumed.released == ledger.released
    assert resumed.epsilon() == ledger.epsilon() == rounds[-1]["privacy"]["epsilon"]
    again = PrivacyLedger(noise_multiplier=0.9, delta=1e-5)
    again.load_state_dict(ledger.state_dict())
    assert again.epsilon() == ledger.epsilon()


def test_recorder_keeps_the_budget_stop_and_the_log_line_shows_epsilon(tmp_path):
    recorder = RoundRecorder(tmp_path, config={}, num_rounds=3, on_checkpoint=lambda *_: None)
    refusal = {
        "stopped_before_round": 3,
        "epsilon": 7.0,
        "epsilon_if_run": 9.2,
        "epsilon_budget": 7.5,
        "delta": 1e-6,
    }
    recorder.stopped_by_budget(refusal)
    assert recorder.document()["privacy_stop"] == refusal
    assert privacy_suffix(None) == ""
    line = privacy_suffix({"epsilon": 6.989, "epsilon_round": 5.22, "delta": 1e-6})
    assert line == ", ε 6.99 (round 5.22) at δ 1e-06"
