"""`fedsec evaluate`: a site's full fragility report for one model, streamed with bounded memory.

The federation's per-round evaluation (`client.local.evaluate_round`) reads a site's logs into
memory and is the cheap per-round figure. A low false-positive rate is resolvable only when the
test set holds at least 3/FPR benign names (30,000 for 1e-4), and a real site sees millions of
distinct names a day, so this module evaluates a model on *every* distinct valid name of the
site's test days, through the same streaming scorer as `fedsec score`:

1. **Scan** (every log file, streamed): which UTC days hold valid names and which files hold
   them; the registered domains of logged names that the blocklist lists (for the intel-only
   names); the DGA families among the training days' positives (for the unseen-family
   figures); and a fixed sample of up to 5,000 training-day names, those with the smallest
   CRC-32, labelled and outside the held-out registered domains (the PSI reference). Days
   older than the test days are folded together as soon as they are known to be older, so
   the scan keeps only small per-day sets, never the names of a day.
2. **Score** (only the files that hold test-day records): the test-day records of each block
   go through `client.scoring.LogScorer` (block dedup, normalisation, an LRU score cache of
   bounded size, the model on its own thread); per distinct name it keeps the query count
   and the score, compacted as it grows.
3. **Label**: each name is labelled from the site's intel (`Intel.lookup`, conflicts left
   out, `[labels] unlisted` applied).
4. **Hosts** (only the test-day files, only when the logs name a client: Zeek's
   ``id.orig_h`` or a mapped column): per (test day, client host), the highest benign and the
   highest blocklisted score among the labelled names it queried and its benign queries
   (`HostPass`), so the host figures can be read at the threshold the report picks.
5. **Report**: `client.fragility.site_fragility_report` writes the full report with
   ``evaluation.kind = "full, streamed"``.

Memory: the per-name table (distinct test-day names x name, count, score, then the labelled
`Examples`) and the per-host-day table (test days x client hosts x 5 values) are what grow;
log blocks stream, the score cache holds at most ``cache_size`` names, the scan holds per-day
sets bounded by the intel lists and the sample.

The test set is every distinct valid name of the test days: unlike the federated split there
is no registered-domain holdout or leakage filter. The model never trained on the test days
(federated training reads only the earlier days), so nothing of the test set was trained on
by construction; a test name whose registered domain also occurs on a training day stays in,
as it would in deployment, which is one reason these figures differ from a round's.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from client.dataset import (
    SECONDS_PER_DAY,
    Examples,
    SiteData,
    held_out,
    intel_only_examples,
    no_examples,
)
from client.domains import REASON_PREFIX, normalise_domain_array, registered_domain
from client.fragility import (
    FPR_TARGETS,
    NO_CLIENT_COLUMN,
    HostView,
    SiteReport,
    site_fragility_report,
)
from client.fragility_html import benign_names_needed
from client.pipeline import log_files
from client.quarantine import Quarantine
from client.readers import STREAMS, Progress
from client.scoring import (
    CACHE_SIZE,
    DEFAULT_THRESHOLD,
    LogScorer,
    ScoreSummary,
    StageClock,
    feed_logs,
    report_unread,
)
from client.site import SITE_FILE, Intel, load_intel, load_site_config
from common.config import ConfigError, SiteConfig
from common.fragility import HostDays
from common.model import CharCNN
from common.training import predict_scores

EVALUATION_KIND = "full, streamed"
DEFAULT_OUT = Path("work") / "evaluate"
QUARANTINE_DIR = "quarantine"
PSI_SAMPLE = 5_000
COMPACT_ROWS = 1 << 20  # per-name rows gathered before they are merged into the table
REPORT_ROUND = 0  # Flower rounds start at 1: round 0 is "outside the federation"


def day_index(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """UTC day number (days since 1970-01-01) of epoch seconds; null where ts is null."""
    return pc.cast(pc.floor(pc.divide(ts, SECONDS_PER_DAY)), pa.int64())


def day_label(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


# --- pass 1: the scan --------------------------------------------------------------------------


@dataclass
class _DayFacts:
    """What the scan keeps of one day (or of all days known to be training days)."""

    families: set[str] = field(default_factory=set)  # of positives outside the holdout
    sample: dict[str, int] = field(default_factory=dict)  # name -> CRC-32, bottom-k

    def cutoff(self, size: int) -> int:
        """Names with a larger hash cannot enter a full sample."""
        if len(self.sample) < size:
            return 1 << 32
        return sorted(self.sample.values())[size - 1]

    def trim(self, size: int) -> None:
        if len(self.sample) > size:
            kept = sorted(self.sample.items(), key=lambda item: (item[1], item[0]))[:size]
            self.sample = dict(kept)

    def merge(self, other: _DayFacts, size: int) -> None:
        self.families |= other.families
        self.sample.update(other.sample)
        self.trim(size)


class _DiscardingQuarantine(Quarantine):
    """The scan's quarantine while re-reading: reader-rejected lines were filed already."""

    def __init__(self, inner: Quarantine) -> None:
        super().__init__(inner.directory)
        self.inner = inner

    def add(self, *, source: Path | str, line_number: int, reason: str, raw: str) -> None:
        if reason.startswith(REASON_PREFIX):  # the scorer's invalid names: filed once, here
            self.inner.add(source=source, line_number=line_number, reason=reason, raw=raw)


