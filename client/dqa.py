"""Data quality of a site's logs: per-file and per-day figures, labels, split, and the gate.

Pure: figures come from the readers' :class:`ReadStats`, a table of parsed records and the
labels/split the caller made; nothing here touches files. Definitions (exact, tested):

- ``malformed_rate`` = (quarantined data lines + records with an invalid name) / data lines,
  where data lines = lines read - header lines;
- ``duplicate_rate`` = records equal to an earlier record on the key columns present among
  ``ts, query, uid, id.orig_h, qtype_name`` (overlapping rotations, double ingestion) / records;
- out of order: a record whose ts is more than ``reorder_tolerance_seconds`` before the
  latest ts earlier in its file (Zeek logs a query when it completes, so a little is normal);
- gap: more than ``gap_seconds`` between consecutive records (all files), counted on the
  UTC day it starts; a missing day is a UTC day between the first and last with no record;
- quarantined lines count on the day of the nearest earlier record of their file (else the
  nearest later one);
- ``label_conflict_rate`` = distinct names both block- and allowlisted at the same level /
  distinct valid names; coverage = listed names / distinct valid names;
- ``leakage_rate`` = test examples whose registered domain is also a training example's /
  test examples (the time split must keep it at 0);
- verdicts: names counted by their latest verdict; a contradiction is a name judged malicious
  that the intel allowlists, or judged benign that it blocklists, exactly or by registered
  domain as :meth:`client.site.Intel.lookup` resolves it. Local figures only (``dqa_*``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.domains import registered_domain
from client.readers import ReadStats
from common.config import DqaConfig

SECONDS_PER_DAY = 86_400
DUPLICATE_KEY = ("ts", "query", "uid", "id.orig_h", "qtype_name")
GAP_SECONDS = DqaConfig().gap_seconds
REORDER_TOLERANCE_SECONDS = DqaConfig().reorder_tolerance_seconds
DEFAULT_GATE = DqaConfig()
QuarantinedLine = tuple[str, int, str]  # (file, line, reason)


@dataclass(frozen=True)
class FileFigures:
    path: str
    lines_read: int
    header_lines: int
    records: int
    quarantined: dict[str, int]
    invalid_domains: int
    duplicates: int
    out_of_order: int
    first_ts: float | None
    last_ts: float | None
    compressed_stream_truncated: bool


@dataclass(frozen=True)
class DayFigures:
    day: str  # YYYY-MM-DD, UTC
    records: int
    quarantined: dict[str, int]
    invalid_domains: int
    duplicates: int
    out_of_order: int
    gaps: int
    longest_gap_seconds: float
    distinct_names: int


@dataclass(frozen=True)
class ReadFigures:
    files: tuple[FileFigures, ...]
    days: tuple[DayFigures, ...]
    missing_days: tuple[str, ...]

    def total(self, name: str) -> int:
        return sum(getattr(figures, name) for figures in self.files)

    @property
    def quarantined(self) -> dict[str, int]:
        counts: Counter = Counter()
        for figures in self.files:
            counts.update(figures.quarantined)
        return dict(counts)

    @property
    def data_lines(self) -> int:
        return self.total("lines_read") - self.total("header_lines")


@dataclass(frozen=True)
class LabelFigures:
    names: int
    blocklisted: int
    allowlisted: int
    unlisted: int
    conflicts: int

    @property
    def coverage(self) -> float:
        return _ratio(self.blocklisted + self.allowlisted, self.names)


@dataclass(frozen=True)
class SplitFigures:
    train_positives: int
    train_negatives: int
    test_positives: int
    test_negatives: int
    leaked_test_examples: int

    @property
    def leakage_rate(self) -> float:
        return _ratio(self.leaked_test_examples, self.test_positives + self.test_negatives)


@dataclass(frozen=True)
class IntelFigures:
    """One intel list's accounting: lines_read == skipped + entries + sum(quarantined)."""

    kind: str  # blocklist or allowlist
    path: str
    lines_read: int
    skipped: int  # blank, comment or header lines
    entries: int  # lines that gave a name
    quarantined: dict[str, int]

    @property
    def invalid(self) -> int:
        return sum(self.quarantined.values())


