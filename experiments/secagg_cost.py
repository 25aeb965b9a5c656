"""What SecAgg+ costs: seconds per round and peak memory against FedAvg, by sites and shares.

    fedsec experiment secagg-cost [--full | --tiny]

At each number of sites FedAvg runs first, then SecAgg+ with a few `num-shares` settings,
all on the same generated sites with the same seed: the ratio SecAgg+/FedAvg comes from the
same minutes of the same (shared, noisy) machine. Few local steps and small data, so the
aggregation, not the training, is what a round costs. Round 1 starts cold Ray actors and is
left out. Same seeds mean the same deltas, so the two final models differ only by SecAgg+'s
quantisation: the AUC difference and max |w_secagg - w_fedavg| say whether that holds.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.lab import (
    RESULTS_ROOT,
    Column,
    Engine,
    PeakRss,
    Results,
    cli_main,
    evaluate,
    load_sites,
    round_seconds,
    run_federation,
    settings_for,
    share_volumes,
)

log = logging.getLogger("fedsec.experiments")

NAME = "secagg-cost"
TITLE = "What secure aggregation costs: SecAgg+ against FedAvg, by sites and shares"
SEED = 0
QUANTIZATION_RANGE = 2**22


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    mode: str
    num_shares: float = 0.0  # the run-config value: 0 fedsec's default, <= 1 a fraction


FEDAVG = Variant("fedavg", "FedAvg", "fedavg")
SHARES_3 = Variant("shares-3", "SecAgg+ 3 shares", "secagg", 3)
SHARES_5 = Variant("shares-5", "SecAgg+ 5 shares", "secagg", 5)
SHARES_11 = Variant("shares-11", "SecAgg+ 11 shares", "secagg", 11)
FEDSEC_DEFAULT = Variant("fedsec-default", "SecAgg+ fedsec default (min(15, n))", "secagg", 0)
FRACTION = Variant("fraction-0.6", "SecAgg+ fraction 0.6 of nodes", "secagg", 0.6)


@dataclass(frozen=True)
class Plan:
    sites: tuple[int, ...]
    variants: tuple[Variant, ...]
    num_rounds: int = 3
    local_steps: int = 2
    scale: float = 0.05
    n_days: int = 2
    engine: Engine = "ray"


PLANS = {
    "tiny": Plan(
        sites=(5,), variants=(FEDAVG, SHARES_5, FRACTION), num_rounds=2, engine="inprocess"
    ),
    "default": Plan(
        sites=(5, 10, 25), variants=(FEDAVG, SHARES_3, SHARES_11, FEDSEC_DEFAULT, FRACTION)
    ),
    "full": Plan(
        sites=(5, 10, 25, 50, 100), variants=(FEDAVG, SHARES_3, SHARES_11, FEDSEC_DEFAULT, FRACTION)
    ),
    # The product's question (issue 14): the train-phase ratio at 10, 50 and 100 small sites
    # with fedsec's default shares only; 20-40 min on 2 cores, depending on other jobs.
    "at-scale": Plan(sites=(10, 50, 100), variants=(FEDAVG, FEDSEC_DEFAULT)),
}
SEPARATE = {
    "at-scale": (
        f"{NAME}-at-scale",
        "What secure aggregation costs at 10, 50 and 100 sites (fedsec's default shares)",
    )
}
"""Sizes with a folder and title of their own: they add to the default table, not replace it."""
COMMANDS = {
    "default": f"fedsec experiment {NAME}",
    "full": f"fedsec experiment {NAME} --full",
    "tiny": f"fedsec experiment {NAME} --tiny",
    "at-scale": (
        "python -c 'from experiments.lab import setup_logging; "
        'from experiments.secagg_cost import run; setup_logging(); run(size="at-scale")\''
    ),
}


def run(*, size: str = "default", root: Path = RESULTS_ROOT) -> dict[str, Any]:
    plan = PLANS[size]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fedsec-secagg-cost-") as temp:
        from experiments.generator import generate_sites

        for n_sites in plan.sites:
            data = Path(temp) / f"sites-{n_sites}"
            generate_sites(
                out_dir=data, n_sites=n_sites, n_days=plan.n_days, seed=SEED, scale=plan.scale
            )
            share_volumes(data)  # FedAvg must average with the weights SecAgg+ masks
            sites = load_sites(data, Path(temp) / f"work-{n_sites}")
            rows.extend(
                _at_n_sites(plan, data=data, sites=sites, out=Path(temp) / f"runs-{n_sites}")
            )
    payload = {
        "size": size,
        "seed": SEED,
        "plan": _plan_dict(plan),
        "rows": [_public(row) for row in rows],
        "quantization_step": _quantization_step(),
        "mask_generator": _mask_generator(),
    }
    folder, title = SEPARATE.get(size, (NAME, TITLE))
    _write(Results(folder, title, root), payload, size=size)
    return payload


def _plan_dict(plan: Plan) -> dict[str, Any]:
    return {**asdict(plan), "variants": [asdict(variant) for variant in plan.variants]}


def _mask_generator() -> str:
    """Which SecAgg+ mask generator flwr's unmask stage calls in this process."""
    import importlib

    from common import masks

    module = importlib.import_module(masks.PATCHED_MODULES[2])
    if module.pseudo_rand_gen is masks.pseudo_rand_gen:
        return "fedsec: ChaCha20 keyed by SHA-256 of the whole seed (common/masks.py)"
    return "flwr 1.42: Mersenne Twister seeded with the seed XOR-folded to 32 bits"


