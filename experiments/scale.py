"""Scale: seconds per round and memory for 100, 500 and 1000 simulated sites on one machine.

    fedsec experiment scale [--full | --tiny]

Every size is a fresh FedAvg federation of small generated sites (2 days at a small volume
scale) on flwr's Simulation Engine in this process. Seconds per round are means over rounds
>= 2 (round 1 starts cold Ray actors), split into train and evaluate; per-site figures are
ratios against the smallest size of the same run. Memory is the peak RSS of the whole process
tree (driver, raylet, GCS and the ClientApp actors), and the largest RSS of any single actor:
each actor keeps every site it has served parsed in memory (``client.pipeline.load_site``
and the reply guard's name set), so its RSS grows with the number of sites, not with rounds.
A separate child process measures that cache directly: RSS after preparing 1, 2, ... sites as
an actor does (parsed, names encoded) under a small site-cache bound
(client.pipeline.SiteCache, FEDSEC_SITE_CACHE_MIB), so the curve shows the bound holding.
Sites whose generated logs fail their own quality gate would refuse to train (and flood the
log with Ray tracebacks); they are generated in surplus and left out, so every size trains
exactly its number of sites. The sites are generated once, for the largest size; each smaller
size is its first sites (links to the same folders, their work folders cleared between runs).
Sites render no HTML page (by default each renders one, once per run, at the last round).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from client.pipeline import SITE_CACHE_STATS_ENV
from experiments.lab import (
    RESULTS_ROOT,
    Column,
    PeakRss,
    Results,
    cli_main,
    run_federation,
    stopwatch,
)

log = logging.getLogger("fedsec.experiments")

NAME = "scale"
TITLE = "Scale: seconds per round and memory for hundreds of simulated sites"
SEED = 0
SURPLUS = 1.15  # generate this many times the sites needed: a few fail their quality gate
# No site renders its HTML page: by default a site renders it once per run, at the last round
# (~1-2 CPU s a site), a per-run cost that would swamp a two-round measurement at 1,000 sites.
SITE_HTML = "off"
# The targets on 2 cores at 1,000 sites (default model, small sites).
TARGET_ROUND_S = 60.0
TARGET_PEAK_MIB = 2048.0
TARGET_CPU_PER_SITE_RATIO = 1.1


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    num_rounds: int
    secagg_sites: int | None = None  # one SecAgg+ run at this size (fixed small num_shares)
    secagg_shares: int = 7
    cache_sites: int = 100  # sites parsed in the cache-cost child process
    cache_bound_mib: float = 16.0  # that child's site-cache bound: the curve must flatten at it
    scale: float = 0.02
    n_days: int = 2
    local_steps: int = 10


PLANS = {
    "tiny": Plan(sizes=(5, 10), num_rounds=2, cache_sites=6, local_steps=3, cache_bound_mib=0.5),
    "default": Plan(sizes=(20, 100), num_rounds=2),
    # What one session could measure (python -c "from experiments import scale;
    # scale.run(size='mid')"); --full adds 1,000 sites and a SecAgg+ run.
    "mid": Plan(sizes=(20, 100, 500), num_rounds=2, cache_sites=300),
    "full": Plan(sizes=(100, 500, 1000), num_rounds=2, secagg_sites=100, cache_sites=300),
    # The per-site CPU from 100 to 1,000 sites alone, in its own folder (scale-check/) beside
    # the full table: python -c "from experiments import scale; scale.run(size='check')".
    "check": Plan(sizes=(100, 1000), num_rounds=2, cache_sites=300),
}
OWN_FOLDER = ("mid", "check")
"""Sizes that write `results/scale-SIZE/` instead of replacing the committed scale table."""


def run(*, size: str = "default", root: Path = RESULTS_ROOT) -> dict[str, Any]:
    plan = PLANS[size]
    runs = [(n, "fedavg") for n in plan.sizes]
    if plan.secagg_sites:
        runs.append((plan.secagg_sites, "secagg"))
    rows, generation = [], []
    with tempfile.TemporaryDirectory(prefix="fedsec-scale-", ignore_cleanup_errors=True) as temp:
        largest = max(n for n, _ in runs)
        every_site, gen = _sites(Path(temp) / "sites", largest, plan)
        generation.append(gen)
        log.info(
            "scale: %d sites generated in %.0f s (%.3f s/site), %d of %d refused by "
            "their quality gate",
            largest,
            gen["seconds"],
            gen["seconds_per_site"],
            gen["gate_failures"],
            gen["generated"],
        )
        datasets = {
            n_sites: _first_sites(every_site, n_sites, Path(temp) / f"sites-{n_sites}")
            for n_sites in sorted({n for n, _ in runs})
        }
        for n_sites, mode in runs:
            rows.append(
                _one_run(
                    datasets[n_sites],
                    Path(temp) / f"run-{mode}-{n_sites}",
                    plan=plan,
                    mode=mode,
                    n_sites=n_sites,
                )
            )
        cache = _cache_cost(
            datasets[max(datasets)], Path(temp) / "cache", plan.cache_sites, plan.cache_bound_mib
        )
    _add_ratios(rows)
    summary = _summary(rows, cache)
    payload = {
        "plan": plan.__dict__,
        "runs": rows,
        "generation": generation,
        "cache": cache,
        "summary": summary,
    }
    if size in OWN_FOLDER:
        _write(Results(f"{NAME}-{size}", f"{TITLE} ({size} size)", root), payload, size=size)
    else:
        _write(Results(NAME, TITLE, root), payload, size=size)
    return payload


# --- sites -------------------------------------------------------------------------------------


def _sites(out: Path, n_sites: int, plan: Plan) -> tuple[Path, dict[str, Any]]:
    """`n_sites` generated sites that pass their quality gate (a surplus is generated)."""
    from experiments.generator import generate_sites

    generated = math.ceil(n_sites * SURPLUS) + 3
    with stopwatch() as timing:
        site_dirs = generate_sites(
            out_dir=out, n_sites=generated, n_days=plan.n_days, seed=SEED, scale=plan.scale
        )
    with stopwatch() as gate_timing:
        refused = [site for site in site_dirs if not _passes_gate(site, out.parent / "gate")]
    kept = [site for site in sorted(site_dirs) if site not in refused][:n_sites]
    if len(kept) < n_sites:
        raise RuntimeError(
            f"only {len(kept)} of {generated} generated sites pass their "
            f"quality gate; {n_sites} needed (raise SURPLUS)"
        )
    for site in site_dirs:
        if site not in kept:
            shutil.rmtree(site)
    disk = sum(path.stat().st_size for site in kept for path in site.rglob("*") if path.is_file())
    return out, {
        "sites": n_sites,
        "generated": generated,
        "gate_failures": len(refused),
        "seconds": timing["seconds"],
        "seconds_per_site": timing["seconds"] / generated,
        "gate_seconds_per_site": gate_timing["seconds"] / generated,
        "disk_mib_per_site": disk / len(kept) / 2**20,
        "site_ids_unique": len({site.name for site in kept}) == len(kept),
    }


def _first_sites(every_site: Path, n_sites: int, out: Path) -> Path:
    """A data folder of the first `n_sites` generated sites (links, not copies)."""
    from client.site import find_site_dirs

    out.mkdir(parents=True)
    for site in find_site_dirs(every_site)[:n_sites]:
        (out / site.name).symlink_to(site, target_is_directory=True)
    return out


def _clear_work(data: Path) -> None:
    """A run starts from sites that never took part in one (reports, audit, local models)."""
    from client.site import find_site_dirs

    for site in find_site_dirs(data):
        shutil.rmtree(site / "work", ignore_errors=True)


def _passes_gate(site_dir: Path, work_root: Path) -> bool:
    from client.pipeline import prepare_site

    return prepare_site(site_dir, work_dir=work_root / site_dir.name).quality.passes


# --- one federation ----------------------------------------------------------------------------


PSS_EVERY = 10  # samples: PSS every 5 s


class TreeSampler:
    """Samples this process tree: CPU seconds used so far, each Ray actor's peak RSS, and the
    tree's peak PSS.

    CPU seconds are robust to a shared machine in a way wall seconds are not: other jobs
    stretch the wall clock of a round, not (much) the CPU time this tree spends on it.
    PSS (proportional set size) counts a page shared by n processes as 1/n in each: the Ray
    actors and the driver all map torch's ~200 MiB of libraries, which a sum of RSS counts
    once per process. The tree's PSS is the memory it holds.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.actor_peak_bytes: dict[int, int] = {}
        self.peak_pss_bytes = 0
        # Where the peak sits: this process (driver and ServerApp), the ClientApp actors, and
        # the rest of the tree (Ray's raylet, GCS and agents).
        self.peak_pss_parts: dict[str, int] = {"driver": 0, "actors": 0, "ray": 0}
        self.cpu: list[tuple[float, float]] = []  # (epoch seconds, tree CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        import psutil

        root = psutil.Process()
        total = 0.0
        parts = {"driver": 0, "actors": 0, "ray": 0}
        # PSS reads each process's page tables (~0.5 of a core if done every 0.5 s at 500
        # sites, charged to the tree it measures): every PSS_EVERY-th sample only.
        with_pss = len(self.cpu) % PSS_EVERY == 0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
                actor = process is not root and "ClientAppActor" in " ".join(process.cmdline())
                if with_pss:
                    kind = "driver" if process is root else "actors" if actor else "ray"
                    parts[kind] += process.memory_full_info().pss
                if actor:
                    rss = process.memory_info().rss
                    self.actor_peak_bytes[process.pid] = max(
                        rss, self.actor_peak_bytes.get(process.pid, 0)
                    )
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self.cpu.append((time.time(), total))
        if sum(parts.values()) > self.peak_pss_bytes:
            self.peak_pss_bytes = sum(parts.values())
            self.peak_pss_parts = parts

    def cpu_at(self, epoch: float) -> float:
        times, totals = zip(*self.cpu, strict=True)
        return float(np.interp(epoch, times, totals))

    @property
    def max_actor_mib(self) -> float:
        return max(self.actor_peak_bytes.values(), default=0) / 2**20


