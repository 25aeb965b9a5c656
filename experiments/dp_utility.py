"""Utility against ε: SecAgg+ with distributed DP on real development names (issue 15, item 3).

    FEDSEC_REAL_DEV=PATH fedsec experiment dp-utility [--tiny]
    python -m experiments.dp_utility --real-dev PATH [--tiny | --full] [--out ROOT]

The sites, the pooled test names and the scoring are the lowfpr experiment's
(`experiments/lowfpr.py`: split by registered label, one family subset per site, real fedsec
site folders). Each arm is the same SecAgg+ federation (same sites, rounds, local steps and
seed) with `dp-epsilon` ∈ {1, 4, 8} at δ = 1e-6, calibrated by dp-accounting for the
arm's rounds, and one arm without DP (ε = ∞). Reported per arm: the ε the ledger spent, AUC
and TPR at FPR 1e-3 / 1e-4 (with resolvability) on the pooled test names, FP/day and its 95%
bound at 1e9 benign queries a day; per site, what each site's own report sent (AUC, TPR at
FPR with resolvability, FP/day upper bound at its operating point); seconds per round.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab, lowfpr
from experiments.lab import Column, Results

NAME = "dp-utility"
TITLE = "Utility against ε: SecAgg+ with distributed differential privacy, real development names"
COMMAND = "FEDSEC_REAL_DEV=PATH fedsec experiment dp-utility"
log = logging.getLogger("fedsec.experiments")

EPSILONS = (1.0, 4.0, 8.0, math.inf)
DELTA = 1e-6
SEED = 0


@dataclass(frozen=True)
class Size:
    sites: int
    rounds: int
    local_steps: int
    batch: int
    test_benign: int
    site_test_fraction: float


SIZES = {
    "tiny": Size(
        sites=4, rounds=2, local_steps=3, batch=32, test_benign=60_000, site_test_fraction=0.2
    ),
    "default": Size(
        sites=4, rounds=5, local_steps=60, batch=128, test_benign=60_000, site_test_fraction=0.05
    ),
    "full": Size(
        sites=4, rounds=20, local_steps=60, batch=128, test_benign=60_000, site_test_fraction=0.05
    ),
}


def epsilon_label(epsilon: float) -> str:
    return "∞" if math.isinf(epsilon) else f"{epsilon:g}"


def arm_overrides(epsilon: float, shape: Size) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "mode": "secagg",
        "num-rounds": shape.rounds,
        "local-steps": shape.local_steps,
        "batch-size": shape.batch,
        "seed": SEED,
        "site-html": "off",
    }
    if math.isfinite(epsilon):
        overrides |= {"dp-epsilon": epsilon, "dp-delta": DELTA}
    return overrides


def run_arm(data_dir: Path, out_dir: Path, *, epsilon: float, shape: Size) -> tuple[Any, dict]:
    """One SecAgg+ federation: (its final model, its results.json)."""
    from common.model import model_from_bytes
    from experiments.simulate import run_in_process

    results = run_in_process(
        data_dir=data_dir, out_dir=out_dir, overrides=arm_overrides(epsilon, shape)
    )
    model, _ = model_from_bytes((out_dir / "model.npz").read_bytes())
    return model, results


def arm_row(epsilon: float, results: dict, scores: np.ndarray, labels: np.ndarray) -> dict:
    """The pooled test figures, the ledger's ε and the seconds per round of one arm."""
    rounds = results["rounds"]
    privacy = rounds[-1].get("privacy", {}) if rounds else {}
    points = lowfpr.operating_points(scores, labels)
    later = rounds[1:] or rounds
    return {
        "epsilon_target": epsilon_label(epsilon),
        "noise_multiplier": privacy.get("noise_multiplier", 0.0),
        "epsilon_spent": privacy.get("epsilon", math.inf),
        "rounds": len(rounds),
        "auc": points["auc"],
        **{
            key: points[key]
            for tag in ("1e-3", "1e-4")
            for key in (
                f"tpr_at_fpr_{tag}",
                f"resolvable_{tag}",
                f"fp_per_day_{tag}",
                f"fp_per_day_upper95_{tag}",
            )
        },
        "n_benign": points["n_benign"],
        "n_dga": points["n_dga"],
        "train_s_per_round": float(np.mean([r["seconds"]["train"] for r in later])),
        "round_s": float(np.mean([r["seconds"]["total"] for r in later])),
    }


def site_rows(epsilon: float, results: dict) -> list[dict]:
    """What each site's own report sent in the last round (share level rates+volumes)."""
    last = results["rounds"][-1]["sites"] if results["rounds"] else {}
    rows = []
    for site, metrics in sorted(last.items()):
        rows.append(
            {
                "epsilon_target": epsilon_label(epsilon),
                "site": site,
                "auc": metrics.get("auc"),
                "tpr_at_fpr_1e-3": metrics.get("tpr_at_fpr_1e-3"),
                "resolvable_1e-3": metrics.get("tpr_at_fpr_1e-3_resolvable"),
                "tpr_at_fpr_1e-4": metrics.get("tpr_at_fpr_1e-4"),
                "resolvable_1e-4": metrics.get("tpr_at_fpr_1e-4_resolvable"),
                "fp_per_day_upper95": metrics.get("fp_per_day_upper95"),
            }
        )
    return rows


