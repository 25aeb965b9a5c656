"""`learning-rate-final`: the local learning rate falls on a cosine over the run's rounds, and
each round's local training (federated and local-only) uses that round's rate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from common.config import ConfigError
from common.model import build_model, model_to_ndarrays
from common.run_config import RunSettings


def test_a_tenth_by_default_and_cosine_from_the_rate_to_its_final_fraction() -> None:
    default = RunSettings(**{"num-rounds": 16, "learning-rate": 0.003})
    assert default.round_learning_rate(1) == 0.003
    assert default.round_learning_rate(16) == pytest.approx(0.0003)
    constant = RunSettings(**{"num-rounds": 16, "learning-rate": 0.003, "learning-rate-final": 1.0})
    assert {constant.round_learning_rate(r) for r in range(1, 20)} == {0.003}
    decayed = RunSettings(**{"num-rounds": 5, "learning-rate": 0.004, "learning-rate-final": 0.25})
    rates = [decayed.round_learning_rate(r) for r in range(1, 6)]
    assert rates[0] == pytest.approx(0.004) and rates[-1] == pytest.approx(0.001)
    # Halfway (round 3 of 5) the cosine is at the mean of the two ends.
    assert rates[2] == pytest.approx((0.004 + 0.001) / 2)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    # A resumed run that goes past num-rounds stays at the final rate.
    assert decayed.round_learning_rate(9) == pytest.approx(0.001)
    one_round = RunSettings(**{"num-rounds": 1, "learning-rate-final": 0.1})
    assert one_round.round_learning_rate(1) == one_round.learning_rate


@pytest.mark.parametrize("value", [0, -0.5, 1.5, math.nan])
def test_a_final_fraction_outside_0_to_1_is_refused_by_name(value: float) -> None:
    with pytest.raises(ConfigError, match="learning-rate-final"):
        RunSettings.from_run_config({"learning-rate-final": value})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("decay") / "sites"
    generate_sites(out_dir=out, n_sites=1, n_days=3, seed=5, scale=0.05)
    return out / "site-00"


def test_each_round_trains_at_its_own_rate_federated_and_local_only(
    site: Path, tmp_path: Path, monkeypatch
) -> None:
    from client import local
    from client.pipeline import load_site

    used: list[float] = []
    real_train = local.train_model

    def recording(model, **kwargs):
        used.append(kwargs["config"].learning_rate)
        return real_train(model, **kwargs)

    monkeypatch.setattr(local, "train_model", recording)
    settings = RunSettings(
        **{
            "num-rounds": 3,
            "local-steps": 2,
            "batch-size": 16,
            "learning-rate": 0.01,
            "learning-rate-final": 0.1,
            "hard-negatives": 0,
        }
    )
    prepared = load_site(site)
    arrays = model_to_ndarrays(build_model(local.SPEC, seed=0))
    for server_round in (1, 2, 3):
        local.train_round(
            prepared, global_arrays=arrays, settings=settings, server_round=server_round
        )
    expected = [settings.round_learning_rate(r) for r in (1, 2, 3)]
    assert used == pytest.approx(expected) and expected[0] > expected[1] > expected[2]
    used.clear()
    # The local-only model catches up round by round, each at that round's rate.
    local.LocalOnlyModel(tmp_path / "local-only", spec=local.SPEC).advance_to(
        3, site=prepared, settings=settings
    )
    assert used == pytest.approx(expected)
    assert np.isclose(expected[-1], 0.001)
