"""experiments/value.py at its tiny size: four arms on real flwr runs, well-formed results."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from experiments import value

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    payload = value.run(size="tiny", root=root)
    return root / value.NAME, payload


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_output_is_written_and_well_formed(tiny_run):
    folder, payload = tiny_run
    stored = json.loads((folder / "results.json").read_text())
    assert {
        "config",
        "timings",
        "per_site",
        "summary",
        "anchors",
        "secagg_vs_fedavg",
        "budget",
        "family_transfer",
    } <= set(stored)
    shape = value.SIZES["tiny"]
    sites = [row["site"] for row in _csv_rows(folder / "sites.csv")]
    assert len(sites) == shape.sites * len(value.ARMS)
    assert len(_csv_rows(folder / "summary.csv")) == 2 * len(value.ARMS)
    assert len(_csv_rows(folder / "anchors.csv")) == shape.sites
    assert len(_csv_rows(folder / "budget.csv")) == shape.sites
    assert _csv_rows(folder / "family_cells.csv") and _csv_rows(folder / "family_summary.csv")
    for plot in ("sites.png", "transfer.png"):
        assert (folder / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (folder / "table.md").read_text()
    for heading in (
        "Mean and median over sites, per arm",
        "Published anchors, per site",
        "SecAgg+ against FedAvg",
        "The alert budget at each site",
        "at FPR = 1e-3",
        "at the site's alert-budget threshold",
    ):
        assert heading in table
    assert "![transfer](transfer.png)" in table and "51.7%" in table
    # Every markdown table row has as many cells as its header (no stray '|' in a cell).
    for block in table.split("### ")[1:]:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) == 1, block.splitlines()[0]
    assert (folder.parent / "README.md").read_text().count("value/table.md") == 1


def test_arms_differ_and_metrics_are_in_range(tiny_run):
    _, payload = tiny_run
    rows = payload["per_site"]
    for row in rows:
        assert 0.0 <= row["auc"] <= 1.0
        assert 0.0 <= row["fpr_at_tpr_0.9"] <= 1.0
        assert row["fp_per_day_upper95"] >= row["fp_per_day"] >= 0.0
    by = {(row["site"], row["arm"]): row["auc"] for row in rows}
    site_ids = sorted({row["site"] for row in rows})
    # Local-only models are trained per site: they differ from the shared global models.
    assert any(by[(s, "local")] != by[(s, "fedavg")] for s in site_ids)
    assert any(by[(s, "pooled")] != by[(s, "fedavg")] for s in site_ids)


def test_secagg_agrees_with_fedavg_within_quantisation(tiny_run):
    _, payload = tiny_run
    agreement = payload["secagg_vs_fedavg"]
    # Same start and same local training in round 1: only stochastic quantisation differs,
    # provided both arms aggregated every site (a dropped site differs by its whole update).
    sites = value.SIZES["tiny"].sites
    assert (agreement["round1_sites_fedavg"], agreement["round1_sites_secagg"]) == (sites, sites)
    assert 0.0 < agreement["round1_max_abs_diff"] <= agreement["round1_error_bound"]
    assert agreement["max_abs_diff_auc"] < 0.01


def test_family_cells_and_summary_agree(tiny_run):
    _, payload = tiny_run
    cells = payload["family_transfer"]["cells"]
    assert {cell["operating_point"] for cell in cells} == set(value.OPERATING_POINTS)
    assert all(cell["seen"] == (cell["train_names"] >= value.MIN_SEEN_NAMES) for cell in cells)
    assert all(cell["family"] != "unknown" for cell in cells)
    for point, summary in payload["family_transfer"]["summary"].items():
        for entry in summary[:-1]:
            recalls = [
                c["recall"]
                for c in cells
                if c["operating_point"] == point
                and c["family"] == entry["family"]
                and c["arm"] == "secagg"
                and not c["seen"]
            ]
            assert entry["unseen_sites"] == len(recalls)
            if recalls:
                assert entry["secagg_unseen"] == pytest.approx(np.mean(recalls))


def test_anchor_arithmetic():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    # TPR >= 0.75 first holds at threshold 0.6 (3 of 4 positives), where 1 of 4 benign is flagged.
    assert value.fpr_at_tpr(scores=scores, labels=labels, target_tpr=0.75) == 0.25
    assert value.fpr_at_tpr(scores=scores, labels=labels, target_tpr=1.0) == 0.75
    assert math.isnan(value.fpr_at_tpr(scores=scores, labels=np.ones(8, bool), target_tpr=0.5))
    assert value.relative_reduction(before=0.2, after=0.1) == pytest.approx(0.5)
    assert math.isnan(value.relative_reduction(before=0.0, after=0.1))
    assert value.gap_closed(local=0.8, federated=0.9, pooled=1.0) == pytest.approx(0.5)
    assert math.isnan(value.gap_closed(local=0.9, federated=0.95, pooled=0.9))
