"""A TPR at a low FPR that the site's test set cannot resolve is marked wherever it is shown
(site HTML, federation report and its HTML, the CLI table) and never ranks a site."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.fragility_html import benign_names_needed, metric_value, unresolvable_note
from server.report import build_federation_report, not_resolvable, resolvable_flag
from server.report_html import NOT_RESOLVABLE_MARK, render_federation_html
from tests.unit.test_site_fragility import labelled, make_site, report

# --- the site's own report ----------------------------------------------------------------------


@pytest.mark.parametrize(("target", "needed"), [(1e-3, 3_000), (1e-4, 30_000), (1e-5, 300_000)])
def test_benign_names_needed_is_three_over_the_rate(target: float, needed: int) -> None:
    assert benign_names_needed(target) == needed


def test_unresolvable_note_names_both_counts() -> None:
    metrics = {
        "tpr_at_fpr_1e-4": 0.02,
        "tpr_at_fpr_1e-4_resolvable": 0.0,
        "tpr_at_fpr_1e-3": 0.5,
        "tpr_at_fpr_1e-3_resolvable": 1.0,
        "federated_gain_tpr_at_fpr_1e-4": 0.01,
        "test_domains": 1_404.0,
        "test_positives": 100.0,
    }
    assert metric_value(metrics, "tpr_at_fpr_1e-4") == (
        "0.02 (not resolvable: 1,304 benign names < 30,000)"
    )
    assert metric_value(metrics, "tpr_at_fpr_1e-3") == 0.5
    assert unresolvable_note(metrics, "federated_gain_tpr_at_fpr_1e-4") is not None
    assert unresolvable_note(metrics, "auc") is None
    without_counts = {"tpr_at_fpr_1e-5": 0.0, "tpr_at_fpr_1e-5_resolvable": 0.0}
    assert unresolvable_note(without_counts, "tpr_at_fpr_1e-5") == (
        "not resolvable: fewer than 300,000 benign names"
    )


def test_site_report_marks_unresolvable_tprs_and_says_what_evaluated(tmp_path: Path) -> None:
    data = make_site(
        test=labelled(np.random.default_rng(3), benign=3_000, malicious=150, families=("Locky",))
    )
    result = report(data, tmp_path)
    page = result.html_path.read_text(encoding="utf-8")
    assert result.metrics["tpr_at_fpr_1e-3_resolvable"] == 1.0
    assert result.metrics["tpr_at_fpr_1e-4_resolvable"] == 0.0
    assert "(not resolvable: 3,000 benign names &lt; 30,000)" in page
    assert "(not resolvable: 3,000 benign names &lt; 300,000)" in page
    assert "&lt; 3,000)" not in page  # 1e-3 is resolvable with exactly 3,000
    index = (tmp_path / "fragility" / "index.html").read_text(encoding="utf-8")
    assert "(not resolvable: 3,000 benign names &lt; 30,000)" in index
    saved = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert saved["evaluation"] == {"kind": "federated round, test days in memory"}
    assert "Evaluation: <b>federated round, test days in memory</b>" in page

    streamed = report(
        data,
        tmp_path / "full",
        server_round=0,
        evaluation={"kind": "full, streamed", "notes": ["every name of the test days"]},
    )
    page = streamed.html_path.read_text(encoding="utf-8")
    assert "site acme-eu, full, streamed evaluation</title>" in page
    assert "<li>every name of the test days</li>" in page


# --- the federation report ----------------------------------------------------------------------


def _results() -> dict[str, Any]:
    """site-b's TPR is the lowest but not resolvable; site-c's is resolvable and in the middle."""
    sites = {
        "site-a": {
            "auc": 0.95,
            "tpr_at_fpr_1e-4": 0.40,
            "tpr_at_fpr_1e-4_resolvable": 1,
            "tpr_at_fpr_1e-3": 0.60,
            "tpr_at_fpr_1e-3_resolvable": 1,
            "federated_gain_tpr_at_fpr_1e-4": 0.05,
        },
        "site-b": {
            "auc": 0.90,
            "tpr_at_fpr_1e-4": 0.004,
            "tpr_at_fpr_1e-4_resolvable": 0,
            "tpr_at_fpr_1e-3": 0.004,
            "tpr_at_fpr_1e-3_resolvable": 0,
            "federated_gain_tpr_at_fpr_1e-4": -0.3,
        },
        "site-c": {
            "auc": 0.93,
            "tpr_at_fpr_1e-4": 0.25,
            "tpr_at_fpr_1e-4_resolvable": 1,
            "tpr_at_fpr_1e-3": 0.45,
            "tpr_at_fpr_1e-3_resolvable": 1,
            "federated_gain_tpr_at_fpr_1e-4": 0.01,
        },
    }
    rounds = [
        {"round": 1, "train": {"status": "aggregated"}, "sites": sites, "aggregate": {}},
    ]
    return {"config": {"mode": "fedavg", "num-rounds": 1}, "rounds": rounds}


def test_the_federated_gain_in_a_tpr_shares_its_flag() -> None:
    assert resolvable_flag("tpr_at_fpr_1e-4") == "tpr_at_fpr_1e-4_resolvable"
    assert resolvable_flag("federated_gain_tpr_at_fpr_1e-4") == "tpr_at_fpr_1e-4_resolvable"
    assert not_resolvable({"tpr_at_fpr_1e-4_resolvable": 0}, "federated_gain_tpr_at_fpr_1e-4")
    assert not not_resolvable({"tpr_at_fpr_1e-4_resolvable": 1}, "tpr_at_fpr_1e-4")
    assert not not_resolvable({}, "tpr_at_fpr_1e-4")  # no flag sent: taken as it is


def test_worst_site_and_spread_use_only_resolvable_values() -> None:
    built = build_federation_report(_results())
    tpr = built["headline"]["tpr_at_fpr_1e-4"]
    assert tpr["worst"] == {"site": "site-c", "value": 0.25}  # not site-b's 0.004
    assert tpr["best"] == {"site": "site-a", "value": 0.40}
    assert tpr["spread"] == {"min": 0.25, "median": (0.25 + 0.40) / 2, "max": 0.40, "sites": 2}
    assert tpr["not_resolvable"] == [{"site": "site-b", "value": 0.004}]
    assert tpr["not_computed"] == ["site-b"]  # as before: no usable value
    assert built["headline"]["auc"]["not_resolvable"] == []
    assert built["last_round"]["not_resolvable"] == {
        "site-b": ["tpr_at_fpr_1e-4", "federated_gain_tpr_at_fpr_1e-4", "tpr_at_fpr_1e-3"]
    }
    trends = built["trends"]["metrics"]
    assert trends["tpr_at_fpr_1e-3"]["min"] == [0.45] and trends["tpr_at_fpr_1e-3"]["sites"] == [2]
    assert trends["federated_gain_tpr_at_fpr_1e-4"]["min"] == [0.01]


def test_federation_html_marks_unresolvable_values() -> None:
    page = render_federation_html(build_federation_report(_results()))
    assert f"0.004 {NOT_RESOLVABLE_MARK}</td>" in page
    assert f"-0.3 {NOT_RESOLVABLE_MARK}</td>" in page
    assert "not resolvable (value, left out)" in page
    assert "site-b (0.004)" in page
    assert f"0.4 {NOT_RESOLVABLE_MARK}" not in page


# --- the CLI table after a simulation -----------------------------------------------------------


def _table_results(resolvable: int) -> dict[str, Any]:
    metrics = {"auc": 0.9, "tpr_at_fpr_1e-4": 0.004, "tpr_at_fpr_1e-4_resolvable": resolvable}
    return {"rounds": [{"round": 3, "sites": {"site-00": metrics}}]}


def test_cli_table_marks_unresolvable_tpr_with_a_footnote(capsys) -> None:
    from fedsec.research_commands import NOT_RESOLVABLE_FOOTNOTE, print_site_table

    print_site_table(_table_results(0))
    out = capsys.readouterr().out
    assert "0.004 (n.r.)" in out
    assert " ".join(NOT_RESOLVABLE_FOOTNOTE.split()[:6]) in " ".join(out.split())
    print_site_table(_table_results(1))
    out = capsys.readouterr().out
    assert "0.004" in out and "n.r." not in out
