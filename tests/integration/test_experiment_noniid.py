"""experiments/noniid.py: its statistics by hand, and its tiny size on real flwr runs."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from common.metrics import roc_auc
from experiments import noniid
from experiments.generator.dga import FAMILIES

PNG = b"\x89PNG\r\n\x1a\n"


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the statistics (fast) ---------------------------------------------------------------------


def test_rank_auc_matches_the_clients_auc_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(400), 1)  # many ties
    labels = rng.random(400) < 0.3
    expected = roc_auc(scores=scores, labels=labels)
    assert noniid.rank_auc(scores[labels], scores[~labels]) == pytest.approx(expected, abs=1e-12)
    assert noniid.rank_auc(np.array([0.9, 0.8]), np.array([0.1, 0.8])) == pytest.approx(0.875)
    assert math.isnan(noniid.rank_auc(np.array([]), np.array([0.1])))


def test_false_positives_at_recall_by_hand() -> None:
    positives = np.array([0.9, 0.8, 0.7, 0.6, 0.1])  # 80% recall: threshold 0.6
    negatives = np.array([0.65, 0.6, 0.5, 0.95])
    assert noniid.false_positives_at_recall(positives, negatives, recall=0.8) == 3
    assert noniid.false_positives_at_recall(positives, negatives, recall=0.2) == 1
    assert noniid.fp_ratio(0, 0) == 1.0 and noniid.fp_ratio(3, 1) == pytest.approx(3.5 / 1.5)


def test_paired_bootstrap_brackets_a_clear_difference() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(60, bool), np.zeros(600, bool)]
    good = np.r_[rng.normal(2.0, 1.0, 60), rng.normal(0.0, 1.0, 600)]
    poor = np.r_[rng.normal(0.5, 1.0, 60), rng.normal(0.0, 1.0, 600)]
    interval = noniid.paired_bootstrap(
        good, poor, labels, rng=np.random.default_rng(1), samples=200
    )
    difference = noniid.rank_auc(good[labels], good[~labels]) - noniid.rank_auc(
        poor[labels], poor[~labels]
    )
    assert 0 < interval["d_auc_low95"] <= difference <= interval["d_auc_high95"]
    assert interval["fp_ratio_high95"] < 1
    same = noniid.paired_bootstrap(good, good, labels, rng=np.random.default_rng(1), samples=50)
    assert same["d_auc_low95"] == same["d_auc_high95"] == 0.0


@pytest.mark.parametrize(
    ("d_auc", "low", "high", "ratio", "ratio_low", "ratio_high", "expected"),
    [
        (-0.02, -0.03, -0.01, 1.0, 0.9, 1.1, "hurt"),
        (-0.02, -0.03, 0.001, 1.0, 0.9, 1.1, "neutral"),  # interval touches 0: noise
        (-0.004, -0.006, -0.002, 1.0, 0.9, 1.1, "neutral"),  # too small to matter
        (0.0, -0.01, 0.01, 1.5, 1.1, 2.0, "hurt"),  # FP/day up beyond noise
        (0.02, 0.01, 0.03, 1.5, 1.1, 2.0, "hurt"),  # worse on one figure is enough
        (0.02, 0.01, 0.03, 1.0, 0.8, 1.2, "helped"),
        (0.0, -0.01, 0.01, 0.5, 0.3, 0.9, "helped"),
    ],
)
def test_outcome_rule(d_auc, low, high, ratio, ratio_low, ratio_high, expected) -> None:
    row = {
        "d_auc": d_auc,
        "d_auc_low95": low,
        "d_auc_high95": high,
        "fp_ratio": ratio,
        "fp_ratio_low95": ratio_low,
        "fp_ratio_high95": ratio_high,
    }
    assert noniid.outcome(row) == expected


# --- the tiny run (real flwr) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    payload = noniid.run(size="tiny", root=root)
    return root / noniid.NAME, payload


@pytest.mark.slow
def test_every_output_is_written_and_well_formed(tiny_run) -> None:
    folder, payload = tiny_run
    stored = json.loads((folder / "results.json").read_text())
    assert {
        "size",
        "seed",
        "config",
        "rule",
        "settings",
        "summary",
        "wall_s",
        "peak_rss_mib",
    } <= set(stored)
    plan = noniid.SIZES["tiny"]
    assert [s["setting"] for s in stored["settings"]] == [
        noniid.setting_key(*cell) for cell in plan.grid
    ]
    assert len(_csv_rows(folder / "per_site.csv")) == plan.n_sites * len(plan.grid)
    assert len(_csv_rows(folder / "summary.csv")) == len(plan.grid)
    assert len(_csv_rows(folder / "arms.csv")) == 2 * len(plan.grid)
    for plot in ("gain_per_site.png", "gain_heatmap.png"):
        assert (folder / plot).read_bytes()[:8] == PNG
    table = (folder / "table.md").read_text()
    for text in (
        noniid.TITLE,
        "Per setting: sites helped and hurt by federation",
        "Mean over sites: local-only vs FedAvg",
        "Rule: hurt = AUC down",
        "families=1, mix=default",
        "![gain_heatmap](gain_heatmap.png)",
        "fedsec experiment noniid --tiny",
    ):
        assert text in table
    for block in table.split("### ")[1:]:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) == 1, block.splitlines()[0]
    assert (folder.parent / "README.md").read_text().count("noniid/table.md") == 1


@pytest.mark.slow
def test_knobs_reach_the_sites_and_only_them(tiny_run) -> None:
    _, payload = tiny_run
    by_setting = {s["families_setting"]: s["sites"] for s in payload["settings"]}
    single, every = by_setting["1"], by_setting["all"]
    assert all(row["n_families"] == 1 for row in single)
    assert len({row["families"] for row in single}) == len(single)
    assert all(row["n_families"] == len(FAMILIES) for row in every)
    # The family knob leaves the benign mix alone: the same site, the same mix.
    assert [row["mix_distance"] for row in single] == [row["mix_distance"] for row in every]
    # Only sites that miss families have names of unseen families to score.
    assert all(math.isfinite(row["local_unseen_family_auc"]) for row in single)
    assert all(math.isnan(row["local_unseen_family_auc"]) for row in every)


@pytest.mark.slow
def test_arms_differ_and_gains_are_consistent(tiny_run) -> None:
    _, payload = tiny_run
    for setting, summary in zip(payload["settings"], payload["summary"], strict=True):
        rows = setting["sites"]
        # Local-only models are trained per site: they differ from the shared global model.
        assert any(row["local_auc"] != row["federated_auc"] for row in rows)
        for row in rows:
            assert 0.0 <= row["local_auc"] <= 1.0 and 0.0 <= row["federated_auc"] <= 1.0
            assert row["d_auc"] == pytest.approx(row["federated_auc"] - row["local_auc"])
            assert row["d_auc_low95"] <= row["d_auc_high95"]
            assert row["fp_ratio_low95"] <= row["fp_ratio_high95"] and row["fp_ratio"] > 0
            expected = "refused" if row["refused_to_train"] else noniid.outcome(row)
            assert row["outcome"] == expected
            assert row["test_positives"] > 0 and row["train_domains"] > 0
        counted = summary["helped"] + summary["hurt"] + summary["neutral"] + summary["refused"]
        assert counted == len(rows)
        assert summary["worst_d_auc"] == min(row["d_auc"] for row in rows)
        assert summary["mean_d_auc"] == pytest.approx(np.mean([row["d_auc"] for row in rows]))
        assert setting["local_train_s"] > 0 and setting["federation_s"] > 0
