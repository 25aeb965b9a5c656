"""The non-IID experiment's tables, plots and reading (experiments/noniid.py measures)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from experiments import lab
from experiments.lab import Column

OUTCOME_COLOURS = {
    "helped": "#1a9850",
    "neutral": "#8c8c8c",
    "hurt": "#d73027",
    "refused": "#7b3294",
}
FAMILY_ORDER = ("1", "2-4", "all")
SPREAD_ORDER = ("identical", "default", "very different")
FAMILY_LABELS = {"1": "1", "2-4": "2-4 (default)", "all": "all 10"}


def _mean(values: list[float]) -> float:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(setting: dict[str, Any]) -> dict[str, Any]:
    """One row per setting: counts of helped/hurt sites, mean and worst gains, who was hurt."""
    every = setting["sites"]
    # Gains describe transfer: a site that refused to train is counted apart, not averaged.
    rows = [row for row in every if row["outcome"] != "refused"] or every
    worst = min(rows, key=lambda row: row["d_auc"])
    ratios = [row["fp_ratio"] for row in rows]
    hurt = [row for row in rows if row["outcome"] == "hurt"]
    return {
        "setting": setting["setting"],
        "families_setting": setting["families_setting"],
        "spread_setting": setting["spread_setting"],
        "sites": len(every),
        "refused": sum(row["outcome"] == "refused" for row in every),
        "helped": sum(row["outcome"] == "helped" for row in rows),
        "hurt": len(hurt),
        "neutral": sum(row["outcome"] == "neutral" for row in rows),
        "mean_families": _mean([row["n_families"] for row in rows]),
        "mean_mix_distance": _mean([row["mix_distance"] for row in rows]),
        "mean_dga_share": _mean([row["dga_share"] for row in rows]),
        "mean_d_auc": _mean([row["d_auc"] for row in rows]),
        "worst_d_auc": worst["d_auc"],
        "worst_site": worst["site_id"],
        "mean_d_tpr_at_fpr_1e-4": _mean([row["d_tpr_at_fpr_1e-4"] for row in rows]),
        "mean_d_recall_at_budget": _mean([row["d_recall_at_budget"] for row in rows]),
        "median_fp_ratio": float(np.median(ratios)) if ratios else math.nan,
        "worst_fp_ratio": max(ratios) if ratios else math.nan,
        "mean_d_unseen_family_auc": _mean([row["d_unseen_family_auc"] for row in rows]),
        "hurt_sites": "; ".join(f"{row['site_id']}: {row['why']}" for row in hurt) or "none",
        "refused_sites": ", ".join(row["site_id"] for row in every if row["outcome"] == "refused")
        or "none",
        "federation_over_local_s": setting["federation_s"] / setting["local_train_s"],
    }


def arm_rows(setting: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean over sites of each arm's headline metrics."""
    rows = []
    for arm, label in (("local", "local-only"), ("federated", "FedAvg")):
        row: dict[str, Any] = {"setting": setting["setting"], "arm": label}
        for key in (
            "auc",
            "tpr_at_fpr_1e-4",
            "recall_at_budget",
            "fp_per_day",
            "fp_per_day_at_recall",
            "unseen_family_auc",
        ):
            row[key] = _mean([site[f"{arm}_{key}"] for site in setting["sites"]])
        rows.append(row)
    return rows


def _spearman(x: list[float], y: list[float]) -> float:
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return math.nan
    ranks = [np.argsort(np.argsort(np.array(values))) for values in zip(*pairs, strict=True)]
    if ranks[0].std() == 0 or ranks[1].std() == 0:
        return math.nan
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])


def budget_infeasible_share(settings: list[dict[str, Any]]) -> float:
    values = [
        site[f"{arm}_recall_at_budget"]
        for setting in settings
        for site in setting["sites"]
        for arm in ("local", "federated")
    ]
    return sum(not (value > 0) for value in values) / max(len(values), 1)


# --- plots -------------------------------------------------------------------------------------


