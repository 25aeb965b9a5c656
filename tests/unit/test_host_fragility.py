"""Host-level fragility (docs/metrics.md, "Hosts"): hand-built host-days with known answers,
logs without a client column, scaling to the site's volume, what each share level sends, and
`fedsec evaluate` on a small generated site showing the host figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import beta

from client.dataset import Examples, SiteData
from client.domains import normalise_domain_array
from client.evaluate import (
    CLIENT_COLUMN,
    HostPass,
    LabelledNames,
    day_index,
    evaluate_site,
    read_host_days,
    summary_lines,
)
from client.fragility import NO_CLIENT_COLUMN, HostView, site_fragility_report
from client.fragility_html import host_section
from client.hosts import host_days_at
from client.hosts import host_incidence_on_test_days as host_incidence
from common.config import parse_site_config
from common.fragility import HOST_METRICS, HostDays, host_metrics
from common.share import masked_figures, share_subset
from server.report import build_federation_report, metric_direction
from server.report_html import render_federation_html

DAY = 20_000  # a UTC day number; its records sit at noon
NOON = DAY * 86_400.0 + 43_200.0
NEG = -math.inf
ANALYSTS = {"count": 1, "productive_hours_per_day": 6, "minutes_per_alert": 10}


def host_days(benign: list[float], malicious: list[float], queries: list[int]) -> HostDays:
    return HostDays(
        max_benign=np.array(benign, dtype=np.float64),
        max_malicious=np.array(malicious, dtype=np.float64),
        benign_queries=np.array(queries, dtype=np.int64),
    )


# --- the figures on hand-built host-days -------------------------------------------------------


def test_two_hosts_one_benign_alert_one_malicious() -> None:
    # Host a: a benign name at 0.9 (false positive). Host b: a blocklisted name at 0.8 and a
    # benign one at 0.1 (a true alert). 100 benign queries each; V = 2,000 -> 20 hosts a day.
    hosts = host_days([0.9, 0.1], [NEG, 0.8], [100, 100])
    metrics = host_metrics(hosts, threshold=0.5, benign_events_per_day=2_000.0)
    assert metrics["host_days"] == 2
    assert metrics["hosts_per_day"] == pytest.approx(20.0)
    assert metrics["host_fpr"] == pytest.approx(0.5)
    assert metrics["host_alerts_per_day"] == pytest.approx(20.0)  # both hosts alert
    assert metrics["host_fp_per_day"] == pytest.approx(10.0)
    upper = beta.ppf(0.95, 2, 1)  # 1 false positive of 2
    assert metrics["host_fpr_upper95"] == pytest.approx(upper)
    assert metrics["host_fp_per_day_upper95"] == pytest.approx(upper * 20.0)
    assert metrics["host_fp_per_day_resolvable"] == 0.0  # 2 host-days < 3 x 20


def test_a_benign_alert_beside_a_missed_malicious_name_is_a_false_positive_host() -> None:
    # The analyst sees only the alerting names: all benign, so a false positive.
    hosts = host_days([0.7], [0.3], [10])
    metrics = host_metrics(hosts, threshold=0.5, benign_events_per_day=10.0)
    assert metrics["host_fpr"] == 1.0
    # ... and a host whose alerting names include a blocklisted one is not.
    hosts = host_days([0.7], [0.6], [10])
    assert host_metrics(hosts, threshold=0.5, benign_events_per_day=10.0)["host_fpr"] == 0.0


def test_the_threshold_is_inclusive_and_nothing_alerts_above_every_score() -> None:
    hosts = host_days([0.5, 0.2], [NEG, NEG], [1, 1])
    at = host_metrics(hosts, threshold=0.5, benign_events_per_day=2.0)
    above = host_metrics(hosts, threshold=0.51, benign_events_per_day=2.0)
    assert at["host_fpr"] == 0.5 and above["host_fpr"] == 0.0
    assert above["host_alerts_per_day"] == 0.0
    assert above["host_fpr_upper95"] == pytest.approx(1 - 0.05 ** (1 / 2))


def test_scaling_to_the_site_volume_is_the_documented_example() -> None:
    # docs/metrics.md: n = 6 host-days on 2 days, FPh = 1, Ah = 2, sum b = 600, V = 3,000.
    hosts = host_days([0.9, 0.1, 0.1, 0.1, 0.1, 0.1], [NEG, 0.8, NEG, NEG, NEG, NEG], [100] * 6)
    metrics = host_metrics(hosts, threshold=0.5, benign_events_per_day=3_000.0)
    assert metrics["hosts_per_day"] == pytest.approx(30.0)  # observed 3 a day, x 10
    assert metrics["host_fpr"] == pytest.approx(1 / 6)
    assert metrics["host_fp_per_day"] == pytest.approx(5.0)
    assert metrics["host_alerts_per_day"] == pytest.approx(10.0)
    assert metrics["host_fp_per_day_upper95"] == pytest.approx(30 * 0.5818, rel=1e-3)
    assert metrics["host_fp_per_day_resolvable"] == 0.0
    # The same hosts with 10x the queries each: a tenth of the hosts a day at the same V.
    busy = host_days([0.9] + [0.1] * 5, [NEG, 0.8] + [NEG] * 4, [1_000] * 6)
    assert host_metrics(busy, threshold=0.5, benign_events_per_day=3_000.0)[
        "hosts_per_day"
    ] == pytest.approx(3.0)


def test_resolvable_when_the_test_days_hold_three_site_days_of_hosts() -> None:
    # H = n x V / sum b: n >= 3H exactly when sum b >= 3V (three days of the site's volume).
    hosts = host_days([0.1] * 30, [NEG] * 30, [10] * 30)
    assert (
        host_metrics(hosts, threshold=0.5, benign_events_per_day=100.0)[
            "host_fp_per_day_resolvable"
        ]
        == 1.0
    )
    assert (
        host_metrics(hosts, threshold=0.5, benign_events_per_day=101.0)[
            "host_fp_per_day_resolvable"
        ]
        == 0.0
    )


def test_without_a_client_column_every_host_figure_is_nan_never_invented() -> None:
    metrics = host_metrics(None, threshold=0.5, benign_events_per_day=1e6)
    assert set(metrics) == set(HOST_METRICS)
    assert all(math.isnan(value) for value in metrics.values())
    # nan never leaves the site, whatever the level.
    assert not set(share_subset(metrics, level="rates+volumes"))


def test_only_malicious_host_days_have_no_volume_scale() -> None:
    metrics = host_metrics(host_days([NEG], [0.9], [0]), threshold=0.5, benign_events_per_day=1.0)
    assert math.isnan(metrics["hosts_per_day"]) and math.isnan(metrics["host_fp_per_day"])
    assert metrics["host_fpr"] == 0.0 and metrics["host_fp_per_day_resolvable"] == 0.0


# --- what leaves the site ----------------------------------------------------------------------

SENT = {
    "host_days": 6.0,
    "hosts_per_day": 30.0,
    "host_alerts_per_day": 10.0,
    "host_fpr": 1 / 6,
    "host_fpr_upper95": 0.5818,
    "host_fp_per_day": 5.0,
    "host_fp_per_day_upper95": 17.45,
    "host_fp_per_day_resolvable": 0.0,
    "fp_per_day": 12.0,
    "fpr": 0.001,
}
VOLUMES = {
    "host_days",
    "hosts_per_day",
    "host_alerts_per_day",
    "host_fp_per_day",
    "host_fp_per_day_upper95",
}


@pytest.mark.parametrize("level", ["none", "aggregate", "rates", "rates+volumes"])
def test_host_figures_leave_as_the_per_domain_fp_per_day_does(level: str) -> None:
    sent = share_subset(SENT, level=level)
    hosts = {key for key in sent if key.startswith("host")}
    if level in ("none", "aggregate"):
        assert not hosts
    elif level == "rates":
        assert "fp_per_day" not in sent and "fpr" in sent
        assert hosts == {"host_fpr", "host_fpr_upper95", "host_fp_per_day_resolvable"}
    else:
        assert "fp_per_day" in sent
        assert hosts == {key for key in SENT if key.startswith("host")}
        assert sent["host_fpr"] == 0.17  # 2 significant figures, as every sent value


def test_the_masked_sum_carries_host_rates_never_host_counts() -> None:
    from common.share import FEDERATION_KEYS

    values, valid = masked_figures(SENT)
    carried = {key for key, flag in zip(FEDERATION_KEYS, valid, strict=True) if flag}
    assert {"host_fpr", "host_fpr_upper95"} <= carried
    assert not carried & VOLUMES
    assert values[FEDERATION_KEYS.index("host_fpr")] == pytest.approx(0.17)


def _results(sites: dict[str, dict]) -> dict:
    return {
        "config": {"mode": "fedavg", "num-rounds": 1},
        "rounds": [
            {
                "round": 1,
                "train": {"status": "ok", "results": len(sites), "failures": 0},
                "aggregate": {"failures": 0},
                "sites": sites,
                "seconds": {"train": 1.0, "evaluate": 1.0, "total": 2.0},
            }
        ],
    }


def test_federation_report_ranks_what_sites_send_and_marks_unresolvable_host_fp() -> None:
    at_volumes = share_subset(SENT, level="rates+volumes")
    resolvable = at_volumes | {"host_fp_per_day_resolvable": 1.0, "host_fp_per_day": 2.0}
    report = build_federation_report(
        _results(
            {
                "a": at_volumes,
                "b": resolvable,
                "c": share_subset(SENT, level="rates"),
            }
        )
    )
    assert metric_direction("host_fp_per_day_upper95") == "lower"
    assert metric_direction("host_fpr") == "lower"
    assert metric_direction("hosts_per_day") is None
    headline = report["headline"]["host_fp_per_day_upper95"]
    assert headline["not_shared"] == ["c"]  # site c shares rates only
    assert headline["spread"]["sites"] == 2
    last = report["last_round"]
    assert "host_fp_per_day" in last["not_resolvable"]["a"]
    assert "host_fp_per_day" not in last["not_resolvable"].get("b", [])
    page = render_federation_html(report)
    assert "False-positive hosts per day (upper 95%)" in page
    assert "Not sent (host_fp_per_day_upper95): c" in page


# --- reading hosts from records ------------------------------------------------------------------


def labelled_names(names: list[str], labels: list[int], scores: list[float]) -> LabelledNames:
    order = np.argsort(names)
    domains = np.array(names, dtype=object)[order]
    test = Examples(
        domains=domains,
        labels=np.array(labels, dtype=np.int8)[order],
        families=np.array(["x" if label else "" for label in labels], dtype=object)[order],
        query_counts=np.ones(len(names), dtype=np.int64),
        registered=domains,
    )
    return LabelledNames(test, np.array(scores, dtype=np.float64)[order], 0, 0)


NAMES = labelled_names(
    ["shop.example.com", "news.example.org", "qxzvbk.biz", "jkwpq.info"],
    [0, 0, 1, 1],
    [0.9, 0.1, 0.8, 0.2],
)


def records(rows: list[tuple[float, str | None, str | None]]) -> pa.Table:
    ts, hosts, queries = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table(
        {
            "ts": pa.array(ts, pa.float64()),
            "query": pa.array(queries, pa.string()),
            CLIENT_COLUMN: pa.array(hosts, pa.string()),
            "line": pa.array(range(1, len(rows) + 1), pa.int64()),
        }
    )


ROWS = [
    (NOON, "10.0.0.1", "Shop.Example.com."),  # host 1: the benign alert (other spelling)
    (NOON + 1, "10.0.0.1", "news.example.org"),
    (NOON + 2, "10.0.0.1", "news.example.org"),
    (NOON, "10.0.0.2", "qxzvbk.biz"),  # host 2: a malicious alert and a benign name
    (NOON + 3, "10.0.0.2", "news.example.org"),
    (NOON, "10.0.0.3", "jkwpq.info"),  # host 3: a malicious name below 0.5 only
    (NOON + 86_400, "10.0.0.1", "shop.example.com"),  # host 1 again, a second day
    (NOON, "10.0.0.4", "not-in-the-test-set.net"),  # not a labelled name: no host-day
    (NOON, None, "shop.example.com"),  # no client: counted apart
    (NOON - 86_400, "10.0.0.9", "shop.example.com"),  # a training day: ignored
]
EXPECTED = {  # (day, host) -> (max benign, max malicious, benign queries)
    (DAY, "10.0.0.1"): (0.9, NEG, 3),
    (DAY, "10.0.0.2"): (0.1, 0.8, 1),
    (DAY, "10.0.0.3"): (NEG, 0.2, 0),
    (DAY + 1, "10.0.0.1"): (0.9, NEG, 1),
}


def as_rows(hosts: HostDays) -> list[tuple]:
    return sorted(
        zip(
            hosts.max_benign.tolist(),
            hosts.max_malicious.tolist(),
            hosts.benign_queries.tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("flush_rows", [1, 1 << 20])
def test_the_streamed_host_pass_reduces_records_to_host_days(flush_rows: int) -> None:
    hosts = HostPass(NAMES, days=[DAY, DAY + 1], flush_rows=flush_rows)
    for start in range(0, len(ROWS), 3):  # several blocks: merged across them
        hosts.add(records(ROWS[start : start + 3]))
    result = hosts.host_days()
    assert as_rows(result) == sorted(EXPECTED.values())
    assert hosts.records_without_client == 1
    metrics = host_metrics(result, threshold=0.5, benign_events_per_day=50.0)
    # 4 host-days, 2 false positives (host 1 on both days), 3 alerting; H = 4 x 50 / 5 = 40.
    assert metrics["hosts_per_day"] == pytest.approx(40.0)
    assert metrics["host_fpr"] == pytest.approx(0.5)
    assert metrics["host_alerts_per_day"] == pytest.approx(30.0)


def test_records_whose_client_field_is_empty_throughout_give_no_host_figures() -> None:
    hosts = HostPass(NAMES, days=[DAY])
    hosts.add(records([(ts, None, query) for ts, _, query in ROWS]))
    hosts.add(records([(NOON, "", "shop.example.com")]))
    assert hosts.host_days() is None


def test_a_csv_log_without_a_client_column_says_so(tmp_path: Path) -> None:
    from client.quarantine import Quarantine

    csv = parse_site_config(
        {
            "site_id": "acme",
            "logs": {"paths": ["logs/*.csv"], "format": "csv"},
            "deployment": {"benign_events_per_day": 1e6, "base_rate": 1e-3},
            "analysts": ANALYSTS,
        },
        source="site.toml",
    )
    log = tmp_path / "dns.csv"
    log.write_text(f"ts,query\n{NOON},shop.example.com\n{NOON + 1},qxzvbk.biz\n")
    with Quarantine(tmp_path / "quarantine") as quarantine:
        view = read_host_days([log], NAMES, config=csv, days=[DAY], quarantine=quarantine)
    assert view.host_days is None and view.reason == NO_CLIENT_COLUMN
    assert view.records_without_client == 2 and view.test_days == 1  # counted, not judged
    # The same file with a client column mapped under another name has host-days.
    log.write_text(f"ts,query,client\n{NOON},shop.example.com,10.0.0.1\n")
    mapped = csv.model_copy(
        update={"logs": csv.logs.model_copy(update={"columns": {CLIENT_COLUMN: "client"}})}
    )
    with Quarantine(tmp_path / "quarantine") as quarantine:
        view = read_host_days([log], NAMES, config=mapped, days=[DAY], quarantine=quarantine)
    assert as_rows(view.host_days) == [(0.9, NEG, 1)]


def test_a_rounds_pairs_give_the_same_host_days_as_the_stream() -> None:
    table = records(ROWS)
    names, _ = normalise_domain_array(table["query"])
    days = tuple(str(np.datetime64(day, "D")) for day in (DAY, DAY + 1))
    incidence = host_incidence(table, names, test=NAMES.test, test_days=days)
    assert incidence.host_days == 4 and incidence.records_without_client == 1
    hosts = host_days_at(incidence, scores=NAMES.scores, labels=NAMES.test.labels)
    assert as_rows(hosts) == sorted(EXPECTED.values())
    # Without the client column the round has no pairs.
    assert (
        host_incidence(table.drop([CLIENT_COLUMN]), names, test=NAMES.test, test_days=days) is None
    )


def test_day_index_puts_noon_on_its_day() -> None:
    assert day_index(pa.array([NOON])).to_pylist() == [DAY]


# --- the site report ------------------------------------------------------------------------------


def _site(test: Examples) -> SiteData:
    config = parse_site_config(
        {
            "site_id": "acme",
            "logs": {"paths": ["logs/*.log"]},
            "deployment": {"benign_events_per_day": 50.0, "base_rate": 0.01},
            "operating": {"target_fpr": 0.5},
            "analysts": ANALYSTS,
        },
        source="site.toml",
    )
    empty = Examples(
        domains=np.array([], dtype=object),
        labels=np.array([], dtype=np.int8),
        families=np.array([], dtype=object),
        query_counts=np.array([], dtype=np.int64),
        registered=np.array([], dtype=object),
    )
    return SiteData(
        site_id="acme",
        site_dir=Path("/nonexistent"),
        config=config,
        train=empty,
        test=test,
        train_days=("2024-10-06",),
        test_days=("2024-10-07", "2024-10-08"),
        train_families=frozenset(),
        intel_only=empty,
    )


@pytest.mark.parametrize("with_hosts", [True, False])
def test_the_site_report_shows_host_figures_beside_the_per_domain_ones(
    tmp_path: Path, with_hosts: bool
) -> None:
    hosts = HostView(
        host_days=host_days([0.9, 0.1, NEG, 0.9], [NEG, 0.8, 0.2, NEG], [3, 1, 0, 1]),
        test_days=2,
    )
    view = hosts if with_hosts else HostView(host_days=None, reason=NO_CLIENT_COLUMN)
    written = site_fragility_report(
        data=_site(NAMES.test),
        intel_only=None,
        test_scores=NAMES.scores,
        train_scores=np.array([0.1, 0.2]),
        intel_only_scores=None,
        server_round=1,
        work_dir=tmp_path,
        hosts=view,
    )
    report = json.loads(written.json_path.read_text())
    block, page = report["hosts"], written.html_path.read_text()
    assert block["per_domain"]["fp_per_day"] == report["metrics"]["fp_per_day"]
    if with_hosts:
        # target FPR 0.5: tau = 0.2 flags one benign name of two (0.9) and both blocklisted
        # ones, so every host-day alerts and the two with only the 0.9 benign name are FPs.
        assert report["metrics"]["threshold"] == pytest.approx(0.2)
        assert block["available"] and block["false_positive_host_days"] == 2
        assert block["alerting_host_days"] == 4
        assert report["metrics"]["host_fpr"] == pytest.approx(0.5)
        assert block["observed_hosts_per_day"] == 2.0
        # 5 benign queries on 2 days: V = 50 is 20x that, so 2 hosts a day become 40.
        assert block["scale_to_site_volume"] == pytest.approx(20.0)
        assert report["metrics"]["hosts_per_day"] == pytest.approx(40.0)
        assert report["metrics"]["host_fp_per_day"] == pytest.approx(20.0)
        assert "Per host" in page and "not resolvable: 4 host-days" in page
    else:
        assert not block["available"] and block["reason"] == NO_CLIENT_COLUMN
        assert all(report["metrics"][key] is None for key in HOST_METRICS)
        assert "Host figures: n/a (no client column)" in host_section(report)
        assert not any(key.startswith("host") for key in report["share"]["sent"])


# --- `fedsec evaluate` on a generated site --------------------------------------------------------


@pytest.mark.slow
def test_fedsec_evaluate_reports_the_host_view_of_a_generated_site(tmp_path: Path) -> None:
    from client.hosts import round_host_view
    from client.local import SPEC, evaluate_round
    from client.pipeline import log_files, prepare_site
    from client.quarantine import Quarantine
    from client.readers import READERS
    from client.site import load_site_config
    from common.model import ModelSpec, build_model, model_to_ndarrays
    from common.run_config import RunSettings
    from experiments.generator import generate_sites

    site = generate_sites(out_dir=tmp_path / "sites", n_sites=1, n_days=2, seed=5, scale=0.03)[0]
    result = evaluate_site(build_model(ModelSpec(), seed=0), site, out=tmp_path / "out")
    lines = summary_lines(result)
    assert any(
        line.startswith("hosts: ") and "hosts/day at the site's volume" in line for line in lines
    )
    assert any(line.startswith("per host at threshold") for line in lines)
    # Brute force from the test day's log: every (host, labelled name) the file holds.
    labelled = result.labelled
    score_of = dict(zip(labelled.test.domains.tolist(), labelled.scores.tolist(), strict=True))
    label_of = dict(zip(labelled.test.domains.tolist(), labelled.test.labels.tolist(), strict=True))
    expected: dict[str, list] = {}
    config = load_site_config(site)
    for path in log_files(site, config):
        table, _ = READERS[config.logs.format](
            path,
            quarantine=Quarantine(tmp_path / "quarantine"),
            columns=("ts", "query", CLIENT_COLUMN),
            mapping=None,
        )
        days = [str(np.datetime64(int(d), "D")) for d in day_index(table["ts"]).to_pylist()]
        names, _ = normalise_domain_array(table["query"])
        for day, host, name in zip(
            days, table[CLIENT_COLUMN].to_pylist(), names.to_pylist(), strict=True
        ):
            if day not in result.test_days or name not in score_of or not host:
                continue
            row = expected.setdefault(f"{day} {host}", [NEG, NEG, 0])
            if label_of[name] == 1:
                row[1] = max(row[1], score_of[name])
            else:
                row[0], row[2] = max(row[0], score_of[name]), row[2] + 1
    assert as_rows(result.hosts.host_days) == sorted(tuple(row) for row in expected.values())
    report = json.loads(result.report.json_path.read_text())
    metrics = report["metrics"]
    assert metrics["host_days"] == len(expected) > 10
    volume = report["operating_point"]["benign_events_per_day"]
    assert metrics["hosts_per_day"] == pytest.approx(
        len(expected) * volume / sum(row[2] for row in expected.values())
    )
    assert report["hosts"]["available"] and report["hosts"]["test_days"] == 1
    # A federated round reads the same logs once (prepare_site) and keeps the pairs.
    prepared = prepare_site(site, work_dir=tmp_path / "work")
    test = prepared.require_data().test
    round_view = round_host_view(
        prepared.test_hosts, scores=np.zeros(len(test)), labels=test.labels, test_days=1
    )
    assert 0 < len(round_view.host_days) <= len(expected)
    written = evaluate_round(
        prepared,
        global_arrays=model_to_ndarrays(build_model(SPEC, seed=0)),
        settings=RunSettings(),
        server_round=1,
    )
    round_report = json.loads(written.json_path.read_text())
    assert round_report["hosts"]["available"]
    assert round_report["metrics"]["host_days"] == prepared.test_hosts.host_days
