"""experiments/dp_utility.py at its tiny size, on the lowfpr test's synthetic stand-in CSVs
(never the real development data)."""

from __future__ import annotations

import json

import pytest

from experiments import dp_utility
from tests.integration.test_experiment_lowfpr import leaked_names, run_on_stand_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_on_stand_in(tmp_path_factory, dp_utility)


def test_every_epsilon_has_an_arm_and_the_ledger_stays_within_it(tiny_run):
    folder, payload, _ = tiny_run
    arms = {row["epsilon_target"]: row for row in payload["arms"]}
    assert set(arms) == {"1", "4", "8", "∞"}
    for target in ("1", "4", "8"):
        assert arms[target]["noise_multiplier"] > 0
        assert 0 < arms[target]["epsilon_spent"] <= float(target) + 1e-9
        assert 0 <= arms[target]["auc"] <= 1
    assert (
        arms["1"]["noise_multiplier"]
        > arms["4"]["noise_multiplier"]
        > arms["8"]["noise_multiplier"]
    )
    assert arms["∞"]["noise_multiplier"] == 0.0
    assert {row["site"] for row in payload["sites"]} == {f"site-0{i}" for i in range(4)}
    stored = json.loads((folder / "results.json").read_text())
    assert len(stored["arms"]) == 4 and (folder / "table.md").is_file()


def test_no_name_from_the_data_is_written(tiny_run):
    leaked = leaked_names(tiny_run[0], tiny_run[2])
    assert not leaked, leaked[:5]
