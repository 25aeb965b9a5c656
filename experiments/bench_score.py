"""Benchmark `fedsec score` end to end on a generated Zeek dns.log; prints and writes JSON.

    python -m experiments.bench_score [--lines 10000000] [--out results/bench_score.json]

The log repeats names the way DNS traffic does: a site's benign name table from the generator
(popular sites, CDN and telemetry hostnames, long tail, internal, PTR, IDN, ...) with its
per-category Zipf weights, plus DGA names, over a vocabulary of ``--unique-fraction`` x lines
names (default 4%: ~25 queries per distinct name). Each phase runs in a fresh process so its
peak RSS is its own: the end-to-end score (parse -> normalise -> dedup -> model -> alerts), the
parser alone, and a plain-Python line loop doing parse -> normalise -> dedup (no model).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DAY = dt.date(2026, 1, 1)
DAY_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
CHUNK_LINES = 1_000_000
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_score.json"


def vocabulary(*, size: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Zeek line tails (query onwards) of ``size`` names and their query probabilities."""
    from experiments.generator import dga, responses, table, traffic
    from experiments.generator.profiles import draw_profiles

    site = draw_profiles(seed=seed, n_sites=3)[0]
    stable = table.stable_names(site, seed=seed, n_distinct=max(300, size))
    names = table.day_table(site, stable, seed=seed, day_index=0, is_excluded=lambda _: False)
    renderer, rng = traffic.Renderer(site), np.random.default_rng(seed)
    tails = []
    for name, kind in zip(names.names, names.kinds, strict=True):
        options, weights = responses.QTYPE_MIX[kind]
        qtype = options[int(rng.choice(len(options), p=weights))]
        tails.append(renderer.tail(name, kind, qtype, 0, False))
    weights = list(names.weights * 0.995)
    families = dga.FAMILIES[:4]
    per_family = max(10, size // 400)
    for family in families:
        pool = dga.family_pool(family, seed=seed, epoch=0, day=DAY, size=per_family)
        tails += [renderer.tail(name, "dga", "A", 0, False) for name in pool]
        weights += [0.005 / len(families) / len(pool)] * len(pool)
    weights = np.array(weights)
    return tails, weights / weights.sum()


def write_log(path: Path, *, lines: int, unique_fraction: float, seed: int) -> dict:
    """A one-day dns.log of ``lines`` records in time order; returns what it holds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from experiments.generator import traffic, zeek_writer

    tails, weights = vocabulary(size=max(1000, int(lines * unique_fraction)), seed=seed)
    tail_array = pa.array(tails)
    rng = np.random.default_rng(seed)
    clients = pa.array([f"10.1.{index // 254}.{1 + index % 254}" for index in range(4000)])
    seen = np.zeros(len(tails), dtype=bool)
    stamps = np.sort(rng.random(lines)) * 86_400 + DAY_START
    with open(path, "wb") as handle:
        handle.write(zeek_writer.header(DAY).encode())
        for start in range(0, lines, CHUNK_LINES):
            count = min(CHUNK_LINES, lines - start)
            picks = rng.choice(len(tails), size=count, p=weights)
            seen[picks] = True
            ts = stamps[start : start + count]
            seconds = ts.astype(np.int64)
            micros = np.round((ts - seconds) * 1e6).astype(np.int64).clip(0, 999_999)
            text = pc.binary_join_element_wise(
                pa.array(seconds.astype(str)),
                pc.utf8_lpad(pa.array(micros.astype(str)), 6, "0"),
                ".",
            )
            columns = [
                text,
                pa.array(traffic._uids(rng, count)),
                clients.take(pa.array(rng.integers(0, len(clients), count))),
                pa.array(rng.integers(1025, 65536, count).astype(str)),
                pa.array(np.full(count, "10.1.0.53")),
                pa.array(np.full(count, "53")),
                pa.array(np.where(rng.random(count) < 0.015, "tcp", "udp")),
                pa.array(rng.integers(0, 65536, count).astype(str)),
                pa.array(np.char.mod("%.6f", rng.lognormal(np.log(0.01), 1.0, count))),
                tail_array.take(pa.array(picks)),
            ]
            body = pc.binary_join_element_wise(*columns, "\t")
            handle.write(("\n".join(body.to_pylist()) + "\n").encode())
        handle.write(zeek_writer.footer(DAY).encode())
    return {
        "lines": lines,
        "bytes": path.stat().st_size,
        "vocabulary": len(tails),
        "distinct_queries": int(seen.sum()),
    }


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _model(seed: int):
    from common.model import ModelSpec, build_model

    return build_model(ModelSpec(), seed=seed)


def pick_threshold(path: Path, *, seed: int, quantile: float) -> float:
    """A threshold that the top (1 - quantile) of a sample of the log's names reach."""
    from common.training import predict_scores

    names = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                names.append(line.split("\t", 10)[9])
            if len(names) >= 50_000:
                break
    model = _model(seed)
    scores = predict_scores(model, domains=model.spec.encode(sorted(set(names))))
    return float(np.quantile(scores, quantile))


def run_score(path: Path, *, threshold: float, seed: int, model_threads: int) -> dict:
    from client.scoring import score_logs

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    start = time.perf_counter()
    summary = score_logs(
        _model(seed),
        [path],
        out=work / "alerts.jsonl",
        threshold=threshold,
        quarantine_dir=work / "quarantine",
        model_threads=model_threads,
    )
    seconds = time.perf_counter() - start
    with open(work / "alerts.jsonl", encoding="utf-8") as handle:
        alerts_ok = sum(1 for _ in handle) == summary.alerts
    shutil.rmtree(work)
    return {
        "seconds": seconds,
        "records": summary.records,
        "lines_read": summary.lines_read,
        "records_per_s": summary.records / seconds,
        "unique_domains": summary.domains_scored,
        "unique_domains_per_s": summary.domains_scored / seconds,
        "domains_looked_up": summary.domains_looked_up,
        "cache_evictions": summary.cache_evictions,
        "invalid_domains": summary.invalid_domains,
        "alerts": summary.alerts,
        "alerts_file_consistent": alerts_ok,
        "stage_seconds": {stage: round(value, 3) for stage, value in summary.seconds.items()},
        "model_threads": model_threads,
        "peak_rss_mib": _peak_rss_mib(),
    }


def run_model_only(path: Path, *, seed: int, sample: int = 50_000) -> dict:
    """The model's own ceiling: distinct names of the log's start, scored in one call."""
    import torch

    from common.training import predict_scores

    names: dict[str, None] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                names.setdefault(line.split("\t", 10)[9].lower().rstrip("."), None)
            if len(names) >= sample:
                break
    model, result = _model(seed), {}
    encoded = model.spec.encode(list(names))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        predict_scores(model, domains=encoded)
        result[f"domains_per_s_{threads}_threads"] = len(names) / (time.perf_counter() - start)
    return result


def run_parse_only(path: Path) -> dict:
    from client.quarantine import Quarantine
    from client.readers import stream_zeek_tsv

    work = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    start = time.perf_counter()
    stream = stream_zeek_tsv(path, quarantine=Quarantine(work), columns=("ts", "query"))
    records = sum(table.num_rows for table in stream)
    seconds = time.perf_counter() - start
    shutil.rmtree(work)
    return {"seconds": seconds, "records_per_s": records / seconds, "peak_rss_mib": _peak_rss_mib()}


def run_line_loop(path: Path) -> dict:
    """The plain-Python baseline: split each line, unescape and normalise (memoised), count."""
    from client.domains import normalise_domain
    from client.readers.zeek_tsv import unescape_zeek

    start = time.perf_counter()
    normalised: dict[str, str | None] = {}
    seen: dict[str, list[float]] = {}
    query_field, records = 9, 0
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            if line.startswith("#"):
                query_field = (
                    line.rstrip("\n").split("\t")[1:].index("query")
                    if line.startswith("#fields")
                    else query_field
                )
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) <= query_field:
                continue
            ts, raw = float(fields[0]), fields[query_field]
            records += 1
            name = normalised.get(raw, "")
            if name == "":
                text = unescape_zeek(raw)[0] if "\\" in raw else raw
                name = normalised[raw] = None if text is None else normalise_domain(text)[0]
            if name is None:
                continue
            entry = seen.get(name)
            if entry is None:
                seen[name] = [1, ts, ts]
            else:
                entry[0] += 1
                entry[1], entry[2] = min(entry[1], ts), max(entry[2], ts)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "records": records,
        "records_per_s": records / seconds,
        "unique_domains": len(seen),
        "peak_rss_mib": _peak_rss_mib(),
    }


