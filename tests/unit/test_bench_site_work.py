"""experiments/bench_site_work.py: a site's own work per round, and the floor it puts under a
simulated round at the scale table's sizes."""

from __future__ import annotations

import json

import pytest

from experiments.bench_site_work import against_scale, measure


def test_the_floor_scales_the_work_by_sites_over_cores_and_names_the_frameworks_share(tmp_path):
    scale = tmp_path / "results.json"
    runs = [{"mode": "fedavg", "sites": 100, "cpu_s_per_site": 0.5, "round_s": 30.0}]
    scale.write_text(json.dumps({"runs": runs}))
    got = against_scale(0.2, scale, cores=2)
    assert got["floor_round_s"]["1000"] == pytest.approx(100.0)
    (run,) = got["scale_runs"]
    assert run["measured_over_floor"] == pytest.approx(2.5)
    assert run["framework_share"] == pytest.approx(0.6)
    assert run["floor_round_s"] == pytest.approx(10.0)
    assert "scale_runs" not in against_scale(0.2, tmp_path / "missing.json", cores=2)


def test_the_sites_are_timed_after_their_first_round(tmp_path):
    got = measure(sites=3, rounds=2, root=tmp_path)
    assert got["sites"] == 3 and got["site_rounds_timed"] == 3 - got["refused_by_quality_gate"]
    assert got["site_rounds_timed"] >= 1
    assert got["work_cpu_s_per_site_round"] == pytest.approx(
        got["train_cpu_s_per_site_round"] + got["evaluate_cpu_s_per_site_round"]
    )
    assert got["train_cpu_s_per_site_round"] > 0 and got["evaluate_cpu_s_per_site_round"] > 0