def _quantization_step() -> float:
    return 2 * settings_for().delta_clip_norm / QUANTIZATION_RANGE


def _overrides(plan: Plan, variant: Variant) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "mode": variant.mode,
        "num-rounds": plan.num_rounds,
        "local-steps": plan.local_steps,
        "seed": SEED,
    }
    if variant.mode == "secagg":
        overrides["num-shares"] = variant.num_shares
    return overrides


def _at_n_sites(plan: Plan, *, data: Path, sites: list[Any], out: Path) -> list[dict[str, Any]]:
    """FedAvg, then every SecAgg+ variant whose shares differ from one already run at this n."""
    n_sites = len(sites)
    rows: list[dict[str, Any]] = []
    baseline: dict[str, Any] = {}
    by_protocol: dict[tuple[int, int], dict[str, Any]] = {}
    for variant in plan.variants:
        shares = threshold = None
        if variant.mode == "secagg":
            settings = settings_for(**_overrides(plan, variant))
            shares, threshold = settings.resolved_secagg_shares(num_nodes=n_sites)
            if (shares, threshold) in by_protocol:
                same = by_protocol[(shares, threshold)]
                rows.append(
                    {
                        **same,
                        "variant": variant.key,
                        "label": variant.label,
                        "num_shares_setting": variant.num_shares,
                        "same_run_as": same["variant"],
                    }
                )
                continue
        row = _measure(plan, variant, data=data, sites=sites, out=out / variant.key)
        row.update(shares=shares, threshold=threshold, same_run_as=None)
        if variant.mode == "fedavg":
            baseline = row
        else:
            by_protocol[(shares, threshold)] = row
        rows.append(row)
    for row in rows:
        _compare(row, baseline)
    return rows


def _measure(
    plan: Plan, variant: Variant, *, data: Path, sites: list[Any], out: Path
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with PeakRss() as memory:
        results, arrays = run_federation(data, out, engine=plan.engine, **_overrides(plan, variant))
    load = (load_before + os.getloadavg()[0]) / 2  # how busy the shared machine was
    later = [entry for entry in results["rounds"] if entry["round"] >= 2] or results["rounds"]
    train_s = float(np.mean([entry["seconds"]["train"] for entry in later]))
    statuses = {entry["train"].get("status") for entry in results["rounds"]}
    aucs = [evaluate(site, arrays)["auc"] for site in sites]
    first_train = results["rounds"][0]["train"]
    row = {
        "sites": len(sites),
        "variant": variant.key,
        "label": variant.label,
        "num_shares_setting": variant.num_shares if variant.mode == "secagg" else None,
        "train_s_per_round": train_s,
        **round_seconds(results),
        "peak_mib": memory.peak_mib,
        "added_mib": memory.added_mib,
        "load_1min": load,
        "mean_auc": float(np.nanmean(aucs)),
        "all_rounds_aggregated": statuses == {"aggregated"},
        "round1_weights": [float(s["num_examples"]) for s in first_train["sites"].values()],
        "_arrays": arrays,
        "_round1": _checkpoint(out, 1),
    }
    log.info(
        "%3d sites %-40s %6.2f s/round (train), %6.2f s/round (total), peak %5.0f MiB",
        len(sites),
        variant.label,
        train_s,
        row["mean_round_s"],
        memory.peak_mib,
    )
    return row


def _checkpoint(out_dir: Path, server_round: int) -> list[np.ndarray]:
    from common.model import model_from_bytes, model_to_ndarrays

    model, _ = model_from_bytes(
        (out_dir / "checkpoints" / f"round-{server_round:03d}.npz").read_bytes()
    )
    return model_to_ndarrays(model)


def _max_abs_diff(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b)))
        for a, b in zip(first, second, strict=True)
    )


