"""experiments/lowfpr_families.py at its tiny size on stand-in names: lowfpr-budget's runner
with `hard-families` in the run config of one arm, read back from each run, and the families
below 0.5 recall counted in every row."""

from __future__ import annotations

import json

import pytest

from experiments import lowfpr_families
from tests.integration.test_experiment_lowfpr import leaked_names, run_on_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, lowfpr_families)


def test_each_arm_runs_with_its_hard_families_share(tiny_run) -> None:
    out, payload, _ = tiny_run
    budget = lowfpr_families.SIZES["tiny"]
    rows = payload["rows"]
    assert [(row["run_config"], row["seed"]) for row in rows] == [
        (", ".join(f"{k}={v}" for k, v in arm.extra), seed)
        for arm in budget.arms
        for seed in budget.seeds
    ]
    for row in rows:  # what each run's own results.json says it used
        extra = next(dict(arm.extra) for arm in budget.arms if arm.knob == row["knob"])
        assert row["hard_families_used"] == extra.get("hard-families", 0.0)
        assert row["rounds_completed"] == budget.rounds and row["site_failures"] == 0
        families = row["families_below_0.5_names"]
        assert row["families_below_0.5"] == (len(families.split(",")) if families else 0)
    # The share changes what the sites draw: different models.
    plain, weighted = (
        [row["auc"] for row in rows if ("hard-families" in row["run_config"]) == on]
        for on in (False, True)
    )
    assert plain != weighted
    assert [arm["families_below_0.5_shown"] for arm in payload["arms"]]
    stored = json.loads((out / "results.json").read_text())
    assert stored["rows"] == json.loads(json.dumps(rows))
    table = (out / "table.md").read_text()
    assert "hard-families=0.5" in table and "families < 0.5 @1e-3" in table
    assert "fedsec experiment lowfpr-families" in table


def test_no_name_from_the_data_is_written(tiny_run) -> None:
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]