@dataclass(frozen=True)
class VerdictFigures:
    """The analysts' verdict file as training read it; counts of names unless said otherwise."""

    path: str
    lines_read: int
    quarantined: int  # lines
    malicious: int
    benign: int
    unsure: int
    contradict_allowlist: int  # judged malicious, allowlisted
    contradict_blocklist: int  # judged benign, blocklisted
    not_in_logs: int  # judged malicious or benign, never queried in the logs
    trained: int  # training examples a verdict labels
    withheld: int  # judged names kept out of training (test side or held out)

    @property
    def contradict_intel(self) -> int:
        return self.contradict_allowlist + self.contradict_blocklist


@dataclass(frozen=True)
class DqaReport:
    read: ReadFigures
    labels: LabelFigures | None = None
    split: SplitFigures | None = None
    notes: tuple[str, ...] = field(default=())
    intel: tuple[IntelFigures, ...] = field(default=())
    skipped_paths: tuple[str, ...] = field(default=())  # glob matches that are not files
    verdicts: VerdictFigures | None = None

    @property
    def malformed_rate(self) -> float:
        bad = sum(self.read.quarantined.values()) + self.read.total("invalid_domains")
        return _ratio(bad, self.read.data_lines)

    @property
    def duplicate_rate(self) -> float:
        return _ratio(self.read.total("duplicates"), self.read.total("records"))

    @property
    def out_of_order_rate(self) -> float:
        return _ratio(self.read.total("out_of_order"), self.read.total("records"))

    @property
    def label_conflict_rate(self) -> float:
        return math.nan if self.labels is None else _ratio(self.labels.conflicts, self.labels.names)

    @property
    def leakage_rate(self) -> float:
        return math.nan if self.split is None else self.split.leakage_rate

    def metrics(self) -> dict[str, float]:
        """For the fragility report: the four shared rates, then local-only ``dqa_*`` figures."""
        return {
            "malformed_rate": self.malformed_rate,
            "duplicate_rate": self.duplicate_rate,
            "label_conflict_rate": self.label_conflict_rate,
            "leakage_rate": self.leakage_rate,
            "dqa_out_of_order_rate": self.out_of_order_rate,
            "dqa_missing_days": float(len(self.read.missing_days)),
            "dqa_label_coverage": math.nan if self.labels is None else self.labels.coverage,
            **self.verdict_metrics(),
        }

    def verdict_metrics(self) -> dict[str, float]:
        """The verdict figures as ``dqa_verdicts_*``: never in the share policy's allow-list,
        so they stay in the site's own report at every share level."""
        if self.verdicts is None:
            return {}
        figures = self.verdicts
        return {
            f"dqa_verdicts_{key}": float(getattr(figures, key)) for key in VERDICT_METRIC_FIELDS
        }

    def to_dict(self) -> dict:
        return asdict(self) | {"metrics": self.metrics()}


VERDICT_METRIC_FIELDS = (
    "malicious",
    "benign",
    "unsure",
    "contradict_intel",
    "quarantined",
    "not_in_logs",
)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def label_figures(
    names: Sequence[str], lookup: Callable[[str, str], tuple[str, str]]
) -> LabelFigures:
    """Intel hits over distinct valid names; ``lookup(name, registered) -> (label, family)``
    as :meth:`client.site.Intel.lookup` (label dga, benign, unlisted or conflict)."""
    labels = Counter(lookup(name, registered_domain(name))[0] for name in set(names))
    return LabelFigures(
        names=len(set(names)),
        blocklisted=labels["dga"],
        allowlisted=labels["benign"],
        unlisted=labels["unlisted"],
        conflicts=labels["conflict"],
    )


def verdict_contradictions(
    labels: Mapping[str, str], lookup: Callable[[str, str], tuple[str, str]]
) -> dict[str, str]:
    """name -> the intel label its verdict contradicts ('benign' under a malicious verdict,
    'dga' under a benign one); the names are the site's own, for its own screen only."""
    found = {}
    for name, verdict in labels.items():
        intel = lookup(name, registered_domain(name))[0]
        if (verdict, intel) in (("malicious", "benign"), ("benign", "dga")):
            found[name] = intel
    return found


