"""`fedsec experiment ray` at size tiny: local Ray and a loopback Ray head give the same model."""

from __future__ import annotations

import csv
import json

import pytest

from experiments import ray_cluster

pytestmark = pytest.mark.slow


def test_ray_cluster_matches_local_and_leaves_nothing_behind(tmp_path):
    payload = ray_cluster.run(size="tiny", root=tmp_path)
    folder = tmp_path / ray_cluster.NAME

    written = json.loads((folder / "results.json").read_text())
    assert set(written) >= {"plan", "rows", "summary", "head", "commands"}
    local, cluster = payload["rows"]
    assert (local["arm"], cluster["arm"]) == ("local", "cluster")
    # The actors really ran where each arm says: in the command's own Ray, then in the head's.
    assert local["actors_in"] == "command" and cluster["actors_in"] == "head"
    assert "--ray-address 127.0.0.1:" in payload["commands"]["cluster"]
    assert "--ray-address" not in payload["commands"]["local"]
    for row in (local, cluster):
        assert row["rounds_done"] == ray_cluster.PLANS["tiny"].num_rounds
        assert row["mean_round_s"] > 0 and 0.0 <= row["mean_auc"] <= 1.0
    # Same seed, same sites, same code: the cluster changes where actors run, not the model.
    assert payload["summary"]["max_abs_weight_diff"] < 1e-5
    assert abs(payload["summary"]["auc_diff"]) < 1e-3
    assert cluster["over_local"] > 0

    head = payload["head"]
    assert head["startup_s"] > 0 and head["processes_seen"] > 3
    assert head["leftover_after_stop"] == []
    assert payload["summary"]["non_loopback_listeners"] == []

    with open(folder / "runs.csv", newline="") as handle:
        assert [row["arm"] for row in csv.DictReader(handle)] == ["local", "cluster"]
    table = (folder / "table.md").read_text()
    assert table.startswith(f"## {ray_cluster.TITLE}")
    assert "| Ray inside the command |" in table and "| Ray cluster (--ray-address) |" in table
    assert "ray start --head" in table and "ray start --address" in table
    assert (folder / "ray.png").stat().st_size > 1000
    assert "ray/table.md" in (tmp_path / "README.md").read_text()
