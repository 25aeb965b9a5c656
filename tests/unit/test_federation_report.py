"""The federation report: worst site by direction, exact spreads, gaps, halted rounds, HTML."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from server.report import build_federation_report, metric_direction, write_federation_report
from server.report_html import (
    MAX_SITES_DRAWN,
    NOT_SHARED,
    _without_value,
    render_federation_html,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")


def _full(**values: float) -> dict[str, Any]:
    """A rates+volumes site: rates plus volumes such as fp_per_day."""
    return {"ack": 1.0, "num_examples": 1000, **values}


def _results() -> dict[str, Any]:
    """site-a shares rates+volumes, site-b rates only, site-c nothing; round 2 halted."""
    rounds = []
    per_round = [
        # (auc_a, auc_b, ece_a, ece_b, fp_a)
        (0.80, 0.70, 0.05, 0.10, 4.0e5),
        (0.85, 0.75, 0.04, NAN, 3.0e5),
        (0.95, 0.90, 0.02, 0.08, 2.0e5),
    ]
    seconds = [(15.0, 5.0, 20.0), (1.0, 3.0, 4.0), (5.0, 3.0, 8.0)]
    for number, ((auc_a, auc_b, ece_a, ece_b, fp_a), (train_s, evaluate_s, total_s)) in enumerate(
        zip(per_round, seconds, strict=True), start=1
    ):
        site_a = _full(
            auc=auc_a,
            ece=ece_a,
            fp_per_day=fp_a * 0.75,
            fp_per_day_upper95=fp_a,
            **{"tpr_at_fpr_1e-4": 0.40, "tpr_at_fpr_1e-4_resolvable": 1},
            precision_at_base_rate=0.02,
            recall_at_budget=0.30,
            analyst_hours_per_day=40.0,
            unseen_family_recall=0.5,
            churn=0.01,
            budget_utilisation=1.5,
            recall_family_hexhash=0.9,
            recall_family_cvc=0.2,
        )
        site_b = {
            "ack": 1.0,
            "num_examples": 800,
            "auc": auc_b,
            "ece": ece_b,
            "tpr_at_fpr_1e-4": 0.0,
            "tpr_at_fpr_1e-4_resolvable": 0,
            "precision_at_base_rate": 0.05,
            "recall_at_budget": 0.10,
            "unseen_family_recall": None,
            "churn": 0.03,
            "budget_utilisation": 0.5,
            "recall_family_hexhash": 0.7,
        }
        site_c = {"ack": 1.0, "num_examples": 500}
        halted = number == 2
        train = (
            {"status": "halted", "mode": "secagg", "sites": {}}
            if halted
            else {
                "status": "aggregated",
                "mode": "secagg",
                "results": 3 - (number == 3),
                "failures": int(number == 3),
                "failure_reasons": ["node 7: timeout"] if number == 3 else [],
                "sites": {"site-a": {"train_loss": 0.2, "num_examples": 7000}},
            }
        )
        rounds.append(
            {
                "round": number,
                "seconds": {"train": train_s, "evaluate": evaluate_s, "total": total_s},
                "train": train,
                "sites": {"site-a": site_a, "site-b": site_b, "site-c": site_c},
                "aggregate": {"sites": 3, "failures": 0},
            }
        )
    return {"config": {"mode": "secagg", "num-rounds": 3, "min-nodes": 3}, "rounds": rounds}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return build_federation_report(_results())


def test_worst_site_respects_the_metric_direction(report: dict[str, Any]) -> None:
    headline = report["headline"]
    # Higher is better: the worst site has the smallest value.
    assert headline["auc"]["direction"] == "higher"
    assert headline["auc"]["worst"] == {"site": "site-b", "value": 0.90}
    assert headline["precision_at_base_rate"]["worst"] == {"site": "site-a", "value": 0.02}
    assert headline["precision_at_base_rate"]["best"]["site"] == "site-b"
    # Lower is better: the worst site has the largest value.
    assert headline["ece"]["direction"] == "lower"
    assert headline["ece"]["worst"] == {"site": "site-b", "value": 0.08}
    assert headline["ece"]["best"] == {"site": "site-a", "value": 0.02}
    assert headline["churn"]["worst"]["site"] == "site-b"


def test_spread_numbers_are_exact(report: dict[str, Any]) -> None:
    assert report["headline"]["auc"]["spread"] == {
        "min": 0.90,
        "median": (0.90 + 0.95) / 2,
        "max": 0.95,
        "sites": 2,
    }
    assert report["headline"]["fp_per_day_upper95"]["spread"] == {
        "min": 2.0e5,
        "median": 2.0e5,
        "max": 2.0e5,
        "sites": 1,
    }


def test_metrics_a_site_does_not_share_are_listed_not_counted(report: dict[str, Any]) -> None:
    fp = report["headline"]["fp_per_day_upper95"]
    assert fp["not_shared"] == ["site-b", "site-c"]
    assert fp["worst"] == {"site": "site-a", "value": 2.0e5}
    assert report["headline"]["analyst_hours_per_day"]["not_shared"] == ["site-b", "site-c"]
    assert report["last_round"]["sites"]["site-c"] == {"num_examples": 500}
    assert report["last_round"]["no_reply"] == []
    # Nobody shares `pauc_fpr_1e-3` here: no column for it, not an all-dash one.
    assert "pauc_fpr_1e-3" not in report["last_round"]["metrics"]


def test_null_nan_and_unresolvable_values_count_as_not_computed(report: dict[str, Any]) -> None:
    tpr = report["headline"]["tpr_at_fpr_1e-4"]
    assert tpr["not_computed"] == ["site-b"]  # flagged `_resolvable = 0`
    assert tpr["worst"] == {"site": "site-a", "value": 0.40}
    unseen = report["headline"]["unseen_family_recall"]
    assert unseen["not_computed"] == ["site-b"]
    assert unseen["spread"]["sites"] == 1
    # Round 2: site-b's ECE is NaN, so the round's trend is site-a's alone.
    ece = report["trends"]["metrics"]["ece"]
    assert ece["sites"] == [2, 1, 2]
    assert ece["max"][1] == 0.04
    assert report["trends"]["per_site"]["ece"]["site-b"] == [0.10, None, 0.08]


def test_unresolvable_metric_left_out_of_the_reply_is_not_computed_not_unshared() -> None:
    results = _results()
    site_b = results["rounds"][2]["sites"]["site-b"]
    del site_b["tpr_at_fpr_1e-4"]  # the share policy drops non-finite values
    built = build_federation_report(results)
    tpr = built["headline"]["tpr_at_fpr_1e-4"]
    assert tpr["not_computed"] == ["site-b"]
    assert tpr["not_shared"] == ["site-c"]


def test_trends_per_round_are_exact(report: dict[str, Any]) -> None:
    auc = report["trends"]["metrics"]["auc"]
    assert report["trends"]["rounds"] == [1, 2, 3]
    assert auc["mean"] == [(0.80 + 0.70) / 2, (0.85 + 0.75) / 2, (0.95 + 0.90) / 2]
    assert auc["min"] == [0.70, 0.75, 0.90]
    assert auc["max"] == [0.80, 0.85, 0.95]
    assert auc["sites"] == [2, 2, 2]
    assert set(report["trends"]["per_site"]["auc"]) == {"site-a", "site-b"}
    assert report["trends"]["per_site"]["fp_per_day_upper95"] == {"site-a": [4e5, 3e5, 2e5]}


def test_halted_round_and_failures_are_summarised(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["mode"] == "secagg"
    assert summary["rounds_recorded"] == 3
    assert summary["halted_rounds"] == [2]
    assert summary["train_failures"] == 1
    statuses = [row["status"] for row in summary["rounds"]]
    assert statuses == ["aggregated", "halted", "aggregated"]
    assert summary["rounds"][2]["failure_reasons"] == ["node 7: timeout"]


def test_mean_seconds_leave_out_the_cold_first_round(report: dict[str, Any]) -> None:
    seconds = report["summary"]["seconds"]
    assert seconds["first_round"] == {"train": 15.0, "evaluate": 5.0, "total": 20.0}
    assert seconds["mean_after_first"] == {"train": 3.0, "evaluate": 3.0, "total": 6.0}
    assert seconds["rounds_in_mean"] == 2


def test_family_matrix_separates_not_shared_from_not_seen(report: dict[str, Any]) -> None:
    families = report["families"]
    assert families["families"] == ["cvc", "hexhash"]
    assert families["recall"]["hexhash"] == {"site-a": 0.9, "site-b": 0.7, "site-c": None}
    assert families["recall"]["cvc"]["site-b"] is None
    assert families["not_shared"] == ["site-c"]


def test_over_budget_site_is_flagged(report: dict[str, Any]) -> None:
    assert [(flag["site"], flag["metric"]) for flag in report["flags"]] == [
        ("site-a", "budget_utilisation")
    ]


def test_report_round_trips_through_strict_json(report: dict[str, Any]) -> None:
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_input_is_not_modified() -> None:
    results = _results()
    before = json.dumps(results, sort_keys=True)
    build_federation_report(results)
    assert json.dumps(results, sort_keys=True) == before


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.titles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        if attributes.get("title"):
            self.titles.append(attributes["title"] or "")


def _decoded_pngs(page_text: str) -> list[bytes]:
    page = _Page()
    page.feed(page_text)
    page.close()
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in page.images)
    return [base64.b64decode(src.removeprefix(prefix), validate=True) for src in page.images]


def test_html_parses_and_every_image_is_a_png(report: dict[str, Any]) -> None:
    page_text = render_federation_html(report)
    pngs = _decoded_pngs(page_text)
    assert len(pngs) == 4  # trends, fp/day bars, family heatmap, seconds per round
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE)
        assert len(png) > 1000
    page = _Page()
    page.feed(page_text)
    assert NOT_SHARED in page.titles
    assert "<script" not in page_text


def test_write_federation_report_writes_both_files(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(_results()))  # NaN token, as Python writes
    json_path, html_path = write_federation_report(tmp_path)
    assert (json_path, html_path) == (tmp_path / "report.json", tmp_path / "report.html")
    assert json.loads(json_path.read_text()) == build_federation_report(_results())
    assert _decoded_pngs(html_path.read_text())
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "report.html",
        "report.json",
        "results.json",
    ]


def test_missing_results_json_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    with pytest.raises(ValueError, match=re.escape(str(missing / "results.json"))):
        write_federation_report(missing)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "not valid JSON at line 1"),
        ('{"config": {}, "rounds": {}}', "field `rounds`"),
        ('{"rounds": [{"round": 1, "sites": []}]}', r"rounds\[0\]\.sites"),
        ('{"rounds": [{"sites": {}}]}', r"rounds\[0\]"),
        ("[]", "top level"),
    ],
)
def test_malformed_results_json_names_the_file_and_field(
    tmp_path: Path, text: str, complaint: str
) -> None:
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "results.json"))) as caught:
        write_federation_report(tmp_path)
    assert caught.match(complaint)


def test_no_rounds_and_no_shared_metrics_still_render(tmp_path: Path) -> None:
    for results in (
        {"config": {}, "rounds": []},
        {
            "rounds": [
                {
                    "round": 1,
                    "train": {"status": "no-results"},
                    "sites": {"x": {"ack": 1.0}},
                    "seconds": {"total": NAN},
                }
            ]
        },
    ):
        built = build_federation_report(results)
        assert all(entry["worst"] is None for entry in built["headline"].values())
        assert _decoded_pngs(render_federation_html(built)) == []


def test_final_round_without_replies_falls_back_to_the_last_evaluated() -> None:
    results = _results()
    results["rounds"].append(
        {
            "round": 4,
            "train": {"status": "no-results", "failures": 3},
            "sites": {},
            "aggregate": {"sites": 0, "failures": 3},
        }
    )
    built = build_federation_report(results)
    assert built["last_round"]["round"] == 3
    assert built["last_round"]["is_final_round"] is False
    assert built["summary"]["no_result_rounds"] == [4]
    assert built["summary"]["evaluate_failures"] == 3
    assert "last round that has" in render_federation_html(built)


def test_a_site_missing_from_the_last_round_is_listed_as_no_reply() -> None:
    results = _results()
    del results["rounds"][2]["sites"]["site-c"]
    built = build_federation_report(results)
    assert built["last_round"]["no_reply"] == ["site-c"]
    assert "did not reply" in render_federation_html(built)


def test_rounds_are_ordered_by_number_whatever_the_file_order() -> None:
    results = _results()
    shuffled = copy.deepcopy(results)
    shuffled["rounds"].reverse()
    assert build_federation_report(shuffled) == build_federation_report(results)


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("auc", "higher"),
        ("pauc_fpr_1e-3", "higher"),
        ("tpr_at_fpr_1e-5", "higher"),
        ("precision_at_base_rate", "higher"),
        ("recall_family_hexhash", "higher"),
        ("unseen_family_recall", "higher"),
        ("federated_gain_tpr_at_fpr_1e-3", "higher"),
        ("fpr_upper95", "lower"),
        ("fpr_query", "lower"),
        ("fp_per_day_upper95", "lower"),
        ("new_fp_rate", "lower"),
        ("malformed_rate", "lower"),
        ("budget_utilisation", "lower"),
        ("shortcut_ratio", "lower"),
        ("alerts_per_incident", "lower"),
        ("threshold_at_budget", None),
        ("tpr_at_fpr_1e-4_resolvable", None),
        ("num_examples", None),
    ],
)
def test_metric_direction(name: str, direction: str | None) -> None:
    assert metric_direction(name) == direction


def test_nan_everywhere_does_not_crash() -> None:
    results = _results()
    for entry in results["rounds"]:
        entry["seconds"] = {"train": NAN, "evaluate": None, "total": math.inf}
        for metrics in entry["sites"].values():
            for name in metrics:
                metrics[name] = NAN
    built = build_federation_report(results)
    json.dumps(built, allow_nan=False)
    assert built["summary"]["seconds"]["mean_after_first"]["total"] is None
    render_federation_html(built)


# --- many sites: the page stays readable and its plots bounded -------------------------------


def _many_sites(count: int) -> dict[str, Any]:
    """One round of `count` sites: site-000 has the highest FP/day, every 10th shares nothing,
    and the family `cvc` is at recall (index % 10) / 10 where a site has it."""
    sites: dict[str, dict[str, Any]] = {}
    for index in range(count):
        site = f"site-{index:03d}"
        if index % 10 == 9:
            sites[site] = {"ack": 1.0, "num_examples": 500}
            continue
        sites[site] = _full(
            auc=0.9,
            fp_per_day=1.0e6 / (index + 1),
            fp_per_day_upper95=2.0e6 / (index + 1),
            recall_family_cvc=(index % 10) / 10,
            recall_family_hexhash=0.9,
        )
    return {
        "config": {"mode": "fedavg", "num-rounds": 1},
        "rounds": [
            {
                "round": 1,
                "seconds": {"train": 1.0, "evaluate": 1.0, "total": 2.0},
                "train": {"status": "aggregated", "mode": "fedavg", "sites": {}},
                "sites": sites,
            }
        ],
    }


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_per_site_plots_stay_bounded_beyond_the_sites_drawn() -> None:
    """A bar or column a site made the plots 53,000 pixels wide at 1,000 sites (~1 GiB of the
    coordinator's memory to render): beyond MAX_SITES_DRAWN they show the spread instead."""
    few = render_federation_html(build_federation_report(_many_sites(MAX_SITES_DRAWN)))
    many = render_federation_html(build_federation_report(_many_sites(400)))
    few_widest = max(_png_size(png)[0] for png in _decoded_pngs(few))
    many_sizes = [_png_size(png) for png in _decoded_pngs(many)]
    assert few_widest > 0.55 * MAX_SITES_DRAWN * 96  # a bar per site, as before
    assert len(many_sizes) == 4
    assert all(width <= 8.5 * 96 and height <= 8 * 96 for width, height in many_sizes)


def test_many_sites_ranked_fp_plot_and_family_spread_are_exact() -> None:
    report = build_federation_report(_many_sites(400))
    page = render_federation_html(report)
    text = re.sub(r"<[^>]+>", "|", page)
    # The family table has one row per family and a column per figure, not per site.
    assert "site-399" not in page.split("Recall per DGA family over the sites")[1].split("<img")[0]
    # cvc: 360 sites have it, recall (index % 10) / 10 for index % 10 in 0..8; below 0.5:
    # 0.0-0.4, 5 of each 9 sites.
    row = re.search(r"\|cvc\|[^\n]*", text)
    assert row is not None
    cells = [cell for cell in row.group(0).split("|") if cell.strip()]
    assert cells[:6] == ["cvc", "360", "0", "0.4", "0.8", "200"]
    assert cells[6] == "site-000, site-010, site-020"
    assert "360 of 400 sites shared per-family recall" in page
    assert _without_value(report["last_round"]["sites"], "fp_per_day_upper95") == (
        "; 40 not shared"
    )


def test_the_ranked_plot_counts_what_it_cannot_draw() -> None:
    sites = {
        "a": {"fp_per_day_upper95": 5.0},
        "b": {"fp_per_day_upper95": 0.0},
        "c": {"fp_per_day_upper95": None},
        "d": {"fp_per_day_upper95": NAN},
        "e": {},
    }
    assert _without_value(sites, "fp_per_day_upper95") == "; 1 not shared, 2 n/a, 1 at 0"
    assert _without_value({"a": {"m": 1.0}}, "m") == ""
