"""experiments/capacity.py at its tiny size on stand-in names in the real-dev layout."""

from __future__ import annotations

import json

import pytest

from experiments import capacity
from tests.integration.test_experiment_lowfpr import write_stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("capacity")
    names = write_stand_in(base / "real-dev")
    root = base / "results"
    payload = capacity.run(size="tiny", root=root, real_dev=base / "real-dev")
    return root / capacity.NAME, payload, names


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
    out, _, names = tiny_run
    written = "".join(path.read_text() for path in out.iterdir())
    assert not [name for name in names["dga"] + names["benign"] if name in written]