class _Filed(Quarantine):
    """The host pass's quarantine: every line it could report, the scan filed already (and
    the scan's quarantine is closed by then: reopening its file would replace it)."""

    def __init__(self) -> None:
        super().__init__(Path(QUARANTINE_DIR))

    def add(self, *, source: Path | str, line_number: int, reason: str, raw: str) -> None:
        """Nothing to write twice."""


class DayScan:
    """Pass 1 over every log file; `client.scoring.feed_logs` drives it like a scorer.

    Keeps the days with valid names (and which file holds which), the blocklisted registered
    domains that were logged, and `_DayFacts` for the newest ``test_days`` days separately
    and for every older day merged into one.
    """

    def __init__(
        self, intel: Intel, *, config: SiteConfig, test_days: int, sample_size: int = PSI_SAMPLE
    ) -> None:
        self.intel, self.test_days, self.sample_size = intel, test_days, sample_size
        self.site_id = config.site_id
        self.holdout_fraction = config.split.holdout_fraction
        self.unlisted_benign = config.labels.unlisted == "benign"
        self.summary = ScoreSummary()
        self.days: set[int] = set()
        self.file_days: dict[str, set[int]] = {}
        self.logged_listed: set[str] = set()  # registered domains of logged names, blocklisted
        self.recent: dict[int, _DayFacts] = {}
        self.older = _DayFacts()
        listed = {registered_domain(name) for name in intel.blocklist}
        self._listed_set = frozenset(listed)
        self._listed = pa.array(sorted(listed), pa.string())
        self._suffix_patterns = [
            rf"(?P<s>[^.]+(?:\.[^.]+){{{count - 1}}})$"
            for count in sorted({name.count(".") + 1 for name in listed})
        ]

    # `feed_logs` calls add() per table and finish() at the end.
    def add(self, table: pa.Table, *, source: Path, clock: StageClock) -> None:
        present = pc.and_(pc.is_valid(table["query"]), pc.is_valid(table["ts"]))
        table = table.filter(present)
        pairs = (
            pa.table({"day": day_index(table["ts"]), "query": table["query"]})
            .group_by(["day", "query"], use_threads=False)
            .aggregate([])
        )
        clock.lap("dedup")
        names, _ = normalise_domain_array(pairs["query"])
        valid = pc.is_valid(names)
        names, days = names.filter(valid), pairs["day"].filter(valid)
        clock.lap("normalise")
        if len(names) == 0:
            return
        listed_rows = self._under_listed(names)
        seen = self.file_days.setdefault(str(source), set())
        for day in pc.unique(days).to_pylist():
            self.days.add(day)
            seen.add(day)
            on_day = pc.equal(days, day)
            facts = self._facts(day)
            self._note_listed(names.filter(pc.and_(on_day, listed_rows)).to_pylist(), facts)
            self._offer(names.filter(on_day).to_pylist(), facts)
        clock.lap("model")

    def finish(self) -> None:
        """Nothing runs ahead in the scan."""

    def _facts(self, day: int) -> _DayFacts:
        """The day's own facts while it may be a test day; the merged facts once it cannot be."""
        if day in self.recent:
            return self.recent[day]
        if len(self.recent) >= self.test_days and day < min(self.recent):
            return self.older
        self.recent[day] = _DayFacts()
        while len(self.recent) > self.test_days:
            self.older.merge(self.recent.pop(min(self.recent)), self.sample_size)
        return self.recent[day]

    def _under_listed(self, names: pa.Array) -> pa.Array:
        """Rows whose registered domain may be blocklisted (a label suffix is; checked later)."""
        hit = pa.array(np.zeros(len(names), dtype=bool))
        for pattern in self._suffix_patterns:
            suffix = pc.struct_field(pc.extract_regex(names, pattern), [0])
            found = pc.fill_null(pc.is_in(suffix, value_set=self._listed), False)
            hit = pc.or_(hit, found)
        return hit

    def _accept(self, name: str, registered: str) -> tuple[bool, str]:
        """(labelled and outside the holdout, so a training example; its family if DGA)."""
        if held_out(registered, site_id=self.site_id, fraction=self.holdout_fraction):
            return False, ""
        label, family = self.intel.lookup(name, registered)
        usable = label in ("dga", "benign") or (label == "unlisted" and self.unlisted_benign)
        return usable, (family if label == "dga" else "")

    def _note_listed(self, names: list[str], facts: _DayFacts) -> None:
        for name in names:
            registered = registered_domain(name)
            if registered not in self._listed_set:
                continue  # a suffix matched, but the registered domain is longer
            self.logged_listed.add(registered)
            usable, family = self._accept(name, registered)
            if usable and family:
                facts.families.add(family)

    def _offer(self, names: list[str], facts: _DayFacts) -> None:
        """Bottom-k by CRC-32 over the day's usable names (ties broken by name on trimming)."""
        hashes = np.fromiter(
            (zlib.crc32(name.encode()) for name in names), dtype=np.int64, count=len(names)
        )
        cutoff = facts.cutoff(self.sample_size)
        taken = 0
        for index in np.argsort(hashes, kind="stable"):
            if hashes[index] > cutoff or taken >= self.sample_size:
                break
            name = names[index]
            if name in facts.sample:
                continue
            usable, _ = self._accept(name, registered_domain(name))
            if usable:
                facts.sample[name] = int(hashes[index])
                taken += 1
        if len(facts.sample) > 2 * self.sample_size:
            facts.trim(self.sample_size)

    def training_facts(self, test_days: Sequence[int]) -> _DayFacts:
        """Merged facts of every day before the test days."""
        facts = _DayFacts()
        facts.merge(self.older, self.sample_size)
        for day, own in self.recent.items():
            if day not in test_days:
                facts.merge(own, self.sample_size)
        facts.trim(self.sample_size)
        return facts


