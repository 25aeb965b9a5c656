"""`check` and `score` end to end on a generated site; score output equals direct model scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from client.check import check_command, check_site
from client.domains import normalise_domain_array
from client.quarantine import Quarantine
from client.readers import READERS
from client.scoring import resolve_threshold, score_command, score_logs
from client.triage import hosts_path, read_alerts, read_host_groups
from common.model import ModelSpec, build_model, model_from_bytes, model_to_bytes
from common.share import SHARE_KEYS
from common.training import predict_scores


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from experiments.generator import generate_sites

    out = tmp_path_factory.mktemp("check-score") / "sites"
    return generate_sites(out_dir=out, n_sites=1, n_days=3, seed=1, scale=0.1)[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    path.write_bytes(model_to_bytes(build_model(ModelSpec(), seed=0)))
    return path


def logs_of(site: Path) -> list[Path]:
    return sorted((site / "logs").glob("dns.*.log.gz"))


def test_check_passes_and_lists_what_leaves(site: Path, capsys) -> None:
    assert check_command(site) == 0
    out = capsys.readouterr().out
    assert f"OK: {site.name} passes its quality gate" in out
    assert "share level 'rates+volumes'" in out
    for name in SHARE_KEYS["rates+volumes"]:
        assert name in out
    assert "never: domain names, registered domains, per-query data" in out
    assert "malformed_rate" in out and "missing days: none" in out


def test_check_fails_with_the_gate_reason_and_on_bad_config(site: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(site, broken, ignore=shutil.ignore_patterns("work"))
    first = logs_of(broken)[0]
    shutil.copy(first, first.with_name("dns.copy.log.gz"))  # ingested twice
    lines, code = check_site(broken)
    assert code == 1
    text = "\n".join(lines)
    assert f"FAIL: {site.name} will not train" in text and "duplicate_rate" in text
    (broken / "site.toml").write_text(
        (broken / "site.toml").read_text().replace('format = "zeek-tsv"', 'format = "zeek-json"')
    )
    lines, code = check_site(broken)
    assert code == 2 and any("dns." in line for line in lines)
    (broken / "site.toml").write_text("site_id = 'x'\n")
    lines, code = check_site(broken)
    assert code == 2 and any("site.toml" in line and "logs" in line for line in lines)


def direct_scores(site: Path, model_path: Path, tmp_path: Path) -> dict[str, dict]:
    """Every record of the logs, normalised and grouped in one table, scored in one call."""
    model, _ = model_from_bytes(model_path.read_bytes())
    tables = [
        READERS["zeek-tsv"](
            path, quarantine=Quarantine(tmp_path / "direct"), columns=("ts", "query")
        )[0]
        for path in logs_of(site)
    ]
    table = pa.concat_tables(tables)
    names, _ = normalise_domain_array(table["query"])
    table = pa.table({"name": names, "ts": table["ts"]}).filter(pc.is_valid(names))
    grouped = table.group_by("name").aggregate([("ts", "count"), ("ts", "min"), ("ts", "max")])
    unique = grouped["name"].to_pylist()
    scores = predict_scores(model, domains=model.spec.encode(unique))
    return {
        name: {"score": score, "query_count": count, "first": first, "last": last}
        for name, score, count, first, last in zip(
            unique,
            scores.tolist(),
            grouped["ts_count"].to_pylist(),
            grouped["ts_min"].to_pylist(),
            grouped["ts_max"].to_pylist(),
            strict=True,
        )
    }


def test_score_equals_direct_scoring(site: Path, model_path: Path, tmp_path: Path, capsys) -> None:
    expected = direct_scores(site, model_path, tmp_path)
    threshold = float(np.quantile([item["score"] for item in expected.values()], 0.8))
    out = tmp_path / "alerts.jsonl"
    assert (
        score_command(
            model=model_path, logs=logs_of(site), out=out, site_dir=None, threshold=threshold
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"threshold {threshold:g} (--threshold)" in printed
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    wanted = {name for name, item in expected.items() if item["score"] >= threshold + 1e-9}
    possible = {name for name, item in expected.items() if item["score"] >= threshold - 1e-9}
    # Names under one registered domain share a score, so ties at tau can be many.
    assert wanted <= {alert["domain"] for alert in alerts} <= possible
    for alert in alerts:
        item = expected[alert["domain"]]
        assert alert["score"] == pytest.approx(item["score"], rel=1e-6, abs=1e-9)
        assert alert["query_count"] == item["query_count"]
        assert alert["priority"] == pytest.approx(alert["score"] * alert["query_count"])
        first = np.datetime64(alert["first_seen"].rstrip("Z"), "us").astype(np.int64) / 1e6
        assert first == pytest.approx(item["first"], abs=1e-6)
    priorities = [alert["priority"] for alert in alerts]
    assert priorities == sorted(priorities, reverse=True)
    assert [alert["rank"] for alert in alerts] == list(range(1, len(alerts) + 1))


def test_a_bot_hosts_names_end_up_in_one_host_group(
    site: Path, model_path: Path, tmp_path: Path, capsys
) -> None:
    """The generator's bots (Zeek id.orig_h, rcode_name): each one's names form one group."""
    logs = [
        READERS["zeek-tsv"](
            path,
            quarantine=Quarantine(tmp_path / "direct"),
            columns=("ts", "query", "id.orig_h", "rcode_name"),
        )[0]
        for path in logs_of(site)
    ]
    table = pa.concat_tables(logs)
    names, _ = normalise_domain_array(table["query"])
    table = table.append_column("name", names).filter(pc.is_valid(names))
    truth = (site.parent / "truth.csv").read_text().splitlines()[1:]
    dga = set(
        normalise_domain_array(pa.array([row.split(",")[0] for row in truth if ",dga," in row]))[
            0
        ].to_pylist()
    )
    rows = table.select(["name", "id.orig_h", "rcode_name"]).to_pylist()
    per_host: dict[str, set[str]] = {}
    for row in rows:
        if row["name"] in dga:
            per_host.setdefault(row["id.orig_h"], set()).add(row["name"])
    bot = max(per_host, key=lambda host: (len(per_host[host]), host))
    bot_rows = [row for row in rows if row["id.orig_h"] == bot]
    bot_names = {row["name"] for row in bot_rows}
    answered = [row["rcode_name"] for row in bot_rows if row["rcode_name"] is not None]
    assert len(per_host[bot]) >= 5 and answered

    out = tmp_path / "alerts.jsonl"
    code = score_command(
        model=model_path, logs=[site / "logs"], out=out, site_dir=site, threshold=0.0
    )
    assert code == 0
    groups = read_host_groups(hosts_path(out))
    assert f"{len(groups):,} host groups written to {hosts_path(out)}" in capsys.readouterr().out
    assert len({group["host"] for group in groups}) == len(groups) and None not in {
        g["host"] for g in groups
    }
    (group,) = [group for group in groups if group["host"] == bot]
    assert group["name_count"] == len(bot_names) and set(group["names"]) <= bot_names
    assert group["query_count"] == len(bot_rows)
    assert group["nxdomain_share"] == pytest.approx(answered.count("NXDOMAIN") / len(answered))
    alerts = {alert["domain"]: alert for alert in read_alerts(out)}
    for name in per_host[bot]:  # every generated name of the bot names it among its hosts
        assert bot in alerts[name]["hosts"] or alerts[name]["host_count_capped"]


def test_small_blocks_and_a_tiny_cache_change_nothing(
    site: Path, model_path: Path, tmp_path: Path
) -> None:
    model, _ = model_from_bytes(model_path.read_bytes())
    runs = []
    for name, block_bytes, cache_size in (("a", None, 1 << 16), ("b", 20_000, 50)):
        out = tmp_path / f"{name}.jsonl"
        summary = score_logs(
            model,
            logs_of(site),
            out=out,
            threshold=0.0,
            quarantine_dir=tmp_path / f"{name}.q",
            block_bytes=block_bytes,
            cache_size=cache_size,
        )
        runs.append(
            (
                {
                    alert["domain"]: alert["query_count"]
                    for alert in map(json.loads, out.read_text().splitlines())
                },
                summary,
            )
        )
    (full, first), (small, second) = runs
    assert full == small and second.cache_evictions > 0 and first.cache_evictions == 0
    assert first.records == second.records == sum(full.values()) + first.invalid_domains
    assert first.quarantined == second.quarantined and sum(first.quarantined.values()) > 0


def test_threshold_from_the_latest_fragility_report(
    site: Path, model_path: Path, tmp_path: Path, capsys
) -> None:
    copy = tmp_path / "site"
    shutil.copytree(site, copy, ignore=shutil.ignore_patterns("work"))
    assert resolve_threshold(threshold=None, site_dir=copy) == (0.5, "default")
    reports = copy / "work" / "fragility"
    reports.mkdir(parents=True)
    for round_number, value in ((2, 0.25), (10, 0.75)):
        (reports / f"round-{round_number:03d}.json").write_text(
            json.dumps({"metrics": {"threshold": value}})
        )
    value, source = resolve_threshold(threshold=None, site_dir=copy)
    assert value == 0.75 and source.endswith("round-010.json")
    assert resolve_threshold(threshold=0.1, site_dir=copy) == (0.1, "--threshold")
    out = tmp_path / "alerts.jsonl"
    assert (
        score_command(
            model=model_path, logs=[copy / "logs"], out=out, site_dir=copy, threshold=None
        )
        == 0
    )
    assert "threshold 0.75 (" in capsys.readouterr().out
    assert all(json.loads(line)["score"] >= 0.75 for line in out.read_text().splitlines())


def test_score_reports_bad_input(model_path: Path, tmp_path: Path, capsys) -> None:
    code = score_command(
        model=model_path,
        logs=[tmp_path / "absent.log"],
        out=tmp_path / "a.jsonl",
        site_dir=None,
        threshold=None,
    )
    assert code == 2 and "absent.log" in capsys.readouterr().err


def test_benchmark_at_a_tiny_size_writes_well_formed_results(tmp_path: Path) -> None:
    from experiments.bench_score import main

    out = tmp_path / "bench_score.json"
    main(
        [
            "--lines",
            "20000",
            "--out",
            str(out),
            "--no-flat-check",
            "--workdir",
            str(tmp_path / "data"),
        ]
    )
    result = json.loads(out.read_text())
    assert result["input"]["lines"] == 20_000
    score = result["score"]
    assert score["records"] == 20_000 and score["alerts_file_consistent"]
    assert 0 < score["unique_domains"] <= result["input"]["distinct_queries"]
    for key in ("records_per_s", "unique_domains_per_s", "peak_rss_mib"):
        assert score[key] > 0
    assert set(score["stage_seconds"]) >= {"parse", "dedup", "normalise", "model", "alerts"}
    assert result["python_line_loop"]["records"] == 20_000
    assert result["python_line_loop"]["unique_domains"] == score["unique_domains"]
    assert result["speedup_vs_line_loop"] > 0 and isinstance(result["meets_target"], bool)
