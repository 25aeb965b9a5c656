"""Alerts grouped by client host, ranked for the analyst, and the readers of score's output.

A DGA-infected machine queries many generated names, most answered NXDOMAIN; one alert per
host, with its names, is what an analyst can act on (and what turns a per-domain false-positive
rate into a per-host alert rate). `fedsec score` keeps, for every alerting name only, a
:class:`Tally` per client host (bounded: :data:`HOSTS_PER_NAME` per name and
:data:`HOST_ENTRIES` in all); :func:`group_by_host` turns them into host groups, written beside
the alerts to :func:`hosts_path`. Names whose queries carry no client address (logs without a
client column) are grouped by registered domain instead, with ``host`` null.

Everything here stays on the site: host addresses and names never leave it.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from client.domains import registered_domain

HOSTS_PER_NAME = 10_000  # distinct hosts kept exactly per alerting name; beyond: capped flag
HOST_ENTRIES = 1_000_000  # (name, host) tallies kept in all (~150 B each): memory stays bounded
MAX_HOST_CHARS = 255  # a client field longer than this (or empty) is no host
LISTED_HOSTS = 10  # hosts named in an alert line, most queries first
GROUP_NAMES = 200  # names listed in a host group line, highest priority first
DAY_SECONDS = 86_400.0
MAX_LINE_BYTES = 1 << 20  # a host group line is ~100 KB at most; longer is damage
MAX_RECORDS = 100_000  # lines the readers return at most (the top of the ranking)
NXDOMAIN = frozenset({"NXDOMAIN", "3"})  # Zeek's rcode_name, or a numeric rcode column


@dataclass(slots=True)
class Tally:
    """Queries of one alerting name (by one host, or by all): counts and time span (epoch s).

    ``answered`` counts the queries whose response code the logs carry, so the NXDOMAIN share
    is ``nxdomain / answered`` and stays unknown (None) for logs without response codes.
    """

    queries: int = 0
    nxdomain: int = 0
    answered: int = 0
    first: float = math.inf
    last: float = -math.inf

    def add(self, queries: int, nxdomain: int, answered: int, first: float, last: float) -> None:
        self.queries += queries
        self.nxdomain += nxdomain
        self.answered += answered
        if first < self.first:
            self.first = first
        if last > self.last:
            self.last = last

    def nxdomain_share(self) -> float | None:
        return self.nxdomain / self.answered if self.answered else None


class Evidence(Protocol):
    """What score keeps per alerting name (``client.scoring.Sighting``)."""

    score: float
    query_count: int
    first_seen: float
    last_seen: float
    nxdomain: int
    answered: int
    hosts: Mapping[str, Tally]

    @property
    def priority(self) -> float: ...


def hosts_path(out: Path) -> Path:
    """The host groups beside the alerts: ``alerts.jsonl`` -> ``alerts.hosts.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.hosts.jsonl")


