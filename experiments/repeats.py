"""Figures of runs repeated over seeds: each run scored on the pooled held-out names, with and
without the benign list known to hold real DGA names, then one summary per group of runs
(mean, min and max over its seeds), each TPR shown with whether its FPR is resolvable.

The experiments that compare settings on real development names (`capacity`,
`lowfpr-budget`) score and summarise their runs the same way through these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np

TAGS = ("1e-3", "1e-4")
METRICS = tuple(
    f"{name}{suffix}"
    for suffix in ("", "_clean")
    for name in ("auc", *(f"tpr_at_fpr_{tag}" for tag in TAGS))
)


FAMILY_METRICS = tuple(
    f"{name}{suffix}" for suffix in ("", "_clean") for name in ("families_below_0.5",)
)
"""With the test names' families: how many families fall below 0.5 recall at FPR 1e-3."""


def scope_points(
    scores: np.ndarray, labels: np.ndarray, clean: np.ndarray, families: np.ndarray | None = None
) -> dict[str, Any]:
    """AUC, and TPR, resolvability and k per target FPR, over all benign names (no suffix)
    and over the clean ones only (`_clean`); with `families` (one per test name), also the
    families whose recall at the FPR 1e-3 threshold is below 0.5 (how many, and which)."""
    from experiments.lowfpr import families_below, family_recall, operating_points

    row: dict[str, Any] = {}
    for suffix, keep in (("", np.ones_like(clean, dtype=bool)), ("_clean", clean)):
        points = operating_points(scores[keep], labels[keep])
        row[f"auc{suffix}"] = points["auc"]
        for tag in TAGS:
            for key in ("tpr_at_fpr", "resolvable", "k"):
                row[f"{key}_{tag}{suffix}"] = points[f"{key}_{tag}"]
        if families is not None:
            recall = family_recall(
                scores[keep], labels[keep], families[keep], points["threshold_1e-3"]
            )
            below = families_below(recall)
            row[f"families_below_0.5{suffix}"] = len(below)
            row[f"families_below_0.5_names{suffix}"] = ",".join(below)
    return row


def summarise(
    rows: Iterable[dict[str, Any]],
    *,
    group: Callable[[dict[str, Any]], Hashable],
    carry: tuple[str, ...],
    mean_of: tuple[str, ...],
    metrics: tuple[str, ...] = METRICS,
) -> list[dict[str, Any]]:
    """One row per group, in first-seen order: the `carry` fields of its first run, its seed
    count, the mean of each `mean_of` field, and each of `metrics`' mean, min and max with its
    'mean (min-max)' text (a TPR marked when its FPR is not resolvable). Resolvability and k
    depend only on the test names, so they are the same for every run of a group and are
    carried from the first."""
    groups: dict[Hashable, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group(row), []).append(row)
    summary = []
    for runs in groups.values():
        first = runs[0]
        out: dict[str, Any] = {key: first[key] for key in carry}
        out.update({key: first[key] for key in first if key.startswith(("resolvable_", "k_"))})
        out["seeds"] = len(runs)
        for key in mean_of:
            out[key] = float(np.mean([run[key] for run in runs]))
        for metric in metrics:
            values = [run[metric] for run in runs]
            out[metric] = float(np.mean(values))
            out[f"{metric}_min"], out[f"{metric}_max"] = float(min(values)), float(max(values))
            out[f"{metric}_shown"] = _shown(out, metric)
        summary.append(out)
    return summary


def _shown(row: dict[str, Any], metric: str) -> str:
    digits = 4 if metric.startswith("auc") else 1 if metric.startswith("families_") else 3
    text = (
        f"{row[metric]:.{digits}f} ({row[f'{metric}_min']:.{digits}f}-"
        f"{row[f'{metric}_max']:.{digits}f})"
    )
    if metric.startswith("tpr_at_fpr_"):
        tag, _, scope = metric.removeprefix("tpr_at_fpr_").partition("_")
        suffix = "_clean" if scope == "clean" else ""
        text += "" if row[f"resolvable_{tag}{suffix}"] else " (**not resolvable**)"
    return text


def metric_columns(suffix: str, *, families: bool = False) -> list:
    """The table columns of one scope: AUC, then each TPR with its k (and with `families`,
    how many families fall below 0.5 recall at FPR 1e-3)."""
    from experiments.lab import Column

    columns = [Column(f"auc{suffix}_shown", "AUC")]
    for tag in TAGS:
        columns += [
            Column(f"tpr_at_fpr_{tag}{suffix}_shown", f"TPR@{tag}"),
            Column(f"k_{tag}{suffix}", "k", "{:,}"),
        ]
    if families:
        columns.append(Column(f"families_below_0.5{suffix}_shown", "families < 0.5 @1e-3"))
    return columns


SCOPES = (("", "all benign"), ("_clean", "clean benign"))


def table_note(contaminated: str) -> str:
    return (
        "Each figure is the mean over the run seeds (min-max in brackets). k = false "
        "positives the target FPR allows on this benign set; a TPR is resolvable when k >= 3. "
        f"Clean benign = without {contaminated}, a list that holds real DGA look-ups."
    )
