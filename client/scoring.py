"""Score DNS logs with a model, streaming: parse, normalise, deduplicate, cached scores, alerts.

Memory stays flat as the logs grow: files are read in blocks, each block is reduced to its
distinct names before anything runs in Python, scores live in a bounded LRU cache, and only
names at or above the threshold keep state (query count, first and last seen, NXDOMAIN count
and, per client host, a bounded :class:`client.triage.Tally`). The hosts and response codes of
a block are looked at only for its alerting names, once the block is scored, on the main thread
(which would otherwise only wait for the model).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from client.domains import REASON_PREFIX, normalise_domain_array, registered_domain
from client.dqa import file_problems
from client.quarantine import HEADER as QUARANTINE_TEXT_HEADER
from client.quarantine import Quarantine
from client.readers import STREAMS, Progress, ReadStats, detect_format
from client.triage import (
    HOST_ENTRIES,
    HOSTS_PER_NAME,
    MAX_HOST_CHARS,
    NXDOMAIN,
    Tally,
    explained_path,
    group_by_host,
    hosts_path,
    iso,
    top_hosts,
)
from common.config import DqaConfig
from common.files import write_atomic
from common.model import CharCNN
from common.training import predict_scores

QUARANTINE_HEADER = QUARANTINE_TEXT_HEADER.encode()
DEFAULT_MAX_MALFORMED_RATE = DqaConfig().max_malformed_rate
CACHE_SIZE = 1 << 19  # names; ~100 MB of Python objects at most
# main thread: parse (waiting for the readers), dedup, normalise, model_wait (blocked on the
# model thread), hosts (a scored block's hosts and response codes of its alerting names),
# write; model thread: model, alerts. Stages overlap, so they sum past wall time.
STAGES = ("parse", "dedup", "normalise", "model_wait", "model", "alerts", "hosts", "write")
# The client host and the response code: Zeek's field names, and the keys a site maps them
# under in `[logs] columns` for other formats. A file without them scores as before.
CLIENT_COLUMN, RCODE_COLUMN = "id.orig_h", "rcode_name"
EVIDENCE_COLUMNS = (CLIENT_COLUMN, RCODE_COLUMN)
SCORE_COLUMNS = ("ts", "query", *EVIDENCE_COLUMNS)


class ScoreCache:
    """Scores by normalised name, least recently used evicted beyond ``capacity``."""

    def __init__(self, capacity: int = CACHE_SIZE) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._scores: OrderedDict[str, float] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def lookup(self, names: Sequence[str]) -> np.ndarray:
        """float64 scores in order of ``names``; NaN where the name is not cached."""
        scores, touch, found = [], self._scores.move_to_end, self._scores.get
        for name in names:
            score = found(name)
            if score is None:
                scores.append(math.nan)
            else:
                touch(name)
                scores.append(score)
        result = np.array(scores, dtype=np.float64)
        misses = int(np.isnan(result).sum())
        self.misses += misses
        self.hits += len(names) - misses
        return result

    def store(self, names: Sequence[str], scores: np.ndarray) -> None:
        for name, score in zip(names, scores.tolist(), strict=True):
            self._scores[name] = score
        overflow = len(self._scores) - self.capacity
        for _ in range(max(0, overflow)):
            self._scores.popitem(last=False)
        self.evictions += max(0, overflow)

    def __len__(self) -> int:
        return len(self._scores)


@dataclass
class Sighting:
    """One alerting name: its score, how often it was queried, first and last seen (epoch s);
    how many of its queries the logs give a response code for (``answered``) and how many were
    NXDOMAIN; per client host, a tally (at most HOSTS_PER_NAME hosts, ``hosts_capped`` beyond)."""

    score: float
    query_count: int
    first_seen: float
    last_seen: float
    nxdomain: int = 0
    answered: int = 0
    hosts: dict[str, Tally] = field(default_factory=dict)
    hosts_capped: bool = False

    @property
    def priority(self) -> float:
        return self.score * self.query_count


@dataclass
class ScoreSummary:
    """What one scoring run read, scored and wrote.

    ``seconds`` is the time per stage; stages overlap (parsing runs ahead, the model has its own
    thread), so they add up to more than ``wall_seconds``, the run's elapsed time.
    """

    files: int = 0
    lines_read: int = 0
    records: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    records_without_query: int = 0
    invalid_domains: int = 0
    domains_looked_up: int = 0
    domains_scored: int = 0
    cache_evictions: int = 0
    alerts: int = 0
    # alerting names left out because the site's analysts judged them benign (local allowlist)
    allowlisted: int = 0
    host_groups: int = 0
    hosts_known: bool = False  # some alerting name's queries name a client host
    threshold: float = math.nan
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_seconds: float = math.nan
    # why some input was not scored (one line per file: a cut gzip stream, unreadable columns,
    # too many bad lines); not empty means the job failed
    problems: list[str] = field(default_factory=list)


class StageClock:
    """Adds the seconds since the last lap to a stage's total (stages may overlap)."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self._last = seconds, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now


