"""`fedsec experiment poisoning` at its tiny size: hostile sites are left out or block rounds;
they never steer the model.

FedAvg with the coordinator's checks must stay within the clean run's AUC under a NaN site and
a site claiming 10^12 examples (before the checks, the NaN ended the run and the claim moved the
model by its own delta alone); SecAgg+, which sees only the sum, must refuse every round the
hostile site is in and leave the model as it started.
"""

from __future__ import annotations

import json

import pytest

from experiments import poisoning

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    payload = poisoning.run(size="tiny", root=root)
    return root / poisoning.NAME, payload


def _rows(payload, arm):
    return [row for row in payload["rows"] if row["arm"] == arm and row["attack"] != "none"]


def test_fedavg_with_checks_stays_within_the_clean_auc(outputs):
    _, payload = outputs
    rows = _rows(payload, "fedavg")
    assert {row["attack"] for row in rows} == {"nan", "huge-count"}
    for row in rows:
        assert row["within_clean"] and row["outcome"] == "contained", row
        assert row["failed_rounds"] == 0
    nan = next(row for row in rows if row["attack"] == "nan")
    assert nan["left_out"] == payload["plan"]["num_rounds"]  # the NaN site, every round


def test_secagg_refuses_hostile_rounds_and_keeps_the_model(outputs):
    _, payload = outputs
    for row in _rows(payload, "secagg"):
        assert row["outcome"].startswith("blocked") and row["model_moved"] == 0.0, row
        assert row["failed_rounds"] == payload["plan"]["num_rounds"]
    problems = {p for row in _rows(payload, "secagg") for p in row["problems"]}
    assert any("max-weight" in p for p in problems) and any("exceeds" in p for p in problems)
    assert payload["summary"]["poisoned_rows"] == []


def test_table_and_files(outputs):
    folder, payload = outputs
    table = (folder / "table.md").read_text()
    assert "| FedAvg + checks | nan | 1 |" in table and "blocked" in table
    assert (folder / "auc.png").stat().st_size > 0 and (folder / "poisoning.csv").is_file()
    assert json.loads((folder / "results.json").read_text())["summary"] == payload["summary"]
    clean = [row for row in payload["rows"] if row["attack"] == "none"]
    assert all(row["mean_auc"] > payload["initial_mean_auc"] for row in clean)