def verdict_figures(
    *,
    path: str,
    lines_read: int,
    quarantined: int,
    counts: Mapping[str, int],
    contradictions: Mapping[str, str],
    labelled: Sequence[str],
    logged: Set[str],
    trained: int,
) -> VerdictFigures:
    """Counts over names by latest verdict (`counts`: verdict -> names, unsure included);
    `labelled`: the names judged malicious or benign; `logged`: every name of the logs."""
    return VerdictFigures(
        path=path,
        lines_read=lines_read,
        quarantined=quarantined,
        malicious=int(counts.get("malicious", 0)),
        benign=int(counts.get("benign", 0)),
        unsure=int(counts.get("unsure", 0)),
        contradict_allowlist=sum(label == "benign" for label in contradictions.values()),
        contradict_blocklist=sum(label == "dga" for label in contradictions.values()),
        not_in_logs=sum(name not in logged for name in labelled),
        trained=trained,
        withheld=len(labelled) - trained,
    )


def split_figures(
    *,
    train_labels: np.ndarray,
    train_registered: Sequence[str],
    test_labels: np.ndarray,
    test_registered: Sequence[str],
) -> SplitFigures:
    """Class balance per side and test examples whose registered domain is also in training."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    seen = set(train_registered)
    return SplitFigures(
        train_positives=int((train_labels == 1).sum()),
        train_negatives=int((train_labels == 0).sum()),
        test_positives=int((test_labels == 1).sum()),
        test_negatives=int((test_labels == 0).sum()),
        leaked_test_examples=sum(name in seen for name in test_registered),
    )


def read_figures(
    *,
    stats: Sequence[ReadStats],
    records: pa.Table,
    quarantined: Sequence[QuarantinedLine] = (),
    gap_seconds: float = GAP_SECONDS,
    reorder_tolerance_seconds: float = REORDER_TOLERANCE_SECONDS,
) -> ReadFigures:
    """Per-file and per-day figures.

    ``records``: every parsed record with ``file`` (as in ``ReadStats.path``), ``line``,
    ``ts``, ``name`` (normalised, null when invalid) and any :data:`DUPLICATE_KEY` columns
    (``query`` is the raw name). ``quarantined``: the readers' bad lines, for per-day counts.
    """
    if not gap_seconds > 0 or reorder_tolerance_seconds < 0:
        raise ValueError("gap_seconds must be > 0 and reorder_tolerance_seconds >= 0")
    paths = [item.path for item in stats]
    order = pc.sort_indices(records, [("file", "ascending"), ("line", "ascending")])
    records = records.take(order)
    file_index = np.array(
        pc.index_in(records["file"], value_set=pa.array(paths, pa.string())).to_numpy(
            zero_copy_only=False
        ),
        dtype=np.int64,
    )
    ts = records["ts"].to_numpy()
    day = np.floor(ts / SECONDS_PER_DAY).astype(np.int64)
    invalid = pc.is_null(records["name"]).to_numpy(zero_copy_only=False)
    duplicate = _duplicates(records)
    late = _out_of_order(file_index, ts, tolerance=reorder_tolerance_seconds)
    files = tuple(
        FileFigures(
            path=item.path,
            lines_read=item.lines_read,
            header_lines=item.header_lines,
            records=item.records,
            quarantined=dict(item.quarantined),
            invalid_domains=int(invalid[file_index == index].sum()),
            duplicates=int(duplicate[file_index == index].sum()),
            out_of_order=int(late[file_index == index].sum()),
            first_ts=_extreme(ts[file_index == index], np.min),
            last_ts=_extreme(ts[file_index == index], np.max),
            compressed_stream_truncated=item.compressed_stream_truncated,
        )
        for index, item in enumerate(stats)
    )
    quarantine_days = _quarantine_days(
        quarantined, paths, file_index, records["line"].to_numpy(), day
    )
    days, missing = _days(
        records,
        day,
        ts,
        invalid=invalid,
        duplicate=duplicate,
        late=late,
        quarantine_days=quarantine_days,
        gap_seconds=gap_seconds,
    )
    return ReadFigures(files=files, days=days, missing_days=missing)


def _extreme(values: np.ndarray, reduce) -> float | None:
    return float(reduce(values)) if values.size else None


def _duplicates(records: pa.Table) -> np.ndarray:
    """True for a record equal (on the key columns present) to one earlier in file/line order."""
    key = [name for name in DUPLICATE_KEY if name in records.column_names]
    if records.num_rows == 0:
        return np.zeros(0, dtype=bool)
    position = pa.array(np.arange(records.num_rows))
    table = records.select(key).append_column("position", position)
    order = pc.sort_indices(table, [(name, "ascending") for name in [*key, "position"]])
    ordered = table.take(order)
    same = np.ones(records.num_rows - 1, dtype=bool)
    for name in key:
        column = ordered[name].combine_chunks()
        left, right = column[:-1], column[1:]
        equal = pc.fill_null(pc.equal(left, right), False)
        both_null = pc.and_(pc.is_null(left), pc.is_null(right))
        same &= pc.or_(equal, both_null).to_numpy(zero_copy_only=False)
    duplicate = np.zeros(records.num_rows, dtype=bool)
    duplicate[ordered["position"].to_numpy()[1:][same]] = True
    return duplicate


def _out_of_order(file_index: np.ndarray, ts: np.ndarray, *, tolerance: float) -> np.ndarray:
    late = np.zeros(ts.shape[0], dtype=bool)
    for index in np.unique(file_index):
        rows = np.flatnonzero(file_index == index)  # in line order already
        if rows.size < 2:
            continue
        latest_before = np.maximum.accumulate(ts[rows])[:-1]
        late[rows[1:]] = ts[rows[1:]] < latest_before - tolerance
    return late


def _quarantine_days(
    quarantined: Sequence[QuarantinedLine],
    paths: list[str],
    file_index: np.ndarray,
    lines: np.ndarray,
    day: np.ndarray,
) -> dict[int | None, Counter]:
    per_day: dict[int | None, Counter] = {}
    by_file = {path: np.flatnonzero(file_index == index) for index, path in enumerate(paths)}
    for path, line, reason in quarantined:
        rows = by_file.get(str(path), np.zeros(0, dtype=np.int64))
        where = int(np.searchsorted(lines[rows], line)) if rows.size else -1
        nearest = None if rows.size == 0 else rows[max(where - 1, 0)]
        key = None if nearest is None else int(day[nearest])
        per_day.setdefault(key, Counter())[reason] += 1
    return per_day


def _day_label(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def _days(
    records: pa.Table,
    day: np.ndarray,
    ts: np.ndarray,
    *,
    invalid: np.ndarray,
    duplicate: np.ndarray,
    late: np.ndarray,
    quarantine_days: dict[int | None, Counter],
    gap_seconds: float,
) -> tuple[tuple[DayFigures, ...], tuple[str, ...]]:
    order = np.argsort(ts, kind="stable")
    steps = np.diff(ts[order])
    gap_day = day[order][:-1]
    names = records["name"]
    result = []
    for value in sorted(set(day.tolist()) | {key for key in quarantine_days if key is not None}):
        rows = day == value
        gaps = steps[(gap_day == value) & (steps > gap_seconds)]
        distinct = len(pc.unique(names.filter(pa.array(rows)).drop_null())) if rows.any() else 0
        result.append(
            DayFigures(
                day=_day_label(value),
                records=int(rows.sum()),
                quarantined=dict(quarantine_days.get(value, {})),
                invalid_domains=int(invalid[rows].sum()),
                duplicates=int(duplicate[rows].sum()),
                out_of_order=int(late[rows].sum()),
                gaps=int(gaps.size),
                longest_gap_seconds=float(gaps.max()) if gaps.size else 0.0,
                distinct_names=distinct,
            )
        )
    if None in quarantine_days:
        result.append(
            DayFigures(
                day="unknown",
                records=0,
                quarantined=dict(quarantine_days[None]),
                invalid_domains=0,
                duplicates=0,
                out_of_order=0,
                gaps=0,
                longest_gap_seconds=0.0,
                distinct_names=0,
            )
        )
    seen = set(day.tolist())
    missing = (
        tuple(_day_label(value) for value in range(min(seen), max(seen) + 1) if value not in seen)
        if seen
        else ()
    )
    return tuple(result), missing


def quality_gate(report: DqaReport, thresholds: DqaConfig = DEFAULT_GATE) -> list[str]:
    """Why this site must not train (empty when it may); each reason names the figure and fix."""
    limits = thresholds
    reasons = []

    def above(name: str, value: float, limit: float, fix: str) -> None:
        if value > limit:
            reasons.append(f"{name} {value:.4g} is above the limit {limit:g} ({fix})")

    above(
        "malformed_rate",
        report.malformed_rate,
        limits.max_malformed_rate,
        "see the quarantine files for the bad lines; check [logs] format",
    )
    above(
        "duplicate_rate",
        report.duplicate_rate,
        limits.max_duplicate_rate,
        "a log file is probably listed twice or rotations overlap; check [logs] paths",
    )
    above(
        "out_of_order_rate",
        report.out_of_order_rate,
        limits.max_out_of_order_rate,
        "timestamps run backwards; check the sensor's clock and the log shipper",
    )
    above(
        "missing_days",
        len(report.read.missing_days),
        limits.max_missing_days,
        f"no records on {', '.join(report.read.missing_days[:5])}; add those days' logs",
    )
    if report.labels is not None:
        above(
            "label_conflict_rate",
            report.label_conflict_rate,
            limits.max_label_conflict_rate,
            "names on both the blocklist and the allowlist; fix the intel lists",
        )
    if report.split is not None:
        above(
            "leakage_rate",
            report.leakage_rate,
            limits.max_leakage_rate,
            "registered domains occur on both sides of the time split",
        )
        for side, value, limit in (
            ("train_positives", report.split.train_positives, limits.min_train_positives),
            ("train_negatives", report.split.train_negatives, limits.min_train_negatives),
        ):
            if value < limit:
                reasons.append(
                    f"{side} {value} is below the minimum {limit} (add log days or "
                    "intel: the training days need both classes)"
                )
    if report.read.data_lines == 0:
        reasons.append("the logs hold no data lines (check [logs] paths)")
    reasons.extend(unread_input(report))
    return reasons


def unread_input(report: DqaReport) -> list[str]:
    """Input the site was given but did not use: each is a reason not to train (no silent loss)."""
    reasons = [
        f"{path}: matches [logs] paths but is not a file, so nothing in it was read (fix: "
        "make logs.paths match only files, e.g. 'logs/*/dns.log*' for one folder per day)"
        for path in report.skipped_paths
    ]
    for item in report.read.files:
        reasons.extend(file_problems(item))
    for intel in report.intel:
        if intel.entries == 0 and intel.invalid:
            reasons.append(
                f"{intel.path}: every one of the {intel.invalid} entries of the {intel.kind} is "
                "invalid, so it labels nothing (fix: see the quarantine file for why; one "
                "domain per line" + (", then ',family'" if intel.kind == "blocklist" else "") + ")"
            )
    return reasons


def file_problems(item: FileFigures | ReadStats) -> list[str]:
    """Why one log file was not fully used: a cut gzip stream, or no line read as a record."""
    problems = []
    if item.compressed_stream_truncated:
        problems.append(
            f"{item.path}: the gzip stream is truncated or damaged after {item.lines_read} "
            "lines, so the rest of the file was not read (fix: copy the file again from "
            "the sensor, or remove it from the logs)"
        )
    data_lines = item.lines_read - item.header_lines
    if data_lines > 0 and item.records == 0:
        reasons = ", ".join(f"{reason} {count}" for reason, count in item.quarantined.items())
        problems.append(
            f"{item.path}: none of its {data_lines} data lines could be read ({reasons}), so "
            "its columns are not what the reader expects (fix: check [logs] format and "
            "columns, or the file's header)"
        )
    return problems


class QualityGateError(ValueError):
    """A site's logs fail its quality gate; the message says why and how to fix it."""


def enforce_quality_gate(
    report: DqaReport, thresholds: DqaConfig = DEFAULT_GATE, *, site_id: str
) -> None:
    """Raise :class:`QualityGateError` when the site must not train."""
    reasons = quality_gate(report, thresholds)
    if reasons:
        raise QualityGateError(
            f"{site_id} refuses to train: its logs fail the quality gate:\n"
            + "\n".join(f"  - {reason}" for reason in reasons)
        )
