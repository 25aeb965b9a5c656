"""Benchmark `client.explain.explain_names` on generated alerts; prints and writes JSON.

    python -m experiments.bench_explain [--names 500] [--steps 300] [--model MODEL]
                                        [--out experiments/results/bench_explain.json]

Without --model, a default CharCNN is trained for --steps steps on generated names (every
DGA family of the generator against benign long-tail and popular names). The names explained
are held-out names of every family, as a site's top alerts would be; the intel is a blocklist
of 300 names per family. Reports wall and CPU seconds (the machine's load average beside
them: on a shared machine, CPU seconds are the steadier figure), the process's peak RSS
before and after (with --model, the difference is what explaining costs), Captum's
convergence delta (mean, max, share refined) and how often the nearest family is the name's
own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

DAY = dt.date(2026, 1, 1)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_explain.json"
BLOCKLIST_PER_FAMILY = 300


def family_names(per_family: int) -> dict[str, list[str]]:
    from experiments.generator import dga

    size = BLOCKLIST_PER_FAMILY + per_family + 400
    return {
        family.name: dga.family_pool(family, seed=1, epoch=0, day=DAY, size=size)
        for family in dga.FAMILIES
    }


def trained_model(pools: dict[str, list[str]], *, steps: int):
    from common.model import ModelSpec, build_model
    from common.training import TrainConfig, train_model
    from experiments.generator import benign

    rng = np.random.default_rng(0)
    languages = {"en": 1.0}
    benign_names = [name for name, _ in benign.long_tail_names(rng, 4000, languages=languages)]
    benign_names += [name for name, _ in benign.popular_names(rng, 1000, languages=languages)]
    dga_names = [name for names in pools.values() for name in names[-400:]]
    model = build_model(ModelSpec(), seed=0)
    names = dga_names + benign_names
    labels = np.array([1] * len(dga_names) + [0] * len(benign_names))
    train_model(
        model,
        domains=model.spec.encode(names),
        labels=labels,
        config=TrainConfig(steps=steps),
        generator=np.random.default_rng(1),
    )
    return model


def measure(model, pools: dict[str, list[str]], *, count: int) -> dict:
    from client.explain import ATTRIBUTION_STEPS, explain_names
    from client.site import Intel

    per_family = -(-count // len(pools))
    blocklist = {
        name: family for family, names in pools.items() for name in names[:BLOCKLIST_PER_FAMILY]
    }
    chosen = [
        (name, family)
        for family, names in pools.items()
        for name in names[BLOCKLIST_PER_FAMILY : BLOCKLIST_PER_FAMILY + per_family]
    ][:count]
    names = [name for name, _ in chosen]
    load = os.getloadavg()[0]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wall, cpu = time.perf_counter(), time.process_time()
    found = explain_names(model, names, intel=Intel(blocklist=blocklist, allowlist=frozenset()))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    deltas = np.abs([item["convergence_delta"] for item in found])
    own = [
        item["nearest_families"][0]["family"] == family
        for item, (_, family) in zip(found, chosen, strict=True)
    ]
    return {
        "names": len(names),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "load_average_1min_before": round(load, 2),
        "cpus": os.cpu_count(),
        "peak_rss_mib_before": round(rss_before),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mean_abs_delta": float(deltas.mean()),
        "max_abs_delta": float(deltas.max()),
        "refined_share": float(np.mean([item["steps"] > ATTRIBUTION_STEPS for item in found])),
        "nearest_family_is_own": float(np.mean(own)),
        "families": len(pools),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=500)
    parser.add_argument("--steps", type=int, default=300, help="training steps without --model")
    parser.add_argument("--model", type=Path, help="a model.npz to explain with")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    pools = family_names(-(-args.names // 10))
    if args.model is not None:
        from common.model import load_model_file

        model, _ = load_model_file(args.model)
    else:
        model = trained_model(pools, steps=args.steps)
    result = measure(model, pools, count=args.names)
    print(json.dumps(result, indent=2))
    from common.files import write_json

    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
