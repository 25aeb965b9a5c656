"""Server momentum (FedAvgM): the step rule, the strategy applying it, its checkpoint, and a
resumed run that ends on the same model as an uninterrupted one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

from common.config import ConfigError
from common.model import ModelSpec, build_model, model_from_bytes, model_to_ndarrays
from common.protocol import SITE_ID
from common.run_config import RunSettings
from server.checkpoints import CheckpointStore
from server.momentum import ServerMomentum
from server.rounds import RoundRecorder
from server.strategy import DeltaFedAvg

LAYOUT = [np.zeros((3, 2), dtype=np.float32), np.zeros(4, dtype=np.float32)]


def _delta(value: float) -> list[np.ndarray]:
    return [np.full(array.shape, value, dtype=np.float32) for array in LAYOUT]


def test_the_step_follows_the_velocity_rule():
    rule = ServerMomentum(momentum=0.9, learning_rate=0.5)
    d1, d2, d3 = _delta(0.1), _delta(-0.3), _delta(0.2)
    steps = [rule.step(d) for d in (d1, d2, d3)]
    # v1 = d1, v2 = 0.9 d1 + d2, v3 = 0.81 d1 + 0.9 d2 + d3; step = 0.5 v.
    expected = [0.5 * 0.1, 0.5 * (0.09 - 0.3), 0.5 * (0.081 - 0.27 + 0.2)]
    for step, value in zip(steps, expected, strict=True):
        assert [a.shape for a in step] == [a.shape for a in LAYOUT]
        assert all(np.allclose(a, value, atol=1e-7) for a in step)
        assert all(a.dtype == np.float32 for a in step)


def test_zero_momentum_and_unit_rate_is_fedavg_and_keeps_nothing():
    rule = ServerMomentum(momentum=0.0, learning_rate=1.0)
    delta = _delta(0.25)
    assert rule.is_plain and rule.step(delta) is delta and rule.velocity is None
    # Zero momentum with another rate is not plain: it scales the step.
    scaled = ServerMomentum(momentum=0.0, learning_rate=2.0)
    assert not scaled.is_plain and np.allclose(scaled.step(delta)[0], 0.5)


@dataclass
class Proxy:
    node_id: int


def _reply(node_id: int, delta: list[np.ndarray]):
    res = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(delta),
        num_examples=10,
        metrics={SITE_ID: f"site-{node_id}"},
    )
    return Proxy(node_id), res


def _strategy(tmp_path: Path, **config) -> DeltaFedAvg:
    settings = RunSettings.from_run_config({"mode": "fedavg", "delta-clip-norm": 10, **config})
    recorder = RoundRecorder(
        tmp_path, config=settings.to_run_config(), num_rounds=3, on_checkpoint=lambda *_: None
    )
    return DeltaFedAvg(settings=settings, initial_arrays=LAYOUT, recorder=recorder)


def _offset(strategy: DeltaFedAvg) -> float:
    return float(np.concatenate([a.ravel() for a in strategy.global_arrays]).mean())


@pytest.mark.parametrize(("momentum", "after_two"), [(0.0, 0.2), (0.5, 0.25)])
def test_the_strategy_moves_the_model_by_the_step(tmp_path, momentum, after_two):
    strategy = _strategy(tmp_path, **{"server-momentum": momentum})
    for server_round in (1, 2):
        strategy.aggregate_fit(server_round, [_reply(1, _delta(0.1)), _reply(2, _delta(0.1))], [])
    # Plain: 0.1 + 0.1. Momentum 0.5: 0.1, then 0.5 * 0.1 + 0.1.
    assert _offset(strategy) == pytest.approx(after_two, rel=1e-5)
    train = strategy.recorder.rounds[2]["train"]
    assert train["mean_delta_norm"] == pytest.approx(0.1 * np.sqrt(10), rel=1e-5)
    assert ("step_norm" in train) == (momentum > 0)


def test_a_failed_round_moves_neither_the_model_nor_the_velocity(tmp_path):
    strategy = _strategy(tmp_path, **{"server-momentum": 0.5})
    strategy.aggregate_fit(1, [_reply(1, _delta(0.1))], [])
    nan = [np.full_like(array, np.nan) for array in LAYOUT]
    strategy.aggregate_fit(2, [_reply(1, nan)], [])
    assert strategy.recorder.rounds[2]["train"]["status"] == "failed"
    assert _offset(strategy) == pytest.approx(0.1, rel=1e-5)
    strategy.aggregate_fit(3, [_reply(1, _delta(0.1))], [])
    assert _offset(strategy) == pytest.approx(0.1 + 0.15, rel=1e-5)


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_momentum_outside_zero_to_one_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match="server-momentum"):
        RunSettings.from_run_config({"server-momentum": value})


def test_the_velocity_is_checkpointed_beside_the_round(tmp_path):
    initial = model_to_ndarrays(build_model(ModelSpec(), seed=0))
    store = CheckpointStore(tmp_path / "checkpoints", spec=ModelSpec())
    velocity = [np.full_like(array, 0.5) for array in initial]
    store.save(1, initial, velocity=velocity)
    store.save(2, initial)
    assert store.completed_rounds() == [1, 2]  # the velocity file is not a round
    loaded = store.load_velocity(1)
    assert loaded is not None and len(loaded) == len(velocity)
    assert all(np.array_equal(a, b) for a, b in zip(loaded, velocity, strict=True))
    assert store.load_velocity(2) is None


@pytest.fixture(scope="module")
def tiny_sites(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("momentum") / "sites"
    generate_sites(out_dir=out, n_sites=3, n_days=2, seed=5, scale=0.05)
    for config in out.glob("*/site.toml"):
        config.write_text(re.sub(r'level = "[^"]*"', 'level = "rates"', config.read_text()))
    return out


def _final(out: Path) -> list[np.ndarray]:
    model, _ = model_from_bytes((out / "model.npz").read_bytes())
    return model_to_ndarrays(model)


def test_a_resumed_run_ends_on_the_uninterrupted_runs_model(tiny_sites, tmp_path):
    """Without the saved velocity, the resumed rounds would restart momentum from zero."""
    from experiments.simulate import run_in_process

    base = {
        "mode": "fedavg",
        "local-steps": 2,
        "server-momentum": 0.9,
        # The interruption is simulated by a shorter num-rounds, which would also change a
        # decaying local rate's schedule (it follows num-rounds); hold the rate constant.
        "learning-rate-final": 1.0,
        "site-html": "off",
        "report-html": False,
    }
    straight = tmp_path / "straight"
    run_in_process(data_dir=tiny_sites, out_dir=straight, overrides={**base, "num-rounds": 3})
    broken = tmp_path / "broken"
    run_in_process(data_dir=tiny_sites, out_dir=broken, overrides={**base, "num-rounds": 2})
    assert (broken / "checkpoints" / "velocity-002.npz").is_file()
    resumed = run_in_process(
        data_dir=tiny_sites, out_dir=broken, overrides={**base, "num-rounds": 3, "resume": True}
    )
    assert [entry["round"] for entry in resumed["rounds"]] == [1, 2, 3]
    final, reference = _final(broken), _final(straight)
    assert all(np.array_equal(a, b) for a, b in zip(final, reference, strict=True))
