"""experiments/dp_utility.py at its tiny size, on the lowfpr test's synthetic stand-in CSVs
(never the real development data)."""

from __future__ import annotations

import json

import pytest

from experiments import dp_utility
from tests.integration.test_experiment_lowfpr import write_stand_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("dp-utility")
    names = write_stand_in(base / "real-dev")
    root = base / "results"
    payload = dp_utility.run(size="tiny", root=root, real_dev=base / "real-dev")
    return root / dp_utility.NAME, payload, names


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
    folder, _, names = tiny_run
    text = "".join(
        path.read_text() for path in folder.iterdir() if path.suffix in (".json", ".csv", ".md")
    )
    leaked = [name for name in names["dga"] + names["benign"] if name in text]
    assert not leaked, leaked[:5]
