"""The per-site fragility report: every metric present, churn over rounds, files, and privacy."""

from __future__ import annotations

import base64
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from client.dataset import Examples, SiteData
from client.fragility import (
    PROBE_STATE_FILE,
    measured_base_rate,
    site_fragility_report,
)
from common.config import parse_site_config
from common.families import family_slug
from common.metrics import threshold_for_fpr
from common.share import SHARE_LEVELS, share_subset

DOCUMENTED_METRICS = (
    "auc",
    "pauc_fpr_1e-3",
    "tpr_at_fpr_1e-3",
    "tpr_at_fpr_1e-4",
    "tpr_at_fpr_1e-5",
    "tpr_at_fpr_1e-3_resolvable",
    "tpr_at_fpr_1e-4_resolvable",
    "tpr_at_fpr_1e-5_resolvable",
    "fpr",
    "fpr_upper95",
    "fp_per_day",
    "fp_per_day_upper95",
    "fpr_query",
    "fpr_unique",
    "precision_at_base_rate",
    "alerts_per_incident",
    "alert_budget_per_day",
    "alerts_per_day",
    "threshold_at_budget",
    "recall_at_budget",
    "analyst_hours_per_day",
    "budget_utilisation",
    "ece",
    "brier",
    "churn",
    "new_fp_rate",
    "unseen_family_recall",
    "unseen_families",
    "psi_score",
    "shortcut_ratio",
    "threshold",
    "threshold_feasible",
    "operating_mode_budget",
    "test_domains",
    "test_positives",
    "test_queries",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAIN_FAMILIES = ("Locky", "Necurs")


def site_config(**overrides: dict):
    raw = {
        "site_id": "acme-eu",
        "logs": {"paths": ["logs/dns*.log"]},
        "deployment": {"benign_events_per_day": 1.0e6, "base_rate": 1e-3},
        "analysts": {"count": 5, "productive_hours_per_day": 5.6, "minutes_per_alert": 20},
    }
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_site_config(raw, source="test-site.toml")


def random_names(rng: np.random.Generator, count: int, *, prefix: str, alphabet: str) -> list:
    letters = np.array(list(alphabet))
    return [
        prefix + "".join(rng.choice(letters, size=int(rng.integers(6, 16)))) + f"{i}.com"
        for i in range(count)
    ]


def examples(
    domains: list[str], labels: list[int], families: list[str], rng: np.random.Generator
) -> Examples:
    names = np.array(domains, dtype=object)
    return Examples(
        domains=names,
        labels=np.array(labels, dtype=np.int8),
        families=np.array(families, dtype=object),
        query_counts=rng.integers(1, 500, size=len(domains)),
        registered=names,
    )


def labelled(
    rng: np.random.Generator, *, benign: int, malicious: int, families: tuple[str, ...]
) -> Examples:
    domains = random_names(rng, benign, prefix="shop", alphabet="aeiounrst") + random_names(
        rng, malicious, prefix="", alphabet="qxzjkvwb0123456789"
    )
    return examples(
        domains,
        [0] * benign + [1] * malicious,
        [""] * benign + [families[i % len(families)] for i in range(malicious)],
        rng,
    )


def make_site(*, config=None, test: Examples | None = None, seed: int = 0) -> SiteData:
    rng = np.random.default_rng(seed)
    return SiteData(
        site_id="acme-eu",
        site_dir=Path("/nonexistent"),
        config=config or site_config(),
        train=labelled(rng, benign=600, malicious=100, families=TRAIN_FAMILIES),
        test=test
        if test is not None
        else labelled(rng, benign=3000, malicious=150, families=("Locky", "Necurs", "Ramnit")),
        train_days=("2024-03-01", "2024-03-02"),
        test_days=("2024-03-03",),
        train_families=frozenset(TRAIN_FAMILIES),
        intel_only=intel_only_examples(),
    )


def intel_only_examples() -> Examples:
    rng = np.random.default_rng(99)
    names = random_names(rng, 40, prefix="", alphabet="0123456789abcdef")
    return examples(names, [1] * 40, ["Delta"] * 30 + ["Locky"] * 10, rng)


def noisy_scores(examples: Examples, *, seed: int) -> np.ndarray:
    """Overlapping classes: benign mostly low, malicious mostly high, a few crossings."""
    rng = np.random.default_rng(seed)
    benign = rng.beta(1.2, 9.0, size=len(examples))
    malicious = rng.beta(6.0, 1.5, size=len(examples))
    return np.where(examples.labels == 1, malicious, benign)


def report(
    data: SiteData,
    work_dir: Path,
    *,
    server_round: int = 1,
    seed: int = 1,
    test_scores: np.ndarray | None = None,
    **kwargs,
):
    intel = intel_only_examples()
    return site_fragility_report(
        data=data,
        intel_only=intel,
        test_scores=noisy_scores(data.test, seed=seed) if test_scores is None else test_scores,
        train_scores=noisy_scores(data.train, seed=seed + 1000),
        intel_only_scores=noisy_scores(intel, seed=seed + 2000),
        server_round=server_round,
        work_dir=work_dir,
        **kwargs,
    )


def strict_json(path: Path) -> dict:
    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


class ImageSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


# --- contents ----------------------------------------------------------------------------------


def test_report_has_every_design_metric_and_parses(tmp_path: Path) -> None:
    data = make_site()
    result = report(
        data,
        tmp_path,
        dqa={
            "malformed_rate": 0.01,
            "duplicate_rate": 0.0,
            "label_conflict_rate": 0.0,
            "leakage_rate": 0.0,
        },
        extra={"federated_gain_tpr_at_fpr_1e-4": 0.05},
    )
    assert result.json_path == tmp_path / "fragility" / "round-001.json"
    assert result.html_path == tmp_path / "fragility" / "round-001.html"
    saved = strict_json(result.json_path)
    missing = [key for key in DOCUMENTED_METRICS if key not in result.metrics]
    assert not missing
    assert set(saved["metrics"]) == set(result.metrics)
    assert all(type(value) is float for value in result.metrics.values())
    for slug in ("locky", "necurs", "ramnit", "local_1"):
        assert 0.0 <= result.metrics[f"recall_family_{slug}"] <= 1.0
    assert result.metrics["malformed_rate"] == 0.01
    assert result.metrics["federated_gain_tpr_at_fpr_1e-4"] == 0.05
    assert result.metrics["test_domains"] == len(data.test)
    assert result.metrics["test_queries"] == data.test.query_counts.sum()
    assert saved["shortcut"]["feature"]
    assert saved["operating_point"]["mode"] == "budget"
    assert result.metrics["operating_mode_budget"] == 1.0
    assert (tmp_path / "fragility" / "index.html").is_file()


def test_unseen_families_come_from_test_and_intel_only(tmp_path: Path) -> None:
    result = report(make_site(), tmp_path)
    saved = strict_json(result.json_path)
    seen = {row["family"]: row["seen_in_training"] for row in saved["families"]}
    assert seen == {"locky": True, "necurs": True, "ramnit": False, "local_1": False}
    assert result.metrics["unseen_families"] == 2.0
    delta = next(row for row in saved["families"] if row["family"] == "local_1")
    assert (delta["test_positives"], delta["intel_only"], delta["names"]) == (0, 30, ["Delta"])
    assert all(
        re.fullmatch(r"[a-z0-9_]+", key)
        for key in result.metrics
        if not key.startswith(("tpr_at_fpr_", "pauc_fpr_"))
    )


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Conficker.B", "conficker_b"),
        ("gamma-2", "gamma_2"),
        ("  ", "unknown"),
        ("", "unknown"),
        ("Émotet v2!", "motet_v2"),
        ("a..b", "a_b"),
    ],
)
def test_family_slug(name: str, slug: str) -> None:
    assert family_slug(name) == slug


