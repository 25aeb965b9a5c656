"""The floor under a simulated round: a site's own training and evaluation, timed alone.

    python -m experiments.bench_site_work [--sites 20] [--rounds 3] [--out PATH]

The scale experiment's sites (generated as `fedsec experiment scale` makes them: volume scale
0.02, 2 days, 10 local steps of the default batch) are prepared once, then each round every
site runs exactly what its ClientApp runs for a train and an evaluate message
(`client.local.train_round`, `evaluate_round`), in this one process and thread, with no flwr,
no Ray and no messages. The CPU seconds per site and round after the first are the work no
scheduler can remove: on C cores, N sites need at least N x that / C seconds per round. Set
against the CPU per site the scale experiment measured on the Simulation Engine
(`experiments/results/scale/results.json`, when present), the rest is the framework's share.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common.files import write_json

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_site_work.json"
SCALE_RESULTS = Path(__file__).resolve().parent / "results" / "scale" / "results.json"
FLOOR_SIZES = (100, 500, 1000)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20, help="sites timed [20]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the first not counted [3]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--scale-results", type=Path, default=SCALE_RESULTS)
    return parser


def measure(*, sites: int, rounds: int, root: Path) -> dict[str, Any]:
    """CPU seconds of each site's train and evaluate work per round (one thread)."""
    import torch

    from client.dqa import QualityGateError
    from client.local import SPEC, evaluate_round, train_round
    from client.pipeline import prepare_site
    from common.model import build_model, model_to_ndarrays
    from common.run_config import RunSettings
    from experiments.generator import generate_sites
    from experiments.scale import PLANS, SEED, SITE_HTML

    if sites < 1 or rounds < 2:
        raise SystemExit("--sites must be >= 1 and --rounds >= 2 (the first round warms up)")
    torch.set_num_threads(1)  # as each simulated site runs: one intra-op thread
    plan = PLANS["full"]
    generated = generate_sites(
        out_dir=root / "sites", n_sites=sites, n_days=plan.n_days, seed=SEED, scale=plan.scale
    )
    settings = RunSettings.from_run_config(
        {"local-steps": plan.local_steps, "site-html": SITE_HTML, "num-rounds": rounds}
    )
    arrays = model_to_ndarrays(build_model(SPEC, seed=SEED))
    prepared, prepare_s = [], []
    for site_dir in sorted(generated):
        started = time.process_time()
        prepared.append(prepare_site(site_dir, work_dir=root / "work" / site_dir.name))
        prepare_s.append(time.process_time() - started)
    train_s: list[float] = []
    evaluate_s: list[float] = []
    refused = 0
    for server_round in range(1, rounds + 1):
        for site in prepared:
            started = time.process_time()
            try:
                train_round(
                    site, global_arrays=arrays, settings=settings, server_round=server_round
                )
            except QualityGateError:  # as in the scale experiment, such a site is left out
                refused += server_round == 1
                continue
            trained = time.process_time()
            evaluate_round(site, global_arrays=arrays, settings=settings, server_round=server_round)
            if server_round > 1:
                train_s.append(trained - started)
                evaluate_s.append(time.process_time() - trained)
        print(f"round {server_round}/{rounds}: {len(prepared) - refused} sites timed")
    if not train_s:
        raise SystemExit("every site refused to train: no work to time")
    work = statistics.fmean(train_s) + statistics.fmean(evaluate_s)
    return {
        "sites": len(prepared),
        "refused_by_quality_gate": refused,
        "site_rounds_timed": len(train_s),
        "prepare_cpu_s_per_site": statistics.fmean(prepare_s),
        "train_cpu_s_per_site_round": statistics.fmean(train_s),
        "evaluate_cpu_s_per_site_round": statistics.fmean(evaluate_s),
        "work_cpu_s_per_site_round": work,
        "plan": {"scale": plan.scale, "n_days": plan.n_days, "local_steps": plan.local_steps},
    }


def against_scale(work: float, scale_results: Path, cores: int) -> dict[str, Any]:
    """The floor per round at the scale table's sizes on `cores`, and the share of the measured
    CPU per site that is not the sites' own work."""
    import json

    floor = {str(n): n * work / cores for n in FLOOR_SIZES}
    out: dict[str, Any] = {"cores": cores, "floor_round_s": floor}
    if scale_results.is_file():
        runs = json.loads(scale_results.read_text()).get("runs", [])
        out["scale_runs"] = [
            {
                "mode": run["mode"],
                "sites": run["sites"],
                "measured_cpu_s_per_site": run["cpu_s_per_site"],
                "measured_over_floor": run["cpu_s_per_site"] / work,
                "framework_share": 1.0 - work / run["cpu_s_per_site"],
                "measured_round_s": run["round_s"],
                "floor_round_s": run["sites"] * work / cores,
            }
            for run in runs
            if run.get("cpu_s_per_site")
        ]
    return out


def main() -> None:
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="fedsec-site-work-") as scratch:
        site_work = measure(sites=args.sites, rounds=args.rounds, root=Path(scratch))
    cores = os.cpu_count() or 1
    work = site_work["work_cpu_s_per_site_round"]
    document = {
        "command": f"python -m experiments.bench_site_work --sites {args.sites} "
        f"--rounds {args.rounds}",
        "machine": {
            "cpus": cores,
            "python": platform.python_version(),
            "load_average_1min_after": os.getloadavg()[0],
        },
        **site_work,
        **against_scale(work, args.scale_results, cores),
        # The scale target: 1,000 sites in <= 60 s a round on this many cores leaves each
        # site this much CPU per round, framework included.
        "cpu_s_per_site_round_the_60s_target_allows": 60.0 * cores / 1000,
    }
    write_json(args.out, document)
    print(
        f"a site's own work: train {site_work['train_cpu_s_per_site_round']:.3f} + evaluate "
        f"{site_work['evaluate_cpu_s_per_site_round']:.3f} = {work:.3f} CPU s per round"
    )
    for n, seconds in document["floor_round_s"].items():
        print(f"floor at {n} sites on {cores} cores: {seconds:.0f} s per round")
    for run in document.get("scale_runs", []):
        print(
            f"scale {run['mode']} {run['sites']} sites: measured "
            f"{run['measured_cpu_s_per_site']:.3f} CPU s per site "
            f"({run['measured_over_floor']:.2f}x the work, framework "
            f"{run['framework_share']:.0%})"
        )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
