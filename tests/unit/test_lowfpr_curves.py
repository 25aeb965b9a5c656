"""The curve experiments on real names (lowfpr-budget's runner with other arms): every arm is a
valid run config, and the curves that claim fresh run seeds use seeds no other curve used."""

from __future__ import annotations

import pytest

from common.run_config import RunSettings
from experiments import (
    lowfpr_budget,
    lowfpr_combined,
    lowfpr_decay,
    lowfpr_end,
    lowfpr_families,
    lowfpr_momentum,
    lowfpr_noise,
    lowfpr_rate,
    lowfpr_rounds,
    lowfpr_share,
)

CURVES = (
    lowfpr_budget,
    lowfpr_momentum,
    lowfpr_families,
    lowfpr_decay,
    lowfpr_combined,
    lowfpr_rate,
    lowfpr_end,
    lowfpr_noise,
    lowfpr_share,
    lowfpr_rounds,
)


@pytest.mark.parametrize("module", CURVES, ids=lambda module: module.NAME)
def test_every_arm_is_a_valid_run_config(module) -> None:
    for size in module.SIZES.values():
        for arm in size.arms:
            settings = RunSettings.from_run_config(
                {**dict(arm.extra), "local-steps": arm.local_steps, "batch-size": size.batch}
            )
            assert settings.local_steps == arm.local_steps


def test_the_later_curves_run_seeds_no_earlier_curve_used() -> None:
    # momentum and budget share 0-2 (their baselines are the same runs' settings of their day);
    # families (3-5), decay (6-8), combined (9-11), rate (12-14), end (15-17), noise
    # (18-20), share (21-23) and rounds (24-26) each add new seeds.
    seen: set[int] = set(lowfpr_budget.SIZES["default"].seeds)
    assert set(lowfpr_momentum.SIZES["default"].seeds) == seen
    for module in CURVES[2:]:  # the curves after budget and momentum, in order
        seeds = set(module.SIZES["default"].seeds)
        assert not seeds & seen, module.NAME
        seen |= seeds


def test_the_combined_curve_runs_todays_defaults() -> None:
    baseline = dict(lowfpr_combined.SIZES["default"].arms[0].extra)
    assert set(baseline) == {"hard-negatives"}  # everything else is the product's default
    assert RunSettings().learning_rate_final < 1.0
