"""One site-day of DNS queries: who asked what and when, rendered as Zeek dns.log data lines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.generator import responses
from experiments.generator.profiles import SiteProfile
from experiments.generator.table import NameTable

DAY_SECONDS = 86_400
BASE62 = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8
)
PUBLIC_RESOLVERS = ("8.8.8.8", "1.1.1.1", "9.9.9.9")


@dataclass(frozen=True)
class Clients:
    """A site's client addresses, the resolver each one uses, and how chatty each one is."""

    addresses: list[str]
    resolvers: list[str]
    weights: np.ndarray


@dataclass(frozen=True)
class Queries:
    """Unrendered queries of one day (any order): unescaped name, response kind, liveness."""

    ts: np.ndarray
    client: np.ndarray
    names: list[str]
    kinds: list[str]
    live: np.ndarray


def make_clients(site: SiteProfile, rng: np.random.Generator, *, count: int) -> Clients:
    hosts = rng.choice(254 * 250, size=count, replace=False)
    addresses = [f"{site.subnet[0]}.{site.subnet[1]}.{1 + h // 254}.{1 + h % 254}" for h in hosts]
    local = [f"{site.subnet[0]}.{site.subnet[1]}.0.{53 + i}" for i in range(2)]
    resolvers = [
        PUBLIC_RESOLVERS[i % 3] if roll < 0.04 else local[i % 2]
        for i, roll in enumerate(rng.random(count))
    ]
    # a few servers and proxies ask far more than laptops
    weights = rng.lognormal(0.0, 1.2, size=count)
    return Clients(addresses, resolvers, weights / weights.sum())


def _diurnal_times(
    rng: np.random.Generator, count: int, *, day_start: float, tz_offset_hours: int
) -> np.ndarray:
    """Query times over one UTC day, busiest in local office hours."""
    local_hour = (np.arange(24) + tz_offset_hours) % 24
    diurnal = 0.15 + np.where(
        (local_hour >= 8) & (local_hour < 18), 1.0, np.where(local_hour >= 18, 0.35, 0.0)
    )
    hours = rng.choice(24, size=count, p=diurnal / diurnal.sum())
    return day_start + hours * 3600.0 + rng.random(count) * 3600.0


def benign_queries(
    table: NameTable,
    clients: Clients,
    rng: np.random.Generator,
    *,
    count: int,
    day_start: float,
    tz_offset_hours: int,
) -> Queries:
    ts = _diurnal_times(rng, count, day_start=day_start, tz_offset_hours=tz_offset_hours)
    picks = rng.choice(len(table.names), size=count, p=table.weights)
    return Queries(
        ts=ts,
        client=rng.choice(len(clients.addresses), size=count, p=clients.weights),
        names=[table.names[i] for i in picks],
        kinds=[table.kinds[i] for i in picks],
        live=np.zeros(count, dtype=bool),
    )


def tail_queries(
    names: list[str],
    kinds: list[str],
    counts: np.ndarray,
    clients: Clients,
    rng: np.random.Generator,
    *,
    day_start: float,
    tz_offset_hours: int,
) -> Queries:
    """The long tail: each name asked `counts[i]` times that day, by one client (a person
    following a link), its retries and reloads minutes apart."""
    index = np.repeat(np.arange(len(names)), counts)
    first = _diurnal_times(rng, len(names), day_start=day_start, tz_offset_hours=tz_offset_hours)
    asker = rng.choice(len(clients.addresses), size=len(names), p=clients.weights)
    later = rng.exponential(600.0, size=len(index)) * (
        np.arange(len(index)) != np.repeat(np.cumsum(counts) - counts, counts)
    )
    ts = np.minimum(first[index] + later, day_start + DAY_SECONDS - 0.001)
    return Queries(
        ts=ts,
        client=asker[index],
        names=[names[i] for i in index],
        kinds=[kinds[i] for i in index],
        live=np.zeros(len(index), dtype=bool),
    )


