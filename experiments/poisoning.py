"""Poisoning sites against the coordinator's checks: does a hostile site move the model?

    fedsec experiment poisoning [--full | --tiny] [--out ROOT]

One or two sites misbehave in every train reply (run config `poison-sites`, a research knob
read only by client/local.py): their delta x100 (`scale`), negated (`sign-flip`), all NaN
(`nan`), or a claimed count of 10^12 examples (`huge-count`). Each attack runs under three
arms: FedAvg with the coordinator's checks (weights capped at max-weight, over-long or
non-finite deltas left out), FedAvg with the checks and a coordinate-wise median
(`robust-rule`), and SecAgg+ (the coordinator sees only the weighted mean and the sum of the
weight ratios, and rejects a round no clipping sites could produce). The figure per run is
the AUC of the final model at each honest site (its own test day), against the clean run of
the same arm; the table also counts the rounds the coordinator marked failed and the replies
it left out.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.lab import RESULTS_ROOT, Column, Engine, Results, cli_main, run_federation

log = logging.getLogger("fedsec.experiments")

NAME = "poisoning"
TITLE = "Poisoning sites: does one (or two) hostile sites move the global model?"
SEED = 0
ATTACKS = ("scale", "sign-flip", "nan", "huge-count")
ARMS = {
    "fedavg": {"mode": "fedavg"},
    "fedavg-median": {"mode": "fedavg", "robust-rule": "median"},
    "secagg": {"mode": "secagg"},
}
ARM_LABELS = {
    "fedavg": "FedAvg + checks",
    "fedavg-median": "FedAvg + checks + median",
    "secagg": "SecAgg+ + checks",
}


@dataclass(frozen=True)
class Plan:
    n_sites: int
    num_rounds: int
    local_steps: int
    poisoners: tuple[int, ...]
    arms: tuple[str, ...] = tuple(ARMS)
    attacks: tuple[str, ...] = ATTACKS
    # Two hostile sites only for the attacks whose effect adds up: a NaN or over-claiming reply
    # is refused alone, so a second one changes nothing but the sites left.
    double_attacks: tuple[str, ...] = ("scale", "sign-flip")
    scale: float = 0.05
    n_days: int = 2
    # "Within the clean run's AUC": the mean honest-site AUC no lower than the clean run's by
    # more than this (seed noise of the tiny sizes' few steps).
    auc_margin: float = 0.02
    # The coordinator's cap on a site's weight, sized to the generated sites (none has this
    # many training names): a site claiming 10^12 weighs at most this much.
    max_weight: float = 2000.0
    engine: Engine = "inprocess"


PLANS = {
    "tiny": Plan(
        n_sites=4,
        num_rounds=1,
        local_steps=3,
        poisoners=(1,),
        arms=("fedavg", "secagg"),
        attacks=("nan", "huge-count"),
        auc_margin=0.05,
    ),
    "default": Plan(n_sites=5, num_rounds=2, local_steps=10, poisoners=(1, 2)),
    "full": Plan(n_sites=8, num_rounds=5, local_steps=40, poisoners=(1, 2), scale=0.1),
}


def run(*, size: str = "default", root: Path = RESULTS_ROOT) -> dict[str, Any]:
    plan = PLANS[size]
    with tempfile.TemporaryDirectory(prefix="fedsec-poisoning-") as temp:
        from experiments.generator import generate_sites

        data = Path(temp) / "sites"
        generate_sites(
            out_dir=data, n_sites=plan.n_sites, n_days=plan.n_days, seed=SEED, scale=plan.scale
        )
        sites = _load_sites(data, Path(temp) / "eval")
        site_ids = [site.site_id for site in sites]
        initial_auc = _aucs(sites, _initial_arrays())
        rows: list[dict[str, Any]] = []
        for arm in plan.arms:
            clean = _one_run(plan, arm, data=data, work=Path(temp), sites=sites, poison={})
            rows.append(clean | {"attack": "none", "poisoners": 0})
            for attack in plan.attacks:
                for count in plan.poisoners:
                    if count > 1 and attack not in plan.double_attacks:
                        continue
                    poison = {site: attack for site in site_ids[:count]}
                    row = _one_run(
                        plan, arm, data=data, work=Path(temp), sites=sites, poison=poison
                    )
                    rows.append(row | {"attack": attack, "poisoners": count})
    _compare(rows, plan=plan, initial_auc=initial_auc)
    summary = _summary(rows, initial_auc=initial_auc)
    payload = {
        "size": size,
        "plan": asdict(plan),
        "seed": SEED,
        "initial_mean_auc": float(np.mean(list(initial_auc.values()))),
        "summary": summary,
        "rows": rows,
    }
    _write(Results(NAME, TITLE, root), payload, size=size)
    return payload


def _load_sites(data: Path, work: Path) -> list[Any]:
    from experiments.lab import load_sites

    return load_sites(data, work)


def _initial_arrays() -> list[np.ndarray]:
    from common.model import ModelSpec, build_model, model_to_ndarrays

    return model_to_ndarrays(build_model(ModelSpec(), seed=SEED))


def _aucs(sites: list[Any], arrays: list[np.ndarray]) -> dict[str, float]:
    """Each site's AUC of this model on its own test day."""
    from common.metrics import roc_auc
    from experiments.lab import site_scores

    return {
        site.site_id: roc_auc(
            scores=site_scores(site, arrays)["test"], labels=site.data.test.labels
        )
        for site in sites
    }


