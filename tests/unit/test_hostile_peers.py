"""Hostile peers at the coordinator (issue 18): what a site claims never moves the model alone.

The strategy is driven directly with hand-made train replies (no flwr run): a claimed count of
10^12, a NaN delta, a delta 100x the clip norm, a reused site id, a wrong layout, a sign-flipped
site under the robust rules, and SecAgg+ aggregates whose weight sum or norm no honest sites
could produce. Each failed on the code before the coordinator's checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

from common import weights
from common.config import ConfigError
from common.model import ModelSpec, build_model, model_to_ndarrays
from common.protocol import SITE_ID
from common.run_config import RunSettings
from server.checkpoints import CheckpointStore
from server.defences import MaskedRound, aggregate_problem
from server.rounds import RoundRecorder
from server.strategy import DeltaFedAvg

LAYOUT = [np.zeros((4, 3), dtype=np.float32), np.zeros(5, dtype=np.float32)]
CLIP = 1.0


@dataclass
class Proxy:
    node_id: int


def _unit_delta(sign: float = 1.0, norm: float = 0.5) -> list[np.ndarray]:
    """A delta of the model's layout pointing along (1, 1, ..., 1) with the given norm."""
    size = sum(array.size for array in LAYOUT)
    value = sign * norm / np.sqrt(size)
    return [np.full(array.shape, value, dtype=np.float32) for array in LAYOUT]


def _reply(node_id: int, site: str, delta: list[np.ndarray], count: int):
    res = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(delta),
        num_examples=count,
        metrics={SITE_ID: site},
    )
    return Proxy(node_id), res


def _strategy(tmp_path: Path, *, layout: list[np.ndarray] = LAYOUT, **config) -> DeltaFedAvg:
    settings = RunSettings.from_run_config(
        {"mode": "fedavg", "delta-clip-norm": CLIP, "max-weight": 100, **config}
    )
    recorder = RoundRecorder(
        tmp_path, config=settings.to_run_config(), num_rounds=1, on_checkpoint=lambda *_: None
    )
    return DeltaFedAvg(settings=settings, initial_arrays=layout, recorder=recorder)


def _round(strategy: DeltaFedAvg, replies) -> dict:
    parameters, _ = strategy.aggregate_fit(1, replies, [])
    if parameters is not None:
        # The new model travels packed in one vector (common/weights.py, `pack`).
        (moved,) = parameters_to_ndarrays(parameters)
        assert np.array_equal(moved, weights.pack(strategy.global_arrays)[0])
    return strategy.recorder.rounds[1]["train"]


def _offset(strategy: DeltaFedAvg) -> float:
    """Mean of the global model's values: each test's deltas move all values alike."""
    return float(np.concatenate([a.ravel() for a in strategy.global_arrays]).mean())


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("batch-size", 10**7, "8192"),
        ("local-steps", 10**9, "100000"),
        ("num-rounds", 10**6, "10000"),
        ("min-nodes", 10**9, "100000"),
        ("max-weight", 1e30, "1000000000"),
        ("round-timeout", 1e12, "86400"),
    ],
)
def test_run_config_knobs_that_size_memory_or_time_are_bounded(key, value, bound):
    with pytest.raises(ConfigError) as caught:
        RunSettings.from_run_config({key: value})
    message = str(caught.value)
    assert key in message and bound in message and "\n" not in message


@pytest.mark.parametrize("key", ["delta-clip-norm", "learning-rate", "max-weight"])
def test_run_config_refuses_infinite_sizes(key):
    with pytest.raises(ConfigError, match=key):
        RunSettings.from_run_config({key: float("inf")})


def test_poison_spec_is_checked_and_read():
    with pytest.raises(ConfigError, match="poison-sites"):
        RunSettings.from_run_config({"poison-sites": "site-01:explode"})
    settings = RunSettings.from_run_config({"poison-sites": "site-01:scale, site-02:nan"})
    assert settings.poison_attack("site-02") == "nan"
    assert settings.poison_attack("site-03") is None


def test_fedavg_caps_a_claimed_count_at_max_weight(tmp_path):
    """One site claiming 10^12 examples moved the model by its own delta alone."""
    strategy = _strategy(tmp_path)
    honest = [_reply(node, f"site-{node}", _unit_delta(), 100) for node in (1, 2, 3)]
    liar = _reply(4, "site-4", _unit_delta(sign=-1.0), 10**12)
    train = _round(strategy, [*honest, liar])
    assert train["status"] == "aggregated"
    assert train["sites"]["site-4"]["coordinator_weight"] == 100
    # Equal weights: three +d and one -d average to +d/2, not to -d.
    assert _offset(strategy) == pytest.approx(_unit_delta()[0].flat[0] / 2, rel=1e-5)