# --- pass 2: scoring the test days -------------------------------------------------------------


class EvaluationScorer(LogScorer):
    """`LogScorer` over the test-day records only, keeping every name's query count and score.

    Alerts are not kept: `remember` (called on the model thread with each block's distinct
    names) appends to the per-name table instead, merged by name whenever the unmerged rows
    outgrow the merged table (and ``compact_rows``), so it stays within about twice the
    distinct names.
    """

    def __init__(
        self,
        model: CharCNN,
        *,
        days: Sequence[int],
        quarantine: Quarantine,
        cache_size: int = CACHE_SIZE,
        compact_rows: int = COMPACT_ROWS,
    ) -> None:
        super().__init__(
            model, threshold=DEFAULT_THRESHOLD, quarantine=quarantine, cache_size=cache_size
        )
        self._days = pa.array(sorted(days), pa.int64())
        self.compact_rows = compact_rows
        self.test_day_records = 0
        self._table = _empty_names()
        self._parts: list[pa.Table] = []
        self._unmerged = 0

    def add(self, table: pa.Table, *, source: Path, clock: StageClock) -> None:
        on_test_day = pc.fill_null(pc.is_in(day_index(table["ts"]), value_set=self._days), False)
        table = table.filter(on_test_day)
        self.test_day_records += table.num_rows
        if table.num_rows:
            super().add(table, source=source, clock=clock)

    def remember(self, per_name: pa.Table, names: list[str], scores: np.ndarray) -> None:
        self._parts.append(
            pa.table(
                {
                    "name": per_name["name"],
                    "count": per_name["count"],
                    "score": pa.array(scores, pa.float64()),
                }
            )
        )
        self._unmerged += per_name.num_rows
        if self._unmerged > max(self.compact_rows, self._table.num_rows):
            self._compact()

    def _compact(self) -> None:
        # One name can be rescored after the cache evicted it; the scores agree to float noise.
        self._table = (
            pa.concat_tables([self._table, *self._parts])
            .group_by("name", use_threads=False)
            .aggregate([("count", "sum"), ("score", "max")])
            .rename_columns(["name", "count", "score"])
        )
        self._parts, self._unmerged = [], 0

    def names_table(self) -> pa.Table:
        """name, count (test-day queries), score: one row per distinct valid name, by name."""
        self._compact()
        return self._table.sort_by("name").combine_chunks()