def _one_run(
    plan: Plan, arm: str, *, data: Path, work: Path, sites: list[Any], poison: dict[str, str]
) -> dict[str, Any]:
    spec = ",".join(f"{site}:{attack}" for site, attack in poison.items())
    out = work / f"{arm}-{spec.replace(':', '-').replace(',', '_') or 'clean'}"
    results, arrays = run_federation(
        data,
        out,
        engine=plan.engine,
        **{
            "num-rounds": plan.num_rounds,
            "local-steps": plan.local_steps,
            "seed": SEED,
            "max-weight": plan.max_weight,
            "report-html": False,
            "poison-sites": spec,
            **ARMS[arm],
        },
    )
    aucs = _aucs(sites, arrays)
    honest = {site: auc for site, auc in aucs.items() if site not in poison}
    trains = [entry["train"] for entry in results["rounds"]]
    row = {
        "arm": arm,
        "arm_label": ARM_LABELS[arm],
        "poison_sites": spec or "-",
        "failed_rounds": sum(train.get("status") == "failed" for train in trains),
        "aggregated_rounds": sum(train.get("status") == "aggregated" for train in trains),
        "left_out": sum(len(train.get("rejected", {})) for train in trains),
        "mean_auc": float(np.mean(list(honest.values()))),
        "min_auc": float(np.min(list(honest.values()))),
        "site_auc": honest,
        "problems": sorted({train["problem"] for train in trains if train.get("problem")}),
        "model_moved": float(
            max(np.max(np.abs(a - b)) for a, b in zip(arrays, _initial_arrays(), strict=True))
        ),
    }
    log.info(
        "%s %s: mean honest AUC %.4f, %d rounds failed, %d replies left out",
        arm,
        spec or "clean",
        row["mean_auc"],
        row["failed_rounds"],
        row["left_out"],
    )
    return row


def _compare(rows: list[dict[str, Any]], *, plan: Plan, initial_auc: dict[str, float]) -> None:
    """Each row against its arm's clean run, over the same honest sites."""
    clean = {row["arm"]: row for row in rows if row["attack"] == "none"}
    for row in rows:
        reference = clean[row["arm"]]["site_auc"]
        same_sites = [reference[site] for site in row["site_auc"]]
        row["clean_mean_auc"] = float(np.mean(same_sites))
        row["auc_change"] = row["mean_auc"] - row["clean_mean_auc"]
        row["within_clean"] = bool(row["auc_change"] >= -plan.auc_margin)
        row["initial_mean_auc"] = float(np.mean([initial_auc[site] for site in row["site_auc"]]))
        row["outcome"] = _outcome(row, plan=plan)


def _outcome(row: dict[str, Any], *, plan: Plan) -> str:
    """Contained (within the clean AUC), blocked (every round refused: the model never moved,
    a denial of service, not a poisoning) or POISONED."""
    if row["within_clean"]:
        return "contained"
    if row["failed_rounds"] == plan.num_rounds and row["model_moved"] == 0.0:
        return "blocked (no round aggregated)"
    return "POISONED"