@dataclass(frozen=True)
class _Evidence:
    """A block's rows with a client host or response code, and its raw spellings -> names."""

    rows: pa.Table  # query (raw), ts, and the evidence columns the block has
    raw: pa.Array  # distinct raw queries with a valid name
    names: pa.Array  # their normalised names, aligned with ``raw``


class LogScorer:
    """Feeds tables of parsed records through dedup, normalisation, the cache and the model.

    Call :meth:`add` per table, then :meth:`finish` before reading ``alerts``; :meth:`close`
    stops the model thread.
    """

    def __init__(
        self,
        model: CharCNN,
        *,
        threshold: float,
        quarantine: Quarantine,
        cache_size: int = CACHE_SIZE,
        batch_size: int = 1024,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.model, self.threshold, self.quarantine = model, threshold, quarantine
        self.cache = ScoreCache(cache_size)
        self.batch_size = batch_size
        self.alerts: dict[str, Sighting] = {}
        self.summary = ScoreSummary(threshold=threshold)
        # The model runs on its own thread, so a block's names are scored while the next
        # block is deduplicated and normalised; the cache and the alert state are touched only
        # there, except the evidence fields `remember_evidence` keeps on the main thread.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedsec-model")
        # (the block's future, its evidence): the model thread is the bottleneck, so the
        # evidence of a scored block is looked at on the main thread, which would only wait
        self._pending: deque[tuple[Future, _Evidence | None]] = deque()
        self.blocks_ahead = 2
        self.host_entries = 0  # (name, host) tallies kept, at most HOST_ENTRIES

    def add(self, table: pa.Table, *, source: Path, clock: StageClock) -> None:
        """Score one table with ``ts``, ``query`` and ``line`` columns from ``source``; its
        ``id.orig_h`` and ``rcode_name`` columns, where present and not all null, are kept
        for the alerting names."""
        summary = self.summary
        missing = pc.is_null(table["query"])
        without = int(pc.sum(missing).as_py() or 0)
        if without:
            summary.records_without_query += without
            table = table.filter(pc.invert(missing))
        grouped = (
            table.select(["query", "ts"])
            .group_by("query", use_threads=False)
            .aggregate([("ts", "count"), ("ts", "min"), ("ts", "max")])
        )
        clock.lap("dedup")
        names, reasons = normalise_domain_array(grouped["query"])
        invalid = pc.is_null(names)
        if pc.any(invalid).as_py():
            self._quarantine_invalid(
                table, grouped["query"].filter(invalid), reasons.filter(invalid), source=source
            )
            names, grouped = names.filter(pc.invert(invalid)), grouped.filter(pc.invert(invalid))
        evidence = self._evidence(table, grouped["query"], names)
        per_name = pa.table(
            {
                "name": names,
                "count": grouped["ts_count"],
                "first": grouped["ts_min"],
                "last": grouped["ts_max"],
            }
        )
        if len(pc.unique(names)) < len(names):  # spellings of one name: 'A.com', 'a.com.'
            per_name = (
                per_name.group_by("name", use_threads=False)
                .aggregate([("count", "sum"), ("first", "min"), ("last", "max")])
                .rename_columns(["name", "count", "first", "last"])
            )
        clock.lap("normalise")
        self._pending.append((self._model_thread.submit(self._score, per_name), evidence))
        while len(self._pending) > self.blocks_ahead:
            self._collect(clock)

    def finish(self) -> None:
        """Wait for every block handed to the model thread."""
        clock = StageClock(self.summary.seconds)
        while self._pending:
            self._collect(clock)

    def _collect(self, clock: StageClock) -> None:
        """Wait for the oldest block's scores, then keep its alerting names' evidence."""
        future, evidence = self._pending.popleft()
        names, scores = future.result()
        clock.lap("model_wait")
        if evidence is not None:
            self.remember_evidence(evidence, names, scores)
            clock.lap("hosts")

    def close(self) -> None:
        self._model_thread.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _evidence(table: pa.Table, raw: pa.Array, names: pa.Array) -> _Evidence | None:
        present = [
            column
            for column in EVIDENCE_COLUMNS
            if column in table.column_names and table[column].null_count < table.num_rows
        ]
        if not present:
            return None
        return _Evidence(table.select(["query", "ts", *present]), raw, names)

    def _score(self, per_name: pa.Table) -> tuple[list[str], np.ndarray]:
        """Cache lookups, the model for the misses, and alert state (on the model thread);
        returns the block's names and scores."""
        clock = StageClock(self.summary.seconds)
        unique = per_name["name"].to_pylist()
        scores = self.cache.lookup(unique)
        todo = np.flatnonzero(np.isnan(scores))
        if todo.size:
            fresh = [unique[index] for index in todo]
            scores[todo] = predict_scores(
                self.model,
                domains=self.model.spec.encode(fresh),
                batch_size=self.batch_size,
            )
            self.cache.store(fresh, scores[todo])
        self.summary.domains_looked_up += len(unique)
        self.summary.domains_scored += int(todo.size)
        clock.lap("model")
        self.remember(per_name, unique, scores)
        clock.lap("alerts")
        return unique, scores

    def _quarantine_invalid(
        self, table: pa.Table, raw: pa.Array, reasons: pa.Array, *, source: Path
    ) -> None:
        reason_of = dict(zip(raw.to_pylist(), reasons.to_pylist(), strict=True))
        rows = table.filter(pc.is_in(table["query"], value_set=raw))
        for line, query in zip(rows["line"].to_pylist(), rows["query"].to_pylist(), strict=True):
            self.quarantine.add(
                source=source, line_number=line, reason=REASON_PREFIX + reason_of[query], raw=query
            )
        self.summary.invalid_domains += rows.num_rows

    def remember(self, per_name: pa.Table, names: list[str], scores: np.ndarray) -> None:
        # The hook a subclass overrides to keep something else per name (client/evaluate.py).
        hits = np.flatnonzero(scores >= self.threshold)
        if hits.size == 0:
            return
        taken = per_name.take(pa.array(hits))
        counts, firsts, lasts = (taken[column].to_pylist() for column in ("count", "first", "last"))
        for index, count, first, last in zip(hits.tolist(), counts, firsts, lasts, strict=True):
            seen = self.alerts.get(names[index])
            if seen is None:
                self.alerts[names[index]] = Sighting(float(scores[index]), count, first, last)
            else:
                seen.query_count += count
                seen.first_seen = min(seen.first_seen, first)
                seen.last_seen = max(seen.last_seen, last)

    def remember_evidence(self, evidence: _Evidence, names: list[str], scores: np.ndarray) -> None:
        """Hosts and NXDOMAIN counts of this block's alerting names (their rows only), on the
        main thread after `remember` ran for the block: only this method touches ``nxdomain``,
        ``answered``, ``hosts`` and ``hosts_capped``, and `remember` never removes a name."""
        hits = np.flatnonzero(scores >= self.threshold)
        if hits.size == 0:
            return
        alerting = pa.array([names[index] for index in hits.tolist()], pa.string())
        wanted = pc.is_in(evidence.names, value_set=alerting)
        raw, raw_names = evidence.raw.filter(wanted), evidence.names.filter(wanted)
        rows = evidence.rows.filter(pc.is_in(evidence.rows["query"], value_set=raw))
        columns = {
            "name": raw_names.take(pc.index_in(rows["query"], value_set=raw)),
            "host": client_hosts(rows),
            "ts": rows["ts"],
        }
        if RCODE_COLUMN in rows.column_names:
            code = pc.utf8_upper(rows[RCODE_COLUMN])
            columns["nx"] = pc.is_in(code, value_set=pa.array(sorted(NXDOMAIN))).cast(pa.int64())
            columns["answered"] = pc.is_valid(code).cast(pa.int64())
        else:
            columns["nx"] = columns["answered"] = pa.array(np.zeros(rows.num_rows, np.int64))
        pairs = (
            pa.table(columns)
            .group_by(["name", "host"], use_threads=False)
            .aggregate(
                [("ts", "count"), ("nx", "sum"), ("answered", "sum"), ("ts", "min"), ("ts", "max")]
            )
        )
        alerts = self.alerts
        for name, host, count, nx, answered, first, last in zip(
            *(
                pairs[column].to_pylist()
                for column in (
                    "name",
                    "host",
                    "ts_count",
                    "nx_sum",
                    "answered_sum",
                    "ts_min",
                    "ts_max",
                )
            ),
            strict=True,
        ):
            seen = alerts.get(name)
            if seen is None:
                continue
            seen.nxdomain += nx
            seen.answered += answered
            if host is None:
                continue
            tally = seen.hosts.get(host)
            if tally is None:
                tally = self._new_tally(seen, host)
            tally.add(count, nx, answered, first, last)

    def _new_tally(self, seen: Sighting, host: str) -> Tally:
        """A new host's tally of this name; a throwaway one once the caps are reached."""
        if len(seen.hosts) >= HOSTS_PER_NAME or self.host_entries >= HOST_ENTRIES:
            seen.hosts_capped = True
            return Tally()
        self.host_entries += 1
        tally = seen.hosts[host] = Tally()
        return tally

    def ranked(self) -> list[tuple[str, Sighting]]:
        """Alerts by score x query count, highest first (ties by name)."""
        return sorted(self.alerts.items(), key=lambda item: (-item[1].priority, item[0]))


def client_hosts(rows: pa.Table) -> pa.ChunkedArray | pa.Array:
    """The client column of alerting rows; empty or longer than MAX_HOST_CHARS is no host (an
    address is at most 45 characters; a hostile field must not make an unreadable groups file)."""
    if CLIENT_COLUMN not in rows.column_names:
        return pa.nulls(rows.num_rows, pa.string())
    hosts = rows[CLIENT_COLUMN]
    length = pc.utf8_length(hosts)
    usable = pc.and_(pc.greater(length, 0), pc.less_equal(length, MAX_HOST_CHARS))
    return pc.if_else(usable, hosts, pa.scalar(None, pa.string()))


def alert_records(ranked: list[tuple[str, Sighting]]) -> list[dict]:
    """The alerts.jsonl records, in rank order: ``host_count`` distinct client hosts (at least
    that many when ``host_count_capped``), ``hosts`` the top ones, ``nxdomain_share`` null when
    the logs carry no response code."""
    return [
        {
            "rank": rank,
            "domain": name,
            "registered_domain": registered_domain(name),
            "score": seen.score,
            "query_count": seen.query_count,
            "priority": seen.priority,
            "first_seen": iso(seen.first_seen),
            "last_seen": iso(seen.last_seen),
            "host_count": len(seen.hosts),
            "host_count_capped": seen.hosts_capped,
            "hosts": top_hosts(seen.hosts),
            "nxdomain_share": seen.nxdomain / seen.answered if seen.answered else None,
        }
        for rank, (name, seen) in enumerate(ranked, start=1)
    ]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: building the records allocates many acyclic
    objects, and the collector's passes over them took more than half the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def write_alerts(path: Path, records: list[dict]) -> None:
    """One JSON object per line, written to a temporary file and renamed into place."""
    write_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def score_logs(
    model: CharCNN,
    paths: Sequence[Path],
    *,
    out: Path,
    threshold: float,
    quarantine_dir: Path,
    log_format: str | None = None,
    mapping: dict[str, str] | None = None,
    cache_size: int = CACHE_SIZE,
    on_progress: Progress | None = None,
    on_file: Callable[[Path], None] | None = None,
    block_bytes: int | None = None,
    model_threads: int = 1,
    max_malformed_rate: float = DEFAULT_MAX_MALFORMED_RATE,
    allowlist: frozenset[str] = frozenset(),
) -> ScoreSummary:
    """Score every record of ``paths``, write ``out`` (alerts.jsonl) and the host groups beside
    it (:func:`client.triage.hosts_path`); return the summary.

    Names in ``allowlist`` (the site's analysts judged them benign:
    :func:`client.verdicts.local_allowlist`) never alert, whatever the model says; how many
    were left out is ``summary.allowlisted``, so the judgement is visible, not silent.

    ``log_format`` None detects each file's format from its first bytes. Bad lines and invalid
    names go to ``quarantine_dir`` (one TSV per log file, with line numbers). The model runs
    with ``model_threads`` torch threads (restored afterwards): the parser and the Python
    stages need the other cores, and oversubscribed OpenMP threads were 6x slower, not faster.
    A file not fully scored (see :func:`unscored`) is named in ``summary.problems``.
    """
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, model_threads))
    with Quarantine(quarantine_dir) as quarantine:
        scorer = LogScorer(model, threshold=threshold, quarantine=quarantine, cache_size=cache_size)
        try:
            feed_logs(
                scorer,
                paths,
                quarantine=quarantine,
                log_format=log_format,
                mapping=mapping,
                on_progress=on_progress,
                on_file=on_file,
                block_bytes=block_bytes,
                max_malformed_rate=max_malformed_rate,
                columns=SCORE_COLUMNS,
            )
        finally:
            scorer.close()
            torch.set_num_threads(threads)
        clock = StageClock(scorer.summary.seconds)
        judged = allowlist & scorer.alerts.keys()
        for name in judged:
            del scorer.alerts[name]
        scorer.summary.allowlisted = len(judged)
        ranked = scorer.ranked()
        with collector_paused():
            records = alert_records(ranked)
            groups = group_by_host(ranked)
        write_alerts(hosts_path(out), groups)
        write_alerts(out, records)
        clock.lap("write")
    scorer.summary.alerts = len(records)
    scorer.summary.host_groups = len(groups)
    scorer.summary.hosts_known = any(seen.hosts for _, seen in ranked)
    scorer.summary.cache_evictions = scorer.cache.evictions
    scorer.summary.wall_seconds = time.perf_counter() - started
    return scorer.summary