def _empty_names() -> pa.Table:
    return pa.table(
        {
            "name": pa.array([], pa.string()),
            "count": pa.array([], pa.int64()),
            "score": pa.array([], pa.float64()),
        }
    )


# --- pass 3: the client hosts of the test days -------------------------------------------------

CLIENT_COLUMN = "id.orig_h"  # Zeek's client address; other formats map it in [logs] columns


class HostPass:
    """Reduces the test-day records to one row per (day, client host): the `HostDays` columns.

    Each table's distinct (day, host, name) triples are buffered and looked up in the labelled
    test set in batches (one hash of the test set per ``flush_rows`` triples, not per block);
    the per-host-day rows are merged whenever they outgrow the merged table, so the state is
    about twice the host-days, whatever the names.
    """

    def __init__(
        self, labelled: LabelledNames, *, days: Sequence[int], flush_rows: int = COMPACT_ROWS
    ) -> None:
        test = labelled.test
        self._names = pa.array(test.domains.tolist(), pa.string())
        malicious = test.labels == 1
        self._benign_score = pa.array(np.where(malicious, -np.inf, labelled.scores))
        self._malicious_score = pa.array(np.where(malicious, labelled.scores, -np.inf))
        self._benign = pa.array(~malicious)
        self._days = pa.array(sorted(days), pa.int64())
        self.flush_rows = flush_rows
        self.records_with_client = 0
        self.records_without_client = 0
        self._triples: list[pa.Table] = []
        self._buffered = 0
        self._table = _empty_host_days()
        self._parts: list[pa.Table] = []
        self._unmerged = 0

    def add(self, table: pa.Table) -> None:
        day = day_index(table["ts"])
        keep = pc.and_(
            pc.fill_null(pc.is_in(day, value_set=self._days), False), pc.is_valid(table["query"])
        )
        table = pa.table(
            {"day": day, "host": table[CLIENT_COLUMN], "query": table["query"]}
        ).filter(keep)
        has_host = pc.and_(pc.is_valid(table["host"]), pc.not_equal(table["host"], ""))
        has_host = pc.fill_null(has_host, False)
        with_host = int(pc.sum(has_host).as_py() or 0)
        self.records_with_client += with_host
        self.records_without_client += table.num_rows - with_host
        if with_host == 0:
            return
        triples = (
            table.filter(has_host)
            .group_by(["day", "host", "query"], use_threads=False)
            .aggregate([("query", "count")])
        )
        self._triples.append(triples)
        self._buffered += triples.num_rows
        if self._buffered >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._triples:
            return
        triples = pa.concat_tables(self._triples)
        self._triples, self._buffered = [], 0
        names, _ = normalise_domain_array(triples["query"])
        index = pc.index_in(names, value_set=self._names)
        found = pc.is_valid(index)
        index, triples = index.filter(found), triples.filter(found)
        if len(index) == 0:
            return
        benign = pc.take(self._benign, index)
        counts = pc.if_else(benign, triples["query_count"], 0)
        part = pa.table(
            {
                "day": triples["day"],
                "host": triples["host"],
                "max_benign": pc.take(self._benign_score, index),
                "max_malicious": pc.take(self._malicious_score, index),
                "benign_queries": pc.cast(counts, pa.int64()),
            }
        )
        self._parts.append(_per_host_day(part))
        self._unmerged += self._parts[-1].num_rows
        if self._unmerged > max(self.flush_rows, self._table.num_rows):
            self._compact()

    def _compact(self) -> None:
        self._table = _per_host_day(pa.concat_tables([self._table, *self._parts]))
        self._parts, self._unmerged = [], 0

    def host_days(self) -> HostDays | None:
        """The merged host-days; None when no test-day record named a client."""
        self._flush()
        self._compact()
        if self.records_with_client == 0:
            return None
        return HostDays(
            max_benign=self._table["max_benign"].to_numpy().astype(np.float64),
            max_malicious=self._table["max_malicious"].to_numpy().astype(np.float64),
            benign_queries=self._table["benign_queries"].to_numpy().astype(np.int64),
        )


