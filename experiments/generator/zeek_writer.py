"""Zeek TSV dns.log files: header, data lines, a few recorded malformed lines, stable gzip."""

from __future__ import annotations

import datetime as dt
import gzip

import numpy as np

FIELDS = (
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "trans_id",
    "rtt",
    "query",
    "qclass",
    "qclass_name",
    "qtype",
    "qtype_name",
    "rcode",
    "rcode_name",
    "AA",
    "TC",
    "RD",
    "RA",
    "Z",
    "answers",
    "TTLs",
    "rejected",
)
TYPES = (
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "count",
    "interval",
    "string",
    "count",
    "string",
    "count",
    "string",
    "count",
    "string",
    "bool",
    "bool",
    "bool",
    "bool",
    "count",
    "vector[string]",
    "vector[interval]",
    "bool",
)
QUERY_FIELD = FIELDS.index("query")
MALFORMED_KINDS = ("truncated", "too_few_fields", "bad_timestamp")


def header(day: dt.date) -> str:
    return (
        "\n".join(
            (
                "#separator \\x09",
                "#set_separator\t,",
                "#empty_field\t(empty)",
                "#unset_field\t-",
                "#path\tdns",
                f"#open\t{day:%Y-%m-%d}-00-00-00",
                "#fields\t" + "\t".join(FIELDS),
                "#types\t" + "\t".join(TYPES),
            )
        )
        + "\n"
    )


def footer(day: dt.date) -> str:
    return f"#close\t{day + dt.timedelta(days=1):%Y-%m-%d}-00-00-00\n"


def _damage(line: str, kind: str, rng: np.random.Generator) -> str:
    fields = line.split("\t")
    if kind == "truncated":  # a write cut off before the query field (crash, full disk)
        cut = len("\t".join(fields[:QUERY_FIELD]))
        return line[: int(rng.integers(5, cut))]
    if kind == "too_few_fields":  # a field dropped by a broken forwarder
        drop = int(
            rng.choice((FIELDS.index("rtt"), FIELDS.index("trans_id"), FIELDS.index("TTLs")))
        )
        return "\t".join(fields[:drop] + fields[drop + 1 :])
    fields[0] = fields[0][:4] + "x" + fields[0][5:]
    return "\t".join(fields)


def with_malformed(
    lines: list[str], rng: np.random.Generator, *, per_kind_max: int = 3
) -> tuple[list[str], dict[str, int]]:
    """Insert damaged copies of random lines (originals stay); return lines and counts per kind."""
    counts = {
        kind: int(rng.integers(1, per_kind_max + 1)) if lines else 0 for kind in MALFORMED_KINDS
    }
    extra = [
        (kind, _damage(lines[int(rng.integers(len(lines)))], kind, rng))
        for kind in MALFORMED_KINDS
        for _ in range(counts[kind])
    ]
    positions = np.sort(rng.integers(0, len(lines) + 1, size=len(extra)))
    out: list[str] = []
    previous = 0
    for position, (_, damaged) in zip(positions, extra, strict=True):
        out.extend(lines[previous:position])
        out.append(damaged)
        previous = position
    out.extend(lines[previous:])
    counts["total"] = len(extra)
    return out, counts


def log_bytes(lines: list[str], day: dt.date) -> bytes:
    """The gzip'd file: mtime 0 and no embedded file name, so equal inputs give equal bytes."""
    text = header(day) + "".join(line + "\n" for line in lines) + footer(day)
    return gzip.compress(text.encode("utf-8"), compresslevel=1, mtime=0)