def dga_queries(
    pool: list[str],
    live: frozenset[str],
    rng: np.random.Generator,
    *,
    unique: int,
    infected: np.ndarray,
    www_probability: float,
    day_start: float,
) -> Queries:
    """Bots walk the day's list in bursts, trying each name 1-5 times; most get NXDOMAIN."""
    chosen = [
        pool[i] for i in np.sort(rng.choice(len(pool), size=min(unique, len(pool)), replace=False))
    ]
    chosen += [name for name in sorted(live) if name not in chosen and rng.random() < 0.8]
    bursts = day_start + rng.random((len(infected), int(rng.integers(2, 7)))) * (DAY_SECONDS - 600)
    host = rng.integers(0, len(infected), size=len(chosen))
    burst = rng.integers(0, bursts.shape[1], size=len(chosen))
    group = host * bursts.shape[1] + burst
    starts = (
        bursts[host, burst] + _rank_within(group) * 0.4 + rng.exponential(0.2, size=len(chosen))
    )
    tries = rng.choice(np.arange(1, 6), size=len(chosen), p=(0.35, 0.25, 0.2, 0.12, 0.08))
    index = np.repeat(np.arange(len(chosen)), tries)
    gaps = rng.exponential(3.0, size=len(index))  # resolver retries, seconds apart
    first = np.concatenate([[0], np.cumsum(tries)[:-1]]).astype(int)
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    retry_offset = elapsed - np.repeat(elapsed[first], tries)
    ts = np.minimum(starts[index] + retry_offset, day_start + DAY_SECONDS - 0.001)
    prefixed = rng.random(len(chosen)) < www_probability
    names = [("www." if prefixed[i] else "") + chosen[i] for i in index]
    return Queries(
        ts=ts,
        client=infected[host[index]],
        names=names,
        kinds=["dga"] * len(names),
        live=np.array([chosen[i] in live for i in index], dtype=bool),
    )


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... inside each group value, in input order: a name's slot within its burst."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    heads = np.flatnonzero(np.concatenate([[True], sorted_group[1:] != sorted_group[:-1]]))
    sizes = np.diff(np.concatenate([heads, [len(group)]]))
    rank = np.empty(len(group), dtype=float)
    rank[order] = np.arange(len(group)) - np.repeat(heads, sizes)
    return rank


def concat(batches: list[Queries]) -> Queries:
    return Queries(
        ts=np.concatenate([b.ts for b in batches]),
        client=np.concatenate([b.client for b in batches]),
        names=[n for b in batches for n in b.names],
        kinds=[k for b in batches for k in b.kinds],
        live=np.concatenate([b.live for b in batches]),
    )


def _uids(rng: np.random.Generator, count: int) -> list[str]:
    body = BASE62[rng.integers(0, 62, size=(count, 17))]
    raw = (
        np.concatenate([np.full((count, 1), ord("C"), dtype=np.uint8), body], axis=1)
        .tobytes()
        .decode()
    )
    return [raw[i * 18 : (i + 1) * 18] for i in range(count)]


def _rtts(rng: np.random.Generator, kinds: list[str], outcomes: np.ndarray) -> list[str]:
    fast = np.array([kind in ("web", "cname", "internal", "srv") for kind in kinds])
    seconds = np.where(
        fast,
        rng.lognormal(np.log(0.004), 1.3, len(kinds)),
        rng.lognormal(np.log(0.04), 0.9, len(kinds)),
    )
    seconds = np.where(outcomes == 2, rng.uniform(0.5, 3.0, len(kinds)), seconds)
    return [
        "-" if outcome == 1 else f"{value:.6f}"
        for value, outcome in zip(np.minimum(seconds, 4.9), outcomes, strict=True)
    ]