def _per_host_day(table: pa.Table) -> pa.Table:
    return (
        table.group_by(["day", "host"], use_threads=False)
        .aggregate([("max_benign", "max"), ("max_malicious", "max"), ("benign_queries", "sum")])
        .rename_columns(["day", "host", "max_benign", "max_malicious", "benign_queries"])
    )


def _empty_host_days() -> pa.Table:
    return pa.table(
        {
            "day": pa.array([], pa.int64()),
            "host": pa.array([], pa.string()),
            "max_benign": pa.array([], pa.float64()),
            "max_malicious": pa.array([], pa.float64()),
            "benign_queries": pa.array([], pa.int64()),
        }
    )


def read_host_days(
    files: Sequence[Path],
    labelled: LabelledNames,
    *,
    config: SiteConfig,
    days: Sequence[int],
    quarantine: Quarantine,
    on_progress: Progress | None = None,
    on_file: Callable[[Path], None] | None = None,
    flush_rows: int = COMPACT_ROWS,
) -> HostView:
    """Pass 3 over the test-day files: the host-days, or why there are none.

    Every format reads a missing client column as nulls, so "no client column" is decided by
    the records: none of the test days' names one. Bad lines were filed by the scan, so
    ``quarantine`` should discard the reader's reports (`evaluate_site` passes one that does).
    """
    hosts = HostPass(labelled, days=days, flush_rows=flush_rows)
    columns = ("ts", "query", CLIENT_COLUMN)
    for path in files:
        if on_file is not None:
            on_file(path)
        stream = STREAMS[config.logs.format](
            path,
            quarantine=quarantine,
            columns=columns,
            mapping=config.logs.columns,
            on_progress=on_progress,
        )
        for table in stream:
            hosts.add(table)
    host_days = hosts.host_days()
    return HostView(
        host_days=host_days,
        reason=None if host_days is not None else NO_CLIENT_COLUMN,
        test_days=len(days),
        records_without_client=hosts.records_without_client,
    )


# --- labelling and the report ------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledNames:
    """The test `Examples` (one per labelled name, by name) with their scores."""

    test: Examples
    scores: np.ndarray
    conflicts: int  # names on both lists at the same level: left out
    unlisted_ignored: int  # names on neither list under `unlisted = "ignore"`: left out


def label_names(table: pa.Table, intel: Intel, *, unlisted_benign: bool) -> LabelledNames:
    """Label the per-name table from the intel, as `client.dataset.label_examples` does."""
    names = table["name"].to_pylist()
    keep = np.zeros(len(names), dtype=bool)
    labels = np.zeros(len(names), dtype=np.int8)
    families = np.full(len(names), "", dtype=object)
    registered = np.empty(len(names), dtype=object)
    conflicts = ignored = 0
    for index, name in enumerate(names):
        domain = registered_domain(name)
        label, family = intel.lookup(name, domain)
        if label == "conflict":
            conflicts += 1
            continue
        if label == "unlisted" and not unlisted_benign:
            ignored += 1
            continue
        keep[index], registered[index] = True, domain
        if label == "dga":
            labels[index], families[index] = 1, family
    if not keep.any():
        return LabelledNames(no_examples(), np.zeros(0), conflicts, ignored)
    rows = np.flatnonzero(keep)
    test = Examples(
        domains=np.array(names, dtype=object)[rows],
        labels=labels[rows],
        families=families[rows],
        query_counts=table["count"].to_numpy()[rows].astype(np.int64),
        registered=registered[rows],
    )
    scores = table["score"].to_numpy()[rows].astype(np.float64)
    return LabelledNames(test, scores, conflicts, ignored)


def _model_scores(model: CharCNN, names: Sequence[str]) -> np.ndarray:
    if not names:
        return np.zeros(0, dtype=np.float64)
    encoded = model.spec.encode(list(names))
    return np.asarray(predict_scores(model, domains=encoded), dtype=np.float64)


@dataclass(frozen=True)
class Evaluation:
    """What `fedsec evaluate` did and where the report is."""

    report: SiteReport
    labelled: LabelledNames  # the test set as evaluated: names, labels, counts and scores
    site_id: str
    test_days: tuple[str, ...]
    train_days: tuple[str, ...]
    files_scanned: int
    files_scored: int
    test_day_records: int
    distinct_names: int
    benign: int
    dga: int
    conflicts: int
    unlisted_ignored: int
    intel_only: int
    psi_reference: int
    cache_size: int
    cache_evictions: int
    quarantine_dir: Path
    seconds: float
    problems: tuple[str, ...] = ()  # files not read whole (cut gzip, no records, too many bad)
    hosts: HostView | None = None  # the test days' host-days, or why there are none

    @property
    def metrics(self) -> dict[str, float]:
        return self.report.metrics


