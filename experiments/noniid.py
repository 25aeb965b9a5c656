"""Non-IID stress: which sites federation helps, and which it hurts, as sites grow apart.

    fedsec experiment noniid [--full | --tiny]

The generator's two non-IID knobs set how many DGA families each site sees
(``families_per_site``: 1, the default 2-4, all 10) and how far the sites' benign category
mixes lean apart (``benign_mix_spread``: 0 identical, 1 default, 3 very different). For each
setting one fixed seed writes the same sites except for that knob; every site then compares
a model trained on its own data only with the FedAvg global model (same rounds, same local
steps), both scored on the site's own test day by the fragility code.

FP/day at the alert budget is 0 whenever no threshold fits the budget (a test day holds too
few benign domains to resolve the tiny FPR a large site needs), so FP/day is also measured at
a fixed recall: the benign test domains flagged by the threshold that catches 80% of the
test DGA, scaled to the site's daily benign volume.

A site is *hurt* (negative transfer) when the federated model is worse beyond noise on
either figure: AUC lower by more than 0.005, or FP/day at 80% recall more than 20% higher,
with the paired, class-stratified bootstrap 95% interval of that difference (or ratio)
wholly on the worse side. *Helped* is the mirror image, on either figure, if not hurt.
A site whose own quality gate refuses to train is shown apart (*refused*): the federation
goes on without it, so its global model never saw its data.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab
from experiments.generator import generate_sites
from experiments.generator.dga import FAMILIES
from experiments.noniid_report import report

NAME = "noniid"
TITLE = "Non-IID stress: who federation helps and who it hurts"
SEED = 0
FAMILY_SETTINGS: dict[str, int | tuple[int, int]] = {"1": 1, "2-4": (2, 4), "all": len(FAMILIES)}
SPREAD_SETTINGS: dict[str, float] = {"identical": 0.0, "default": 1.0, "very different": 3.0}
AUC_DROP = 0.005
FP_RATIO = 1.2
BOOTSTRAP_SAMPLES = 400
RECALL_TARGET = 0.8
METRICS = (
    "auc",
    "tpr_at_fpr_1e-4",
    "tpr_at_fpr_1e-4_resolvable",
    "recall_at_budget",
    "fp_per_day",
    "fp_at_recall",
    "fp_per_day_at_recall",
    "unseen_family_auc",
)

log = logging.getLogger("fedsec.experiments")


@dataclass(frozen=True)
class Size:
    n_sites: int
    n_days: int
    scale: float
    rounds: int
    local_steps: int
    grid: tuple[tuple[str, str], ...]  # (family setting, spread setting)
    engine: lab.Engine = "ray"


# One factor at a time around the generator's defaults; the full size runs the whole grid.
CROSS = (
    ("2-4", "default"),
    ("1", "default"),
    ("all", "default"),
    ("2-4", "identical"),
    ("2-4", "very different"),
)
SIZES = {
    "tiny": Size(4, 2, 0.1, 2, 10, (("1", "default"), ("all", "default")), engine="inprocess"),
    "default": Size(6, 3, 0.25, 3, 30, CROSS),
    "full": Size(8, 4, 0.5, 5, 60, tuple(product(FAMILY_SETTINGS, SPREAD_SETTINGS))),
}


def setting_key(families: str, spread: str) -> str:
    return f"families={families}, mix={spread}"


# --- statistics --------------------------------------------------------------------------------


def rank_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """P(positive > negative) + P(tie)/2 (Mann-Whitney with midranks); nan if a class is empty."""
    if positive_scores.size == 0 or negative_scores.size == 0:
        return math.nan
    scores = np.concatenate([positive_scores, negative_scores])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    midranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    n_pos, n_neg = positive_scores.size, negative_scores.size
    return float((midranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def false_positives_at_recall(
    positive_scores: np.ndarray, negative_scores: np.ndarray, *, recall: float = RECALL_TARGET
) -> int:
    """Benign test domains flagged by the highest threshold that catches `recall` of the DGA."""
    if positive_scores.size == 0:
        return 0
    caught = max(1, math.ceil(recall * positive_scores.size))
    threshold = np.sort(positive_scores)[::-1][caught - 1]
    return int((negative_scores >= threshold).sum())


def fp_ratio(federated_fp: int, local_fp: int) -> float:
    """FP/day ratio federated over local-only at the same recall; +0.5 keeps 0/0 at 1."""
    return (federated_fp + 0.5) / (local_fp + 0.5)


def paired_bootstrap(
    federated: np.ndarray,
    local: np.ndarray,
    labels: np.ndarray,
    *,
    rng: np.random.Generator,
    samples: int = BOOTSTRAP_SAMPLES,
) -> dict[str, float]:
    """95% intervals of the AUC difference and the FP ratio over the same resampled domains.

    Positives and negatives are resampled separately (their counts stay fixed).
    """
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if positives.size == 0 or negatives.size == 0:
        return dict.fromkeys(
            ("d_auc_low95", "d_auc_high95", "fp_ratio_low95", "fp_ratio_high95"), math.nan
        )
    differences, ratios = np.empty(samples), np.empty(samples)
    for index in range(samples):
        pick_pos = rng.choice(positives, size=positives.size)
        pick_neg = rng.choice(negatives, size=negatives.size)
        fed_pos, fed_neg = federated[pick_pos], federated[pick_neg]
        loc_pos, loc_neg = local[pick_pos], local[pick_neg]
        differences[index] = rank_auc(fed_pos, fed_neg) - rank_auc(loc_pos, loc_neg)
        ratios[index] = fp_ratio(
            false_positives_at_recall(fed_pos, fed_neg), false_positives_at_recall(loc_pos, loc_neg)
        )
    auc_low, auc_high = np.quantile(differences, [0.025, 0.975])
    ratio_low, ratio_high = np.quantile(ratios, [0.025, 0.975])
    return {
        "d_auc_low95": float(auc_low),
        "d_auc_high95": float(auc_high),
        "fp_ratio_low95": float(ratio_low),
        "fp_ratio_high95": float(ratio_high),
    }


def outcome(row: dict[str, Any]) -> str:
    """helped / hurt / neutral under the rule in the module docstring."""
    worse = (row["d_auc"] < -AUC_DROP and row["d_auc_high95"] < 0) or (
        row["fp_ratio"] > FP_RATIO and row["fp_ratio_low95"] > 1
    )
    better = (row["d_auc"] > AUC_DROP and row["d_auc_low95"] > 0) or (
        row["fp_ratio"] < 1 / FP_RATIO and row["fp_ratio_high95"] < 1
    )
    return "hurt" if worse else "helped" if better else "neutral"


# --- one setting -------------------------------------------------------------------------------


def unseen_family_auc(site: Any, scores: dict[str, np.ndarray]) -> float:
    """Blocklisted names of families absent from the site's training days against its test
    benign domains: what the site can only learn from others."""
    intel = site.data.intel_only
    unseen = np.array(
        [
            family not in site.data.train_families and family not in ("", "unknown")
            for family in intel.families.tolist()
        ],
        dtype=bool,
    )
    negatives = scores["test"][site.data.test.labels == 0]
    return rank_auc(scores["intel_only"][unseen], negatives)


def quality_refusal(site: Any) -> str:
    """Why the site's own quality gate stops it training in the federation ('' if it trains).

    The local-only arm trains regardless: it is the counterfactual, not a deployment.
    """
    return "; ".join(site.quality.problems)


def _arm_metrics(site: Any, model: Any) -> tuple[dict[str, float], np.ndarray]:
    metrics = lab.evaluate(site, model)
    scores = lab.site_scores(site, model)
    labels = site.data.test.labels == 1
    metrics["unseen_family_auc"] = unseen_family_auc(site, scores)
    metrics["fp_at_recall"] = false_positives_at_recall(
        scores["test"][labels], scores["test"][~labels]
    )
    benign = max(int((~labels).sum()), 1)
    volume = site.data.config.deployment.benign_events_per_day
    metrics["fp_per_day_at_recall"] = metrics["fp_at_recall"] / benign * volume
    return metrics, scores["test"]


def compare_site(site: Any, local_model: Any, global_arrays: list, *, seed: int) -> dict[str, Any]:
    """Local-only against federated at one site: both arms' metrics, the gains and the outcome."""
    local, local_scores = _arm_metrics(site, local_model)
    federated, federated_scores = _arm_metrics(site, global_arrays)
    labels = site.data.test.labels == 1
    rng = np.random.default_rng([seed, int(site.data.site_id.rsplit("-", 1)[-1])])
    row: dict[str, Any] = {
        "site_id": site.data.site_id,
        "train_domains": len(site.data.train),
        "train_positives": site.data.train.positives,
        "test_domains": len(site.data.test),
        "test_positives": site.data.test.positives,
        "seen_families": local["seen_families"],
        "refused_to_train": quality_refusal(site),
    }
    for key in METRICS:
        row[f"local_{key}"] = float(local[key])
        row[f"federated_{key}"] = float(federated[key])
    row["d_auc"] = row["federated_auc"] - row["local_auc"]
    row["d_tpr_at_fpr_1e-4"] = row["federated_tpr_at_fpr_1e-4"] - row["local_tpr_at_fpr_1e-4"]
    row["d_recall_at_budget"] = row["federated_recall_at_budget"] - row["local_recall_at_budget"]
    row["d_unseen_family_auc"] = row["federated_unseen_family_auc"] - row["local_unseen_family_auc"]
    row["fp_ratio"] = fp_ratio(int(federated["fp_at_recall"]), int(local["fp_at_recall"]))
    row.update(paired_bootstrap(federated_scores, local_scores, labels, rng=rng))
    # A site its own gate kept out is not negative transfer: it is shown apart.
    row["outcome"] = "refused" if row["refused_to_train"] else outcome(row)
    return row


