"""What federation buys each data holder: local-only vs FedAvg vs SecAgg+ vs pooled, per site.

    fedsec experiment value [--full | --tiny] [--out ROOT]

Every arm trains on the same generated sites with the same rounds and local steps and is
scored by the code a site's fragility report runs. Besides the per-site fragility table it
measures the published anchors (FPR at equal TPR, Drichel et al. 2021; share of the
local-to-pooled gap that federation closes, Sarhan et al. 2023), whether SecAgg+ and FedAvg
agree, and the "blind men and the elephant" matrix: recall on DGA families a site never saw.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab
from experiments.lab import HEADLINE, Column, Results

NAME = "value"
TITLE = "What federation buys each data holder (local-only vs FedAvg vs SecAgg+ vs pooled)"
COMMAND = "fedsec experiment value [--full]"
log = logging.getLogger("fedsec.experiments")

ARMS = ("local", "fedavg", "secagg", "pooled")
ARM_LABELS = {
    "local": "local only",
    "fedavg": "FedAvg",
    "secagg": "SecAgg+",
    "pooled": "pooled (upper bound)",
}
FEDERATED = "secagg"  # what fedsec deploys; FedAvg agrees within quantisation noise
SEED = 0
ANCHOR_TPRS = (0.9, 0.5)  # Drichel et al. compare FPR at equal TPR; 0.9 is the headline
SECOND_FPR = 1e-3  # the informative operating point when the alert budget is infeasible
OPERATING_POINTS = {
    "fpr_1e-3": "FPR = 1e-3 on the site's test benign names",
    "budget": "the site's alert-budget threshold",
}
SHORT_POINTS = {"fpr_1e-3": "FPR = 1e-3", "budget": "the budget threshold"}
MIN_SEEN_NAMES = 10  # fewer labelled training names of a family are intel mistakes on benign names
QUANTIZATION_RANGE = 2**22  # flwr's SecAggPlusWorkflow default


@dataclass(frozen=True)
class Size:
    sites: int
    days: int
    scale: float
    rounds: int
    local_steps: int
    engine: lab.Engine = "ray"


SIZES = {
    "tiny": Size(sites=4, days=2, scale=0.1, rounds=2, local_steps=8, engine="inprocess"),
    "default": Size(sites=8, days=4, scale=1.0, rounds=5, local_steps=20),
    "full": Size(sites=16, days=6, scale=1.0, rounds=10, local_steps=60),
}


# --- pure helpers ------------------------------------------------------------------------------


def fpr_at_tpr(*, scores: np.ndarray, labels: np.ndarray, target_tpr: float) -> float:
    """FPR at the highest threshold whose TPR is >= ``target_tpr`` (nan without both classes)."""
    from common.metrics import confusion_at_thresholds, score_thresholds

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return math.nan
    confusion = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=score_thresholds(scores)
    )
    # Thresholds ascend, so TPR falls: the last one still meeting the target flags the fewest.
    index = int(np.flatnonzero(confusion.tpr >= target_tpr)[-1])
    return float(confusion.fpr[index])


def gap_closed(*, local: float, federated: float, pooled: float, min_gap: float = 0.005) -> float:
    """(federated - local) / (pooled - local): 1 = as good as pooling, 0 = no better than alone.

    nan unless pooling beats local-only by at least ``min_gap``: with no gap to close the ratio
    is noise over noise (and flips sign when pooled < local).
    """
    gap = pooled - local
    if not all(map(math.isfinite, (local, federated, pooled))) or gap < min_gap:
        return math.nan
    return (federated - local) / gap


def relative_reduction(*, before: float, after: float) -> float:
    """1 - after / before (0.517 = the 51.7% FPR cut of Drichel et al.); nan when before is 0."""
    if not (math.isfinite(before) and math.isfinite(after)) or before <= 0:
        return math.nan
    return 1.0 - after / before


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def _stat(values: Sequence[float], how: str) -> float:
    finite = _finite(values)
    if finite.size == 0:
        return math.nan
    return float({"mean": np.mean, "median": np.median, "max": np.max, "min": np.min}[how](finite))


# --- evaluating one arm at one site ------------------------------------------------------------


def evaluate_arm(site: Any, model: Any) -> tuple[dict[str, float], list[dict]]:
    """lab.evaluate's metrics (scored once), anchor FPRs and family recall at both points."""
    from client.fragility import compute_metrics, family_recall
    from common.metrics import threshold_for_fpr

    data = site.data
    scores = lab.site_scores(site, model)
    labels = data.test.labels == 1
    metrics = dict(
        compute_metrics(
            data,
            intel_only=data.intel_only,
            test_scores=scores["test"],
            train_scores=scores["train"],
            intel_only_scores=scores["intel_only"],
            previous_probe=None,
            server_round=0,
        ).metrics
    )
    volume = data.config.deployment.benign_events_per_day
    for target in ANCHOR_TPRS:
        fpr = fpr_at_tpr(scores=scores["test"], labels=labels, target_tpr=target)
        metrics[f"fpr_at_tpr_{target}"] = fpr
        metrics[f"fp_per_day_at_tpr_{target}"] = fpr * volume
    threshold = threshold_for_fpr(scores=scores["test"], labels=labels, target_fpr=SECOND_FPR)
    second_rows, second = family_recall(
        data,
        scores["test"],
        intel_only=data.intel_only,
        intel_only_scores=scores["intel_only"],
        threshold=threshold,
    )
    metrics["unseen_family_recall_at_fpr_1e-3"] = second["unseen_family_recall"]
    budget_rows, _ = family_recall(
        data,
        scores["test"],
        intel_only=data.intel_only,
        intel_only_scores=scores["intel_only"],
        threshold=metrics["threshold"],
    )
    cells = [
        {
            "operating_point": point,
            "family": row["family"],
            "recall": row["recall"],
            "names": row["test_positives"] + row["intel_only"],
        }
        for point, rows in (("fpr_1e-3", second_rows), ("budget", budget_rows))
        for row in rows
        if row["family"] != "unknown"
    ]
    return metrics, cells


