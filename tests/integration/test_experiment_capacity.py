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
    assert "families < 0.5 @1e-3" in table and capacity.RECURRENT in table


def test_each_run_counts_and_names_the_families_below_half_recall(tiny_run) -> None:
    out, payload, _ = tiny_run
    families = {row["family"] for row in payload["families"]}
    assert len(families) == payload["test_families"] > 1
    summary = {spec["spec"]: spec for spec in payload["specs"]}
    for row in payload["rows"]:  # one seed at this size: each spec's summary is its one run
        recall = {
            entry["family"]: entry for entry in payload["families"] if entry["spec"] == row["spec"]
        }
        for suffix in ("", "_clean"):
            named = [name for name in row[f"families_below_0.5_names{suffix}"].split(",") if name]
            assert row[f"families_below_0.5{suffix}"] == len(named)
            assert named == sorted(f for f, e in recall.items() if e[f"recall_1e-3{suffix}"] < 0.5)
            spec = summary[row["spec"]]
            assert spec[f"families_below_0.5_every_seed{suffix}"] == ", ".join(named) or "none"
            assert spec[f"families_below_0.5_some_seeds{suffix}"] == "none"
    header = (out / "families.csv").read_text().splitlines()[0]
    assert header == "spec,family,recall_1e-3,recall_1e-3_clean"


def test_no_name_from_the_data_is_written(tiny_run) -> None:
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]
