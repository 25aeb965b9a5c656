"""`python -m experiments.generator OUT`: write simulated sites; print a summary and the time."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments.generator.sites import generate_sites


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.generator", description=__doc__)
    parser.add_argument("out_dir", type=Path, help="new or empty folder")
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies per-day volumes")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        generate_sites(
            args.out_dir, n_sites=args.sites, n_days=args.days, seed=args.seed, scale=args.scale
        )
    except (FileExistsError, ValueError) as error:
        parser.error(str(error))
    elapsed_seconds = time.perf_counter() - started
    manifest = json.loads((args.out_dir / "manifest.json").read_text(encoding="utf-8"))
    for site in manifest["sites"]:
        volume = site["volume"]
        lines = sum(volume["data_lines_by_file"].values())
        test_day = max(volume["distinct_names_by_file"])
        print(
            f"{site['site_id']}  lines={lines:>7}  "
            f"test_day_names={volume['distinct_names_by_file'][test_day]:>6}  "
            f"dga_share={site['dga_share']:.3f}  families={','.join(site['families'])}"
        )
    print(f"elapsed_seconds={elapsed_seconds:.1f}")


if __name__ == "__main__":
    main()