def test_measured_base_rate_is_query_weighted(tmp_path: Path) -> None:
    data = make_site(config=site_config(deployment={"base_rate": "measured"}))
    result = report(data, tmp_path)
    test = data.test
    expected = test.query_counts[test.labels == 1].sum() / test.query_counts.sum()
    assert measured_base_rate(test) == pytest.approx(expected)
    saved = strict_json(result.json_path)
    assert saved["operating_point"]["base_rate"] == pytest.approx(expected)
    assert saved["operating_point"]["base_rate_source"] == "measured"


# --- churn over rounds -------------------------------------------------------------------------


def test_churn_is_nan_in_round_one_then_a_rate(tmp_path: Path) -> None:
    data = make_site()
    first = report(data, tmp_path, server_round=1, seed=1)
    assert math.isnan(first.metrics["churn"]) and math.isnan(first.metrics["new_fp_rate"])
    assert (tmp_path / "fragility" / PROBE_STATE_FILE).is_file()
    second = report(data, tmp_path, server_round=2, seed=2)
    assert 0.0 < second.metrics["churn"] <= 1.0
    assert 0.0 <= second.metrics["new_fp_rate"] <= 1.0
    assert strict_json(second.json_path)["probe"]["compared_with_round"] == 1
    # A re-run of round 2 still compares with round 1; the same model again flips nothing.
    rerun = report(data, tmp_path, server_round=2, seed=2)
    assert rerun.metrics["churn"] == second.metrics["churn"]
    third = report(data, tmp_path, server_round=3, seed=2)
    assert third.metrics["churn"] == 0.0 and third.metrics["new_fp_rate"] == 0.0
    index = (tmp_path / "fragility" / "index.html").read_text(encoding="utf-8")
    assert all(f"round-00{n}.html" in index for n in (1, 2, 3))


