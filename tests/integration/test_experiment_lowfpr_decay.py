"""experiments/lowfpr_decay.py at its tiny size on stand-in names: lowfpr-budget's runner with
`learning-rate-final` in the run config of one arm, read back from each run."""

from __future__ import annotations

import pytest

from experiments import lowfpr_decay
from tests.integration.test_experiment_lowfpr import leaked_names, run_on_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, lowfpr_decay)


def test_each_arm_runs_with_its_final_learning_rate(tiny_run) -> None:
    out, payload, _ = tiny_run
    budget = lowfpr_decay.SIZES["tiny"]
    rows = payload["rows"]
    assert [row["learning_rate_final_used"] for row in rows] == [
        dict(arm.extra)["learning-rate-final"] for arm in budget.arms for _ in budget.seeds
    ]
    assert all(row["rounds_completed"] == budget.rounds for row in rows)
    # A falling rate moves the model less in later rounds: a different model.
    assert rows[0]["auc"] != rows[1]["auc"]
    table = (out / "table.md").read_text()
    assert "learning-rate-final=0.1" in table and "fedsec experiment lowfpr-decay" in table


def test_no_name_from_the_data_is_written(tiny_run) -> None:
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]
