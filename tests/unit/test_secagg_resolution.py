"""SecAgg+ shares follow the nodes sampled in each round; a round that could wrap is refused."""

from __future__ import annotations

import pytest

from common.config import ConfigError
from common.run_config import MAX_SECAGG_NODES, MODULUS_RANGE, QUANTIZATION_RANGE, RunSettings
from server.secagg import RoundSizedSecAggPlus


def _workflow(**config) -> RoundSizedSecAggPlus:
    return RoundSizedSecAggPlus(RunSettings.from_run_config({"min-nodes": 3, **config}))


def test_modulus_capacity_is_the_largest_count_whose_weights_cannot_wrap():
    assert MAX_SECAGG_NODES == 1023
    assert MAX_SECAGG_NODES * QUANTIZATION_RANGE < MODULUS_RANGE
    assert (MAX_SECAGG_NODES + 1) * QUANTIZATION_RANGE >= MODULUS_RANGE
    RunSettings().check_secagg_capacity(num_nodes=MAX_SECAGG_NODES)
    with pytest.raises(ConfigError, match="1024 nodes can wrap flwr's 2\\^32 modulus"):
        RunSettings().check_secagg_capacity(num_nodes=MAX_SECAGG_NODES + 1)


@pytest.mark.parametrize(
    ("sampled", "shares", "threshold"),
    [(3, 3, 2), (4, 4, 3), (8, 8, 5), (9, 9, 5), (16, 15, 8), (40, 15, 8)],
)
def test_default_shares_resolve_from_the_sampled_nodes_not_min_nodes(sampled, shares, threshold):
    workflow = _workflow()
    workflow._resize(sampled)
    assert (workflow.num_shares, workflow.reconstruction_threshold) == (shares, threshold)


def test_fractions_are_left_to_flwr_and_whole_counts_are_capped_by_the_round():
    fraction = _workflow(**{"num-shares": 0.5, "reconstruction-threshold": 0.6})
    fraction._resize(50)
    assert (fraction.num_shares, fraction.reconstruction_threshold) == (0.5, 0.6)
    counts = _workflow(**{"num-shares": 11, "min-nodes": 3})
    counts._resize(5)
    assert (counts.num_shares, counts.reconstruction_threshold) == (5, 3)


def test_a_round_over_too_many_nodes_is_refused_before_any_message():
    with pytest.raises(ConfigError, match="at most 1023 nodes per round"):
        _workflow()._resize(MAX_SECAGG_NODES + 1)


def test_a_federation_too_small_for_secure_aggregation_fails_at_construction():
    with pytest.raises(ConfigError, match="at least 3 nodes"):
        RoundSizedSecAggPlus(RunSettings.from_run_config({"min-nodes": 2}))


def test_round_means_leave_out_a_tpr_its_site_cannot_resolve():
    from server.rounds import EvaluateOutcome

    outcome = EvaluateOutcome(
        sites={
            "a": {"auc": 0.9, "tpr_at_fpr_1e-4": 0.8, "tpr_at_fpr_1e-4_resolvable": 1.0},
            "b": {"auc": 0.7, "tpr_at_fpr_1e-4": 0.0, "tpr_at_fpr_1e-4_resolvable": 0.0},
        }
    )
    aggregate = outcome.aggregate()
    assert aggregate["mean_auc"] == pytest.approx(0.8)
    assert aggregate["mean_tpr_at_fpr_1e-4"] == 0.8 and aggregate["min_tpr_at_fpr_1e-4"] == 0.8