def explained_path(out: Path) -> Path:
    """Where the explanations of ``out``'s alerts go (written by ``client.explain``)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.explained.json")


def iso(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def top_hosts(hosts: Mapping[str, Tally], count: int = LISTED_HOSTS) -> list[str]:
    """The ``count`` hosts that queried a name most (ties by address)."""
    ranked = heapq.nsmallest(count, hosts.items(), key=lambda item: (-item[1].queries, item[0]))
    return [host for host, _ in ranked]


# --- grouping and ranking ---------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    host: str | None
    tally: Tally = field(default_factory=Tally)
    max_score: float = 0.0
    names: list[str] = field(default_factory=list)  # added in alert rank order

    def add(self, name: str, score: float, tally: Tally) -> None:
        # inlined Tally.add: this runs once per (name, host) pair
        total = self.tally
        total.queries += tally.queries
        total.nxdomain += tally.nxdomain
        total.answered += tally.answered
        if tally.first < total.first:
            total.first = tally.first
        if tally.last > total.last:
            total.last = tally.last
        if score > self.max_score:
            self.max_score = score
        self.names.append(name)


def group_priority(
    *, max_score: float, name_count: int, nxdomain_share: float | None, idle_days: float
) -> float:
    """Expected benefit of one analyst look at a group (the cost, one look, is the same for all):

        priority = max_score x (1 + ln(name_count)) x (1 + nxdomain_share) / (1 + idle_days)

    - ``max_score``: how likely the group's best name is generated (the model's score);
    - ``1 + ln(name_count)``: each further suspicious name the same host queried is more
      evidence of one infection, with diminishing returns (2 names: x1.7, 50: x4.9), so a
      busy proxy with many borderline names does not bury everything else;
    - ``1 + nxdomain_share``: generated names mostly do not resolve (a bot walks its list
      until one does), so a group whose queries are all NXDOMAIN counts double; unknown
      (no response codes in the logs) counts as 0;
    - ``1 / (1 + idle_days)``: days between the group's last query and the newest query of
      the run; a host still querying now is worth more than one quiet for days.

    The query count is deliberately absent: one borderline name queried 10,000 times by one
    host is one borderline name, whereas the per-domain ranking (score x queries) puts it on
    top. A host with 50 NXDOMAIN names at 0.8 scores 7.9; a host with one name at 0.51 scores
    at most 1.02, however often it queried it.
    """
    share = nxdomain_share or 0.0
    return max_score * (1.0 + math.log(max(1, name_count))) * (1.0 + share) / (1.0 + idle_days)


def group_by_host(alerts: Sequence[tuple[str, Evidence]]) -> list[dict]:
    """Host group records (the ``.hosts.jsonl`` lines), ranked by :func:`group_priority`.

    A name goes to the group of every host that queried it; a name none of whose queries
    names a host goes to the group of its registered domain (``host`` null). Ties rank by
    name count, query count, then host (or registered domain), so the order is reproducible.
    """
    by_host: dict[str, _Group] = {}
    by_domain: dict[str, _Group] = {}  # names without any host
    domains: dict[str, str] = {}  # name -> registered domain, looked up once per name
    for name, seen in sorted(alerts, key=lambda item: (-item[1].priority, item[0])):
        domain = domains[name] = registered_domain(name)
        score = seen.score
        if seen.hosts:
            for host, tally in seen.hosts.items():
                group = by_host.get(host)
                if group is None:
                    group = by_host[host] = _Group(host)
                group.add(name, score, tally)
        else:
            whole = Tally(seen.query_count, seen.nxdomain, seen.answered)
            whole.first, whole.last = seen.first_seen, seen.last_seen
            if domain not in by_domain:
                by_domain[domain] = _Group(None)
            by_domain[domain].add(name, score, whole)
    keyed = [(f"host:{key}", group) for key, group in by_host.items()]
    keyed += [(f"domain:{key}", group) for key, group in by_domain.items()]
    newest = max((group.tally.last for _, group in keyed), default=0.0)
    records = [_record(key, group, domains, newest=newest) for key, group in keyed]
    records.sort(key=lambda r: (-r["priority"], -r["name_count"], -r["query_count"], r["_key"]))
    for rank, record in enumerate(records, start=1):
        del record["_key"]
        record["rank"] = rank
    return records


def _record(key: str, group: _Group, domains: Mapping[str, str], *, newest: float) -> dict:
    ordered = group.names  # highest priority first, as the alerts were added
    listed = ordered[:GROUP_NAMES]
    per_domain: dict[str, list[str]] = {}
    counts = Counter(domains[name] for name in ordered)
    for name in listed:
        per_domain.setdefault(domains[name], []).append(name)
    share = group.tally.nxdomain_share()
    idle_days = max(0.0, newest - group.tally.last) / DAY_SECONDS
    priority = group_priority(
        max_score=group.max_score,
        name_count=len(ordered),
        nxdomain_share=share,
        idle_days=idle_days,
    )
    return {
        "rank": 0,
        "host": group.host,
        "name_count": len(ordered),
        "names": listed,
        "registered_domains": [
            {"registered_domain": domain, "names": names, "name_count": counts[domain]}
            for domain, names in per_domain.items()
        ],
        "registered_domain_count": len(counts),
        "max_score": group.max_score,
        "query_count": group.tally.queries,
        "nxdomain_share": share,
        "first_seen": iso(group.tally.first),
        "last_seen": iso(group.tally.last),
        "priority": priority,
        "_key": key,
    }


# --- readers (the triage page reads these; a bad line is one error naming file and line) ------


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


Name = Field(min_length=1, max_length=253)
Time = Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class AlertLine(_Line):
    rank: int = Field(ge=1)
    domain: str = Name
    registered_domain: str = Name
    score: float = Field(ge=0.0, le=1.0)
    query_count: int = Field(ge=1)
    priority: float = Field(ge=0.0)
    first_seen: str = Time
    last_seen: str = Time
    host_count: int = Field(ge=0)
    host_count_capped: bool
    hosts: list[str] = Field(max_length=LISTED_HOSTS)
    nxdomain_share: float | None = Field(ge=0.0, le=1.0)


class DomainEntry(_Line):
    registered_domain: str = Name
    names: list[str] = Field(min_length=1, max_length=GROUP_NAMES)
    name_count: int = Field(ge=1)


class HostGroupLine(_Line):
    rank: int = Field(ge=1)
    host: str | None = Field(min_length=1, max_length=MAX_HOST_CHARS)
    name_count: int = Field(ge=1)
    names: list[str] = Field(min_length=1, max_length=GROUP_NAMES)
    registered_domains: list[DomainEntry] = Field(min_length=1, max_length=GROUP_NAMES)
    registered_domain_count: int = Field(ge=1)
    max_score: float = Field(ge=0.0, le=1.0)
    query_count: int = Field(ge=1)
    nxdomain_share: float | None = Field(ge=0.0, le=1.0)
    first_seen: str = Time
    last_seen: str = Time
    priority: float = Field(ge=0.0)


def read_alerts(path: Path, *, limit: int = MAX_RECORDS) -> list[dict]:
    """The first ``limit`` alerts of an alerts.jsonl (rank order), each line validated."""
    return list(_read(Path(path), AlertLine, limit=limit))


def read_host_groups(path: Path, *, limit: int = MAX_RECORDS) -> list[dict]:
    """The first ``limit`` host groups of a ``.hosts.jsonl`` (rank order), each line validated."""
    return list(_read(Path(path), HostGroupLine, limit=limit))


def _read(path: Path, model: type[_Line], *, limit: int) -> Iterator[dict]:
    """Validated records, rank = line number; ValueError naming file, line and field otherwise.

    Memory is bounded: at most ``limit`` records, each line at most MAX_LINE_BYTES.
    """
    fix = "fix: run fedsec score again to rewrite it"
    try:
        stream = path.open("rb")
    except OSError as error:
        raise FileNotFoundError(
            f"{path}: cannot open ({error.strerror}); fix: run fedsec score with --out {path}"
        ) from None
    with stream:
        for number in range(1, limit + 1):
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(
                    f"{path}: line {number}: longer than {MAX_LINE_BYTES} bytes ({fix})"
                )
            try:
                document = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as error:
                raise ValueError(
                    f"{path}: line {number}: not a JSON line ({error}; {fix})"
                ) from None
            if not isinstance(document, dict):
                raise ValueError(f"{path}: line {number}: not a JSON object ({fix})")
            try:
                record = model.model_validate(document).model_dump()
            except ValidationError as error:
                problem = error.errors()[0]
                where = ".".join(str(part) for part in problem["loc"])
                raise ValueError(
                    f"{path}: line {number}: field {where}: {problem['msg']} ({fix})"
                ) from None
            if record["rank"] != number:
                raise ValueError(
                    f"{path}: line {number}: field rank: {record['rank']}, expected the line "
                    f"number {number} ({fix})"
                )
            yield record