def test_a_new_run_starting_at_round_one_has_no_churn(tmp_path: Path) -> None:
    data = make_site()
    report(data, tmp_path, server_round=4, seed=1)
    again = report(data, tmp_path, server_round=1, seed=2)
    assert math.isnan(again.metrics["churn"])


# --- operating points --------------------------------------------------------------------------


def test_zero_false_positives_still_bounds_the_fpr(tmp_path: Path) -> None:
    # 10 incidents/day against a budget of 84 alerts/day: every positive fits.
    data = make_site(config=site_config(deployment={"base_rate": 1e-5}))
    separated = np.where(data.test.labels == 1, 0.9, 0.1)
    result = report(data, tmp_path, test_scores=separated)
    benign = int((data.test.labels == 0).sum())
    assert result.metrics["fpr"] == 0.0
    assert result.metrics["fp_per_day"] == 0.0
    assert result.metrics["fpr_upper95"] == pytest.approx(1.0 - 0.05 ** (1.0 / benign))
    assert result.metrics["fp_per_day_upper95"] == pytest.approx(
        result.metrics["fpr_upper95"] * 1.0e6
    )
    assert result.metrics["recall_at_budget"] == 1.0
    top = strict_json(result.json_path)["top_false_positives"]
    assert top["kind"] == "highest_scored_benign" and len(top["rows"]) == 20


@pytest.mark.parametrize(
    "analysts",
    [
        {"count": 1, "minutes_per_alert": 1000.0},  # 0.34 alerts/day
        {"count": 0},  # no one to triage: a budget of zero
    ],
)
def test_budget_below_one_alert(tmp_path: Path, analysts: dict) -> None:
    config = site_config(deployment={"benign_events_per_day": 2.0e9}, analysts=analysts)
    result = report(make_site(config=config), tmp_path)
    metrics = result.metrics
    assert metrics["alert_budget_per_day"] < 1.0
    assert metrics["threshold_feasible"] == 0.0
    assert metrics["recall_at_budget"] == 0.0
    assert metrics["alerts_per_day"] == 0.0 and metrics["budget_utilisation"] == 0.0
    assert metrics["fpr"] == 0.0 and metrics["fpr_upper95"] > 0.0
    assert metrics["threshold"] > float(noisy_scores(make_site().test, seed=1).max())


def test_target_fpr_mode(tmp_path: Path) -> None:
    data = make_site(config=site_config(operating={"target_fpr": 0.01}))
    scores = noisy_scores(data.test, seed=1)
    result = report(data, tmp_path, test_scores=scores)
    metrics = result.metrics
    assert metrics["operating_mode_budget"] == 0.0
    expected = threshold_for_fpr(scores=scores, labels=data.test.labels, target_fpr=0.01)
    assert metrics["threshold"] == expected
    assert metrics["fpr"] <= 0.01 and metrics["threshold_feasible"] == 1.0
    assert metrics["fpr_upper95"] >= metrics["fpr"]
    assert math.isfinite(metrics["threshold_at_budget"])  # the budget view is still reported
    assert strict_json(result.json_path)["operating_point"]["mode"] == "target_fpr"


def test_no_positives_on_test_days_budgets_false_positives_alone(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    test = labelled(rng, benign=2000, malicious=0, families=("Alpha",))
    data = make_site(test=test)
    result = report(data, tmp_path)
    saved = strict_json(result.json_path)
    assert saved["operating_point"]["budget_basis"] == "fp_only"
    assert result.metrics["fp_per_day"] <= result.metrics["alert_budget_per_day"]
    assert math.isnan(result.metrics["auc"]) and math.isnan(result.metrics["recall_at_budget"])
    assert result.metrics["recall_family_local_1"] >= 0.0  # intel-only names are still scored


@pytest.mark.parametrize(("benign", "malicious"), [(0, 0), (0, 60), (1, 1)])
def test_degenerate_test_days_still_write_a_report(
    tmp_path: Path, benign: int, malicious: int
) -> None:
    rng = np.random.default_rng(6)
    data = make_site(test=labelled(rng, benign=benign, malicious=malicious, families=("Alpha",)))
    for server_round in (1, 2):
        result = site_fragility_report(
            data=data,
            intel_only=None,
            test_scores=rng.random(len(data.test)),
            train_scores=np.array([]),
            intel_only_scores=None,
            server_round=server_round,
            work_dir=tmp_path,
        )
    assert set(DOCUMENTED_METRICS) <= set(result.metrics)
    assert strict_json(result.json_path)["round"] == 2
    assert result.metrics["test_domains"] == benign + malicious
    assert math.isnan(result.metrics["psi_score"])  # no training scores to compare with
    assert all(
        math.isfinite(value) for value in share_subset(result.metrics, level="rates").values()
    )


def test_misaligned_scores_are_rejected(tmp_path: Path) -> None:
    data = make_site()
    with pytest.raises(ValueError, match="test_scores"):
        report(data, tmp_path, test_scores=np.zeros(len(data.test) - 1))


def test_extra_metrics_cannot_overwrite_computed_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="auc"):
        report(make_site(), tmp_path, extra={"auc": 1.0})