def in_child(function, *args, **kwargs):
    """Run one phase in a fresh process, so its peak RSS is its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args, **kwargs).result()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--unique-fraction", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--alert-quantile",
        type=float,
        default=0.99,
        help="threshold = this quantile of a sample's scores",
    )
    parser.add_argument(
        "--model-threads",
        type=int,
        default=1,
        help="torch threads of the scoring model (the parser needs a core too)",
    )
    parser.add_argument(
        "--flat-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score a log 10x smaller, to compare peak RSS",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the generated logs here and reuse them on the next run",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.lines < 1 or not 0 < args.unique_fraction <= 1:
        parser.error("--lines must be >= 1 and --unique-fraction in (0, 1]")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-score-data-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = _measure(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _print(result, args.out)
    return result


def prepared_log(path: Path, *, lines: int, unique_fraction: float, seed: int) -> dict:
    """Write the log, or reuse one a previous run left in ``--workdir`` with the same knobs."""
    manifest = path.with_name(path.name + ".json")
    knobs = {"lines": lines, "unique_fraction": unique_fraction, "seed": seed}
    if path.is_file() and manifest.is_file():
        data = json.loads(manifest.read_text())
        if data.get("knobs") == knobs and data.get("bytes") == path.stat().st_size:
            return data
    started = time.perf_counter()
    data = in_child(write_log, path, lines=lines, unique_fraction=unique_fraction, seed=seed)
    data |= {"knobs": knobs, "generate_seconds": round(time.perf_counter() - started, 1)}
    manifest.write_text(json.dumps(data))
    return data


def _measure(args: argparse.Namespace, work: Path) -> dict:
    path = work / "dns.log"
    data = prepared_log(
        path, lines=args.lines, unique_fraction=args.unique_fraction, seed=args.seed
    )
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    threshold = in_child(pick_threshold, path, seed=args.seed, quantile=args.alert_quantile)
    score = in_child(
        run_score, path, threshold=threshold, seed=args.seed, model_threads=args.model_threads
    )
    parse = in_child(run_parse_only, path)
    loop = in_child(run_line_loop, path)
    model = in_child(run_model_only, path, seed=args.seed)
    result = {
        "machine": {
            "cpus": multiprocessing.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        },
        "input": data | {"unique_fraction": args.unique_fraction, "threshold": threshold},
        "score": score,
        "parse_only": parse,
        "python_line_loop": loop,
        "model_only": model,
        "speedup_vs_line_loop": score["records_per_s"] / loop["records_per_s"],
        "parse_speedup_vs_line_loop": parse["records_per_s"] / loop["records_per_s"],
        "target_records_per_s": 278_000,
        "meets_target": score["records_per_s"] >= 278_000,
    }
    if args.flat_check and args.lines >= 10:
        small = work / "dns-small.log"
        prepared_log(
            small, lines=args.lines // 10, unique_fraction=args.unique_fraction, seed=args.seed
        )
        small_score = in_child(
            run_score, small, threshold=threshold, seed=args.seed, model_threads=args.model_threads
        )
        result["flat_memory"] = {
            "lines": [args.lines // 10, args.lines],
            "peak_rss_mib": [small_score["peak_rss_mib"], score["peak_rss_mib"]],
        }
    return result


def _print(result: dict, out: Path) -> None:
    score, loop = result["score"], result["python_line_loop"]
    print(
        f"input: {result['input']['lines']:,} lines, {result['input']['bytes'] / 2**20:,.0f} "
        f"MiB, {score['unique_domains']:,} distinct names"
    )
    print(
        f"score end to end: {score['seconds']:.1f} s, {score['records_per_s']:,.0f} records/s, "
        f"{score['unique_domains_per_s']:,.0f} unique domains/s, peak RSS "
        f"{score['peak_rss_mib']:,.0f} MiB, {score['alerts']:,} alerts"
    )
    print("  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in score["stage_seconds"].items()))
    print(
        f"parse only: {result['parse_only']['records_per_s']:,.0f} records/s; model only: "
        + ", ".join(
            f"{value:,.0f} {key.replace('_', ' ')}" for key, value in result["model_only"].items()
        )
    )
    load = result["machine"]["load_average_1min_before_after"]
    print(f"load average (1 min) before/after: {load}")
    print(
        f"python line loop (parse, normalise, dedup; no model): {loop['records_per_s']:,.0f} "
        f"records/s; end to end is {result['speedup_vs_line_loop']:.2f}x that"
    )
    if "flat_memory" in result:
        print(
            f"peak RSS at {result['flat_memory']['lines']} lines: "
            f"{result['flat_memory']['peak_rss_mib']} MiB"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