def family_training_names(site: Any) -> dict[str, int]:
    """Labelled training names per family slug at this site (what it has 'seen')."""
    from common.families import family_slug

    train = site.data.train
    families, counts = np.unique(train.families[train.labels == 1].astype(str), return_counts=True)
    return {family_slug(name): int(count) for name, count in zip(families, counts, strict=True)}


# --- the run -----------------------------------------------------------------------------------


def train_arms(
    sites: list[Any],
    data_dir: Path,
    work: Path,
    size: Size,
    timings: dict[str, float],
    round_one: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Every arm's model: a per-site list for local-only, one model or arrays for the others.

    `round_one` receives, per federated arm, how many sites' updates round 1 aggregated."""
    overrides = {"num-rounds": size.rounds, "local-steps": size.local_steps, "seed": SEED}
    settings = lab.settings_for(**overrides)
    models: dict[str, Any] = {}
    with lab.stopwatch() as watch:
        models["local"] = [
            lab.train_local_only(site, settings, work / "local" / site.data.site_id)
            for site in sites
        ]
    timings["local_s"] = watch["seconds"]
    log.info("local-only: %d sites trained in %.0f s", len(sites), watch["seconds"])
    with lab.stopwatch() as watch:
        models["pooled"] = lab.train_pooled(sites, settings)
    timings["pooled_s"] = watch["seconds"]
    log.info("pooled: trained in %.0f s", watch["seconds"])
    for mode in ("fedavg", "secagg"):
        with lab.stopwatch() as watch:
            results, arrays = lab.run_federation(
                data_dir, work / mode, engine=size.engine, mode=mode, **overrides
            )
        models[mode] = arrays
        if round_one is not None:
            round_one[mode] = int(results["rounds"][0]["train"]["results"])
        timings[f"{mode}_s"] = watch["seconds"]
        for key, value in lab.round_seconds(results).items():
            timings[f"{mode}_{key}"] = value
        log.info("%s: %d rounds in %.0f s", mode, size.rounds, watch["seconds"])
    return models


def arm_model(models: dict[str, Any], arm: str, index: int) -> Any:
    return models[arm][index] if arm == "local" else models[arm]


def evaluate_all(sites: list[Any], models: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(one row per site x arm, one family cell per site x arm x operating point x family)."""
    rows, cells = [], []
    for index, site in enumerate(sites):
        trained = family_training_names(site)
        for arm in ARMS:
            metrics, site_cells = evaluate_arm(site, arm_model(models, arm, index))
            rows.append(
                {
                    "site": site.data.site_id,
                    "arm": arm,
                    **metrics,
                    "test_benign": float((site.data.test.labels == 0).sum()),
                    "benign_events_per_day": site.data.config.deployment.benign_events_per_day,
                }
            )
            for cell in site_cells:
                train_names = trained.get(cell["family"], 0)
                cells.append(
                    {
                        "site": site.data.site_id,
                        "arm": arm,
                        **cell,
                        "train_names": train_names,
                        "seen": train_names >= MIN_SEEN_NAMES,
                        "seen_strict": cell["family"] in trained,
                    }
                )
        log.info("evaluated %s under %d arms", site.data.site_id, len(ARMS))
    return rows, cells


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """In-process training on one thread, as every ClientApp trains (client/app.py).

    On a shared machine two intra-op threads spin against other jobs: measured 13x slower
    wall time for the same steps under a load of 20 on 2 cores.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run(*, size: str, root: Path = lab.RESULTS_ROOT) -> dict:
    """Generate the sites, train the four arms, evaluate them everywhere, write the results."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    shape = SIZES[size]
    timings: dict[str, float] = {}
    with (
        lab.PeakRss() as peak,
        lab.stopwatch() as total,
        one_torch_thread(),
        tempfile.TemporaryDirectory(prefix="fedsec-value-") as temp,
    ):
        data_dir, work = Path(temp) / "sites", Path(temp) / "work"
        from experiments.generator import generate_sites

        generate_sites(
            out_dir=data_dir, n_sites=shape.sites, n_days=shape.days, seed=SEED, scale=shape.scale
        )
        lab.share_volumes(data_dir)  # FedAvg must average with the weights SecAgg+ masks
        sites = lab.load_sites(data_dir, work / "sites")
        log.info(
            "generated and parsed %d sites (%d days, scale %g)",
            shape.sites,
            shape.days,
            shape.scale,
        )
        round_one: dict[str, int] = {}
        models = train_arms(sites, data_dir, work, shape, timings, round_one)
        agreement = secagg_agreement(sites, work, models, round_one)
        rows, cells = evaluate_all(sites, models)
    timings["total_s"] = total["seconds"]
    payload = build_payload(size, shape, rows, cells, agreement, timings, peak.peak_mib)
    write_outputs(Results(NAME, TITLE, root), payload)
    return payload


# --- SecAgg+ against FedAvg --------------------------------------------------------------------


def _arrays_diff(first: list[np.ndarray], second: list[np.ndarray]) -> dict[str, float]:
    diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(first, second, strict=True)])
    return {"max_abs_diff": float(diffs.max()), "mean_abs_diff": float(diffs.mean())}


def secagg_agreement(
    sites: list[Any], work: Path, models: dict[str, Any], aggregated: dict[str, int]
) -> dict[str, float]:
    """Round 1 (same start, same local training: only aggregation differs) and final models.

    The comparison holds only when both arms aggregated every site in round 1 (`aggregated`):
    a site dropped from one arm differs by its whole update, not by quantisation."""
    from client.local import SPEC
    from server.checkpoints import CheckpointStore

    settings = lab.settings_for()
    first = {
        mode: CheckpointStore(work / mode / "checkpoints", spec=SPEC).load(1)
        for mode in ("fedavg", "secagg")
    }
    weights = sum(min(len(site.data.train), settings.max_weight) for site in sites)
    step = 2 * settings.delta_clip_norm / QUANTIZATION_RANGE
    round_one = _arrays_diff(first["fedavg"], first["secagg"])
    final = _arrays_diff(models["fedavg"], models["secagg"])
    return {
        "quantization_step": step,
        # Stochastic rounding errs by < 1 step per client; the sum is divided by sum(w)/max_w.
        "round1_error_bound": len(sites) * step * settings.max_weight / weights,
        "round1_sites_fedavg": aggregated.get("fedavg", 0),
        "round1_sites_secagg": aggregated.get("secagg", 0),
        "round1_max_abs_diff": round_one["max_abs_diff"],
        "round1_mean_abs_diff": round_one["mean_abs_diff"],
        "final_max_abs_diff": final["max_abs_diff"],
        "final_mean_abs_diff": final["mean_abs_diff"],
        "parameters": int(sum(array.size for array in models["fedavg"])),
    }


# --- derived tables ----------------------------------------------------------------------------

SUMMARY_KEYS = (
    "auc",
    "tpr_at_fpr_1e-3",
    "tpr_at_fpr_1e-4",
    "recall_at_budget",
    "fp_per_day",
    "fp_per_day_upper95",
    "analyst_hours_per_day",
    "threshold_feasible",
    "fpr_at_tpr_0.9",
    "fp_per_day_at_tpr_0.9",
    "unseen_family_recall",
    "unseen_family_recall_at_fpr_1e-3",
)


def summary_rows(rows: list[dict]) -> list[dict]:
    out = []
    for how in ("mean", "median"):
        for arm in ARMS:
            chosen = [row for row in rows if row["arm"] == arm]
            out.append(
                {
                    "site": how,
                    "arm": arm,
                    **{key: _stat([row.get(key) for row in chosen], how) for key in SUMMARY_KEYS},
                }
            )
    return out


def anchor_rows(rows: list[dict]) -> list[dict]:
    """Per site: Drichel's FPR cut at equal TPR and Sarhan's share of the gap closed."""
    by = {(row["site"], row["arm"]): row for row in rows}
    out = []
    for site in dict.fromkeys(row["site"] for row in rows):
        local, pooled = by[(site, "local")], by[(site, "pooled")]
        entry: dict[str, Any] = {"site": site}
        for target in ANCHOR_TPRS:
            key = f"fpr_at_tpr_{target}"
            entry[f"local_{key}"] = local[key]
            entry[f"pooled_{key}"] = pooled[key]
            for mode in ("fedavg", "secagg"):
                entry[f"{mode}_{key}"] = by[(site, mode)][key]
                entry[f"{mode}_fpr_cut_at_tpr_{target}"] = relative_reduction(
                    before=local[key], after=by[(site, mode)][key]
                )
        for metric in ("auc", "tpr_at_fpr_1e-3"):
            for mode in ("fedavg", "secagg"):
                entry[f"{mode}_gap_closed_{metric}"] = gap_closed(
                    local=local[metric], federated=by[(site, mode)][metric], pooled=pooled[metric]
                )
        out.append(entry)
    return out


def anchor_summary(anchors: list[dict], rows: list[dict]) -> dict[str, float]:
    """Mean/median/max of the per-site anchors, plus the gap closed by the mean over sites."""
    out: dict[str, float] = {}
    for key in anchors[0]:
        if key != "site" and ("cut" in key or "gap_closed" in key):
            for how in ("mean", "median", "max", "min"):
                out[f"{key}_{how}"] = _stat([entry[key] for entry in anchors], how)
    for metric in ("auc", "tpr_at_fpr_1e-3"):
        means = {arm: _stat([r[metric] for r in rows if r["arm"] == arm], "mean") for arm in ARMS}
        for mode in ("fedavg", "secagg"):
            out[f"{mode}_gap_closed_{metric}_of_means"] = gap_closed(
                local=means["local"], federated=means[mode], pooled=means["pooled"]
            )
    return out


def budget_rows(rows: list[dict]) -> list[dict]:
    """Why recall at budget is what it is: the FPR the budget allows vs what the test resolves."""
    out = []
    for row in rows:
        if row["arm"] != "local":
            continue
        volume, budget = row["benign_events_per_day"], row["alert_budget_per_day"]
        arms = [r for r in rows if r["site"] == row["site"]]
        out.append(
            {
                "site": row["site"],
                "benign_events_per_day": volume,
                "alert_budget_per_day": budget,
                "fpr_allowed": budget / volume,
                "smallest_measurable_fpr": 1.0 / row["test_benign"]
                if row["test_benign"]
                else math.nan,
                "test_benign": row["test_benign"],
                "feasible_arms": sum(int(r["threshold_feasible"] == 1.0) for r in arms),
                **{f"{r['arm']}_recall_at_budget": r["recall_at_budget"] for r in arms},
            }
        )
    return out


def family_summary(cells: list[dict], point: str) -> list[dict]:
    """Per family: mean recall over the sites that never saw it, for every arm."""
    from experiments.generator.dga import FAMILY_BY_NAME

    chosen = [c for c in cells if c["operating_point"] == point]
    out = []
    for family in sorted({c["family"] for c in chosen}):
        mine = [c for c in chosen if c["family"] == family]
        unseen_sites = sorted({c["site"] for c in mine if not c["seen"]})
        entry: dict[str, Any] = {
            "family": family,
            "class": getattr(FAMILY_BY_NAME.get(family), "algorithm_class", ""),
            "unseen_sites": len(unseen_sites),
            "seen_sites": len({c["site"] for c in mine if c["seen"]}),
        }
        for arm in ARMS:
            entry[f"{arm}_unseen"] = _stat(
                [c["recall"] for c in mine if c["arm"] == arm and not c["seen"]], "mean"
            )
            entry[f"{arm}_seen"] = _stat(
                [c["recall"] for c in mine if c["arm"] == arm and c["seen"]], "mean"
            )
        out.append(entry)
    mean = {
        "family": "mean over families",
        "class": "",
        "unseen_sites": sum(e["unseen_sites"] for e in out),
        "seen_sites": sum(e["seen_sites"] for e in out),
    }
    for key in out[0] if out else ():
        if key.endswith(("_unseen", "_seen")):
            mean[key] = _stat([e[key] for e in out], "mean")
    return [*out, mean] if out else out


def build_payload(
    size: str,
    shape: Size,
    rows: list[dict],
    cells: list[dict],
    agreement: dict[str, float],
    timings: dict[str, float],
    peak_mib: float,
) -> dict[str, Any]:
    anchors = anchor_rows(rows)
    by = {(row["site"], row["arm"]): row for row in rows}
    for key in ("auc", "recall_at_budget", "tpr_at_fpr_1e-3"):
        diffs = [
            abs(by[(s, "secagg")][key] - by[(s, "fedavg")][key])
            for s in dict.fromkeys(row["site"] for row in rows)
        ]
        agreement[f"max_abs_diff_{key}"] = _stat(diffs, "max")
    timings["federation_over_local"] = timings["fedavg_s"] / timings["local_s"]
    timings["secagg_over_fedavg_round"] = (
        timings["secagg_mean_round_s"] / timings["fedavg_mean_round_s"]
    )
    return {
        "size": size,
        "config": {
            **asdict(shape),
            "seed": SEED,
            "anchor_tprs": list(ANCHOR_TPRS),
            "second_operating_fpr": SECOND_FPR,
            "min_seen_names": MIN_SEEN_NAMES,
            "federated_arm_in_transfer_matrix": FEDERATED,
        },
        "timings": timings,
        "peak_rss_mib": peak_mib,
        "per_site": rows,
        "summary": summary_rows(rows),
        "anchors": {"per_site": anchors, "summary": anchor_summary(anchors, rows)},
        "secagg_vs_fedavg": agreement,
        "budget": budget_rows(rows),
        "family_transfer": {
            "cells": cells,
            "summary": {point: family_summary(cells, point) for point in OPERATING_POINTS},
        },
    }


# --- writing -----------------------------------------------------------------------------------


def write_outputs(results: Results, payload: dict[str, Any]) -> None:
    results.write_json(payload)
    results.write_csv(payload["per_site"], "sites.csv")
    results.write_csv(payload["summary"], "summary.csv")
    results.write_csv(payload["anchors"]["per_site"], "anchors.csv")
    results.write_csv(payload["budget"], "budget.csv")
    results.write_csv(payload["family_transfer"]["cells"], "family_cells.csv")
    results.write_csv(
        [
            {"operating_point": point, **entry}
            for point, entries in payload["family_transfer"]["summary"].items()
            for entry in entries
        ],
        "family_summary.csv",
    )
    results.write_csv([payload["secagg_vs_fedavg"]], "secagg_vs_fedavg.csv")
    write_tables(results, payload)
    plots = write_plots(results, payload)
    results.write_table_md(
        size=payload["size"], command=COMMAND, intro=intro_text(payload), plots=plots
    )
    log.info("wrote %s", results.path / lab.TABLE_FILE)


# --- tables, text and plots --------------------------------------------------------------------

ANCHOR_TPR = ANCHOR_TPRS[0]
EXTRA_COLUMNS = (
    Column("tpr_at_fpr_1e-3", "TPR@FPR=1e-3"),
    Column(f"fp_per_day_at_tpr_{ANCHOR_TPR}", f"FP/day at TPR={ANCHOR_TPR}", "{:,.0f}"),
)


def _labelled(rows: list[dict]) -> list[dict]:
    return [{**row, "arm_label": ARM_LABELS[row["arm"]]} for row in rows]


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.1f}%"


def write_tables(results: Results, payload: dict[str, Any]) -> None:
    site_arm = (Column("site", "site"), Column("arm_label", "arm"))
    results.add_table(
        "Mean and median over sites, per arm",
        _labelled(payload["summary"]),
        [
            *site_arm,
            *HEADLINE,
            *EXTRA_COLUMNS,
            Column("threshold_feasible", "budget feasible (share of sites)", "{:.2f}"),
        ],
        notes=[
            "FP/day and analyst hours are at the site's operating threshold (its alert "
            "budget); the 95% upper bound is Clopper-Pearson over the test benign names (with "
            "no false positive on the test days it is about 3 / (test benign names) x "
            "volume). "
            f"FP/day at TPR={ANCHOR_TPR}: what catching {ANCHOR_TPR:.0%} of the test DGA "
            "names would cost at the site's volume."
        ],
    )
    results.add_table(
        "Per site and arm", _labelled(payload["per_site"]), [*site_arm, *HEADLINE, *EXTRA_COLUMNS]
    )
    write_anchor_table(results, payload)
    write_agreement_table(results, payload["secagg_vs_fedavg"])
    write_budget_table(results, payload)
    for point, label in OPERATING_POINTS.items():
        results.add_table(
            f"Blind men and the elephant: recall on families a site never saw, at {label}",
            payload["family_transfer"]["summary"][point],
            [
                Column("family", "family"),
                Column("class", "class"),
                Column("unseen_sites", "sites that never saw it", "{:d}"),
                *(Column(f"{arm}_unseen", ARM_LABELS[arm]) for arm in ARMS),
                Column("local_seen", "local only, on sites that saw it"),
            ],
            notes=[
                f"Recall over the site's test DGA names plus its intel-only names of that "
                f"family. A site 'saw' a family when at least {MIN_SEEN_NAMES} of its "
                "labelled training names carry it (fewer are intel mistakes on benign "
                "names; family_cells.csv keeps the counts and the strict any-name flag)."
            ],
        )


def write_anchor_table(results: Results, payload: dict[str, Any]) -> None:
    anchors = payload["anchors"]["per_site"]
    summary = payload["anchors"]["summary"]
    key = f"fpr_at_tpr_{ANCHOR_TPR}"
    rows = [
        *anchors,
        *(
            {
                "site": how,
                **{
                    k.removesuffix(f"_{how}"): v
                    for k, v in summary.items()
                    if k.endswith(f"_{how}")
                },
            }
            for how in ("mean", "median")
        ),
    ]
    results.add_table(
        "Published anchors, per site",
        rows,
        [
            Column("site", "site"),
            Column(f"local_{key}", f"local FPR@TPR={ANCHOR_TPR}", "{:.4f}"),
            Column(f"fedavg_{key}", "FedAvg FPR", "{:.4f}"),
            Column(f"secagg_{key}", "SecAgg+ FPR", "{:.4f}"),
            Column(f"pooled_{key}", "pooled FPR", "{:.4f}"),
            Column(f"fedavg_fpr_cut_at_tpr_{ANCHOR_TPR}", "FPR cut, FedAvg", "{:.1%}"),
            Column(f"secagg_fpr_cut_at_tpr_{ANCHOR_TPR}", "FPR cut, SecAgg+", "{:.1%}"),
            Column("fedavg_gap_closed_auc", "AUC gap closed, FedAvg", "{:.2f}"),
            Column("secagg_gap_closed_auc", "AUC gap closed, SecAgg+", "{:.2f}"),
            Column("secagg_gap_closed_tpr_at_fpr_1e-3", "TPR@1e-3 gap closed, SecAgg+", "{:.2f}"),
        ],
        notes=[
            f"FPR cut = 1 - FPR(federated) / FPR(local only), both at TPR = {ANCHOR_TPR} on "
            "the site's test days (Drichel et al. 2021 report up to 51.7% at equal TPR). "
            f"A fixed TPR is used because recall at the budget threshold is ~0 for local "
            f"models (see the budget table); TPR = {ANCHOR_TPRS[1]} is in anchors.csv. "
            "Gap closed = (federated - local) / (pooled - local): 1 means as good as "
            "pooling every site's data (Sarhan et al. 2023: federated close to "
            "centralised, localised clearly worse); n/a when pooled does not beat local "
            "only by at least 0.005 (no gap to close). Mean/median rows summarise the "
            "per-site values."
        ],
    )


def write_agreement_table(results: Results, agreement: dict[str, float]) -> None:
    rows = [
        {
            "what": "quantisation step 2 x clipping range / 2^22",
            "value": agreement["quantization_step"],
        },
        {
            "what": "round 1 global model: bound n x step x max_weight / sum(weights)",
            "value": agreement["round1_error_bound"],
        },
        {
            "what": "round 1 global model: max abs(SecAgg+ - FedAvg)",
            "value": agreement["round1_max_abs_diff"],
        },
        {
            "what": "round 1 global model: mean abs(SecAgg+ - FedAvg)",
            "value": agreement["round1_mean_abs_diff"],
        },
        {
            "what": "final global model: max abs(SecAgg+ - FedAvg)",
            "value": agreement["final_max_abs_diff"],
        },
        {
            "what": "final global model: mean abs(SecAgg+ - FedAvg)",
            "value": agreement["final_mean_abs_diff"],
        },
        {
            "what": "max over sites abs(AUC(SecAgg+) - AUC(FedAvg))",
            "value": agreement["max_abs_diff_auc"],
        },
        {
            "what": "max over sites abs(TPR@1e-3 difference)",
            "value": agreement["max_abs_diff_tpr_at_fpr_1e-3"],
        },
        {
            "what": "max over sites abs(recall at budget difference)",
            "value": agreement["max_abs_diff_recall_at_budget"],
        },
    ]
    results.add_table(
        "SecAgg+ against FedAvg (same sites, same seeds)",
        rows,
        [Column("what", "quantity"), Column("value", "value", "{:.3g}")],
        notes=[
            "Round 1 starts both runs from the same weights with the same local training, "
            "so its difference is SecAgg+'s stochastic quantisation alone. Later rounds "
            "train from slightly different weights; AdamW normalises each step by the "
            "gradient's size, so parameters with near-zero gradients move by up to the "
            "learning rate on that noise: the final models drift further apart while the "
            "metrics stay close."
        ],
    )


def write_budget_table(results: Results, payload: dict[str, Any]) -> None:
    results.add_table(
        "The alert budget at each site",
        payload["budget"],
        [
            Column("site", "site"),
            Column("benign_events_per_day", "benign events/day", "{:,.0f}"),
            Column("alert_budget_per_day", "alert budget/day", "{:,.0f}"),
            Column("fpr_allowed", "FPR the budget allows", "{:.1e}"),
            Column("smallest_measurable_fpr", "1 / test benign names", "{:.1e}"),
            Column("feasible_arms", "arms with a feasible budget", "{:d}"),
            *(
                Column(f"{arm}_recall_at_budget", f"recall at budget, {ARM_LABELS[arm]}")
                for arm in ARMS
            ),
        ],
        notes=[
            "The budget threshold is the lowest one whose expected (TP + FP)/day fits the "
            "budget. When the FPR the budget allows is far below 1 / (test benign names), "
            "a single false positive on the test days already breaks the budget, so the "
            "threshold lands above every benign test score and recall at budget is the "
            "share of DGA names scored above the highest-scored benign name."
        ],
    )


def drichel_sentence(summary: dict[str, float]) -> str:
    median = summary[f"secagg_fpr_cut_at_tpr_{ANCHOR_TPR}_median"]
    best = summary[f"secagg_fpr_cut_at_tpr_{ANCHOR_TPR}_max"]
    worst = summary[f"secagg_fpr_cut_at_tpr_{ANCHOR_TPR}_min"]
    verb = "cuts" if median >= 0 else "raises"
    return (
        f"Drichel et al. anchor (FPR at equal TPR = {ANCHOR_TPR}; paper: up to 51.7% lower "
        f"with collaboration): SecAgg+ {verb} the local-only FPR by a median "
        f"{_pct(abs(median))} (per-site cut from {_pct(worst)} to {_pct(best)}; negative "
        "means the federated model flags more benign names)."
    )


def sarhan_sentence(payload: dict[str, Any], means: dict[str, dict]) -> str:
    summary = payload["anchors"]["summary"]
    rows = payload["per_site"]
    sites = list(dict.fromkeys(row["site"] for row in rows))
    by = {(row["site"], row["arm"]): row["auc"] for row in rows}
    better = sum(by[(site, "secagg")] > by[(site, "local")] for site in sites)
    closed = sum(math.isfinite(e["secagg_gap_closed_auc"]) for e in payload["anchors"]["per_site"])
    return (
        f"Sarhan et al. anchor (federated close to pooled, local clearly worse): mean AUC "
        f"pooled - local = {means['pooled']['auc'] - means['local']['auc']:+.4f}, SecAgg+ - "
        f"local = {means['secagg']['auc'] - means['local']['auc']:+.4f}; SecAgg+ beats "
        f"local-only AUC at {better} of {len(sites)} sites; pooling leaves a gap of at least "
        f"0.005 AUC at {closed} sites, where SecAgg+ closes a median "
        f"{summary['secagg_gap_closed_auc_median']:.2f} of it."
    )


def intro_text(payload: dict[str, Any]) -> str:
    config, summary = payload["config"], payload["anchors"]["summary"]
    means = {row["arm"]: row for row in payload["summary"] if row["site"] == "mean"}
    fam = {
        point: entries[-1]
        for point, entries in payload["family_transfer"]["summary"].items()
        if entries
    }
    agreement = payload["secagg_vs_fedavg"]
    budget = payload["budget"]
    infeasible = sum(len(ARMS) - row["feasible_arms"] for row in budget)
    timings = payload["timings"]
    sentences = [
        f"{len(budget)} generated sites ({config['days']} log days, scale {config['scale']:g}, "
        f"seed {config['seed']}), {config['rounds']} rounds x {config['local_steps']} local "
        "steps for every arm; the pooled arm gets the federation's whole compute. "
        f"Mean AUC over sites: local only {means['local']['auc']:.4f}, FedAvg "
        f"{means['fedavg']['auc']:.4f}, SecAgg+ {means['secagg']['auc']:.4f}, pooled "
        f"{means['pooled']['auc']:.4f}; mean TPR@FPR=1e-3: "
        + ", ".join(f"{ARM_LABELS[a]} {means[a]['tpr_at_fpr_1e-3']:.3f}" for a in ARMS)
        + ".",
        drichel_sentence(summary),
        sarhan_sentence(payload, means),
    ]
    if "fpr_1e-3" in fam:
        second = fam["fpr_1e-3"]
        sentences.append(
            "Families a site never saw, at FPR = 1e-3: mean recall local only "
            f"{second['local_unseen']:.3f} vs SecAgg+ {second['secagg_unseen']:.3f} (pooled "
            f"{second['pooled_unseen']:.3f}; local only on its own families "
            f"{second['local_seen']:.3f})."
        )
    recall_max = _stat([row["recall_at_budget"] for row in payload["per_site"]], "max")
    sentences.append(
        f"Recall at the alert budget is at most {recall_max:.3f} for any arm at any site (mean "
        + ", ".join(f"{ARM_LABELS[a]} {means[a]['recall_at_budget']:.3f}" for a in ARMS)
        + "): the budgets allow FPRs of "
        f"{min(r['fpr_allowed'] for r in budget):.0e}-{max(r['fpr_allowed'] for r in budget):.0e}"
        ", below 1 / (test benign names), so the budget threshold sits at the highest-scored "
        f"benign test name or above it (nothing flagged in {infeasible} of "
        f"{len(budget) * len(ARMS)} site-arm cases); the family matrix is therefore also given "
        "at FPR = 1e-3."
    )
    sentences.append(
        "SecAgg+ vs FedAvg: round-1 models differ by at most "
        f"{agreement['round1_max_abs_diff']:.1e} (quantisation bound "
        f"{agreement['round1_error_bound']:.1e}); final AUCs by at most "
        f"{agreement['max_abs_diff_auc']:.4f}. Wall time: a FedAvg run took "
        f"{timings['federation_over_local']:.1f}x the local-only training of all sites; SecAgg+ "
        f"rounds {timings['secagg_over_fedavg_round']:.2f}x FedAvg rounds (rounds >= 2); peak "
        f"memory of the process tree {payload['peak_rss_mib']:,.0f} MiB (the machine is shared: "
        "read timings as rough)."
    )
    return " ".join(sentences)


def write_plots(results: Results, payload: dict[str, Any]) -> list[str]:
    rows = payload["per_site"]
    sites = list(dict.fromkeys(row["site"] for row in rows))
    results.plot("sites.png", lambda figure: draw_sites(figure, rows, sites), size=(10.0, 9.0))
    cells = payload["family_transfer"]["cells"]
    results.plot(
        "transfer.png",
        lambda figure: draw_transfer(figure, cells, sites),
        size=(max(9.0, 1.1 * len(sites) + 3), 9.5),
    )
    return ["sites.png", "transfer.png"]


def draw_sites(figure: Any, rows: list[dict], sites: list[str]) -> None:
    by = {(row["site"], row["arm"]): row for row in rows}
    panels = (
        ("auc", None, "AUC on the test days"),
        (
            f"fp_per_day_at_tpr_{ANCHOR_TPR}",
            None,
            f"FP/day at the site's volume, at TPR = {ANCHOR_TPR}",
        ),
        (
            "fp_per_day",
            "fp_per_day_upper95",
            "FP/day at the budget threshold (bars; 0 is not drawn) and its 95% upper bound (ticks)",
        ),
    )
    width = 0.8 / len(ARMS)
    positions = np.arange(len(sites))
    for index, (key, upper_key, title) in enumerate(panels):
        axes = figure.add_subplot(len(panels), 1, index + 1)
        log_scale = key != "auc"
        for offset, arm in enumerate(ARMS):
            values = np.array([by[(site, arm)][key] for site in sites], dtype=float)
            if log_scale:  # a zero cannot sit on a log axis
                values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
            x = positions + (offset - (len(ARMS) - 1) / 2) * width
            axes.bar(x, values, width, label=ARM_LABELS[arm])
            if upper_key:
                upper = [by[(site, arm)][upper_key] for site in sites]
                axes.scatter(x, upper, marker="_", s=120, color="black", linewidths=2)
        if log_scale:
            axes.set_yscale("log")
        else:
            finite = _finite([by[(site, arm)][key] for site in sites for arm in ARMS])
            if finite.size:
                axes.set_ylim(max(0.0, float(finite.min()) - 0.05), 1.0)
        axes.set_xticks(positions, sites, fontsize=8)
        axes.set_title(title, fontsize=10)
        axes.grid(axis="y", alpha=0.3)
    figure.axes[0].legend(fontsize=8, ncols=len(ARMS), loc="lower right")


def transfer_grid(
    cells: list[dict], sites: list[str], *, arm: str, point: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(families, recall matrix families x sites with nan where absent, seen mask)."""
    chosen = [c for c in cells if c["arm"] == arm and c["operating_point"] == point]
    families = sorted({c["family"] for c in chosen})
    recall = np.full((len(families), len(sites)), np.nan)
    seen = np.zeros_like(recall, dtype=bool)
    for cell in chosen:
        row, col = families.index(cell["family"]), sites.index(cell["site"])
        recall[row, col], seen[row, col] = cell["recall"], cell["seen"]
    return families, recall, seen


def draw_transfer(figure: Any, cells: list[dict], sites: list[str]) -> None:
    from matplotlib import colormaps

    colormap = colormaps["viridis"].with_extremes(bad="lightgrey")
    grid = figure.add_gridspec(2, 3, width_ratios=(1.0, 1.0, 0.04))
    image = None
    for row, point in enumerate(OPERATING_POINTS):
        for col, arm in enumerate(("local", FEDERATED)):
            families, recall, seen = transfer_grid(cells, sites, arm=arm, point=point)
            axes = figure.add_subplot(grid[row, col])
            image = axes.imshow(
                np.ma.masked_where(seen | np.isnan(recall), recall),
                cmap=colormap,
                vmin=0.0,
                vmax=1.0,
                aspect="auto",
            )
            for (i, j), value in np.ndenumerate(recall):
                text = "seen" if seen[i, j] else ("" if np.isnan(value) else f"{value:.2f}")
                axes.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="dimgrey" if seen[i, j] or value > 0.6 else "white",
                )
            axes.set_xticks(range(len(sites)), [s.removeprefix("site-") for s in sites], fontsize=7)
            axes.set_yticks(range(len(families)), families, fontsize=7)
            axes.set_title(f"{ARM_LABELS[arm]}, at {SHORT_POINTS[point]}", fontsize=9)
            axes.set_xlabel("site (grey 'seen': the site trained on that family)", fontsize=7)
    if image is not None:
        figure.colorbar(
            image, cax=figure.add_subplot(grid[:, 2]), label="recall on the family's names"
        )


if __name__ == "__main__":
    lab.cli_main(__name__, run, __doc__)