def _test_days(scan: DayScan, *, wanted: int, from_option: bool, site_dir: Path) -> list[int]:
    days = sorted(scan.days)
    if len(days) >= wanted:
        return days[-wanted:]
    if from_option:
        raise ConfigError(
            f"--days {wanted}: the logs of {site_dir} hold {len(days)} day(s) with valid names "
            f"(fix: pass --days {max(1, len(days))} or fewer, or add log days)"
        )
    raise ConfigError(
        f"{site_dir / SITE_FILE}: field split.test_days: {wanted} test day(s) asked for but the "
        f"logs hold {len(days)} day(s) with valid names (fix: lower split.test_days, pass "
        "--days, or add log days)"
    )


def _notes(train_days: Sequence[str], psi_reference: int) -> list[str]:
    psi = (
        f"psi_score compares with {psi_reference:,} training-day names (days before the test "
        "days; labelled, outside the held-out registered domains; the smallest CRC-32 of each "
        "normalised name), not with the exact sample a federated round uses"
        if psi_reference
        else "psi_score is nan: no labelled name on a day before the test days, so there is "
        "no training-day reference"
    )
    return [
        "the test set is every distinct valid name of the test days: no registered-domain "
        "holdout or leakage filter (the model did not train on the test days)",
        psi,
        f"unseen families are those absent from the positives of {len(train_days)} "
        "training day(s), outside the held-out registered domains",
        "churn and new_fp_rate are nan: this report is not one of a series of rounds",
        "data-quality figures are not computed here: run `fedsec check`",
    ]