def steady_rounds(num_rounds: int) -> range:
    """The rounds a per-round figure averages: not round 1 (Ray's actors start cold) and, with
    3 or more rounds, not the last (each site renders its HTML page then, once per run)."""
    return range(2, num_rounds) if num_rounds >= 3 else range(2, num_rounds + 1)


def _cpu_per_round(sampler: TreeSampler, out: Path, num_rounds: int) -> float:
    """Tree CPU seconds per steady round, between the rounds' checkpoint writes (a round's
    checkpoint is written once it is trained, evaluated and recorded)."""
    rounds = steady_rounds(num_rounds)
    if num_rounds < 2 or not rounds:
        return math.nan

    def end(server_round: int) -> float:
        return (out / "checkpoints" / f"round-{server_round:03d}.npz").stat().st_mtime

    return (sampler.cpu_at(end(rounds[-1])) - sampler.cpu_at(end(1))) / len(rounds)


def _one_run(data: Path, out: Path, *, plan: Plan, mode: str, n_sites: int) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "mode": mode,
        "num-rounds": plan.num_rounds,
        "seed": SEED,
        "local-steps": plan.local_steps,
    }
    if mode == "secagg":
        overrides["num-shares"] = plan.secagg_shares
    log.info("scale: %s over %d sites, %d rounds ...", mode, n_sites, plan.num_rounds)
    _clear_work(data)
    counters = out.parent / f"{out.name}-cache-counters"
    with (
        PeakRss() as rss,
        TreeSampler() as tree,
        stopwatch() as wall,
        _environment(SITE_CACHE_STATS_ENV, str(counters)),
    ):
        results, _ = run_federation(data, out, site_html=SITE_HTML, **overrides)
    site_reads = _site_reads(counters)
    cpu_s = _cpu_per_round(tree, out, plan.num_rounds)
    steady = steady_rounds(plan.num_rounds)
    later = [entry for entry in results["rounds"] if entry["round"] in steady] or results["rounds"]
    seconds = {
        phase: float(np.mean([entry["seconds"][phase] for entry in later]))
        for phase in ("train", "evaluate", "total")
    }
    trained = [entry["train"].get("results", 0) for entry in results["rounds"]]
    row = {
        "mode": mode,
        "sites": n_sites,
        "rounds": plan.num_rounds,
        "first_round_s": results["rounds"][0]["seconds"]["total"],
        "last_round_s": results["rounds"][-1]["seconds"]["total"],
        "round_s": seconds["total"],
        "train_s": seconds["train"],
        "evaluate_s": seconds["evaluate"],
        "evaluate_share": seconds["evaluate"] / seconds["total"],
        "round_s_per_site": seconds["total"] / n_sites,
        "cpu_s": cpu_s,
        "cpu_s_per_site": cpu_s / n_sites,
        "wall_s": wall["seconds"],
        "peak_rss_mib": rss.peak_mib,
        "peak_pss_mib": tree.peak_pss_bytes / 2**20,
        **{f"peak_pss_{kind}_mib": value / 2**20 for kind, value in tree.peak_pss_parts.items()},
        **site_reads,
        "added_rss_mib": rss.added_mib,
        "actors": len(tree.actor_peak_bytes),
        "max_actor_rss_mib": tree.max_actor_mib,
        "min_sites_trained": min(trained),
        "train_failures": sum(entry["train"].get("failures", 0) for entry in results["rounds"]),
    }
    log.info(
        "scale: %s %d sites: %.1f s/round (train %.1f, evaluate %.1f), %.1f CPU s/round, "
        "peak PSS %.0f MiB (RSS sum %.0f), largest actor %.0f MiB",
        mode,
        n_sites,
        row["round_s"],
        row["train_s"],
        row["evaluate_s"],
        row["cpu_s"],
        row["peak_pss_mib"],
        row["peak_rss_mib"],
        row["max_actor_rss_mib"],
    )
    shutil.rmtree(out, ignore_errors=True)
    return row


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """`name=value` for the duration (Ray's workers inherit it from this process)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _site_reads(folder: Path) -> dict[str, int]:
    """Every actor's site-cache counters (client.pipeline), summed: how often a site was
    prepared, and how often again after its eviction. The driver prepares none."""
    found = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    return {
        "site_reads": sum(item["reads"] for item in found),
        "site_rereads": sum(item["rereads"] for item in found),
        "processes_reading": len(found),
    }


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    fedavg = [row for row in rows if row["mode"] == "fedavg"]
    base = min(fedavg, key=lambda row: row["sites"])
    for row in rows:
        row["per_site_ratio"] = row["round_s_per_site"] / base["round_s_per_site"]
        row["cpu_per_site_ratio"] = row["cpu_s_per_site"] / base["cpu_s_per_site"]
        same = [r for r in fedavg if r["sites"] == row["sites"]]
        row["over_fedavg"] = row["round_s"] / same[0]["round_s"] if same else math.nan
    sizes = np.array([row["sites"] for row in fedavg], dtype=float)
    for key in ("peak_rss_mib", "max_actor_rss_mib"):
        values = np.array([row[key] for row in fedavg])
        slope = float(np.polyfit(sizes, values, 1)[0]) if len(sizes) > 1 else math.nan
        for row in rows:
            row[f"{key}_per_site_slope"] = slope


# --- the cache every actor keeps ---------------------------------------------------------------


def _cache_cost(data: Path, work_root: Path, n_sites: int, bound_mib: float) -> dict[str, Any]:
    """RSS of a fresh process preparing 0..n sites as an actor does, under a site-cache bound of
    `bound_mib` (in a child process): the estimated MiB a site costs, and the RSS growth per
    site once the cache is full (zero when the bound holds)."""
    from client.site import find_site_dirs

    site_dirs = find_site_dirs(data)[:n_sites]
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        curve = pool.submit(_cache_curve, site_dirs, work_root, bound_mib).result()
    counts = np.array([point[0] for point in curve], dtype=float)
    rss = np.array([point[1] for point in curve])
    cache_mib = np.array([point[2] for point in curve])
    cached = np.array([point[3] for point in curve])
    full = np.flatnonzero(cached < counts)  # points after the first eviction
    after = float(np.polyfit(counts[full], rss[full], 1)[0]) if full.size > 2 else math.nan
    per_site = float(cache_mib[-1] / cached[-1]) if cached[-1] else math.nan
    log.info(
        "scale: a prepared site costs %.2f MiB (estimated); under a %.0f MiB bound, RSS grows "
        "%.3f MiB per further site (%d sites prepared)",
        per_site,
        bound_mib,
        after,
        len(site_dirs),
    )
    return {
        "sites": len(site_dirs),
        "bound_mib": bound_mib,
        "curve": [[int(n), r, c, int(k)] for n, r, c, k in curve],
        "mib_per_site": per_site,
        "rss_mib_per_site_when_full": after,
        "base_mib": float(rss[0]),
    }


def _cache_curve(
    site_dirs: list[Path], work_root: Path, bound_mib: float
) -> list[tuple[int, float, float, int]]:
    """In a child: (sites prepared, RSS MiB, cache MiB, sites cached) as an actor prepares
    sites one after another under a site-cache bound of `bound_mib`."""
    import gc

    import psutil

    from client import pipeline
    from client.local import SPEC

    pipeline._cache = pipeline.SiteCache(limit_bytes=int(bound_mib * 2**20))
    process = psutil.Process()
    curve = [(0, process.memory_info().rss / 2**20, 0.0, 0)]
    step = max(1, len(site_dirs) // 20)
    for index, site_dir in enumerate(site_dirs, start=1):
        work = work_root / site_dir.name
        # What a simulation actor keeps per site it served: parsed, with its names encoded.
        site = pipeline.load_site(site_dir, work_dir=work)
        if site.data is not None:
            site.encoded(SPEC)
        if index % step == 0 or index == len(site_dirs):
            gc.collect()
            cache = pipeline._cache
            curve.append(
                (index, process.memory_info().rss / 2**20, cache.bytes / 2**20, len(cache))
            )
    return curve


# --- results -----------------------------------------------------------------------------------


def _summary(rows: list[dict[str, Any]], cache: dict[str, Any]) -> dict[str, Any]:
    fedavg = sorted((row for row in rows if row["mode"] == "fedavg"), key=lambda r: r["sites"])
    small, large = fedavg[0], fedavg[-1]
    secagg = [row for row in rows if row["mode"] == "secagg"]
    return {
        "smallest": small["sites"],
        "largest": large["sites"],
        "round_s_largest": large["round_s"],
        "per_site_ratio_largest": large["per_site_ratio"],
        "cpu_per_site_ratio_largest": large["cpu_per_site_ratio"],
        "cpu_s_per_site_largest": large["cpu_s_per_site"],
        "evaluate_share_largest": large["evaluate_share"],
        "peak_rss_mib_largest": large["peak_rss_mib"],
        "peak_pss_mib_largest": large["peak_pss_mib"],
        "peak_rss_mib_per_site": large["peak_rss_mib_per_site_slope"],
        "actor_rss_mib_per_site": large["max_actor_rss_mib_per_site_slope"],
        "cache_mib_per_site": cache["mib_per_site"],
        "cache_bound_mib": cache["bound_mib"],
        "cache_rss_mib_per_site_when_full": cache["rss_mib_per_site_when_full"],
        "targets": {
            "round_s": TARGET_ROUND_S,
            "peak_mib": TARGET_PEAK_MIB,
            "cpu_per_site_ratio": TARGET_CPU_PER_SITE_RATIO,
            "round_s_met": large["round_s"] <= TARGET_ROUND_S,
            "peak_mib_met": large["peak_pss_mib"] <= TARGET_PEAK_MIB,
            "cpu_per_site_ratio_met": large["cpu_per_site_ratio"] <= TARGET_CPU_PER_SITE_RATIO,
        },
        "cache_sites": cache["sites"],
        "secagg_over_fedavg": secagg[0]["over_fedavg"] if secagg else None,
        "secagg_sites": secagg[0]["sites"] if secagg else None,
    }


COLUMNS = (
    Column("mode", "mode"),
    Column("sites", "sites", "{:d}"),
    Column("round_s", "s/round (steady)", "{:.1f}"),
    Column("train_s", "train s", "{:.1f}"),
    Column("evaluate_s", "evaluate s", "{:.1f}"),
    Column("first_round_s", "round 1 s (cold)", "{:.1f}"),
    Column("last_round_s", "last round s", "{:.1f}"),
    Column("round_s_per_site", "s/round/site", "{:.3f}"),
    Column("per_site_ratio", "per site vs smallest", "{:.2f}x"),
    Column("cpu_s", "CPU s/round (tree)", "{:.1f}"),
    Column("cpu_per_site_ratio", "CPU per site vs smallest", "{:.2f}x"),
    Column("peak_pss_mib", "peak PSS MiB (tree)", "{:,.0f}"),
    Column("peak_pss_driver_mib", "of it: driver", "{:,.0f}"),
    Column("peak_pss_actors_mib", "ClientApp actors", "{:,.0f}"),
    Column("peak_pss_ray_mib", "Ray daemons", "{:,.0f}"),
    Column("peak_rss_mib", "peak RSS MiB (tree, sum)", "{:,.0f}"),
    Column("actors", "actors", "{:d}"),
    Column("max_actor_rss_mib", "largest actor MiB", "{:,.0f}"),
    Column("site_reads", "sites prepared", "{:,d}"),
    Column("site_rereads", "of them re-reads", "{:,d}"),
)
GEN_COLUMNS = (
    Column("sites", "sites kept", "{:d}"),
    Column("generated", "generated", "{:d}"),
    Column("gate_failures", "refused by quality gate", "{:d}"),
    Column("seconds_per_site", "generate s/site", "{:.3f}"),
    Column("gate_seconds_per_site", "gate check s/site", "{:.3f}"),
    Column("disk_mib_per_site", "disk MiB/site", "{:.2f}"),
)


def _write(results: Results, payload: dict[str, Any], *, size: str) -> None:
    rows, summary, plan = payload["runs"], payload["summary"], payload["plan"]
    results.write_json(payload)
    results.write_csv(rows, "runs.csv")
    results.write_csv(payload["generation"], "generation.csv")
    results.write_csv(
        [
            {"sites_prepared": n, "rss_mib": r, "cache_mib": c, "sites_cached": k}
            for n, r, c, k in payload["cache"]["curve"]
        ],
        "cache.csv",
    )
    results.add_table(
        "Seconds per round and memory by number of sites",
        rows,
        COLUMNS,
        notes=_notes(summary, payload),
    )
    results.add_table("Generating the sites", payload["generation"], GEN_COLUMNS)
    results.plot(
        "scale.png", lambda figure: _draw(figure, rows, payload["cache"]), size=(10.0, 4.0)
    )
    intro = (
        f"FedAvg over {', '.join(str(n) for n in plan['sizes'])} generated sites "
        f"({plan['n_days']} days at volume scale {plan['scale']}, {plan['local_steps']} local "
        f"steps, {plan['num_rounds']} rounds) on flwr's Simulation Engine, one process tree on "
        f"2 shared cores. {_reading(summary)}"
    )
    results.write_table_md(
        size=size, command="fedsec experiment scale [--full]", intro=intro, plots=["scale.png"]
    )


def _reading(summary: dict[str, Any]) -> str:
    ratio = summary["cpu_per_site_ratio_largest"]
    shape = (
        "about linear in sites"
        if 0.8 <= ratio <= 1.25
        else "less than linear (fixed per-round costs are shared)"
        if ratio < 0.8
        else "faster than linear"
    )
    text = (
        f"At {summary['largest']} sites a round takes {summary['round_s_largest']:.0f} s of "
        f"wall time and {summary['cpu_s_per_site_largest']:.2f} CPU s per site; per site that "
        f"is {ratio:.2f}x the CPU (and {summary['per_site_ratio_largest']:.2f}x the wall time) "
        f"at {summary['smallest']} sites, so the cost is {shape}. "
        f"{summary['evaluate_share_largest']:.0%} of a round is the evaluate phase. The whole "
        f"tree holds at most {summary['peak_pss_mib_largest']:,.0f} MiB (PSS); its RSS sum "
        f"peaks at {summary['peak_rss_mib_largest']:,.0f} MiB and grows by "
        f"{summary['peak_rss_mib_per_site']:.2f} MiB per added site; the largest single "
        f"actor grows by {summary['actor_rss_mib_per_site']:.2f} MiB per site. A prepared "
        f"site costs an actor {summary['cache_mib_per_site']:.2f} MiB (estimated); each "
        f"process keeps them up to a bound (FEDSEC_SITE_CACHE_MIB, 512 MiB by default) and "
        f"re-reads the least recently used beyond it: under a "
        f"{summary['cache_bound_mib']:.0f} MiB bound a process's RSS grows by "
        f"{summary['cache_rss_mib_per_site_when_full']:.3f} MiB per further site "
        f"({summary['cache_sites']} sites prepared). " + _targets_text(summary)
    )
    if summary["secagg_over_fedavg"] is not None:
        text += (
            f" SecAgg+ at {summary['secagg_sites']} sites: "
            f"{summary['secagg_over_fedavg']:.2f}x FedAvg seconds per round."
        )
    return text


def _targets_text(summary: dict[str, Any]) -> str:
    targets = summary["targets"]

    def verdict(met: bool) -> str:
        return "met" if met else "not met"

    return (
        f"Targets at {summary['largest']} sites: <= {targets['round_s']:.0f} s per round "
        f"{verdict(targets['round_s_met'])} ({summary['round_s_largest']:.0f} s), peak RSS <= "
        f"{targets['peak_mib']:,.0f} MiB (PSS) {verdict(targets['peak_mib_met'])} "
        f"({summary['peak_pss_mib_largest']:,.0f} MiB), CPU per site <= "
        f"{targets['cpu_per_site_ratio']:.1f}x the smallest size "
        f"{verdict(targets['cpu_per_site_ratio_met'])} "
        f"({summary['cpu_per_site_ratio_largest']:.2f}x)."
    )


def _notes(summary: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    plan = payload["plan"]
    return [
        "Seconds are means over the steady rounds (not round 1, whose Ray actors start cold; "
        "with 3 or more rounds not the last either, where a site would render its HTML page; "
        "here no site renders one) on a shared, noisy 2-core machine whose load "
        "changes between runs: the CPU columns (CPU seconds of this process tree between the "
        "checkpoints that bound the steady rounds, per round) are the steadier figure; wall "
        "seconds are stretched by whatever else runs. Peak RSS samples the process tree "
        "every 0.2 s (driver + raylet + GCS + Ray's agents + actors), summing each process's "
        "RSS, so libraries every process maps count once per process; peak PSS "
        "counts a shared page once, and is the figure the 2 GiB target is read against "
        "(sampled every 5 s: reading it costs the tree CPU). "
        "Largest actor samples each ClientApp actor's RSS every 0.5 s.",
        f"SecAgg+ rows use num-shares={plan['secagg_shares']} (flwr's fractional default "
        "makes 100-site rounds minutes long); its ratio column is against FedAvg at the same "
        "size.",
    ]


def _draw(figure, rows: list[dict[str, Any]], cache: dict[str, Any]) -> None:
    fedavg = sorted((row for row in rows if row["mode"] == "fedavg"), key=lambda r: r["sites"])
    sites = [row["sites"] for row in fedavg]
    left, middle, right = figure.subplots(1, 3)
    for key, label in (("round_s", "round"), ("train_s", "train"), ("evaluate_s", "evaluate")):
        left.plot(sites, [row[key] for row in fedavg], marker="o", label=label)
    left.plot(
        sites, [row["cpu_s"] for row in fedavg], marker="x", linestyle="--", label="CPU s (tree)"
    )
    left.set(xlabel="sites", ylabel="seconds per steady round", title="time")
    left.legend()
    middle.plot(sites, [row["peak_pss_mib"] for row in fedavg], marker="o", label="tree PSS")
    middle.plot(sites, [row["peak_rss_mib"] for row in fedavg], marker="^", label="tree RSS sum")
    middle.axhline(TARGET_PEAK_MIB, color="grey", linewidth=0.8, label="target")
    middle.plot(
        sites, [row["max_actor_rss_mib"] for row in fedavg], marker="s", label="largest actor"
    )
    middle.set(xlabel="sites", ylabel="peak RSS (MiB)", title="memory")
    middle.legend()
    counts, rss, cached_mib, _ = zip(*cache["curve"], strict=True)
    right.plot(counts, rss, marker=".", label="RSS")
    right.plot(
        counts, [rss[0] + value for value in cached_mib], linestyle="--", label="base + cache"
    )
    right.axhline(rss[0] + cache["bound_mib"], color="grey", linewidth=0.8, label="base + bound")
    right.set(
        xlabel="sites prepared in one process",
        ylabel="RSS (MiB)",
        title=f"site cache: {cache['mib_per_site']:.2f} MiB/site, bound {cache['bound_mib']:.0f}",
    )
    right.legend()


if __name__ == "__main__":
    cli_main(__name__, run, __doc__)