# --- the page and privacy ----------------------------------------------------------------------


def test_html_is_self_contained_with_png_plots(tmp_path: Path) -> None:
    result = report(make_site(), tmp_path)
    page = result.html_path.read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(page)
    parser.close()
    assert len(parser.sources) >= 4
    prefix = "data:image/png;base64,"
    for source in parser.sources:
        assert source.startswith(prefix)
        png = base64.b64decode(source[len(prefix) :], validate=True)
        assert len(png) > 1000 and png.startswith(PNG_SIGNATURE)
    assert "stays on this site" in page.lower()
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_without_html_the_json_report_is_the_same_and_the_index_links_only_real_pages(
    tmp_path: Path,
) -> None:
    data = make_site()
    with_page = report(data, tmp_path / "a", server_round=1, seed=1)
    first = report(data, tmp_path / "b", server_round=1, seed=1, html=False)
    assert first.html_path is None and first.json_path.is_file()
    assert not (tmp_path / "b" / "fragility" / "round-001.html").exists()
    assert first.metrics.keys() == with_page.metrics.keys()
    assert strict_json(first.json_path)["metrics"] == strict_json(with_page.json_path)["metrics"]
    second = report(data, tmp_path / "b", server_round=2, seed=2)
    assert second.html_path is not None and second.html_path.is_file()
    # A resumed round 2 without HTML must not leave the page of the model it replaced.
    report(data, tmp_path / "b", server_round=2, seed=3, html=False)
    assert not second.html_path.exists()
    index = (tmp_path / "b" / "fragility" / "index.html").read_text(encoding="utf-8")
    assert "round-001.json" in index and "round-002.json" in index
    assert ".html" not in index


def test_top_false_positives_stay_local(tmp_path: Path) -> None:
    data = make_site(config=site_config(operating={"target_fpr": 0.01}))
    result = report(data, tmp_path)
    saved = strict_json(result.json_path)
    top = saved["top_false_positives"]
    assert top["kind"] == "false_positives_at_threshold"
    names = [row["domain"] for row in top["rows"]]
    assert names and set(names) <= set(data.test.domains[data.test.labels == 0].tolist())
    queries = [row["queries"] for row in top["rows"]]
    assert queries == sorted(queries, reverse=True)
    page = result.html_path.read_text(encoding="utf-8")
    assert all(name in page for name in names)
    every_name = set(data.test.domains.tolist()) | set(intel_only_examples().domains.tolist())
    for level in SHARE_LEVELS:
        shared = share_subset(result.metrics, level=level)
        wire = json.dumps(shared)
        assert not any(name in wire for name in every_name)
    assert saved["share"]["sent"] == share_subset(result.metrics, level="rates")
    assert top["false_positives_at_threshold"] > len(names) == 20


def test_an_intel_family_string_never_becomes_a_metric_key(tmp_path: Path) -> None:
    """A blocklist whose family column holds a host name: the key is a local index only."""
    rng = np.random.default_rng(5)
    names = random_names(rng, 40, prefix="", alphabet="0123456789abcdef")
    leaky = "victim-laptop.corp.acme-bank.com"
    intel = examples(names, [1] * 40, [leaky] * 30 + ["Locky"] * 10, rng)
    data = make_site()
    result = site_fragility_report(
        data=data,
        intel_only=intel,
        test_scores=noisy_scores(data.test, seed=1),
        train_scores=noisy_scores(data.train, seed=2),
        intel_only_scores=noisy_scores(intel, seed=3),
        server_round=1,
        work_dir=tmp_path,
        html=False,
    )
    keys = [key for key in result.metrics if key.startswith("recall_family_")]
    assert "recall_family_locky" in keys and "recall_family_local_1" in keys
    assert not any("victim" in key or "acme" in key for key in result.metrics)
    saved = strict_json(result.json_path)  # the site's own report keeps the mapping
    assert any(row["names"] == [leaky] for row in saved["families"])
