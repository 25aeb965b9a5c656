"""`fedsec experiment scale` at size tiny: every site trains, time and memory are recorded."""

from __future__ import annotations

import csv
import json
import os

import pytest

from experiments import scale

pytestmark = pytest.mark.slow


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_scale_runs_every_size_and_writes_its_table(tmp_path):
    payload = scale.run(size="tiny", root=tmp_path)
    plan = scale.PLANS["tiny"]
    folder = tmp_path / scale.NAME

    written = json.loads((folder / "results.json").read_text())
    assert set(written) >= {"plan", "runs", "generation", "cache", "summary"}
    rows = payload["runs"]
    assert [(row["mode"], row["sites"]) for row in rows] == [("fedavg", n) for n in plan.sizes]
    for row in rows:
        # Sites failing their quality gate were left out: every kept site trains every round.
        assert row["min_sites_trained"] == row["sites"] and row["train_failures"] == 0
        assert row["round_s"] > 0 and row["first_round_s"] > 0
        assert row["train_s"] + row["evaluate_s"] == pytest.approx(row["round_s"], rel=0.05)
        assert row["actors"] >= 1
        assert row["peak_rss_mib"] > row["max_actor_rss_mib"] > 0
        assert 0 < row["peak_pss_mib"] <= row["peak_rss_mib"] * 1.05  # PSS shares what RSS repeats
        parts = [row[f"peak_pss_{kind}_mib"] for kind in ("driver", "actors", "ray")]
        assert all(part > 0 for part in parts)
        assert sum(parts) == pytest.approx(row["peak_pss_mib"])
        # The actors' own counters: each site prepared at least once, in the actors only.
        assert row["site_reads"] >= row["sites"] and 1 <= row["processes_reading"] <= row["actors"]
        assert 0 <= row["site_rereads"] <= row["site_reads"] - row["sites"]
        assert row["per_site_ratio"] > 0 and row["cpu_per_site_ratio"] > 0
        assert 0 < row["cpu_s"] < (os.cpu_count() or 1) * row["round_s"] + 5  # sampling slack
    assert rows[0]["per_site_ratio"] == pytest.approx(1.0)
    assert rows[0]["cpu_per_site_ratio"] == pytest.approx(1.0)

    # Generated once, for the largest size; the smaller sizes run on its first sites.
    [gen] = payload["generation"]
    assert gen["sites"] == max(plan.sizes)
    assert gen["generated"] > gen["sites"] and gen["site_ids_unique"]
    assert gen["seconds_per_site"] > 0 and gen["disk_mib_per_site"] > 0
    cache = payload["cache"]
    curve = cache["curve"]
    assert curve[0][0] == 0 and curve[-1][0] == plan.cache_sites
    assert all(rss > 0 for _, rss, _, _ in curve)
    # The bound holds: sites were evicted, and what stays is within it (or one site alone).
    sites_prepared, _, cache_mib, sites_cached = curve[-1]
    assert 1 <= sites_cached < sites_prepared
    assert cache_mib <= cache["bound_mib"] or sites_cached == 1
    assert cache["mib_per_site"] > 0
    targets = payload["summary"]["targets"]
    assert targets["round_s_met"] == (payload["summary"]["round_s_largest"] <= 60.0)

    assert len(_csv(folder / "runs.csv")) == len(plan.sizes)
    assert len(_csv(folder / "generation.csv")) == 1
    assert len(_csv(folder / "cache.csv")) == len(curve)
    table = (folder / "table.md").read_text()
    assert table.startswith(f"## {scale.TITLE}")
    for n_sites in plan.sizes:
        assert f"| fedavg | {n_sites} |" in table
    assert (folder / "scale.png").stat().st_size > 1000
    assert "scale/table.md" in (tmp_path / "README.md").read_text()


def test_steady_rounds_leave_out_the_cold_first_and_the_page_rendering_last():
    assert list(scale.steady_rounds(5)) == [2, 3, 4]
    assert list(scale.steady_rounds(3)) == [2]
    assert list(scale.steady_rounds(2)) == [2]  # two rounds: the last is all there is