def _summary(rows: list[dict[str, Any]], *, initial_auc: dict[str, float]) -> dict[str, Any]:
    attacked = [row for row in rows if row["attack"] != "none"]
    fedavg = [row for row in attacked if row["arm"].startswith("fedavg")]
    return {
        "clean_mean_auc": {row["arm"]: row["mean_auc"] for row in rows if row["attack"] == "none"},
        "fedavg_rows_within_clean": sum(row["within_clean"] for row in fedavg),
        "fedavg_rows": len(fedavg),
        "poisoned_rows": [
            f"{row['arm']} {row['poison_sites']}"
            for row in attacked
            if row["outcome"] == "POISONED"
        ],
        "blocked_rows": [
            f"{row['arm']} {row['poison_sites']}"
            for row in attacked
            if row["outcome"].startswith("blocked")
        ],
    }


COLUMNS = (
    Column("arm_label", "arm"),
    Column("attack", "attack"),
    Column("poisoners", "hostile sites", "{:d}"),
    Column("mean_auc", "mean AUC (honest sites)", "{:.4f}"),
    Column("clean_mean_auc", "clean run", "{:.4f}"),
    Column("auc_change", "change", "{:+.4f}"),
    Column("min_auc", "worst site", "{:.4f}"),
    Column("failed_rounds", "rounds failed", "{:d}"),
    Column("left_out", "replies left out", "{:d}"),
    Column("outcome", "outcome"),
)


def _write(results: Results, payload: dict[str, Any], *, size: str) -> None:
    rows, plan, summary = payload["rows"], payload["plan"], payload["summary"]
    results.write_json(payload)
    results.write_csv(
        [{key: value for key, value in row.items() if key != "site_auc"} for row in rows],
        "poisoning.csv",
    )
    notes = [
        f"{plan['n_sites']} generated sites, {plan['num_rounds']} rounds of "
        f"{plan['local_steps']} local steps, seed {payload['seed']}, max-weight "
        f"{plan['max_weight']:g}; hostile sites are the "
        "first one or two and attack in every round. AUC of the final model on each honest "
        "site's test day; `clean run` is the same arm without hostile sites, over the same "
        f"honest sites; the untrained model scores {payload['initial_mean_auc']:.4f}.",
        f"`contained`: within {plan['auc_margin']:g} of the clean run's mean AUC. `blocked`: "
        "the coordinator refused every round (the model never moved; a hostile site can stop "
        "a SecAgg+ federation, not steer it). `POISONED`: neither.",
        "Attacks: `scale` = delta x100 after the honest clip; `sign-flip` = delta negated; "
        "`nan` = every value NaN; `huge-count` = 10^12 examples claimed.",
    ]
    results.add_table("Final-model AUC under attack, per arm", rows, COLUMNS, notes=notes)
    poisoned = summary["poisoned_rows"]
    reading = (
        f"FedAvg with the coordinator's checks stayed within the clean AUC in "
        f"{summary['fedavg_rows_within_clean']} of {summary['fedavg_rows']} attacked runs. "
        + (f"Poisoned: {', '.join(poisoned)}. " if poisoned else "No attacked run was poisoned. ")
        + (
            f"Blocked (every round refused, model unchanged): {', '.join(summary['blocked_rows'])}."
            if summary["blocked_rows"]
            else ""
        )
    )
    results.plot("auc.png", lambda figure: _draw(figure, rows), size=(9.0, 4.5))
    results.write_table_md(
        size=size,
        command=f"fedsec experiment {NAME}"
        + {"default": "", "full": " --full", "tiny": " --tiny"}[size],
        intro=reading,
        plots=["auc.png"],
    )


def _draw(figure: Any, rows: list[dict[str, Any]]) -> None:
    axes = figure.add_subplot(1, 1, 1)
    labels = [f"{row['attack']}x{row['poisoners']}" for row in rows if row["arm"] == "fedavg"]
    arms = [arm for arm in ARMS if any(row["arm"] == arm for row in rows)]
    width = 0.8 / len(arms)
    for index, arm in enumerate(arms):
        values = [row["mean_auc"] for row in rows if row["arm"] == arm]
        positions = np.arange(len(values)) + index * width
        axes.bar(positions, values, width=width, label=ARM_LABELS[arm])
    axes.set_xticks(np.arange(len(labels)) + width * (len(arms) - 1) / 2)
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("mean AUC of the final model (honest sites)")
    axes.set_ylim(0.0, 1.0)
    axes.set_title("Attack x hostile sites; first group = clean run")
    axes.legend(loc="lower right", fontsize=8)


if __name__ == "__main__":
    cli_main(__name__, run, __doc__)
