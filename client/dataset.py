"""From a site's logs to labelled, time-split examples: one row per unique domain and side."""

from __future__ import annotations

import glob
import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.domains import normalise_domains, registered_domain
from client.quarantine import Quarantine
from client.readers import READERS
from client.site import SITE_FILE, Intel, load_intel, load_site_config
from common.config import ConfigError, SiteConfig

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Examples:
    """Unique domains with their intel label, family ('' when benign) and query counts."""

    domains: np.ndarray
    labels: np.ndarray
    families: np.ndarray
    query_counts: np.ndarray
    registered: np.ndarray

    def __len__(self) -> int:
        return int(self.domains.shape[0])

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


@dataclass(frozen=True)
class SiteData:
    site_id: str
    site_dir: Path
    config: SiteConfig
    train: Examples
    test: Examples
    train_days: tuple[str, ...]
    test_days: tuple[str, ...]
    train_families: frozenset[str]
    intel_only: Examples
    stats: dict[str, int] = field(default_factory=dict)


def log_files(site_dir: Path, config: SiteConfig) -> list[Path]:
    files = sorted({Path(p) for pattern in config.logs.paths
                    for p in glob.glob(str(site_dir / pattern)) if Path(p).is_file()})
    if not files:
        raise ConfigError(
            f"{site_dir / SITE_FILE}: field logs.paths: no file matches {config.logs.paths} "
            f"under {site_dir} (fix: point logs.paths at the DNS log files)"
        )
    return files


def _read_logs(files: list[Path], config: SiteConfig, quarantine: Quarantine,
               stats: Counter) -> pa.Table:
    reader = READERS.get(config.logs.format)
    if reader is None:
        raise ConfigError(
            f"field logs.format: '{config.logs.format}' is not readable by this version "
            f"(fix: use one of {sorted(READERS)})"
        )
    tables = []
    for path in files:
        table, read_stats = reader(path, quarantine=quarantine, columns=("ts", "query"),
                                   mapping=config.logs.columns)
        stats["lines_read"] += read_stats.lines_read
        stats["records"] += read_stats.records
        stats["quarantined"] += sum(read_stats.quarantined.values())
        tables.append(table.select(["ts", "query", "line"]).append_column(
            "file", pa.array([str(path)] * table.num_rows, pa.string())))
    return pa.concat_tables(tables)


def _normalise(table: pa.Table, quarantine: Quarantine, stats: Counter) -> pa.Table:
    """Replace `query` by its normalised name; quarantine rows whose name is invalid."""
    missing = pc.is_null(table["query"])
    stats["records_without_query"] += int(pc.sum(missing).as_py() or 0)
    table = table.filter(pc.invert(missing))
    unique_raw = pc.unique(table["query"])
    names, reasons = normalise_domains(unique_raw.to_pylist())
    index = pc.index_in(table["query"], value_set=unique_raw)
    normalised = pc.take(pa.array(names, pa.string()), index)
    bad = pc.is_null(normalised)
    if pc.any(bad).as_py():
        reason_of = dict(zip(unique_raw.to_pylist(), reasons, strict=True))
        for row in table.filter(bad).to_pylist():
            quarantine.add(source=row["file"], line_number=row["line"],
                           reason=f"invalid-domain:{reason_of[row['query']]}", raw=row["query"])
            stats["invalid_domains"] += 1
    return table.set_column(table.schema.get_field_index("query"), "query", normalised).filter(
        pc.invert(bad))


def _count_duplicates(table: pa.Table) -> int:
    """Records repeating another's timestamp and name exactly (double-logged, replayed files)."""
    if table.num_rows == 0:
        return 0
    groups = table.select(["ts", "query"]).group_by(["ts", "query"]).aggregate([])
    return table.num_rows - groups.num_rows


def _count_by_day(table: pa.Table) -> dict[str, Counter]:
    day_index = pc.cast(pc.floor(pc.divide(table["ts"], SECONDS_PER_DAY)), pa.int64())
    grouped = pa.table({"day": day_index, "query": table["query"]}).group_by(
        ["day", "query"]).aggregate([("query", "count")])
    per_day: dict[str, Counter] = {}
    for day, name, count in zip(grouped["day"].to_pylist(), grouped["query"].to_pylist(),
                                grouped["query_count"].to_pylist(), strict=True):
        label = str(np.datetime64(int(day), "D"))
        per_day.setdefault(label, Counter())[name] += count
    return per_day