def _compare(row: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Ratios and model differences against the FedAvg run at the same number of sites.

    Round 1 starts both runs from the same initial model, so its difference is SecAgg+'s
    quantisation alone. Later rounds start from models that already differ a little, and
    AdamW's normalised steps turn a tiny difference into a full step wherever a gradient is
    near zero: the final difference compounds and is reported, not bounded.
    """
    row["train_ratio"] = row["train_s_per_round"] / baseline["train_s_per_round"]
    row["total_ratio"] = row["mean_round_s"] / baseline["mean_round_s"]
    row["auc_diff"] = row["mean_auc"] - baseline["mean_auc"]
    row["round1_dw"] = _max_abs_diff(row["_round1"], baseline["_round1"])
    row["max_abs_dw"] = _max_abs_diff(row["_arrays"], baseline["_arrays"])
    # One round's bound: every site's update is rounded once to the SecAgg+ step after scaling
    # by weight/max_weight; the sum is divided by the total ratio.
    weights = baseline["round1_weights"]
    max_weight = settings_for().max_weight
    row["round_bound"] = (
        len(weights) * _quantization_step() / (sum(weights) / max_weight)
        if row["variant"] != "fedavg"
        else 0.0
    )


COLUMNS = (
    Column("sites", "sites", "{:d}"),
    Column("label", "variant"),
    Column("protocol", "shares / threshold"),
    Column("train_s_per_round", "train s/round", "{:.2f}"),
    Column("train_ratio", "x FedAvg (train)", "{:.2f}"),
    Column("mean_round_s", "round s (incl. eval)", "{:.2f}"),
    Column("total_ratio", "x FedAvg (round)", "{:.2f}"),
    Column("peak_mib", "peak MiB", "{:,.0f}"),
    Column("load_1min", "machine load", "{:.1f}"),
    Column("auc_diff", "mean AUC diff", "{:+.5f}"),
    Column("round1_dw", "max abs dw, round 1", "{:.2e}"),
    Column("round_bound", "round-1 bound", "{:.2e}"),
    Column("max_abs_dw", "max abs dw, final", "{:.2e}"),
)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """The row as written: no arrays, and the protocol as `shares / threshold`."""
    public = {key: value for key, value in row.items() if not key.startswith("_")}
    if row.get("shares") is not None:
        public["protocol"] = f"{row['shares']} / {row['threshold']}"
        if row.get("same_run_as"):
            public["protocol"] += f" (= {row['same_run_as']})"
    else:
        public["protocol"] = "-"
    return public


def _write(results: Results, payload: dict[str, Any], *, size: str) -> None:
    rows = payload["rows"]
    results.write_json(payload)
    results.write_csv(rows, "secagg_cost.csv")
    plan = payload["plan"]
    notes = [
        f"Means over rounds 2..{plan['num_rounds']} (round 1 starts cold Ray actors); "
        f"{plan['local_steps']} local steps, generator scale {plan['scale']}, "
        f"{plan['n_days']} days, seed {payload['seed']}; 2 cores shared with other jobs, "
        "so read the ratios, not the seconds.",
        "`train s/round` is the fit phase, where SecAgg+ lives (setup, key sharing, masked "
        "vectors, unmasking); `round s` adds the evaluation, which is the same in both modes.",
        "`fraction 0.6`: flwr 1.42's `SecAggPlusWorkflow` has no default; a float num_shares is a "
        "fraction of the sampled nodes, and 0.6 gives the 61 shares at 100 nodes measured in the "
        "FLOWER notes. Its threshold (like every variant's) is just over half the shares.",
        "A variant whose shares and threshold equal another's at that size is not run twice: "
        "its row repeats the run named in `shares / threshold`.",
        "`max abs dw, round 1`: largest difference of any weight from the FedAvg run's after "
        "round 1, where both start from the same model; `round-1 bound`: SecAgg+'s "
        "quantisation bound for that round (sites x step / sum of weight/max-weight ratios, "
        f"step = 2 x clipping range / 2**22 = {payload['quantization_step']:.2e}).",
        f"`max abs dw, final`: the same after round {plan['num_rounds']}. It is not bounded: "
        "each later round starts from slightly different models, and AdamW's normalised "
        "steps turn a tiny difference into up to a full step where a gradient is near zero. "
        "`mean AUC diff` (SecAgg+ minus FedAvg, final models, every site) is what that "
        "compounding does to detection.",
        "`peak MiB`: process tree including Ray, sampled every 0.2 s. `machine load`: the "
        "1-minute load average (2 cores) at the start and end of the run, averaged: other "
        "jobs share the machine, and a ratio measured under very different loads is noise.",
    ]
    results.add_table(
        "Seconds per round, memory and accuracy by sites and variant", rows, COLUMNS, notes=notes
    )
    results.plot("seconds_per_round.png", lambda figure: _draw_seconds(figure, rows))
    results.plot("ratio.png", lambda figure: _draw_ratio(figure, rows))
    results.write_table_md(
        size=size,
        command=COMMANDS[size],
        intro=_reading(rows),
        plots=["seconds_per_round.png", "ratio.png"],
    )


def _reading(rows: list[dict[str, Any]]) -> str:
    secagg = [row for row in rows if row["variant"] != "fedavg"]
    largest = max(row["sites"] for row in rows)
    at_largest = sorted(
        (row for row in secagg if row["sites"] == largest), key=lambda row: row["train_ratio"]
    )
    parts = [
        f"At {largest} sites SecAgg+ made the train phase of a round "
        + ", ".join(
            f"{row['train_ratio']:.1f}x ({row['label'].removeprefix('SecAgg+ ')}, "
            f"{row['protocol']})"
            for row in at_largest
        )
        + " as slow as FedAvg measured next to it."
    ]
    inverted = [row for row in secagg if row["train_ratio"] < 1.0]
    loads = [row["load_1min"] for row in rows if row.get("load_1min") is not None]
    if inverted:
        parts.append(
            f"{len(inverted)} of {len(secagg)} SecAgg+ rows came out FASTER than FedAvg "
            f"(down to {min(row['train_ratio'] for row in inverted):.2f}x): there the load "
            "from other jobs changed more between runs than SecAgg+ costs"
            + (
                f" (1-minute load average {min(loads):.0f}-{max(loads):.0f} on 2 cores)"
                if loads
                else ""
            )
            + ", so those ratios are noise, not a speed-up."
        )
    smallest = min(row["sites"] for row in rows)
    cheapest = min(
        (row for row in secagg if row["sites"] == smallest), key=lambda row: row["train_ratio"]
    )
    parts.append(f"At {smallest} sites the cheapest variant cost {cheapest['train_ratio']:.1f}x.")
    worst_fraction = max(row["round1_dw"] / row["round_bound"] for row in secagg)
    worst_final = max(row["max_abs_dw"] for row in secagg)
    worst_auc = max(abs(row["auc_diff"]) for row in secagg)
    within = "within" if worst_fraction <= 1.0 else "NOT within"
    parts.append(
        f"After round 1 (same start) every SecAgg+ model was {within} the quantisation bound "
        f"of FedAvg's (worst: {worst_fraction:.2f}x the bound). Over later rounds the "
        f"difference compounds through training to at most {worst_final:.1e} per weight, "
        f"and the mean AUC over sites moved by at most {worst_auc:.4f}."
    )
    added = [row["peak_mib"] for row in secagg]
    base = [row["peak_mib"] for row in rows if row["variant"] == "fedavg"]
    if added and base:
        parts.append(
            f"Peak memory (process tree) ranged {min(added):,.0f}-{max(added):,.0f} "
            f"MiB under SecAgg+ against {min(base):,.0f}-{max(base):,.0f} MiB under "
            "FedAvg: the actors, not the protocol, set it."
        )
    if not all(row.get("all_rounds_aggregated", True) for row in rows):
        parts.append("WARNING: some run had a round that did not aggregate; see results.json.")
    return " ".join(parts)


def _series(rows: list[dict[str, Any]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        xs, ys = series.setdefault(row["label"], ([], []))
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            xs.append(row["sites"])
            ys.append(value)
    return series


def _draw_seconds(figure: Any, rows: list[dict[str, Any]]) -> None:
    axes = figure.add_subplot(1, 1, 1)
    for label, (xs, ys) in _series(rows, "train_s_per_round").items():
        axes.plot(xs, ys, marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("sites")
    axes.set_ylabel("seconds per round, train phase (log)")
    axes.set_title("Train phase of a round (rounds >= 2)")
    axes.legend(fontsize=7)


def _draw_ratio(figure: Any, rows: list[dict[str, Any]]) -> None:
    axes = figure.add_subplot(1, 1, 1)
    for label, (xs, ys) in _series(rows, "train_ratio").items():
        if label != FEDAVG.label:
            axes.plot(xs, ys, marker="o", label=label)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="FedAvg")
    axes.set_xscale("log")
    axes.set_xlabel("sites")
    axes.set_ylabel("SecAgg+ / FedAvg, train s per round")
    axes.set_title("Cost of SecAgg+ relative to FedAvg in the same run")
    axes.legend(fontsize=7)


if __name__ == "__main__":
    cli_main(__name__, run, __doc__)
