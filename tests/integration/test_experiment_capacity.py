"""experiments/capacity.py at its tiny size on stand-in names in the real-dev layout."""

from __future__ import annotations

import json

import pytest

from experiments import capacity
from tests.integration.test_experiment_lowfpr import leaked_names, run_on_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, capacity)


def test_every_spec_and_seed_is_trained_scored_and_summarised(tiny_run) -> None:
    out, payload, _ = tiny_run
    plan = capacity.SIZES["tiny"]
    rows = payload["rows"]
    assert [(row["spec"], row["seed"]) for row in rows] == [
        (label, seed) for label, _ in plan.specs for seed in plan.seeds
    ]
    sizes = {row["spec"]: row["parameters"] for row in rows}
    assert sizes["half width"] < sizes["default"] == 46_753
    for row in rows:
        assert row["samples"] == plan.steps * plan.batch and row["train_s"] > 0
        assert 0.0 <= row["auc"] <= 1.0
    assert [s["spec"] for s in payload["specs"]] == [label for label, _ in plan.specs]
    assert json.loads((out / "results.json").read_text())["specs"] == json.loads(
        json.dumps(payload["specs"])
    )
    table = (out / "table.md").read_text()
    assert "**not resolvable**" in table  # a few hundred benign names resolve neither FPR


def test_no_name_from_the_data_is_written(tiny_run) -> None:
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]
