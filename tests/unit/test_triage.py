"""Alerts triaged by host: grouping, ranking, bounded host sets, the validated readers, logs
without a client column, and score never reading the host groups or explanations it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import client.scoring as scoring
from client.scoring import Sighting, is_score_output, log_paths, score_logs
from client.triage import (
    Tally,
    explained_path,
    group_by_host,
    group_priority,
    hosts_path,
    read_alerts,
    read_host_groups,
)
from common.model import ModelSpec, build_model

DAY0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def model():
    return build_model(ModelSpec(), seed=0)


def sighting(score: float, hosts: dict[str, tuple[int, int]], *, at: float = DAY0) -> Sighting:
    """An alerting name queried by ``hosts`` (host -> (queries, NXDOMAIN answers)) at ``at``."""
    tallies = {
        host: Tally(queries, nx, queries, at, at + 1) for host, (queries, nx) in hosts.items()
    }
    return Sighting(
        score=score,
        query_count=sum(t.queries for t in tallies.values()),
        first_seen=at,
        last_seen=at + 1,
        nxdomain=sum(t.nxdomain for t in tallies.values()),
        answered=sum(t.answered for t in tallies.values()),
        hosts=tallies,
    )


def ranked(alerts: dict[str, Sighting]) -> list[tuple[str, Sighting]]:
    return sorted(alerts.items(), key=lambda item: (-item[1].priority, item[0]))


# --- grouping and ranking ---------------------------------------------------------------------


def test_a_bot_with_many_nxdomain_names_outranks_one_borderline_name_queried_often() -> None:
    alerts = {
        f"q{index:02d}xkzv.example": sighting(0.8, {"10.0.0.66": (1, 1)}) for index in range(50)
    }
    alerts["cdn-edge.example.net"] = sighting(0.51, {"10.0.0.7": (10_000, 0)})
    # per domain, the borderline name is on top (score x queries) ...
    assert ranked(alerts)[0][0] == "cdn-edge.example.net"
    groups = group_by_host(ranked(alerts))
    # ... per host, the bot is: one group holding all its names
    assert [group["host"] for group in groups] == ["10.0.0.66", "10.0.0.7"]
    bot = groups[0]
    assert bot["rank"] == 1 and bot["name_count"] == 50 and bot["query_count"] == 50
    assert set(bot["names"]) == {name for name in alerts if name.endswith("xkzv.example")}
    assert bot["nxdomain_share"] == 1.0 and bot["max_score"] == 0.8
    assert bot["registered_domain_count"] == 50 and len(bot["registered_domains"]) == 50
    assert groups[1]["nxdomain_share"] == 0.0 and groups[1]["query_count"] == 10_000


def test_priority_formula_and_its_factors() -> None:
    base = group_priority(max_score=0.5, name_count=1, nxdomain_share=None, idle_days=0)
    assert base == pytest.approx(0.5)
    assert group_priority(max_score=0.5, name_count=1, nxdomain_share=1.0, idle_days=0) == 1.0
    more = group_priority(max_score=0.5, name_count=20, nxdomain_share=None, idle_days=0)
    assert base < more < 0.5 * 20
    assert group_priority(max_score=0.5, name_count=1, nxdomain_share=None, idle_days=1) == 0.25


def test_a_host_quiet_for_days_ranks_below_one_active_now() -> None:
    alerts = {
        "old.example": sighting(0.9, {"10.0.0.1": (5, 0)}, at=DAY0),
        "new.example": sighting(0.9, {"10.0.0.2": (5, 0)}, at=DAY0 + 3 * 86_400),
    }
    groups = group_by_host(ranked(alerts))
    assert [group["host"] for group in groups] == ["10.0.0.2", "10.0.0.1"]
    assert groups[1]["priority"] == pytest.approx(groups[0]["priority"] / 4)


def test_names_shared_by_hosts_and_registered_domains_within_a_group() -> None:
    alerts = {
        "a.evil.example": sighting(0.9, {"h1": (3, 3), "h2": (1, 0)}),
        "b.evil.example": sighting(0.7, {"h1": (2, 0)}),
        "zz.other.test": sighting(0.6, {"h1": (1, 1)}),
    }
    groups = {group["host"]: group for group in group_by_host(ranked(alerts))}
    h1 = groups["h1"]
    assert h1["names"] == ["a.evil.example", "b.evil.example", "zz.other.test"]
    assert h1["registered_domains"] == [
        {
            "registered_domain": "evil.example",
            "names": ["a.evil.example", "b.evil.example"],
            "name_count": 2,
        },
        {"registered_domain": "other.test", "names": ["zz.other.test"], "name_count": 1},
    ]
    assert h1["query_count"] == 6 and h1["nxdomain_share"] == pytest.approx(4 / 6)
    assert groups["h2"]["names"] == ["a.evil.example"] and groups["h2"]["nxdomain_share"] == 0.0


def test_without_client_hosts_groups_are_registered_domains_with_host_null() -> None:
    alerts = {
        name: Sighting(score=0.9, query_count=2, first_seen=DAY0, last_seen=DAY0 + 5)
        for name in ("a.evil.example", "b.evil.example", "c.other.test")
    }
    groups = group_by_host(ranked(alerts))
    assert {group["host"] for group in groups} == {None}
    assert sorted(group["names"] for group in groups) == [
        ["a.evil.example", "b.evil.example"],
        ["c.other.test"],
    ]
    assert all(group["nxdomain_share"] is None for group in groups)


# --- score end to end on small logs -----------------------------------------------------------

FIELDS = "#fields\tts\tid.orig_h\tquery\trcode_name\n"


def zeek_log(path: Path, rows: list[tuple[float, str, str, str]], fields: str = FIELDS) -> Path:
    columns = fields.strip().split("\t")[1:]
    body = "".join("\t".join(str(value) for value in row[: len(columns)]) + "\n" for row in rows)
    path.write_text(f"#separator \\x09\n{fields}{body}#close\t2026-01-02-00-00-00\n")
    return path


def score(model, logs: list[Path], out: Path, **options) -> tuple[list[dict], list[dict]]:
    score_logs(model, logs, out=out, threshold=0.0, quarantine_dir=out.parent / "q", **options)
    return read_alerts(out), read_host_groups(hosts_path(out))


def test_score_keeps_hosts_and_nxdomain_per_alerting_name(model, tmp_path: Path) -> None:
    rows = [(DAY0 + i, "10.0.0.66", f"qx{i}kzv.example", "NXDOMAIN") for i in range(30)]
    rows += [(DAY0 + 100 + i, f"10.0.1.{i % 3}", "WWW.Shop.example.", "NOERROR") for i in range(9)]
    rows += [(DAY0 + 200, "10.0.1.0", "www.shop.example", "-")]  # no rcode: not in the share
    rows += [(DAY0 + 201, "(empty)", "www.shop.example", "NOERROR")]  # no host
    rows += [(DAY0 + 202, "x" * 300, "www.shop.example", "NOERROR")]  # not an address
    rows += [(DAY0 + 203 + i, "10.0.1.0", "bad..name", "NOERROR") for i in range(3)]  # invalid
    log = zeek_log(tmp_path / "dns.log", rows)
    alerts, groups = score(model, [log], tmp_path / "out" / "alerts.jsonl", block_bytes=300)
    shop = next(alert for alert in alerts if alert["domain"] == "www.shop.example")
    assert shop["query_count"] == 12 and shop["host_count"] == 3 and not shop["host_count_capped"]
    assert shop["hosts"] == ["10.0.1.0", "10.0.1.1", "10.0.1.2"]  # 4, 3, 3 queries
    assert shop["nxdomain_share"] == 0.0
    bot = next(group for group in groups if group["host"] == "10.0.0.66")
    assert bot["name_count"] == 30 and bot["nxdomain_share"] == 1.0
    assert bot["first_seen"] == "2026-01-01T00:00:00.000000Z"
    assert bot["last_seen"] == "2026-01-01T00:00:29.000000Z"
    assert {alert["domain"] for alert in alerts} == {"www.shop.example", *bot["names"]}


def test_host_sets_are_bounded_with_a_flag(model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(scoring, "HOSTS_PER_NAME", 4)
    rows = [(DAY0 + i, f"10.0.2.{i}", "popular.example", "NOERROR") for i in range(10)]
    rows += [(DAY0 + 20, "10.0.2.0", "popular.example", "NOERROR")] * 5
    log = zeek_log(tmp_path / "dns.log", rows)
    alerts, groups = score(model, [log], tmp_path / "out" / "alerts.jsonl", block_bytes=200)
    (alert,) = alerts
    assert alert["host_count"] == 4 and alert["host_count_capped"]
    assert alert["query_count"] == 15 and alert["hosts"][0] == "10.0.2.0"
    assert len(groups) == 4
    monkeypatch.setattr(scoring, "HOSTS_PER_NAME", 100)
    monkeypatch.setattr(scoring, "HOST_ENTRIES", 2)
    alerts, _ = score(model, [log], tmp_path / "again" / "alerts.jsonl")
    assert alerts[0]["host_count"] == 2 and alerts[0]["host_count_capped"]


def test_logs_without_client_or_rcode_score_as_before(model, tmp_path: Path) -> None:
    rows = [(DAY0 + i, f"n{i % 4}.evil.example") for i in range(8)]
    log = zeek_log(tmp_path / "dns.log", rows, fields="#fields\tts\tquery\n")
    alerts, groups = score(model, [log], tmp_path / "out" / "alerts.jsonl")
    assert len(alerts) == 4 and all(alert["query_count"] == 2 for alert in alerts)
    for alert in alerts:
        assert alert["host_count"] == 0 and alert["hosts"] == [] and alert["nxdomain_share"] is None
    (group,) = groups
    assert group["host"] is None and group["name_count"] == 4 and group["nxdomain_share"] is None


def test_csv_reads_a_mapped_client_column_and_scores_without_one(model, tmp_path: Path) -> None:
    with_client = tmp_path / "a.csv"
    with_client.write_text("when,src,qname\n1767225600,10.9.9.9,x.evil.example\n")
    alerts, groups = score(
        model,
        [with_client],
        tmp_path / "a" / "alerts.jsonl",
        log_format="csv",
        mapping={"ts": "when", "query": "qname", "id.orig_h": "src"},
    )
    assert alerts[0]["hosts"] == ["10.9.9.9"] and groups[0]["host"] == "10.9.9.9"
    plain = tmp_path / "b.csv"
    plain.write_text("ts,query\n1767225600,x.evil.example\n")
    alerts, groups = score(model, [plain], tmp_path / "b" / "alerts.jsonl", log_format="csv")
    assert alerts[0]["host_count"] == 0 and groups[0]["host"] is None
    from client.readers import LogFormatError

    with pytest.raises(LogFormatError, match=r"b\.csv.*id\.orig_h.*'src'"):
        score(
            model,
            [plain],
            tmp_path / "c" / "alerts.jsonl",
            log_format="csv",
            mapping={"id.orig_h": "src"},
        )


def test_score_leaves_out_its_host_groups_and_explanations(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = zeek_log(logs / "dns.log", [(DAY0, "10.0.0.1", "a.example", "NOERROR")])
    out = logs / "alerts.jsonl"
    hosts_path(out).write_text("")  # an empty host groups file: by name
    explained_path(out).write_text(json.dumps({"model_sha256": "0" * 64, "explanations": {}}))
    (logs / "old.hosts.jsonl").write_text('{"rank": 1, "host": null}\n')  # an earlier run's
    (logs / "old.explained.json").write_text('{"model_sha256": "ab", "alerts_sha256": "cd"}')
    (logs / ".alerts.hosts.jsonl.tmp1").write_text("")  # a temporary sibling
    paths, own = log_paths([logs], out=out)
    assert paths == [log] and len(own) == 5
    assert not is_score_output(log, out=out)


# --- readers ----------------------------------------------------------------------------------


def written(model, tmp_path: Path) -> Path:
    rows = [(DAY0 + i, f"10.0.0.{i % 2}", f"n{i}.evil.example", "NXDOMAIN") for i in range(6)]
    out = tmp_path / "out" / "alerts.jsonl"
    score(model, [zeek_log(tmp_path / "dns.log", rows)], out)
    return out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not a JSON line"),
        ('{"rank": 2}', "field"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_readers_reject_bad_lines_with_file_and_line(model, tmp_path: Path, line, message) -> None:
    out = written(model, tmp_path)
    for path, reader in ((out, read_alerts), (hosts_path(out), read_host_groups)):
        lines = path.read_text().splitlines()
        assert len(reader(path)) == len(lines)
        path.write_text("\n".join([lines[0], line, *lines[2:]]) + "\n")
        with pytest.raises(ValueError, match=rf"{path.name}: line 2: .*{message}"):
            reader(path)


def test_readers_check_types_ranges_rank_and_bounds(model, tmp_path: Path, monkeypatch) -> None:
    out = written(model, tmp_path)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(read_alerts(out, limit=2)) == 2
    for change, field in (
        ({"score": 1.5}, "score"),
        ({"query_count": "3"}, "query_count"),
        ({"hosts": ["h"] * 11}, "hosts"),
        ({"nxdomain_share": None, "extra": 1}, "extra"),
        ({"rank": 5}, "rank"),
        ({"first_seen": "yesterday"}, "first_seen"),
    ):
        out.write_text(
            "".join(
                json.dumps(r | (change if i == 2 else {})) + "\n" for i, r in enumerate(records)
            )
        )
        with pytest.raises(ValueError, match=rf"alerts\.jsonl: line 3: field {field}"):
            read_alerts(out)
    import client.triage as triage

    monkeypatch.setattr(triage, "MAX_LINE_BYTES", 100)
    with pytest.raises(ValueError, match=r"alerts\.hosts\.jsonl: line 1: longer than 100 bytes"):
        read_host_groups(hosts_path(out))
    with pytest.raises(FileNotFoundError, match=r"absent\.jsonl.*fedsec score"):
        read_alerts(tmp_path / "absent.jsonl")
