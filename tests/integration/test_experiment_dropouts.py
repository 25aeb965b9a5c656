"""`fedsec experiment dropouts` at its tiny size: a tolerated dropout and a halted round."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import dropouts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    payload = dropouts.run(size="tiny", root=root)
    return root / dropouts.NAME, payload


def test_rounds_complete_or_halt_as_the_protocol_says(outputs):
    folder, payload = outputs
    saved = json.loads((folder / "results.json").read_text())
    assert saved["summary"] == {
        "sites": 5,
        "num_shares": 5,
        "threshold": 3,
        "tolerated_dropouts": 2,
        "all_as_protocol_says": True,
    }
    tolerated, beyond = saved["rows"]
    assert (tolerated["k"], tolerated["status"], tolerated["alive"]) == (2, "aggregated", 3)
    assert tolerated["aggregated_sites"] == 3 and tolerated["failures"] >= 2
    assert (beyond["k"], beyond["status"], beyond["alive"]) == (3, "halted", 2)
    assert beyond["aggregated_sites"] == 0


def test_model_checks_have_teeth(outputs):
    _, payload = outputs
    tolerated, beyond = payload["rows"]
    # Completed: equal to FedAvg over the same survivors from the same start, within the
    # quantisation bound, while the round itself moved the model far more than that bound.
    assert 0 < tolerated["max_abs_diff"] <= tolerated["bound"]
    assert tolerated["moved"] > 20 * tolerated["bound"]
    assert len(tolerated["weights"]) == 3
    # Halted: the checkpoint after the round is the one before it, bit for bit.
    assert beyond["max_abs_diff"] == 0.0 and beyond["moved"] == 0.0
    assert all(row["verdict"] == "as the protocol says" for row in payload["rows"])


def test_csv_table_and_plot(outputs):
    folder, payload = outputs
    with (folder / "dropouts.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["status"] for row in rows] == ["aggregated", "halted"]
    table = (folder / "table.md").read_text()
    assert table.startswith(f"## {dropouts.TITLE}") and "| 3 | halted | halted |" in table
    assert "fedsec experiment dropouts --tiny" in table
    assert (folder / "survivors.png").stat().st_size > 1000 and "(survivors.png)" in table
    assert "dropouts/table.md" in (folder.parent / "README.md").read_text()
