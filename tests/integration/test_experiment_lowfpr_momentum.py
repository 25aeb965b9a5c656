"""experiments/lowfpr_momentum.py at its tiny size on stand-in names: lowfpr-budget's runner
with server momentum turned on in the run config of its arms, and read back from each run."""

from __future__ import annotations

import json

import pytest

from experiments import lowfpr_momentum
from tests.integration.test_experiment_lowfpr import leaked_names, run_on_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, lowfpr_momentum)


def test_each_arm_runs_with_its_server_momentum(tiny_run) -> None:
    out, payload, _ = tiny_run
    budget = lowfpr_momentum.SIZES["tiny"]
    rows = payload["rows"]
    assert [(row["run_config"], row["seed"]) for row in rows] == [
        (", ".join(f"{k}={v}" for k, v in arm.extra), seed)
        for arm in budget.arms
        for seed in budget.seeds
    ]
    assert sum("server-momentum=0.5" in row["run_config"] for row in rows) == len(budget.seeds)
    for row in rows:  # what each run's own results.json says it used
        extra = next(dict(arm.extra) for arm in budget.arms if arm.knob == row["knob"])
        assert row["server_momentum_used"] == extra.get("server-momentum", 0.0)
        assert row["server_learning_rate_used"] == extra.get("server-learning-rate", 1.0)
        assert row["rounds_completed"] == budget.rounds and row["site_failures"] == 0
        assert 0.0 <= row["auc"] <= 1.0
    assert len(payload["arms"]) == len(budget.arms)
    # Momentum arms move the model by a step that is not the mean delta: different models.
    plain, moved = (
        [row["auc"] for row in rows if ("server-momentum" in row["run_config"]) == on]
        for on in (False, True)
    )
    assert plain != moved
    stored = json.loads((out / "results.json").read_text())
    assert stored["rows"] == json.loads(json.dumps(rows))
    table = (out / "table.md").read_text()
    assert "server-momentum=0.5, server-learning-rate=1.0" in table
    assert "fedsec experiment lowfpr-momentum" in table


def test_no_name_from_the_data_is_written(tiny_run) -> None:
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]