def feed_logs(
    scorer: LogScorer,
    paths: Sequence[Path],
    *,
    quarantine: Quarantine,
    log_format: str | None,
    mapping: dict[str, str] | None,
    on_progress: Progress | None,
    on_file: Callable[[Path], None] | None,
    block_bytes: int | None,
    max_malformed_rate: float = DEFAULT_MAX_MALFORMED_RATE,
    columns: Sequence[str] = ("ts", "query"),
) -> None:
    """Stream every file through its reader into `scorer` (`add` per table, `finish` at the end).

    ``columns`` besides ts and query (e.g. :data:`SCORE_COLUMNS`) are null where a file lacks
    them; `fedsec evaluate` reads ts and query only."""
    summary = scorer.summary
    clock = StageClock(summary.seconds)
    reasons: Counter = Counter()
    for path in paths:
        if on_file is not None:
            on_file(path)
        fmt = log_format or detect_format(path)
        sizing = {} if block_bytes is None else {"block_bytes": block_bytes}
        stream = STREAMS[fmt](
            path,
            quarantine=quarantine,
            columns=columns,
            mapping=mapping,
            on_progress=on_progress,
            **sizing,
        )
        while True:
            try:
                table = next(stream)
            except StopIteration as stop:
                stats = stop.value
                break
            clock.lap("parse")
            scorer.add(table, source=path, clock=clock)
        clock.lap("parse")
        summary.files += 1
        summary.lines_read += stats.lines_read
        summary.records += stats.records
        reasons.update(stats.quarantined)
        summary.problems.extend(unscored(stats, max_malformed_rate=max_malformed_rate))
    scorer.finish()
    clock.lap("model_wait")
    summary.quarantined = dict(reasons)