class Renderer:
    """Turns queries into Zeek data lines; caches the answer part of each (name, qtype, outcome)."""

    def __init__(self, site: SiteProfile) -> None:
        self._site = site
        self._tails: dict[tuple[str, str, str, int, bool], str] = {}

    def _answer(self, name: str, kind: str, qtype: str, live: bool) -> responses.Answer:
        site = self._site
        if kind == "dga":
            return responses.dga_answer(name, qtype, live=live)
        if kind in ("web", "cname"):
            return responses.web_answer(name, qtype, cname=kind == "cname")
        if kind in ("internal", "srv"):
            return responses.internal_answer(
                name, qtype, internal_domain=site.internal_domain, subnet=site.subnet
            )
        if kind == "ptr":
            return responses.ptr_answer(
                name, internal_domain=site.internal_domain, subnet=site.subnet
            )
        if kind == "ddr":
            return responses.Answer("NOERROR")
        return responses.Answer("NXDOMAIN")

    def tail(self, name: str, kind: str, qtype: str, outcome: int, live: bool) -> str:
        key = (name, kind, qtype, outcome, live)
        if key not in self._tails:
            code = responses.QTYPE_CODES[qtype]
            head = f"{responses.zeek_escape(name)}\t1\tC_INTERNET\t{code}\t{qtype}"
            rd = "F" if kind == "mdns" else "T"
            if outcome == 1:
                self._tails[key] = f"{head}\t-\t-\tF\tF\t{rd}\tF\t0\t-\t-\tF"
            else:
                answer = (
                    responses.Answer("SERVFAIL")
                    if outcome == 2
                    else self._answer(name, kind, qtype, live)
                )
                aa = "T" if answer.authoritative else "F"
                self._tails[key] = (
                    f"{head}\t{responses.RCODE_CODES[answer.rcode_name]}\t{answer.rcode_name}\t{aa}"
                    f"\tF\t{rd}\tT\t0\t{answer.answers}\t{answer.ttls}\tF"
                )
        return self._tails[key]

    def render(self, queries: Queries, clients: Clients, rng: np.random.Generator) -> list[str]:
        """Data lines sorted by ts (ties keep input order)."""
        count = len(queries.names)
        order = np.argsort(queries.ts, kind="stable")
        kinds = [queries.kinds[i] for i in order]
        qtypes = np.empty(count, dtype=object)
        kind_array = np.array(kinds, dtype=object)
        for kind in sorted(set(kinds)):
            where = np.flatnonzero(kind_array == kind)
            options, probabilities = responses.QTYPE_MIX[kind]
            qtypes[where] = np.array(options, dtype=object)[
                rng.choice(len(options), size=len(where), p=probabilities)
            ]
        roll = rng.random(count)
        mdns = kind_array == "mdns"
        outcomes = np.where(mdns | (roll < 0.012), 1, np.where(roll < 0.016, 2, 0))
        rtts, uids = _rtts(rng, kinds, outcomes), _uids(rng, count)
        ports = rng.integers(1025, 65536, size=count).astype(str).astype(object)
        trans_ids = rng.integers(0, 65536, size=count).astype(str).astype(object)
        protos = np.where(rng.random(count) < 0.015, "tcp", "udp").astype(object)
        sorted_clients = queries.client[order]
        addresses = np.array(clients.addresses, dtype=object)[sorted_clients]
        resolvers = np.array(clients.resolvers, dtype=object)[sorted_clients]
        resp_ports = np.full(count, "53", dtype=object)
        # mDNS goes from port 5353 to the multicast group, transaction id 0
        ports[mdns], resp_ports[mdns], trans_ids[mdns], protos[mdns] = "5353", "5353", "0", "udp"
        resolvers[mdns] = "224.0.0.251"
        names = [queries.names[i] for i in order]
        live = queries.live[order].tolist()
        columns = (qtypes.tolist(), outcomes.tolist(), live)
        tails = [
            self.tail(name, kind, qtype, outcome, is_live)
            for name, kind, qtype, outcome, is_live in zip(names, kinds, *columns, strict=True)
        ]
        timestamps = [f"{ts:.6f}" for ts in queries.ts[order].tolist()]
        endpoint = (addresses, ports, resolvers, resp_ports, protos, trans_ids)
        rows = zip(timestamps, uids, *(c.tolist() for c in endpoint), rtts, tails, strict=True)
        return ["\t".join(row) for row in rows]