def run(*, size: str, root: Path = lab.RESULTS_ROOT, real_dev: str | Path | None = None) -> dict:
    """`fedsec experiment dp-utility`: stops with one line naming the fix without real-dev data."""
    return lowfpr.run_real_dev(measure, SIZES, size=size, root=root, real_dev=real_dev)


def measure(folder: Path, *, size: str, root: Path = lab.RESULTS_ROOT) -> dict:
    from common.training import predict_scores
    from experiments.value import one_torch_thread

    shape = SIZES[size]
    arms, sites_table = [], []
    with (
        lab.stopwatch() as total,
        one_torch_thread(),
        tempfile.TemporaryDirectory(prefix="fedsec-dp-utility-") as temp,
    ):
        data_dir, work = Path(temp) / "sites", Path(temp) / "work"
        corpus = lowfpr.load_corpus(folder)
        split = lowfpr.split_corpus(
            corpus,
            n_sites=shape.sites,
            test_benign=shape.test_benign,
            site_test_fraction=shape.site_test_fraction,
            seed=SEED,
        )
        lowfpr.write_sites(split, data_dir, seed=SEED)
        test = lowfpr.test_set(split)
        for epsilon in EPSILONS:
            tag = epsilon_label(epsilon)
            with lab.stopwatch() as watch:
                model, results = run_arm(data_dir, work / tag, epsilon=epsilon, shape=shape)
            scores = predict_scores(model, domains=test.encoded)
            row = arm_row(epsilon, results, scores, test.labels)
            row["wall_s"] = watch["seconds"]
            arms.append(row)
            sites_table.extend(site_rows(epsilon, results))
            log.info(
                "ε target %s: spent %.3g, AUC %.4f, TPR@1e-3 %.3f, %.0f s",
                tag,
                row["epsilon_spent"],
                row["auc"],
                row["tpr_at_fpr_1e-3"],
                watch["seconds"],
            )
    payload = {
        "size": size,
        "config": {
            "sites": shape.sites,
            "rounds": shape.rounds,
            "local_steps": shape.local_steps,
            "batch": shape.batch,
            "delta": DELTA,
            "seed": SEED,
        },
        "arms": arms,
        "sites": sites_table,
        "total_s": total["seconds"],
    }
    write_outputs(Results(NAME, TITLE, root), payload)
    return payload


def write_outputs(results: Results, payload: dict[str, Any]) -> None:
    results.write_json(payload)
    results.write_csv(payload["arms"], "arms.csv")
    results.write_csv(payload["sites"], "sites.csv")
    eps = Column("epsilon_target", "ε target")
    results.add_table(
        "Pooled test names, per ε (SecAgg+, same sites, rounds and seed)",
        payload["arms"],
        [
            eps,
            Column("noise_multiplier", "z", "{:.3g}"),
            Column("epsilon_spent", "ε spent (ledger)", "{:.3g}"),
            Column("auc", "AUC", "{:.4f}"),
            Column("tpr_at_fpr_1e-3", "TPR@1e-3"),
            Column("resolvable_1e-3", "resolvable"),
            Column("tpr_at_fpr_1e-4", "TPR@1e-4"),
            Column("resolvable_1e-4", "resolvable"),
            Column("fp_per_day_upper95_1e-4", "FP/day 95% bound @1e-4, 1e9/day", "{:,.0f}"),
            Column("train_s_per_round", "train s/round", "{:.1f}"),
            Column("round_s", "s/round", "{:.1f}"),
        ],
        notes=[
            "ε at δ = 1e-6 from dp-accounting's RDP accountant with the noise actually present "
            "(z·√(k/t)); ∞ = no DP. Seconds are means over rounds ≥ 2 on a shared 2-core "
            "machine."
        ],
    )
    results.add_table(
        "Each site's own test day (what its report sent), last round",
        payload["sites"],
        [
            eps,
            Column("site", "site"),
            Column("auc", "AUC", "{:.3f}"),
            Column("tpr_at_fpr_1e-3", "TPR@1e-3"),
            Column("resolvable_1e-3", "resolvable", "{:g}"),
            Column("tpr_at_fpr_1e-4", "TPR@1e-4"),
            Column("resolvable_1e-4", "resolvable", "{:g}"),
            Column("fp_per_day_upper95", "FP/day 95% bound (site's operating point)", "{:,.0f}"),
        ],
    )
    results.write_table_md(size=payload["size"], command=COMMAND)


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.dp_utility --real-dev PATH [--tiny | --full] [--out ROOT]`."""
    lowfpr.real_dev_main("experiments.dp_utility", __doc__, measure, argv)


if __name__ == "__main__":
    main()