def draw_gains(settings: list[dict[str, Any]]):
    from matplotlib.ticker import FuncFormatter

    def draw(figure) -> None:
        panels = (
            ("d_auc", "federated − local-only AUC", "linear"),
            ("fp_ratio", "FP/day at 80% recall, federated ÷ local-only", "log"),
        )
        for index, (key, label, scale) in enumerate(panels, start=1):
            axes = figure.add_subplot(1, 2, index)
            for position, setting in enumerate(settings):
                rows = setting["sites"]
                offsets = np.linspace(-0.25, 0.25, len(rows)) if len(rows) > 1 else [0.0]
                for offset, row in zip(offsets, rows, strict=True):
                    value = row[key]
                    if value is None or not math.isfinite(value) or (scale == "log" and value <= 0):
                        continue
                    axes.scatter(
                        position + offset,
                        value,
                        s=22,
                        color=OUTCOME_COLOURS[row["outcome"]],
                        zorder=3,
                    )
            axes.axhline(1.0 if scale == "log" else 0.0, color="black", linewidth=0.8)
            axes.set_yscale(scale)
            if scale == "log":
                plain = FuncFormatter(lambda value, _: f"{value:g}")
                axes.yaxis.set_major_formatter(plain)
                axes.yaxis.set_minor_formatter(plain)
                axes.tick_params(axis="y", which="minor", labelsize=7)
            axes.set_xticks(range(len(settings)))
            axes.set_xticklabels(
                [f"{s['families_setting']}\n{s['spread_setting']}" for s in settings], fontsize=7
            )
            axes.set_xlabel("DGA families per site / benign mix spread", fontsize=8)
            axes.set_ylabel(label)
            axes.grid(axis="y", alpha=0.3)
        handles = [
            figure.axes[0].scatter([], [], color=colour, label=name)
            for name, colour in OUTCOME_COLOURS.items()
        ]
        figure.axes[0].legend(handles=handles, fontsize=7, loc="best")

    return draw


