"""What the host-level fragility figures cost (docs/metrics.md, "Hosts"), on one generated site.

`fedsec evaluate` reads the test-day files a third time for the hosts; a federated round keeps
the test days' (host-day, name) pairs beside its examples. This prints both costs and the host
figures an untrained model gets:

    .venv/bin/python -m experiments.host_view_cost --scale 4 --out /tmp/host-view-cost
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import client.evaluate as evaluate
from client.pipeline import prepare_site
from common.model import ModelSpec, build_model
from experiments.generator import generate_sites


def measure(out: Path, *, scale: float, days: int, seed: int) -> list[str]:
    """One site of ``days`` log days at ``scale``: evaluate with its host pass timed, then the
    round's pairs; the lines to print."""
    shutil.rmtree(out, ignore_errors=True)
    site = generate_sites(out_dir=out / "sites", n_sites=1, n_days=days, seed=seed, scale=scale)[0]
    spent: dict[str, float] = {}
    read_host_days = evaluate.read_host_days

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return read_host_days(*args, **kwargs)
        finally:
            spent["hosts"] = time.perf_counter() - started

    evaluate.read_host_days = timed
    try:
        started = time.perf_counter()
        result = evaluate.evaluate_site(
            build_model(ModelSpec(), seed=0), site, out=out / "evaluate", html=False
        )
        total = time.perf_counter() - started
    finally:
        evaluate.read_host_days = read_host_days
    host_days = result.hosts.host_days if result.hosts else None
    lines = [
        f"evaluate: {result.test_day_records:,} test-day records, {result.distinct_names:,} "
        f"names, {len(host_days) if host_days is not None else 0:,} host-days; {total:.1f} s, "
        f"of which the host pass {spent['hosts']:.1f} s ({spent['hosts'] / total:.0%})",
        *(f"  {line}" for line in evaluate.host_lines(result.metrics, result.hosts)),
    ]
    prepared = prepare_site(site, work_dir=out / "work")
    pairs = prepared.test_hosts
    if pairs is None:
        return [*lines, "round: no client column, no pairs kept"]
    size = pairs.host_day.nbytes + pairs.name_index.nbytes + pairs.queries.nbytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        *lines,
        f"round: {pairs.host_day.size:,} (host-day, name) pairs kept, {size / 2**20:.1f} MiB, "
        f"beside {len(prepared.require_data().test):,} test names; peak RSS {peak:,.0f} MiB",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/fedsec-host-view-cost"))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    options = parser.parse_args()
    for line in measure(options.out, scale=options.scale, days=options.days, seed=options.seed):
        print(line)


if __name__ == "__main__":
    main()