def evaluate_site(
    model: CharCNN,
    site_dir: Path,
    *,
    out: Path | None = None,
    days: int | None = None,
    model_label: Mapping[str, str] | None = None,
    cache_size: int = CACHE_SIZE,
    compact_rows: int = COMPACT_ROWS,
    psi_sample: int = PSI_SAMPLE,
    html: bool = True,
    on_progress: Progress | None = None,
    on_file: Callable[[Path], None] | None = None,
    model_threads: int = 1,
) -> Evaluation:
    """Score every distinct valid name of the site's test days; write the full report.

    Test days are the last ``days`` UTC days with valid names, or the last
    ``split.test_days``. No registered-domain holdout applies: the model was not trained on
    these days (see the module docstring). The report goes to
    ``OUT/fragility/round-000.{json,html}`` (round 0: outside the federation); every line a
    reader rejects, in any log file, and every invalid name of a test-day record go to
    ``OUT/quarantine/``. Raises ConfigError or LogFormatError naming the file, field and fix on
    unusable input.
    """
    started = time.perf_counter()
    site_dir = Path(site_dir).resolve()
    config = load_site_config(site_dir)
    out = Path(out) if out is not None else site_dir / DEFAULT_OUT
    files = log_files(site_dir, config)
    wanted = days if days is not None else config.split.test_days
    if wanted < 1:
        raise ConfigError(f"--days {wanted}: must be at least 1 (fix: pass --days 1 or more)")
    quarantine_dir = out / QUARANTINE_DIR
    shutil.rmtree(quarantine_dir, ignore_errors=True)
    mapping = config.logs.columns
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, model_threads))
    try:
        with Quarantine(quarantine_dir) as quarantine:
            intel = load_intel(site_dir, config, quarantine=quarantine)
            scan = DayScan(intel, config=config, test_days=wanted, sample_size=psi_sample)
            feed_logs(
                scan,
                files,
                quarantine=quarantine,
                log_format=config.logs.format,
                mapping=mapping,
                on_progress=on_progress,
                on_file=on_file,
                block_bytes=None,
            )
            test_days = _test_days(
                scan, wanted=wanted, from_option=days is not None, site_dir=site_dir
            )
            scored_files = [
                path for path in files if scan.file_days.get(str(path), set()) & set(test_days)
            ]
            scorer = EvaluationScorer(
                model,
                days=test_days,
                quarantine=_DiscardingQuarantine(quarantine),
                cache_size=cache_size,
                compact_rows=compact_rows,
            )
            try:
                feed_logs(
                    scorer,
                    scored_files,
                    quarantine=scorer.quarantine,
                    log_format=config.logs.format,
                    mapping=mapping,
                    on_progress=on_progress,
                    on_file=on_file,
                    block_bytes=None,
                )
            finally:
                scorer.close()
            table = scorer.names_table()
        distinct = table.num_rows
        labelled = label_names(table, intel, unlisted_benign=config.labels.unlisted == "benign")
        del table
        hosts = read_host_days(
            scored_files,
            labelled,
            config=config,
            days=test_days,
            quarantine=_Filed(),
            on_progress=on_progress,
            on_file=on_file,
            flush_rows=compact_rows,
        )
        training = scan.training_facts(test_days)
        reference = sorted(training.sample, key=lambda name: (training.sample[name], name))
        intel_only = intel_only_examples(intel, set(scan.logged_listed))
        test_labels = tuple(day_label(day) for day in test_days)
        train_labels = tuple(day_label(day) for day in sorted(scan.days) if day < test_days[0])
        data = SiteData(
            site_id=config.site_id,
            site_dir=site_dir,
            config=config,
            train=no_examples(),
            test=labelled.test,
            train_days=train_labels,
            test_days=test_labels,
            train_families=frozenset(training.families),
            intel_only=intel_only,
        )
        evaluation_block = {
            "kind": EVALUATION_KIND,
            "model": dict(model_label or {}),
            "test_day_records": scorer.test_day_records,
            "distinct_names": distinct,
            "left_out": {
                "label_conflicts": labelled.conflicts,
                "unlisted_ignored": labelled.unlisted_ignored,
            },
            "log_files_scanned": len(files),
            "log_files_scored": len(scored_files),
            "psi_reference_names": len(reference),
            "score_cache": {
                "capacity": cache_size,
                "evictions": scorer.cache.evictions,
                "names_scored": scorer.summary.domains_scored,
            },
            "quarantine": str(quarantine_dir),
            "notes": _notes(train_labels, len(reference)),
        }
        report = site_fragility_report(
            data=data,
            intel_only=intel_only,
            test_scores=labelled.scores,
            train_scores=_model_scores(model, reference),
            intel_only_scores=_model_scores(model, intel_only.domains.tolist()),
            server_round=REPORT_ROUND,
            work_dir=out,
            html=html,
            evaluation=evaluation_block,
            hosts=hosts,
        )
    finally:
        torch.set_num_threads(threads)
    return Evaluation(
        report=report,
        labelled=labelled,
        site_id=config.site_id,
        test_days=test_labels,
        train_days=train_labels,
        files_scanned=len(files),
        files_scored=len(scored_files),
        test_day_records=scorer.test_day_records,
        distinct_names=distinct,
        benign=int(len(labelled.test) - labelled.test.positives),
        dga=labelled.test.positives,
        conflicts=labelled.conflicts,
        unlisted_ignored=labelled.unlisted_ignored,
        intel_only=len(intel_only),
        psi_reference=len(reference),
        cache_size=cache_size,
        cache_evictions=scorer.cache.evictions,
        quarantine_dir=quarantine_dir,
        seconds=time.perf_counter() - started,
        problems=tuple(scorer.summary.problems),
        hosts=hosts,
    )


# --- the `fedsec evaluate` command --------------------------------------------------------------


def resolvability(metrics: Mapping[str, float], target: str) -> str:
    """``tpr_at_fpr_<target>``: 'resolvable' or 'not resolvable (needs N benign names, has M)'."""
    benign = int(metrics.get("test_domains", 0) - metrics.get("test_positives", 0))
    if metrics.get(f"tpr_at_fpr_{target}_resolvable") == 1:
        return "resolvable"
    needed = benign_names_needed(float(target))
    return f"not resolvable (needs {needed:,} benign names, has {benign:,})"


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1e3 else f"{value:.{digits}g}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def host_lines(metrics: Mapping[str, float], hosts: HostView | None) -> list[str]:
    """The host view next to the per-domain FP/day: what an analyst team opens per host."""
    if hosts is None or hosts.host_days is None:
        reason = hosts.reason if hosts is not None else NO_CLIENT_COLUMN
        return [f"per host: n/a ({reason})"]
    count = len(hosts.host_days)
    per_day = metrics.get("hosts_per_day", math.nan)
    needed = 3.0 * per_day
    resolvable = (
        "resolvable"
        if metrics.get("host_fp_per_day_resolvable") == 1
        else f"not resolvable (needs {_number(needed)} host-days, has {count:,})"
    )
    return [
        f"hosts: {count:,} host-days on {hosts.test_days} test day(s) "
        f"({count / max(hosts.test_days, 1):,.1f} a day observed), "
        f"{_number(per_day)} hosts/day at the site's volume",
        f"per host at threshold {_number(metrics.get('threshold'))}: "
        f"{_number(metrics.get('host_alerts_per_day'))} alerting hosts/day, "
        f"FP hosts/day {_number(metrics.get('host_fp_per_day'))} "
        f"(95% upper bound {_number(metrics.get('host_fp_per_day_upper95'))}), {resolvable}; "
        f"host FPR {_rate(metrics.get('host_fpr'))} vs per-domain FPR {_rate(metrics.get('fpr'))}",
    ]


