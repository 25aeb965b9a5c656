"""Data quality figures on hand-written logs with known defects, and the quality gate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from client.domains import normalise_domain_array
from client.dqa import (
    DqaReport,
    QualityGateError,
    enforce_quality_gate,
    label_figures,
    quality_gate,
    read_figures,
    split_figures,
)
from client.pipeline import RecordingQuarantine
from client.readers import READERS
from client.site import Intel
from common.config import DqaConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "readers"
COLUMNS = ("ts", "query", "uid", "id.orig_h", "qtype_name")


@pytest.fixture()
def report(tmp_path: Path) -> DqaReport:
    """dqa-a.log (2024-03-01) and dqa-b.log (2024-03-03); the defects are listed in the tests."""
    quarantine = RecordingQuarantine(tmp_path / "quarantine")
    stats, tables = [], []
    for name in ("dqa-a.log", "dqa-b.log"):
        table, read = READERS["zeek-tsv"](FIXTURES / name, quarantine=quarantine, columns=COLUMNS)
        stats.append(read)
        tables.append(table.append_column("file", pa.array([read.path] * table.num_rows)))
    quarantine.close()
    records = pa.concat_tables(tables)
    records = records.append_column("name", normalise_domain_array(records["query"])[0])
    read = read_figures(stats=stats, records=records, quarantined=quarantine.lines)
    intel = Intel(
        blocklist={"f.example": "fam1", "g.example": "fam2", "a.example": "x"},
        allowlist=frozenset({"a.example", "b.example"}),
    )
    labels = label_figures(records["name"].drop_null().to_pylist(), intel.lookup)
    split = split_figures(
        train_labels=np.array([1, 0, 0, 1]),
        train_registered=["x.com", "y.com", "z.com", "w.com"],
        test_labels=np.array([1, 0, 0]),
        test_registered=["x.com", "q.com", "r.com"],
    )
    return DqaReport(read=read, labels=labels, split=split)


def test_per_file_figures(report: DqaReport) -> None:
    first, second = report.read.files
    assert (first.lines_read, first.header_lines, first.records) == (17, 9, 7)
    assert first.quarantined == {"too-few-fields": 1}  # line 14
    assert first.invalid_domains == 1  # 'bad..name', line 15
    assert first.duplicates == 1  # line 11 repeats line 10
    assert first.out_of_order == 1  # line 12: 90 s before line 10; line 13 (10 s) is tolerated
    assert (first.first_ts, first.last_ts) == (1709251200.0, 1709262001.0)
    assert (second.lines_read, second.header_lines, second.records) == (13, 9, 3)
    assert second.quarantined == {"bad-timestamp": 1}  # line 10
    assert second.duplicates == 1  # line 11 repeats dqa-a.log line 9 (overlapping rotation)
    assert second.out_of_order == 1  # line 11 is two days behind line 9


def test_per_day_figures_and_missing_days(report: DqaReport) -> None:
    first, third = report.read.days
    assert first.day == "2024-03-01" and third.day == "2024-03-03"
    assert (first.records, first.invalid_domains, first.duplicates, first.out_of_order) == (
        8,
        1,
        2,
        2,
    )
    assert first.quarantined == {"too-few-fields": 1} and first.distinct_names == 5
    # 1709251300 -> 1709262000 and 1709262001 -> 1709424000 both start on March 1st
    assert first.gaps == 2 and first.longest_gap_seconds == 161_999.0
    assert (third.records, third.quarantined, third.duplicates, third.gaps) == (
        2,
        {"bad-timestamp": 1},
        0,
        0,
    )
    assert report.read.missing_days == ("2024-03-02",)


def test_rates_labels_and_split(report: DqaReport) -> None:
    assert report.malformed_rate == 3 / 12  # 2 quarantined + 1 invalid name of 12 data lines
    assert report.duplicate_rate == 2 / 10 and report.out_of_order_rate == 2 / 10
    assert (
        report.labels.names,
        report.labels.blocklisted,
        report.labels.allowlisted,
        report.labels.unlisted,
        report.labels.conflicts,
    ) == (7, 2, 1, 3, 1)
    assert report.labels.coverage == 3 / 7 and report.label_conflict_rate == 1 / 7
    assert (
        report.split.train_positives,
        report.split.train_negatives,
        report.split.test_positives,
        report.split.test_negatives,
    ) == (2, 2, 1, 2)
    assert report.leakage_rate == 1 / 3
    metrics = report.metrics()
    assert {"malformed_rate", "duplicate_rate", "label_conflict_rate", "leakage_rate"} <= set(
        metrics
    )
    assert report.to_dict()["metrics"] == metrics


def test_quality_gate_names_every_failure(report: DqaReport) -> None:
    reasons = quality_gate(report)
    assert [reason.split(" ")[0] for reason in reasons] == [
        "malformed_rate",
        "duplicate_rate",
        "out_of_order_rate",
        "label_conflict_rate",
        "leakage_rate",
        "train_positives",
        "train_negatives",
    ]  # one missing day is allowed
    assert "0.25 is above the limit 0.05" in reasons[0]
    lenient = DqaConfig(
        max_malformed_rate=0.3,
        max_duplicate_rate=0.3,
        max_out_of_order_rate=0.3,
        max_missing_days=0,
        max_label_conflict_rate=0.2,
        max_leakage_rate=0.5,
        min_train_positives=2,
        min_train_negatives=2,
    )
    assert [reason.split(" ")[0] for reason in quality_gate(report, lenient)] == ["missing_days"]


def test_gate_stops_training_with_its_message(report: DqaReport) -> None:
    with pytest.raises(QualityGateError) as error:
        enforce_quality_gate(report, site_id="acme-eu")
    message = str(error.value)
    assert message.startswith("acme-eu refuses to train")
    assert "duplicate_rate 0.2 is above the limit 0.1" in message
    enforce_quality_gate(
        report,
        DqaConfig(
            max_malformed_rate=1,
            max_duplicate_rate=1,
            max_out_of_order_rate=1,
            max_missing_days=9,
            max_label_conflict_rate=1,
            max_leakage_rate=1,
            min_train_positives=0,
            min_train_negatives=0,
        ),
        site_id="acme-eu",
    )


def test_empty_logs_and_unlabelled_report() -> None:
    empty = pa.table(
        {
            "file": pa.array([], pa.string()),
            "line": pa.array([], pa.int64()),
            "ts": pa.array([], pa.float64()),
            "query": pa.array([], pa.string()),
            "name": pa.array([], pa.string()),
        }
    )
    read = read_figures(stats=[], records=empty)
    report = DqaReport(read=read)
    assert report.malformed_rate == 0.0 and math.isnan(report.leakage_rate)
    assert read.days == () and read.missing_days == ()
    assert quality_gate(report) == ["the logs hold no data lines (check [logs] paths)"]