def test_a_nan_delta_is_left_out_and_the_round_checkpoints(tmp_path):
    """A NaN delta made the round-end checkpoint raise and ended the run."""
    initial = model_to_ndarrays(build_model(ModelSpec(), seed=0))
    strategy = _strategy(tmp_path, layout=initial)
    honest = [np.full_like(array, 1e-4) for array in initial]
    nan = [np.full_like(array, np.nan) for array in initial]
    replies = [_reply(1, "site-1", honest, 50), _reply(2, "site-2", nan, 50)]
    train = _round(strategy, replies)
    assert train["status"] == "aggregated" and "NaN" in train["rejected"]["site-2"]
    CheckpointStore(tmp_path / "checkpoints", spec=ModelSpec()).save(1, strategy.global_arrays)
    assert all(np.isfinite(array).all() for array in strategy.global_arrays)


def test_a_round_with_only_broken_deltas_fails_and_leaves_the_model(tmp_path):
    strategy = _strategy(tmp_path)
    nan = [np.full_like(array, np.nan) for array in LAYOUT]
    inf = [np.full_like(array, np.inf) for array in LAYOUT]
    train = _round(strategy, [_reply(1, "site-1", nan, 10), _reply(2, "site-2", inf, 10)])
    assert train["status"] == "failed" and "left out" in train["problem"]
    assert _offset(strategy) == 0.0
    strategy.recorder.flush()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["rounds"][0]["train"]["status"] == "failed"


def test_a_delta_longer_than_the_clip_norm_is_left_out(tmp_path):
    strategy = _strategy(tmp_path)
    replies = [
        _reply(1, "site-1", _unit_delta(), 50),
        _reply(2, "site-2", _unit_delta(norm=100 * CLIP), 50),
    ]
    train = _round(strategy, replies)
    assert "exceeds" in train["rejected"]["site-2"] and "site-1" not in train["rejected"]
    assert _offset(strategy) == pytest.approx(_unit_delta()[0].flat[0], rel=1e-5)


def test_a_delta_of_the_wrong_layout_is_left_out_not_a_crash(tmp_path):
    strategy = _strategy(tmp_path)
    wrong = [np.zeros((3, 3), dtype=np.float32), np.zeros(5, dtype=np.float32)]
    train = _round(strategy, [_reply(1, "site-1", _unit_delta(), 50), _reply(2, "x", wrong, 50)])
    assert "shape" in train["rejected"]["x"] and train["status"] == "aggregated"


def test_a_reused_site_id_does_not_overwrite_another_sites_results(tmp_path):
    strategy = _strategy(tmp_path)
    replies = [_reply(1, "site-1", _unit_delta(), 50), _reply(2, "site-1", _unit_delta(), 7)]
    train = _round(strategy, replies)
    assert set(train["sites"]) == {"site-1", "site-1@node-2"}
    assert train["sites"]["site-1@node-2"]["num_examples"] == 7
    assert "site-1" in train["notes"][0] and "node 2" in train["notes"][0]


@pytest.mark.parametrize("rule", ["median", "trimmed-mean"])
def test_robust_rules_hold_against_two_sign_flipped_sites(tmp_path, rule):
    strategy = _strategy(tmp_path, **{"robust-rule": rule, "trim-fraction": 0.25})
    honest = [_reply(n, f"site-{n}", _unit_delta(), 100) for n in range(1, 7)]
    flipped = [_reply(n, f"site-{n}", _unit_delta(sign=-1.0), 100) for n in (7, 8)]
    _round(strategy, [*honest, *flipped])
    # Weighted mean: (6 - 2) / 8 = half the honest delta; the robust rules keep all of it.
    assert _offset(strategy) == pytest.approx(_unit_delta()[0].flat[0], rel=1e-5)


def _secagg_settings() -> RunSettings:
    return RunSettings.from_run_config({"mode": "secagg", "delta-clip-norm": CLIP})


def test_secagg_rejects_a_weight_sum_no_honest_sites_can_reach():
    masked = MaskedRound(weight_sum=256.0, clipping_range=CLIP, threshold=2)
    problem = aggregate_problem(
        _unit_delta(), layout=LAYOUT, settings=_secagg_settings(), survivors=3, masked=masked
    )
    assert problem is not None and "max-weight" in problem


def test_secagg_rejects_a_mean_longer_than_clipping_sites_can_produce():
    masked = MaskedRound(weight_sum=3.0, clipping_range=CLIP, threshold=2)
    settings = _secagg_settings()
    ok = aggregate_problem(
        _unit_delta(norm=CLIP), layout=LAYOUT, settings=settings, survivors=3, masked=masked
    )
    long = aggregate_problem(
        _unit_delta(norm=5 * CLIP), layout=LAYOUT, settings=settings, survivors=3, masked=masked
    )
    assert ok is None and long is not None and "delta-clip-norm" in long


def test_secagg_round_with_a_bad_aggregate_fails_and_keeps_the_model(tmp_path):
    strategy = _strategy(tmp_path, mode="secagg")
    mean = _unit_delta(norm=50 * CLIP)
    strategy.masked_round(MaskedRound(weight_sum=3.0, clipping_range=CLIP, threshold=2))
    train = _round(strategy, [_reply(n, f"site-{n}", mean, 1) for n in (1, 2, 3)])
    assert train["status"] == "failed" and "exceeds" in train["problem"]
    assert _offset(strategy) == 0.0