def unscored(stats: ReadStats, *, max_malformed_rate: float) -> list[str]:
    """Why a file's lines were not all scored: a cut gzip stream, no record at all (unreadable
    columns), or more bad lines than the quality gate allows (the site's, or the default)."""
    problems = file_problems(stats)
    data_lines = stats.lines_read - stats.header_lines
    bad = sum(stats.quarantined.values())
    if stats.records and data_lines and bad / data_lines > max_malformed_rate:
        problems.append(
            f"{stats.path}: {bad} of its {data_lines} data lines were quarantined, not "
            f"scored ({bad / data_lines:.1%}, above the {max_malformed_rate:g} the quality gate "
            "allows; fix: see the quarantine file, check the format and columns)"
        )
    return problems


# --- the `fedsec score` command -----------------------------------------------------------------

DEFAULT_THRESHOLD = 0.5
FRAGILITY_DIR = Path("work") / "fragility"


def resolve_threshold(*, threshold: float | None, site_dir: Path | None) -> tuple[float, str]:
    """(tau, where it came from): ``--threshold``; else the site's latest fragility report's
    ``metrics.threshold`` (``SITE/work/fragility/round-NNN.json``, highest NNN); else 0.5."""
    if threshold is not None:
        return float(threshold), "--threshold"
    if site_dir is not None:
        reports = sorted(
            (site_dir / FRAGILITY_DIR).glob("round-*.json"),
            key=lambda path: (len(path.stem), path.stem),
        )
        for report in reversed(reports):
            try:
                document = json.loads(report.read_text(encoding="utf-8"))
                value = float(document["metrics"]["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if 0.0 <= value <= 1.0:
                return value, str(report)
    return DEFAULT_THRESHOLD, "default"


ALERTS_HEAD = b'{"rank": '  # the first bytes of every alerts and host groups line score writes
EXPLAINED_SUFFIX, EXPLAINED_KEY = ".explained.json", b'"model_sha256"'


def is_score_output(path: Path, *, out: Path) -> bool:
    """Whether ``path`` is something `fedsec score` wrote (this run's or an earlier one's):
    ``out``, its host groups and explanations (`client.triage`), their temporary siblings,
    its quarantine folder; any alerts, host groups, explanations or quarantine file."""
    path, out = path.resolve(), out.resolve()
    quarantine = out.parent / f"{out.name}.quarantine"
    siblings = (out, hosts_path(out), explained_path(out))
    if path in siblings or quarantine in path.parents:
        return True
    if path.parent == out.parent and any(path.name.startswith(f".{p.name}.") for p in siblings):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    if path.name.endswith(EXPLAINED_SUFFIX) and EXPLAINED_KEY in head:
        return True
    return head.startswith(ALERTS_HEAD) or head.startswith(QUARANTINE_HEADER)


def log_paths(logs: list[Path], *, out: Path) -> tuple[list[Path], list[Path]]:
    """(files to score, files left out as `fedsec score` output): folders are walked, and
    score never reads what it wrote, even with ``--out`` inside a ``--logs`` folder."""
    paths: list[Path] = []
    for path in logs:
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such log file or folder (fix: check --logs)")
    own = [path for path in paths if is_score_output(path, out=out)]
    paths = [path for path in paths if path not in own]
    if not paths:
        raise FileNotFoundError(
            f"no log files in {[str(p) for p in logs]}"
            + (f" besides {len(own)} file(s) fedsec score wrote" if own else "")
            + " (fix: check --logs)"
        )
    return paths, own


def score_command(
    *, model: Path, logs: list[Path], out: Path, site_dir: Path | None, threshold: float | None
) -> int:
    """`fedsec score`: alerts.jsonl from logs; prints the summary; 0 when every line was read,
    1 when some input was not (a cut gzip stream, unreadable columns, too many bad lines: the
    alerts are still written for what was read), 2 on bad input.

    With ``site_dir`` the logs are read in the site's configured format (and column mapping);
    without it each file's format is detected. Bad lines go to ``OUT.quarantine/``.
    """

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from client.readers import LogFormatError
    from client.site import load_site_config
    from client.verdicts import local_allowlist, verdicts_path
    from common.config import ConfigError
    from common.model import load_model_file

    console = Console(stderr=True)
    try:
        network, _ = load_model_file(Path(model))
        fmt, mapping, max_malformed = None, None, DEFAULT_MAX_MALFORMED_RATE
        quarantine_dir = out.parent / f"{out.name}.quarantine"
        allowlist: frozenset[str] = frozenset()
        if site_dir is not None:
            config = load_site_config(Path(site_dir))
            fmt, mapping = config.logs.format, getattr(config.logs, "columns", None)
            max_malformed = config.dqa.max_malformed_rate
            with Quarantine(quarantine_dir) as verdict_quarantine:
                allowlist = local_allowlist(Path(site_dir), quarantine=verdict_quarantine)
        paths, own = log_paths([Path(p) for p in logs], out=Path(out))
        tau, source = resolve_threshold(threshold=threshold, site_dir=site_dir)
        with Progress(
            "{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        ) as bar:
            task = bar.add_task("scoring", total=sum(p.stat().st_size for p in paths))
            summary = score_logs(
                network,
                paths,
                out=out,
                threshold=tau,
                quarantine_dir=quarantine_dir,
                log_format=fmt,
                mapping=mapping,
                on_progress=lambda size: bar.advance(task, size),
                on_file=lambda path: bar.update(task, description=f"scoring {path.name}"),
                max_malformed_rate=max_malformed,
                allowlist=allowlist,
            )
    except (ConfigError, LogFormatError, FileNotFoundError, ValueError, OSError) as error:
        for line in str(error).splitlines():
            print(f"fedsec: error: {line}", file=sys.stderr)
        return 2
    if own:
        print(
            f"left out {len(own)} file(s) that fedsec score wrote "
            "(alerts, host groups, explanations, quarantine)"
        )
    for line in summary_lines(
        summary, out=out, threshold_source=source, quarantine_dir=quarantine_dir
    ):
        print(line)
    if summary.allowlisted:
        print(
            f"left out {summary.allowlisted:,} alerting name(s) this site's analysts judged "
            f"benign ({verdicts_path(Path(site_dir))})"
        )
    return report_unread(summary.problems, covers="the alerts cover")


def report_unread(problems: Sequence[str], *, covers: str) -> int:
    """Each log file not read whole on stderr, one line each, then what it means: exit code 1
    (the command's output covers less than it was given), or 0 when every file was read."""
    for problem in problems:
        print(f"fedsec: error: {problem}", file=sys.stderr)
    if not problems:
        return 0
    print(
        f"fedsec: error: {len(problems)} problem(s) above: {covers} only the lines that were read",
        file=sys.stderr,
    )
    return 1


def summary_lines(
    summary: ScoreSummary, *, out: Path, threshold_source: str, quarantine_dir: Path
) -> list[str]:
    total = summary.wall_seconds or math.nan
    quarantined = sum(summary.quarantined.values())
    return [
        f"read {summary.lines_read:,} lines from {summary.files} file(s): "
        f"{summary.records:,} records, {quarantined:,} quarantined, "
        f"{summary.invalid_domains:,} invalid names (see {quarantine_dir})",
        f"scored {summary.domains_scored:,} distinct names "
        f"in {total:,.1f} s ({summary.records / total:,.0f} records/s end to end)",
        f"threshold {summary.threshold:g} ({threshold_source}): "
        f"{summary.alerts:,} alerting names written to {out}",
        f"{summary.host_groups:,} host groups written to {hosts_path(out)}"
        + (
            ""
            if summary.hosts_known or not summary.alerts
            else " (no client host in the logs: one group per registered domain)"
        ),
    ]
