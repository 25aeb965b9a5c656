"""The federation report at hundreds of sites: memory and time to render it, bounded plots against
a bar and a column a site.

    python -m experiments.bench_report [--sites 40 300 1000] [--out PATH]

The coordinator renders report.html at the end of every run, in the process that ran the
ServerApp. Its per-site plots drew a bar (FP per day, FP hosts per day) or a heatmap column
(recall per family) per site, 0.55-0.6 inch each: at 1,000 sites 53,000 pixels wide. Past
`server.report_html.MAX_SITES_DRAWN` sites they now show the spread over the sites instead.
This renders the same synthetic results (every site sharing the headline figures and eleven
families' recall, three rounds) both ways, each in a fresh process so that one render's freed
memory cannot hide the next one's peak: "every site drawn" is the old behaviour
(MAX_SITES_DRAWN set beyond the number of sites), "bounded" is the product's. It prints and
writes the rise of the process's RSS while rendering (sampled every 2 ms), the CPU seconds,
the page's size and the widest image.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import re
import time
from pathlib import Path
from typing import Any

from common.families import GENERATOR_CLASSES
from common.files import write_json
from experiments.lab import PeakRss

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_report.json"
FAMILIES = (*sorted(GENERATOR_CLASSES), "unknown")
"""The generator's DGA classes and the label of a DGA name no feed attributes."""
MODES = {"every site drawn": 10**9, "bounded": None}
"""MAX_SITES_DRAWN per mode; None keeps the product's."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[40, 300, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser


def synthetic_results(sites: int, rounds: int, *, seed: int = 0) -> dict[str, Any]:
    """results.json as the coordinator writes it for `sites` sites that share rates and
    volumes: the headline figures and each family's recall, drawn at random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    entries = []
    for number in range(1, rounds + 1):
        per_site = {}
        for index in range(sites):
            fp = float(10 ** rng.uniform(3, 7))
            per_site[f"site-{index:04d}"] = {
                "ack": 1.0,
                "num_examples": int(rng.integers(500, 5000)),
                "auc": float(rng.uniform(0.7, 0.99)),
                "ece": float(rng.uniform(0.0, 0.2)),
                "fp_per_day": fp * 0.8,
                "fp_per_day_upper95": fp,
                "host_fp_per_day_upper95": fp / 50,
                "tpr_at_fpr_1e-3": float(rng.uniform(0, 1)),
                "tpr_at_fpr_1e-3_resolvable": 1,
                "precision_at_base_rate": float(rng.uniform(0, 0.3)),
                "recall_at_budget": float(rng.uniform(0, 0.6)),
                "analyst_hours_per_day": fp / 1e4,
                "churn": float(rng.uniform(0, 0.1)),
                "budget_utilisation": float(rng.uniform(0, 3)),
                **{f"recall_family_{f}": float(rng.uniform(0, 1)) for f in FAMILIES},
            }
        entries.append(
            {
                "round": number,
                "seconds": {"train": 10.0, "evaluate": 5.0, "total": 15.0},
                "train": {"status": "aggregated", "mode": "fedavg", "sites": {}},
                "sites": per_site,
            }
        )
    return {"config": {"mode": "fedavg", "num-rounds": rounds}, "rounds": entries}


def _render_once(sites: int, rounds: int, limit: int | None) -> dict[str, Any]:
    """In this (fresh) process: build the report, then render it while sampling RSS."""
    import base64

    import server.report_html as html
    from server.report import build_federation_report

    if limit is not None:
        html.MAX_SITES_DRAWN = limit
    report = build_federation_report(synthetic_results(sites, rounds))
    html.render_federation_html(build_federation_report(synthetic_results(3, 1)))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    with PeakRss(interval=0.002) as rss:
        page = html.render_federation_html(report)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    widths = [
        int.from_bytes(base64.b64decode(data)[16:20], "big")
        for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    ]
    return {
        "rss_rise_mib": rss.added_mib,
        "cpu_s": cpu,
        "wall_s": wall,
        "page_mib": len(page.encode()) / 2**20,
        "images": len(widths),
        "widest_image_px": max(widths, default=0),
    }


def _child(queue: Any, sites: int, rounds: int, limit: int | None) -> None:
    queue.put(_render_once(sites, rounds, limit))


def measure(*, sites: list[int], rounds: int) -> list[dict[str, Any]]:
    """One fresh process per number of sites and mode."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for count in sites:
        for mode, limit in MODES.items():
            queue = context.Queue()
            process = context.Process(target=_child, args=(queue, count, rounds, limit))
            process.start()
            figures = queue.get()
            process.join()
            rows.append({"sites": count, "mode": mode, **figures})
            print(
                f"{count:5d} sites, {mode:16s}: +{figures['rss_rise_mib']:7.1f} MiB, "
                f"{figures['cpu_s']:6.2f} CPU s, page {figures['page_mib']:.2f} MiB, "
                f"widest image {figures['widest_image_px']:,d} px",
                flush=True,
            )
    for row in rows:
        old = next(r for r in rows if r["sites"] == row["sites"] and r["mode"] != "bounded")
        row["rss_rise_vs_every_site"] = row["rss_rise_mib"] / max(old["rss_rise_mib"], 1e-9)
        row["cpu_vs_every_site"] = row["cpu_s"] / max(old["cpu_s"], 1e-9)
    return rows


def main() -> None:
    from server.report_html import MAX_SITES_DRAWN

    args = _parser().parse_args()
    rows = measure(sites=args.sites, rounds=args.rounds)
    document = {
        "command": "python -m experiments.bench_report --sites "
        + " ".join(str(n) for n in args.sites),
        "machine": {"python": platform.python_version(), "cpus": multiprocessing.cpu_count()},
        "max_sites_drawn": MAX_SITES_DRAWN,
        "rounds": args.rounds,
        "families": len(FAMILIES),
        "rows": rows,
    }
    write_json(args.out, document)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