def draw_heatmap(summaries: list[dict[str, Any]]):
    families = [f for f in FAMILY_ORDER if any(s["families_setting"] == f for s in summaries)]
    spreads = [s for s in SPREAD_ORDER if any(r["spread_setting"] == s for r in summaries)]

    def draw(figure) -> None:
        grid = np.full((len(families), len(spreads)), np.nan)
        cell = {(s["families_setting"], s["spread_setting"]): s for s in summaries}
        for i, fam in enumerate(families):
            for j, spread in enumerate(spreads):
                if (fam, spread) in cell:
                    grid[i, j] = cell[(fam, spread)]["mean_d_auc"]
        finite = np.abs(grid[np.isfinite(grid)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        axes = figure.add_subplot(1, 1, 1)
        image = axes.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        for i, fam in enumerate(families):
            for j, spread in enumerate(spreads):
                summary = cell.get((fam, spread))
                text = (
                    "not run"
                    if summary is None
                    else f"{summary['mean_d_auc']:+.4f}\nhurt {summary['hurt']}/{summary['sites']}"
                    + (f"\n{summary['refused']} refused" if summary["refused"] else "")
                )
                dark = summary is not None and abs(summary["mean_d_auc"]) > 0.6 * limit
                axes.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        axes.set_xticks(range(len(spreads)), spreads)
        axes.set_yticks(range(len(families)), [FAMILY_LABELS.get(f, f) for f in families])
        axes.set_xlabel("benign mix spread")
        axes.set_ylabel("DGA families per site")
        axes.set_title("mean federated − local-only AUC over sites", fontsize=9)
        figure.colorbar(image, ax=axes)

    return draw


def rerender(results: lab.Results) -> dict[str, Any]:
    """Rebuild tables and plots from a stored results.json (no training)."""
    import json

    def restore(value: Any) -> Any:  # results.json stores NaN as null
        if isinstance(value, dict):
            return {key: restore(item) for key, item in value.items()}
        if isinstance(value, list):
            return [restore(item) for item in value]
        return math.nan if value is None else value

    payload = restore(json.loads((results.path / "results.json").read_text()))
    payload.pop("summary", None)
    return report(payload, results)


# --- the report --------------------------------------------------------------------------------


SUMMARY_COLUMNS = (
    Column("setting", "setting"),
    Column("helped", "helped", "{:d}"),
    Column("hurt", "hurt", "{:d}"),
    Column("neutral", "neutral", "{:d}"),
    Column("refused", "refused to train", "{:d}"),
    Column("mean_mix_distance", "mean mix distance (TV)"),
    Column("mean_dga_share", "mean DGA share", "{:.3f}"),
    Column("mean_d_auc", "mean ΔAUC", "{:+.4f}"),
    Column("worst_d_auc", "worst ΔAUC", "{:+.4f}"),
    Column("worst_site", "worst site"),
    Column("mean_d_tpr_at_fpr_1e-4", "mean ΔTPR@1e-4", "{:+.3f}"),
    Column("median_fp_ratio", "median FP/day ratio @80% recall", "{:.2f}"),
    Column("worst_fp_ratio", "worst FP/day ratio @80% recall", "{:.2f}"),
    Column("mean_d_unseen_family_auc", "mean Δ unseen-family AUC", "{:+.4f}"),
    Column("hurt_sites", "hurt sites (visible cause)"),
    Column("refused_sites", "refused sites"),
)
ARM_COLUMNS = (
    Column("setting", "setting"),
    Column("arm", "arm"),
    Column("auc", "AUC", "{:.4f}"),
    Column("tpr_at_fpr_1e-4", "TPR@FPR=1e-4"),
    Column("recall_at_budget", "recall at budget"),
    Column("fp_per_day", "FP/day at budget", "{:,.0f}"),
    Column("fp_per_day_at_recall", "FP/day @80% recall", "{:,.0f}"),
    Column("unseen_family_auc", "unseen-family AUC", "{:.4f}"),
)
SITE_COLUMNS = (
    Column("setting", "setting"),
    Column("site_id", "site"),
    Column("outcome", "outcome"),
    Column("families", "families"),
    Column("mix_distance", "mix TV", "{:.2f}"),
    Column("local_auc", "local AUC", "{:.4f}"),
    Column("federated_auc", "fed AUC", "{:.4f}"),
    Column("d_auc_low95", "ΔAUC low95", "{:+.4f}"),
    Column("d_auc_high95", "ΔAUC high95", "{:+.4f}"),
    Column("fp_ratio", "FP/day ratio", "{:.2f}"),
    Column("fp_ratio_low95", "ratio low95", "{:.2f}"),
    Column("fp_ratio_high95", "ratio high95", "{:.2f}"),
    Column("why", "visible cause"),
)


def reading(payload: dict[str, Any], summaries: list[dict[str, Any]]) -> str:
    """One honest paragraph computed from the numbers."""
    settings = payload["settings"]
    every_row = [row for setting in settings for row in setting["sites"]]
    all_rows = [row for row in every_row if row["outcome"] != "refused"]
    hurt = sum(row["outcome"] == "hurt" for row in all_rows)
    helped = sum(row["outcome"] == "helped" for row in all_rows)
    best = max(summaries, key=lambda s: s["mean_d_auc"])
    worst = min(summaries, key=lambda s: s["mean_d_auc"])
    rho_mix = _spearman([r["mix_distance"] for r in all_rows], [r["d_auc"] for r in all_rows])
    rho_fam = _spearman([r["n_families"] for r in all_rows], [r["d_auc"] for r in all_rows])
    unseen = _mean([r["d_unseen_family_auc"] for r in all_rows])
    config = payload["config"]
    parts = [
        f"{len(settings)} settings x {config['n_sites']} sites ({config['n_days']} days, scale "
        f"{config['scale']}, {config['num_rounds']} rounds of {config['local_steps']} local "
        f"steps, seed {payload['seed']}): federation helped {helped} and hurt {hurt} of "
        f"{len(every_row)} site-settings by the rule below.",
        f"The mean AUC gain was largest under `{best['setting']}` ({best['mean_d_auc']:+.4f}) "
        f"and smallest under `{worst['setting']}` ({worst['mean_d_auc']:+.4f}).",
        f"Across all site-settings the AUC gain's rank correlation with the site's benign-mix "
        f"distance from the federation's mean is {rho_mix:+.2f} and with its number of "
        f"families {rho_fam:+.2f}; on blocklisted names of families a site never saw, "
        f"federation changed AUC by {unseen:+.4f} on average.",
    ]
    refused = [row for row in every_row if row["outcome"] == "refused"]
    if refused:
        reasons = sorted({row["refused_to_train"].split(" (")[0] for row in refused})
        parts.append(
            f"{len(refused)} site-settings refused to train because their own quality gate "
            f"failed ({'; '.join(reasons)}): the "
            "federation went on without them, so their 'federated' model never saw their "
            "data; they are shown apart (outcome 'refused'), not as negative transfer."
        )
    share = budget_infeasible_share(settings)
    if share >= 0.5:
        parts.append(
            f"Recall at the alert budget is 0 (or undefined) for {share:.0%} of site-arms, and "
            "FP/day at the budget is then 0 too: at these benign volumes a test day cannot "
            "resolve an FPR small enough to fit the analysts' budget, so the comparison rests "
            "on AUC, TPR@FPR and FP/day at 80% recall."
        )
    unresolved = _mean(
        [
            1.0 - row[f"{arm}_tpr_at_fpr_1e-4_resolvable"]
            for row in every_row
            for arm in ("local", "federated")
        ]
    )
    if unresolved >= 0.5:
        parts.append(
            f"TPR@FPR=1e-4 is not resolvable for {unresolved:.0%} of site-arms (fewer than "
            "30,000 benign test domains): there it means TPR with no benign domain flagged."
        )
    parts.append(
        "Small test days make single-site differences noisy; the bootstrap interval is what "
        "separates a hurt site from noise, and a setting's sites are one seed's draw."
    )
    return " ".join(parts)


def report(payload: dict[str, Any], results: lab.Results) -> dict[str, Any]:
    """Write results.json, the CSVs, the plots and table.md; return the payload."""
    settings = payload["settings"]
    summaries = [summarise(setting) for setting in settings]
    payload["summary"] = summaries
    all_rows = [row for setting in settings for row in setting["sites"]]
    results.write_json(payload)
    results.write_csv(all_rows, "per_site.csv")
    results.write_csv(summaries, "summary.csv")
    rule_config = payload["rule"]
    rule = (
        f"Rule: hurt = AUC down by more than {rule_config['auc_drop']}, or FP/day at "
        f"{rule_config['recall_target']:.0%} recall up by more than "
        f"{rule_config['fp_ratio'] - 1:.0%}, with the paired bootstrap 95% interval "
        f"({rule_config['bootstrap_samples']} class-stratified resamples of the test "
        "domains) wholly on the worse side; helped = the mirror image, if not hurt. "
        "FP/day ratio = (benign domains flagged by the federated model + 0.5) / (by the "
        "local-only model + 0.5), both at the threshold that catches "
        f"{rule_config['recall_target']:.0%} of the test DGA. Mix distance: total "
        "variation between a site's benign category mix and the mean mix of its "
        "federation. Gains (mean, worst, ratios) leave out sites that refused to train."
    )
    results.add_table(
        "Per setting: sites helped and hurt by federation", summaries, SUMMARY_COLUMNS, notes=[rule]
    )
    arms = [row for setting in settings for row in arm_rows(setting)]
    results.write_csv(arms, "arms.csv")
    results.add_table(
        "Mean over sites: local-only vs FedAvg",
        arms,
        ARM_COLUMNS,
        notes=[
            "Unseen-family AUC: blocklisted names of DGA families absent from the site's training "
            "days, against its test benign domains (n/a when the site saw every family)."
        ],
    )
    notable = [row for row in all_rows if row["outcome"] != "neutral"] or all_rows
    results.add_table("Sites helped or hurt (per_site.csv has every site)", notable, SITE_COLUMNS)
    results.plot("gain_per_site.png", draw_gains(settings), size=(10.0, 4.2))
    results.plot("gain_heatmap.png", draw_heatmap(summaries), size=(6.0, 4.2))
    intro = reading(payload, summaries)
    intro += (
        f"\n\nWall time {payload['wall_s'] / 60:.1f} min, peak memory "
        f"{payload['peak_rss_mib']:,.0f} MiB (process tree). Per setting, the FedAvg "
        "simulation took "
        + ", ".join(f"{s['federation_over_local_s']:.1f}x" for s in summaries)
        + " the time of training every site's local-only model in this process "
        "(Ray start-up included; a shared machine)."
    )
    command = "fedsec experiment noniid" + {"full": " --full", "tiny": " --tiny"}.get(
        payload["size"], ""
    )
    results.write_table_md(
        size=payload["size"],
        command=command,
        intro=intro,
        plots=["gain_per_site.png", "gain_heatmap.png"],
    )
    return payload