def describe_sites(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    """Add what might explain a site's result: how unusual its mix, families and size are."""
    by_id = {site["site_id"]: site for site in manifest["sites"]}
    categories = sorted(next(iter(by_id.values()))["benign_mix"])
    mixes = np.array([[by_id[row["site_id"]]["benign_mix"][c] for c in categories] for row in rows])
    mean_mix = mixes.mean(axis=0)
    total_train = sum(row["train_domains"] for row in rows)
    for row, mix in zip(rows, mixes, strict=True):
        site = by_id[row["site_id"]]
        others = {
            name
            for other in manifest["sites"]
            if other["site_id"] != row["site_id"]
            for name in other["families"]
        }
        row["families"] = (
            f"all {len(FAMILIES)}"
            if len(site["families"]) == len(FAMILIES)
            else ",".join(site["families"])
        )
        row["n_families"] = len(site["families"])
        row["family_overlap"] = sum(name in others for name in site["families"]) / max(
            len(site["families"]), 1
        )
        row["mix_distance"] = float(0.5 * np.abs(mix - mean_mix).sum())
        row["train_share"] = row["train_domains"] / max(total_train, 1)
        row["dga_share"] = site["dga_share"]
        row["benign_events_per_day"] = site["deployment"]["benign_events_per_day"]
    for row in rows:
        row["why"] = likely_causes(row, rows)


def likely_causes(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Visible traits that set this site apart from the others in its setting."""
    causes = []
    if row.get("refused_to_train"):
        causes.append(
            f"refused to train, so the global model never saw its data (quality "
            f"gate: {row['refused_to_train']})"
        )
    if row["mix_distance"] == max(other["mix_distance"] for other in rows) and (
        row["mix_distance"] > 0.01
    ):
        causes.append(f"most unusual benign mix (TV {row['mix_distance']:.2f})")
    if row["family_overlap"] == 0:
        causes.append("its DGA families appear at no other site")
    if row["train_share"] == max(other["train_share"] for other in rows):
        causes.append(f"largest site ({row['train_share']:.0%} of training domains)")
    if row["local_auc"] >= 0.995:
        causes.append(f"local-only already near-perfect (AUC {row['local_auc']:.4f})")
    if row["test_positives"] < 30:
        causes.append(f"few test positives ({row['test_positives']})")
    return "; ".join(causes) or "no visible cause"


def run_setting(families: str, spread: str, size: Size, temp: Path) -> dict[str, Any]:
    """Generate the sites of one setting, train both arms and compare them site by site."""
    import json

    key = setting_key(families, spread)
    folder = temp / f"{families}-{spread}".replace(" ", "_")
    data_dir = folder / "sites"
    generate_sites(
        data_dir,
        n_sites=size.n_sites,
        n_days=size.n_days,
        seed=SEED,
        scale=size.scale,
        families_per_site=FAMILY_SETTINGS[families],
        benign_mix_spread=SPREAD_SETTINGS[spread],
    )
    manifest = json.loads((data_dir / "manifest.json").read_text())
    sites = lab.load_sites(data_dir, folder / "work")
    overrides = {
        "mode": "fedavg",
        "num-rounds": size.rounds,
        "local-steps": size.local_steps,
        "seed": SEED,
    }
    settings = lab.settings_for(**overrides)
    with lab.stopwatch() as local_time:
        local_models = [
            lab.train_local_only(site, settings, folder / "local" / site.data.site_id)
            for site in sites
        ]
    log.info("%s: local-only models trained in %.0f s", key, local_time["seconds"])
    with lab.stopwatch() as federated_time:
        results, global_arrays = lab.run_federation(
            data_dir, folder / "federation", engine=size.engine, **overrides
        )
    log.info("%s: FedAvg federation done in %.0f s", key, federated_time["seconds"])
    rows = [
        compare_site(site, model, global_arrays, seed=SEED)
        for site, model in zip(sites, local_models, strict=True)
    ]
    describe_sites(rows, manifest)
    for row in rows:
        row.update(setting=key, families_setting=families, spread_setting=spread)
    counts = {
        name: sum(row["outcome"] == name for row in rows)
        for name in ("helped", "hurt", "neutral", "refused")
    }
    log.info(
        "%s: helped %d, hurt %d, neutral %d, refused to train %d",
        key,
        counts["helped"],
        counts["hurt"],
        counts["neutral"],
        counts["refused"],
    )
    return {
        "setting": key,
        "families_setting": families,
        "spread_setting": spread,
        "families_per_site": FAMILY_SETTINGS[families],
        "benign_mix_spread": SPREAD_SETTINGS[spread],
        "sites": rows,
        "local_train_s": local_time["seconds"],
        "federation_s": federated_time["seconds"],
        **lab.round_seconds(results),
    }


# --- the experiment ----------------------------------------------------------------------------


def run(*, size: str = "default", root: Path = lab.RESULTS_ROOT) -> dict[str, Any]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    import torch

    plan = SIZES[size]
    threads = torch.get_num_threads()
    # One intra-op thread: on a shared 2-core machine more threads make training slower.
    torch.set_num_threads(1)
    settings_out = []
    try:
        with (
            lab.PeakRss() as memory,
            lab.stopwatch() as total,
            tempfile.TemporaryDirectory(prefix="fedsec-noniid-") as temp,
        ):
            for index, (families, spread) in enumerate(plan.grid, start=1):
                log.info("setting %d/%d: %s", index, len(plan.grid), setting_key(families, spread))
                settings_out.append(run_setting(families, spread, plan, Path(temp)))
    finally:
        torch.set_num_threads(threads)
    payload = {
        "size": size,
        "seed": SEED,
        "config": {
            "n_sites": plan.n_sites,
            "n_days": plan.n_days,
            "scale": plan.scale,
            "num_rounds": plan.rounds,
            "local_steps": plan.local_steps,
            "mode": "fedavg",
            "family_settings": {k: FAMILY_SETTINGS[k] for k in FAMILY_SETTINGS},
            "spread_settings": SPREAD_SETTINGS,
        },
        "rule": {
            "auc_drop": AUC_DROP,
            "fp_ratio": FP_RATIO,
            "recall_target": RECALL_TARGET,
            "bootstrap_samples": BOOTSTRAP_SAMPLES,
        },
        "settings": settings_out,
        "wall_s": total["seconds"],
        "peak_rss_mib": memory.peak_mib,
    }
    return report(payload, lab.Results(NAME, TITLE, root))


if __name__ == "__main__":
    lab.cli_main(__name__, run, __doc__)
