"""Hostile log files against the site's readers (issue 18): seconds and peak memory per probe.

    python -m experiments.hostile_logs [--limit-gib 1.5] [--out results/hostile_logs.json]

Each probe runs in a fresh process under ``RLIMIT_AS`` (so a reader that would take gigabytes
fails instead of swapping) and reports how it ended (read, or the one-line error), its
accounting (lines read = header + records + quarantined) and its peak RSS. The files are
small on disk: a gzip of one 400 MB line, a Parquet dictionary bomb, a Parquet value of 200 MB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

HEADS = {
    "zeek-tsv": b"#separator \\x09\n#fields\tts\tquery\n",
    "zeek-json": b"",
    "csv": b"ts,query\n",
}
GOOD = {
    "zeek-tsv": b"1767225600.5\texample.com\n",
    "zeek-json": b'{"ts": 1767225600.5, "query": "example.com"}\n',
    "csv": b"1767225600.5,example.com\n",
}


def make_files(folder: Path) -> list[tuple[str, str, Path]]:
    """(probe, format, path) for every hostile file, written under ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    member = gzip.compress(b"a" * (1 << 20), compresslevel=9)
    probes = []
    for fmt, head in HEADS.items():
        path = folder / f"line-400mb.{fmt}.gz"
        tail = b"\n" + GOOD[fmt] * 1000
        path.write_bytes(gzip.compress(head) + member * 400 + gzip.compress(tail))
        probes.append(("gzip, one 400 MB line", fmt, path))
    rows = 200_000
    query = pa.DictionaryArray.from_arrays(
        pa.array([0] * rows, pa.int32()), pa.array(["a" * (2 << 20)])
    )
    bomb = folder / "dictionary-bomb.parquet"
    pq.write_table(pa.table({"ts": [1.7e9] * rows, "query": query}), bomb, compression="zstd")
    probes.append(("Parquet, one 2 MiB value x 200,000 rows", "parquet", bomb))
    huge = folder / "value-300mb.parquet"
    pq.write_table(
        pa.table({"ts": [1.7e9], "query": ["b" * (300 << 20)]}), huge, compression="zstd"
    )
    probes.append(("Parquet, one 300 MB value", "parquet", huge))
    return probes


def _probe(fmt: str, path: str, folder: str, limit: int) -> dict:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from client.quarantine import Quarantine
    from client.readers import READERS, LogFormatError

    started = time.perf_counter()
    try:
        with Quarantine(Path(folder) / "quarantine") as quarantine:
            _, stats = READERS[fmt](Path(path), quarantine=quarantine, columns=("ts", "query"))
        outcome = {"ended": "read", "stats": stats.__dict__}
    except LogFormatError as error:
        outcome = {"ended": "error", "error": str(error)}
    except MemoryError as error:
        outcome = {"ended": "MemoryError", "error": str(error)[:200]}
    except Exception as error:  # noqa: BLE001 - a probe reports any other failure as it is
        outcome = {"ended": type(error).__name__, "error": str(error)[:200]}
    outcome["seconds"] = round(time.perf_counter() - started, 2)
    outcome["peak_rss_mb"] = peak_rss_mb()
    return outcome


def peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run(limit_gib: float) -> list[dict]:
    """Every probe in its own process; one record each.

    The probes use the system allocator: Arrow's default (mimalloc) reserves about 1 GiB of
    address space at its first large allocation, which RLIMIT_AS counts as if it were used.
    """
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # inherited by the spawned probes
    results = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="fedsec-hostile-") as folder:
        for probe, fmt, path in make_files(Path(folder)):
            with context.Pool(1) as pool:
                outcome = pool.apply(_probe, (fmt, str(path), folder, int(limit_gib * 2**30)))
            record = {"probe": probe, "format": fmt, "file_bytes": path.stat().st_size}
            results.append(record | outcome)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-gib", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = run(args.limit_gib)
    for item in results:
        stats = item.get("stats", {})
        print(
            f"{item['probe']} [{item['format']}], {item['file_bytes']:,} bytes: {item['ended']} "
            f"in {item['seconds']} s, peak RSS {item['peak_rss_mb']} MB; "
            + (
                f"{stats['lines_read']} lines = {stats['header_lines']} header + "
                f"{stats['records']} records + quarantined {stats['quarantined']}"
                if stats
                else item.get("error", "")[:160]
            )
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "limit_gib": args.limit_gib,
            "load_average": os.getloadavg(),  # seconds are inflated on a busy machine
            "probes": results,
        }
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