def summary_lines(result: Evaluation) -> list[str]:
    metrics = result.metrics
    lines = [
        f"site {result.site_id}: {EVALUATION_KIND} evaluation on test day(s) "
        f"{', '.join(result.test_days)} ({len(result.train_days)} earlier day(s) scanned)",
        f"read {result.files_scanned} log file(s), scored {result.files_scored}: "
        f"{result.test_day_records:,} test-day records in {result.seconds:,.1f} s "
        f"(score cache {result.cache_size:,} names, {result.cache_evictions:,} evictions)",
        f"distinct names: {result.distinct_names:,}: benign {result.benign:,}, "
        f"DGA {result.dga:,}; left out: {result.conflicts:,} label conflicts, "
        f"{result.unlisted_ignored:,} unlisted (policy ignore); "
        f"{result.intel_only:,} intel-only blocklisted names for family recall",
        f"AUC {_number(metrics.get('auc'))}",
    ]
    for target in FPR_TARGETS:
        lines.append(
            f"TPR at FPR {target}: {_rate(metrics.get(f'tpr_at_fpr_{target}'))}, "
            f"{resolvability(metrics, target)}"
        )
    lines.append(
        f"FP/day at threshold {_number(metrics.get('threshold'))}: "
        f"{_number(metrics.get('fp_per_day'))} "
        f"(95% upper bound {_number(metrics.get('fp_per_day_upper95'))})"
    )
    lines.extend(host_lines(metrics, result.hosts))
    html = f" and {result.report.html_path}" if result.report.html_path else ""
    lines.append(f"report: {result.report.json_path}{html} (stays on this site)")
    lines.append(f"quarantined lines: {result.quarantine_dir}")
    return lines


def load_model(path: Path) -> tuple[CharCNN, dict[str, str]]:
    """The model and what identifies it (path, SHA-256); ConfigError naming the fix otherwise."""
    from common.model import ModelFileError, model_from_bytes

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = "no such file" if isinstance(error, FileNotFoundError) else error.strerror
        raise ConfigError(
            f"{path}: cannot read the model: {reason} (fix: pass --model a model.npz from a run)"
        ) from None
    try:
        model, _ = model_from_bytes(raw, source=path)
    except ModelFileError as error:  # already one line naming the file and the fix
        raise ConfigError(str(error)) from None
    except Exception as error:  # a damaged archive raises zipfile, numpy or json errors
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError(
            f"{path}: not a fedsec model ({reason}) "
            "(fix: pass --model a model.npz written by a run or `model_to_bytes`)"
        ) from None
    return model, {"path": str(path.resolve()), "sha256": hashlib.sha256(raw).hexdigest()}


def evaluate_command(*, model: Path, site: Path, days: int | None, out: Path | None) -> int:
    """`fedsec evaluate`: print the summary; 0 on success, 1 when a log file was not read whole
    (each named), 2 on bad input (one error line)."""
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from client.readers import LogFormatError

    console = Console(stderr=True)
    try:
        network, identity = load_model(model)
        with Progress(
            "{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        ) as bar:
            task = bar.add_task("reading", total=None)
            result = evaluate_site(
                network,
                Path(site),
                out=out,
                days=days,
                model_label=identity,
                on_progress=lambda size: bar.advance(task, size),
                on_file=lambda path: bar.update(task, description=f"reading {path.name}"),
            )
    except (ConfigError, LogFormatError, FileNotFoundError, ValueError, OSError) as error:
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"fedsec: error: {message}", file=sys.stderr)
        return 2
    for line in summary_lines(result):
        print(line)
    return report_unread(result.problems, covers="the evaluation covers")