def _held_out(registered: str, *, site_id: str, fraction: float) -> bool:
    digest = hashlib.blake2b(registered.encode(), key=site_id.encode()[:64], digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < fraction


def _examples(counts: Counter, intel: Intel, stats: Counter, *, keep) -> Examples:
    rows = []
    for name in sorted(counts):
        registered = registered_domain(name)
        if not keep(registered):
            continue
        label, family = intel.lookup(name, registered)
        if label == "conflict":
            stats["label_conflicts"] += 1
            continue
        if label == "unlisted":
            stats["unlisted"] += 1
            if stats["unlisted_policy_ignore"]:
                continue
            label = "benign"
        rows.append((name, 1 if label == "dga" else 0, family, counts[name], registered))
    if not rows:
        dtypes = (object, np.int8, object, np.int64, object)
        return Examples(*(np.array([], dtype=dtype) for dtype in dtypes))
    names, labels, families, query_counts, registered = zip(*rows, strict=True)
    return Examples(
        domains=np.array(names, dtype=object),
        labels=np.array(labels, dtype=np.int8),
        families=np.array(families, dtype=object),
        query_counts=np.array(query_counts, dtype=np.int64),
        registered=np.array(registered, dtype=object),
    )


def _intel_only(intel: Intel, logged: set[str]) -> Examples:
    """Blocklisted names this site never queried: real names of families it may never have seen."""
    logged_registered = {registered_domain(name) for name in logged}
    names = sorted(name for name in intel.blocklist
                   if name not in logged and registered_domain(name) not in logged_registered)
    return Examples(
        domains=np.array(names, dtype=object),
        labels=np.ones(len(names), dtype=np.int8),
        families=np.array([intel.blocklist[name] for name in names], dtype=object),
        query_counts=np.zeros(len(names), dtype=np.int64),
        registered=np.array([registered_domain(name) for name in names], dtype=object),
    )


def prepare_site(site_dir: Path, *, work_dir: Path | None = None) -> SiteData:
    """Read, normalise, label and split one site's logs (the result stays on the premises)."""
    site_dir = site_dir.resolve()
    config = load_site_config(site_dir)
    work_dir = (work_dir or site_dir / "work").resolve()
    stats: Counter = Counter(unlisted_policy_ignore=int(config.labels.unlisted == "ignore"))
    # A fresh quarantine per preparation: the files describe exactly this read of the logs.
    shutil.rmtree(work_dir / "quarantine", ignore_errors=True)
    with Quarantine(work_dir / "quarantine") as quarantine:
        intel = load_intel(site_dir, config, quarantine=quarantine)
        table = _normalise(_read_logs(log_files(site_dir, config), config, quarantine, stats),
                           quarantine, stats)
        from_logs = stats["quarantined"] + stats["invalid_domains"]
        stats["intel_quarantined"] = quarantine.total - from_logs
    stats["duplicate_records"] = _count_duplicates(table)
    per_day = _count_by_day(table)
    days = sorted(per_day)
    test_count = config.split.test_days
    if len(days) <= test_count:
        raise ConfigError(
            f"{site_dir / SITE_FILE}: field split.test_days: the logs hold {len(days)} day(s) "
            f"but {test_count} are kept for testing (fix: add log days or lower split.test_days)"
        )
    train_days, test_days = days[:-test_count], days[-test_count:]
    train_counts = sum((per_day[d] for d in train_days), Counter())
    test_counts = sum((per_day[d] for d in test_days), Counter())
    fraction = config.split.holdout_fraction

    def keep_train(registered: str) -> bool:
        return not _held_out(registered, site_id=config.site_id, fraction=fraction)

    train = _examples(train_counts, intel, stats, keep=keep_train)
    train_registered = set(train.registered.tolist())
    test = _examples(test_counts, intel, stats, keep=lambda r: r not in train_registered)
    # Natural leakage: test-day names whose registered domain was also trained on (removed).
    stats["test_candidates"] = len(test_counts)
    stats["leaked_test_domains"] = sum(
        1 for name in test_counts if registered_domain(name) in train_registered)
    stats.pop("unlisted_policy_ignore")
    logged = set(train_counts) | set(test_counts)
    return SiteData(
        site_id=config.site_id, site_dir=site_dir, config=config, train=train, test=test,
        train_days=tuple(train_days), test_days=tuple(test_days),
        train_families=frozenset(train.families[train.labels == 1].tolist()),
        intel_only=_intel_only(intel, logged),
        stats=dict(stats),
    )
