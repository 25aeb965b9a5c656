"""experiments/bench_train.py at a tiny size: every variant timed, ratios against the baseline."""

from __future__ import annotations

import json

from experiments import bench_train


def test_tiny_run_writes_every_variant_with_its_ratio(tmp_path) -> None:
    out = tmp_path / "bench_train.json"
    payload = bench_train.run(steps=2, repeat=1, out=out, names=200)
    assert json.loads(out.read_text()) == payload
    rows = payload["rows"]
    assert [row["variant"] for row in rows] == [variant.label for variant in bench_train.VARIANTS]
    assert payload["baseline"] == rows[0]["variant"] and rows[0]["pooling"] == "dense"
    assert {row["processes"] for row in rows} == {1, 2}
    assert rows[0]["over_baseline"] == 1.0
    for row in rows:
        assert row["samples_per_s_median"] > 0 and len(row["samples_per_s_all"]) == 1
        assert row["meets_target"] == (row["samples_per_s_median"] >= 20_000)
    assert payload["best"] in {row["variant"] for row in rows}


def test_synthetic_names_are_valid_and_balanced() -> None:
    names, labels = bench_train.synthetic_names(100, seed=1)
    assert len(names) == 100 and labels.sum() == 50
    assert all("." in name and 6 <= len(name.split(".")[0]) <= 24 for name in names)
    assert bench_train.synthetic_names(100, seed=1)[0] == names


def test_the_baseline_really_runs_the_reference_pooling() -> None:
    import common.model
    from common.convpool import conv_max_pool, conv_max_pool_reference

    with bench_train._pooling("dense"):
        assert common.model.conv_max_pool is conv_max_pool_reference
    assert common.model.conv_max_pool is conv_max_pool
