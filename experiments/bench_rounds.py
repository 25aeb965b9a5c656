"""Seconds per round, SecAgg+ against FedAvg, on the same sites in the same run.

    python -m experiments.bench_rounds [--sites 8] [--rounds 4] [--scale 1.0]

Round 1 includes cold Ray actors, so the figures are means over rounds >= 2. The machine
is shared: the ratio is the number to read, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from experiments.generator import generate_sites
from experiments.simulate import run_simulation

RESULTS = Path(__file__).resolve().parent / "results" / "bench_rounds.json"


def _per_round(results: dict) -> dict[str, float]:
    later = [r["seconds"]["total"] for r in results["rounds"] if r["round"] >= 2]
    first = results["rounds"][0]["seconds"]["total"]
    return {"first_round_s": first, "mean_later_round_s": sum(later) / max(len(later), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    figures: dict = {"sites": args.sites, "rounds": args.rounds, "scale": args.scale}
    with tempfile.TemporaryDirectory(prefix="fedsec-bench-") as temp:
        data = Path(temp) / "sites"
        generate_sites(out_dir=data, n_sites=args.sites, n_days=4, seed=0, scale=args.scale)
        for mode in ("fedavg", "secagg"):
            started = time.perf_counter()
            results = run_simulation(
                data_dir=data,
                out_dir=Path(temp) / mode,
                overrides={"mode": mode, "num-rounds": args.rounds},
            )
            figures[mode] = {**_per_round(results), "wall_s": time.perf_counter() - started}
            row = figures[mode]
            print(
                f"{mode:7s} round 1 {row['first_round_s']:6.1f} s, later rounds "
                f"{row['mean_later_round_s']:6.1f} s, wall {row['wall_s']:.0f} s"
            )
    ratio = figures["secagg"]["mean_later_round_s"] / figures["fedavg"]["mean_later_round_s"]
    figures["secagg_over_fedavg"] = ratio
    print(f"SecAgg+/FedAvg seconds per round (rounds >= 2): {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
