"""The site's fragility report as one self-contained HTML page (plots inline as PNG)."""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator

from common.html import html_table, td
from common.metrics import (
    MIN_NEGATIVES_PER_RESOLVABLE_FPR,
    confusion_at_thresholds,
    score_thresholds,
)

CALIBRATION_BINS = 15
# Threshold axes use a logit scale: the interesting thresholds crowd next to 0 and 1.
_LOGIT_CLIP = 1e-12
_COLOURS = {
    "benign": "#4c72b0",
    "malicious": "#c44e52",
    "intel": "#dd8452",
    "seen": "#55a868",
    "unseen": "#8172b3",
    "budget": "#333333",
    "tau": "#c44e52",
}


@dataclass(frozen=True, eq=False)
class FpCurve:
    """FP/day (point estimate and one-sided 95% upper bound) at a set of score thresholds."""

    thresholds: np.ndarray
    fp_per_day: np.ndarray
    fp_per_day_upper95: np.ndarray


@dataclass(frozen=True, eq=False)
class PlotInputs:
    test_scores: np.ndarray
    test_labels: np.ndarray  # bool, True = blocklisted
    intel_only_scores: np.ndarray
    fp_curve: FpCurve


# --- plots: each draws on one Axes ------------------------------------------------------------


def _plain_ticks(axis: Axis) -> None:
    """Plain '0.001' tick labels and no minor ticks: mathtext and minor ticks cost ~0.3 s a plot."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def _legend(ax: Axes, **options: object) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **options)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", transform=ax.transAxes)
    ax.set_axis_off()


def _vertical_threshold(ax: Axes, threshold: float) -> None:
    if math.isfinite(threshold):
        ax.axvline(
            np.clip(threshold, _LOGIT_CLIP, 1 - _LOGIT_CLIP),
            color=_COLOURS["tau"],
            linestyle="--",
            linewidth=1,
            label=f"τ = {threshold:.4g}",
        )


def plot_score_distributions(ax: Axes, plots: PlotInputs, report: Mapping) -> None:
    if plots.test_scores.size + plots.intel_only_scores.size == 0:
        _no_data(ax, "no scored domains")
        return
    bins = np.linspace(0.0, 1.0, 51)
    groups = (
        ("benign (test)", plots.test_scores[~plots.test_labels], "benign"),
        ("blocklisted (test)", plots.test_scores[plots.test_labels], "malicious"),
        ("blocklisted, never in logs", plots.intel_only_scores, "intel"),
    )
    for label, values, colour in groups:
        if values.size:
            ax.hist(
                values,
                bins=bins,
                histtype="step",
                linewidth=1.5,
                color=_COLOURS[colour],
                label=f"{label} (n={values.size:,})",
            )
    _vertical_threshold(ax, report["operating_point"]["threshold"])
    ax.set_yscale("log")
    _plain_ticks(ax.yaxis)
    ax.set(xlabel="model score", ylabel="domains", title="Score distributions by class")
    _legend(ax)


def plot_fp_per_day(ax: Axes, plots: PlotInputs, report: Mapping) -> None:
    curve, operating = plots.fp_curve, report["operating_point"]
    if curve.thresholds.size == 0:
        _no_data(ax, "no benign test domains")
        return
    threshold = operating["threshold"]
    x = np.clip(curve.thresholds, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    fp_per_day, upper = curve.fp_per_day, curve.fp_per_day_upper95
    if math.isfinite(threshold) and threshold > x[-1]:
        # Above every benign score nothing is a FP, but the bound stays: extend it out to tau.
        x = np.append(x, min(threshold, 1 - _LOGIT_CLIP))
        fp_per_day, upper = np.append(fp_per_day, 0.0), np.append(upper, upper[-1])
    estimate = np.where(fp_per_day > 0, fp_per_day, np.nan)
    ax.fill_between(
        x, np.fmin(estimate, upper), upper, color=_COLOURS["benign"], alpha=0.2, step="post"
    )
    ax.step(
        x,
        upper,
        where="post",
        color=_COLOURS["benign"],
        linewidth=1,
        linestyle=":",
        label="95% upper bound (Clopper–Pearson)",
    )
    ax.step(x, estimate, where="post", color=_COLOURS["benign"], label="FP/day (estimate)")
    ax.axhline(
        operating["alert_budget_per_day"],
        color=_COLOURS["budget"],
        linewidth=1,
        label=f"alert budget {operating['alert_budget_per_day']:,.0f}/day",
    )
    _vertical_threshold(ax, operating["threshold"])
    ax.set_xscale("logit")
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    # Start where 10% of benign domains are flagged (or at tau): below, FP/day only saturates.
    left = min(x[np.argmax(fp_per_day <= 0.1 * fp_per_day.max())], x[-1])
    if math.isfinite(threshold):
        left = min(left, max(threshold, _LOGIT_CLIP))
    if left < x[-1]:
        ax.set_xlim(left, x[-1])
    ax.set(
        xlabel="score threshold (logit scale)",
        ylabel="false positives per day",
        title="FP/day at this site's volume vs threshold",
    )
    _legend(ax, loc="upper right")


def plot_family_recall(ax: Axes, plots: PlotInputs, report: Mapping) -> None:
    rows = sorted(report["families"], key=lambda row: (row["seen_in_training"], row["family"]))
    rows = [row for row in rows if row["recall"] is not None and math.isfinite(row["recall"])]
    if not rows:
        _no_data(ax, "no DGA families to evaluate")
        return
    positions = np.arange(len(rows))
    colours = [_COLOURS["seen" if row["seen_in_training"] else "unseen"] for row in rows]
    ax.barh(positions, [row["recall"] for row in rows], color=colours)
    ax.set_yticks(
        positions,
        [f"{row['family']} (n={row['test_positives'] + row['intel_only']})" for row in rows],
        fontsize=7,
    )
    ax.set_xlim(0, 1)
    ax.legend(
        handles=[
            Patch(color=_COLOURS["seen"], label="seen in local training"),
            Patch(color=_COLOURS["unseen"], label="never seen here"),
        ],
        fontsize=7,
        loc="lower right",
    )
    ax.set(xlabel="recall at τ", title="Recall by DGA family")


def plot_calibration(ax: Axes, plots: PlotInputs, report: Mapping) -> None:
    scores, labels = plots.test_scores, plots.test_labels
    index = np.minimum((scores * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    counts = np.bincount(index, minlength=CALIBRATION_BINS)
    used = counts > 0
    mean_score = np.bincount(index, weights=scores, minlength=CALIBRATION_BINS)[used] / counts[used]
    positive_rate = (
        np.bincount(index, weights=labels, minlength=CALIBRATION_BINS)[used] / counts[used]
    )
    ax.plot([0, 1], [0, 1], color="#999999", linewidth=1, label="perfect calibration")
    ax.plot(mean_score, positive_rate, marker="o", color=_COLOURS["malicious"], label="model")
    ece = report["metrics"].get("ece")
    ax.set(
        xlabel="mean predicted score (bin)",
        ylabel="share blocklisted (bin)",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability diagram ({CALIBRATION_BINS} bins, ECE {_format(ece)})",
    )
    _legend(ax)


def plot_roc(ax: Axes, plots: PlotInputs, report: Mapping) -> None:
    scores, labels = plots.test_scores, plots.test_labels
    negatives = int((~labels).sum())
    if negatives == 0 or not labels.any():
        _no_data(ax, "ROC needs both classes on the test days")
        return
    confusion = confusion_at_thresholds(
        scores=scores, labels=labels, thresholds=score_thresholds(scores)[::-1]
    )
    # The best TPR at 300 log-spaced FPRs: exact at those points, and cheap to draw.
    fpr_grid = np.geomspace(0.1 / negatives, 1.0, 300)
    best = np.searchsorted(confusion.fpr, fpr_grid, side="right") - 1
    ax.step(fpr_grid, confusion.tpr[best], where="post", color=_COLOURS["malicious"])
    ax.axvspan(
        0.1 / negatives,
        3.0 / negatives,
        color="#999999",
        alpha=0.2,
        label=f"not resolvable (< 3/{negatives:,} benign)",
    )
    for target in (1e-3, 1e-4, 1e-5):
        ax.axvline(target, color="#999999", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    _plain_ticks(ax.xaxis)
    ax.set(
        xlabel="false-positive rate (log)",
        ylabel="true-positive rate",
        ylim=(0, 1.02),
        title="ROC, low-FPR end",
    )
    _legend(ax, loc="lower right")


PLOTS: tuple[tuple[str, Callable[[Axes, PlotInputs, Mapping], None]], ...] = (
    ("Score distributions (log y). τ is the operating threshold.", plot_score_distributions),
    (
        "Expected false positives per day at this site's benign volume, with the one-sided 95% "
        "Clopper–Pearson bound; the horizontal line is the analysts' alert budget.",
        plot_fp_per_day,
    ),
    (
        "Recall per DGA family at τ over test-day hits and blocklist entries never seen in the "
        "logs.",
        plot_family_recall,
    ),
    ("Calibration: predicted score vs observed share of blocklisted domains.", plot_calibration),
    ("ROC on a log FPR axis; FPRs under 3/n benign cannot be measured on this test set.", plot_roc),
)


def png_data_uri(
    draw: Callable[[Axes, PlotInputs, Mapping], None], plots: PlotInputs, report: Mapping
) -> str:
    """Draw one plot on a fresh Agg figure (no pyplot state, safe across threads)."""
    figure = Figure(figsize=(6.4, 3.8), dpi=90)
    FigureCanvasAgg(figure)
    # Fixed margins: a layout engine would triple the drawing time of a report.
    left = 0.3 if draw is plot_family_recall else 0.14
    draw(figure.add_axes((left, 0.13, 0.97 - left, 0.78)), plots, report)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- page ---------------------------------------------------------------------------------------

METRIC_SECTIONS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "Ranking",
        lambda key: (
            key in {"auc", "pauc_fpr_1e-3", "baseline_auc", "shortcut_ratio"}
            or key.startswith("tpr_at_fpr_")
        ),
    ),
    (
        "Operating point",
        lambda key: (
            key
            in {
                "threshold",
                "threshold_feasible",
                "operating_mode_budget",
                "threshold_at_budget",
                "recall_at_budget",
                "tpr",
                "fpr",
                "fpr_upper95",
                "fpr_query",
                "fpr_unique",
                "precision_at_base_rate",
            }
        ),
    ),
    (
        "Cost at this site",
        lambda key: (
            key
            in {
                "fp_per_day",
                "fp_per_day_upper95",
                "alerts_per_day",
                "alerts_per_incident",
                "alert_budget_per_day",
                "analyst_hours_per_day",
                "budget_utilisation",
            }
        ),
    ),
    ("Per host", lambda key: key.startswith("host") or key == "hosts_per_day"),
    (
        "Calibration and stability",
        lambda key: key in {"ece", "brier", "psi_score", "churn", "new_fp_rate"},
    ),
    (
        "Families",
        lambda key: (
            key.startswith("recall_family_") or key in {"unseen_family_recall", "unseen_families"}
        ),
    ),
    (
        "Data quality",
        lambda key: (
            key.endswith("_rate")
            and key.split("_")[0] in {"malformed", "duplicate", "label", "leakage"}
        ),
    ),
    ("Analysts' verdicts (local only)", lambda key: key.startswith("dqa_verdicts_")),
    ("Test set", lambda key: key.startswith("test_")),
)

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:left;font-size:.9em}td.num{text-align:right;font-variant-numeric:tabular-nums}
.local{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em}
figure{display:inline-block;margin:.5em;vertical-align:top;max-width:34em}
figcaption{font-size:.85em;color:#555}img{max-width:100%}"""


def _format(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows of plain values: numbers right-aligned, every cell escaped."""
    return html_table(
        header,
        [
            [
                td(
                    _format(cell),
                    numeric=isinstance(cell, int | float) and not isinstance(cell, bool),
                )
                for cell in row
            ]
            for row in rows
        ],
    )


# A TPR read at a target FPR (or the federated gain in it) and the flag that says if it resolves.
_LOW_FPR_TPR = re.compile(r"(?:federated_gain_)?tpr_at_fpr_(?P<target>[0-9.e+-]+)")


def benign_names_needed(target_fpr: float) -> int:
    """Benign test names a TPR at ``target_fpr`` needs to be resolvable: 3 / FPR."""
    return math.ceil(MIN_NEGATIVES_PER_RESOLVABLE_FPR / target_fpr * (1.0 - 1e-9))


def unresolvable_note(metrics: Mapping[str, float], key: str) -> str | None:
    """'not resolvable: N benign names < 30,000' when ``key`` is a low-FPR TPR whose
    ``tpr_at_fpr_<x>_resolvable`` flag is 0; None for every other metric."""
    match = _LOW_FPR_TPR.fullmatch(key)
    if match is None or metrics.get(f"tpr_at_fpr_{match['target']}_resolvable") != 0:
        return None
    try:
        needed = benign_names_needed(float(match["target"]))
    except ValueError:
        return "not resolvable"
    positives, names = metrics.get("test_positives"), metrics.get("test_domains")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (positives, names)):
        return f"not resolvable: fewer than {needed:,} benign names"
    return f"not resolvable: {int(names - positives):,} benign names < {needed:,}"


def host_unresolvable_note(metrics: Mapping[str, float], key: str) -> str | None:
    """'not resolvable: 68 host-days < 3 x 1,200 hosts/day' when ``key`` is host FP/day and
    the test days hold too few host-days to see one false-positive host a day; else None."""
    if key != "host_fp_per_day" or metrics.get("host_fp_per_day_resolvable") != 0:
        return None
    count, hosts = metrics.get("host_days"), metrics.get("hosts_per_day")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (count, hosts)):
        return "not resolvable"
    return f"not resolvable: {_format(float(count))} host-days < 3 × {_format(hosts)} hosts/day"


def metric_value(metrics: Mapping[str, float], key: str) -> object:
    """The value as shown: a low-FPR TPR its test set cannot resolve carries the reason."""
    value = metrics.get(key)
    note = unresolvable_note(metrics, key) or host_unresolvable_note(metrics, key)
    return value if note is None else f"{_format(value)} ({note})"


def metric_tables(metrics: Mapping[str, float], sent: Mapping[str, float]) -> str:
    remaining = dict(metrics)
    sections = [*METRIC_SECTIONS, ("Other", lambda key: True)]
    parts = []
    for title, belongs in sections:
        keys = [key for key in remaining if belongs(key)]
        if not keys:
            continue
        rows = [(key, metric_value(metrics, key), sent.get(key, "not sent")) for key in keys]
        for key in keys:
            del remaining[key]
        parts.append(f"<h3>{escape(title)}</h3>" + _table(("metric", "value", "sent"), rows))
    return "\n".join(parts)


def _operating_summary(report: Mapping) -> str:
    operating = report["operating_point"]
    how = (
        f"FPR target {operating['target_fpr']:g}"
        if operating["mode"] == "target_fpr"
        else "alert budget"
    )
    return _table(
        ("setting", "value"),
        (
            ("threshold τ chosen by", how),
            ("τ", operating["threshold"]),
            ("feasible", operating["feasible"]),
            ("base rate π", operating["base_rate"]),
            ("π from", operating["base_rate_source"]),
            ("benign events/day V", float(operating["benign_events_per_day"])),
            ("alert budget/day A", operating["alert_budget_per_day"]),
            ("budget threshold basis", operating["budget_basis"]),
        ),
    )


def _top_false_positives(report: Mapping) -> str:
    top = report["top_false_positives"]
    title = (
        "Most-queried false positives at τ"
        if top["kind"] == "false_positives_at_threshold"
        else "No false positives at τ: the highest-scored benign domains"
    )
    rows = [(row["domain"], row["score"], row["queries"]) for row in top["rows"]]
    return (
        f"<h2>{title}</h2><p class=local><b>Stays on this site:</b> these names are never "
        "sent to the coordinator.</p>" + _table(("domain", "score", "queries"), rows)
    )


_SIDE_BY_SIDE = (
    ("alerts/day", "alerts_per_day", "host_alerts_per_day"),
    ("FP/day", "fp_per_day", "host_fp_per_day"),
    ("FP/day, 95% upper bound", "fp_per_day_upper95", "host_fp_per_day_upper95"),
    ("FPR (per benign name / per host-day)", "fpr", "host_fpr"),
    ("FPR, 95% upper bound", "fpr_upper95", "host_fpr_upper95"),
)


def host_section(report: Mapping) -> str:
    """Per-domain and per-host figures side by side, how the hosts scale, or why none."""
    hosts = report.get("hosts")
    if not hosts:
        return ""
    metrics = report["metrics"]
    if not hosts.get("available"):
        reason = hosts.get("reason") or "not computed"
        return f"<h2>Per host</h2><p>Host figures: n/a ({escape(str(reason))}).</p>"
    rows = [
        (label, metric_value(metrics, domain), metric_value(metrics, host))
        for label, domain, host in _SIDE_BY_SIDE
    ]
    observed, per_test_day = hosts["observed_hosts_per_day"], hosts["benign_queries_per_test_day"]
    alerting, false_positives = hosts["alerting_host_days"], hosts["false_positive_host_days"]
    scale = (
        f"{_format(float(hosts['test_days']))} test day(s) hold "
        f"{_format(metrics.get('host_days'))} host-days ({_format(observed)} hosts a day) and "
        f"{_format(per_test_day)} benign queries a day; at V = "
        f"{_format(float(hosts['benign_events_per_day']))} benign queries a day, with as many "
        f"benign queries per host, the site has {_format(metrics.get('hosts_per_day'))} hosts a "
        f"day (× {_format(hosts['scale_to_site_volume'])}). At τ, {alerting:,} host-days alert "
        f"and {false_positives:,} are false positives."
    )
    without = hosts.get("records_without_client") or 0
    missing = f" {without:,} test-day records name no client and are left out." if without else ""
    return (
        f"<h2>Per host</h2><p>{escape(str(hosts['definition']))}. {escape(scale)}"
        f"{escape(missing)}</p>" + _table(("figure at τ", "per domain", "per host"), rows)
    )


def render_report_html(report: Mapping, plots: PlotInputs) -> str:
    """The whole page: summary, plots, metric tables (with what is sent), families, top FPs."""
    evaluation = report.get("evaluation") or {}
    kind = str(evaluation.get("kind") or "federated round")
    # Flower rounds start at 1: round 0 is an evaluation outside the federation.
    when = f"round {report['round']}" if report["round"] else f"{kind} evaluation"
    title = f"fedsec fragility: site {report['site_id']}, {when}"
    notes = "".join(f"<li>{escape(str(note))}</li>" for note in evaluation.get("notes", ()))
    figures = "".join(
        f'<figure><img alt="{escape(caption)}" src="{png_data_uri(draw, plots, report)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for caption, draw in PLOTS
    )
    families = _table(
        ("family", "seen in training", "test hits", "never in logs", "recall at τ"),
        [
            (
                row["family"],
                row["seen_in_training"],
                row["test_positives"],
                row["intel_only"],
                row["recall"],
            )
            for row in report["families"]
        ],
    )
    share = report["share"]
    masked_note = _AGGREGATE_NOTE if share["level"] == "aggregate" else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{escape(title)}</h1>
<p class=local>This report stays on this site. Only the <i>sent</i> column below leaves it
(share level <b>{escape(share["level"])}</b>, rounded to 2 significant figures).{masked_note}
Generated {escape(report["generated_utc"])}; test days {escape(", ".join(report["test_days"]))}.
</p>
<p>Evaluation: <b>{escape(kind)}</b>.</p>{f"<ul>{notes}</ul>" if notes else ""}
<p>A TPR at a target FPR is <i>not resolvable</i> when the test set holds fewer than 3/FPR benign
names (3,000 for 1e-3, 30,000 for 1e-4, 300,000 for 1e-5): with N benign names it allows at most
⌊N × FPR⌋ false positives (none when N &lt; 1/FPR), too few to measure that rate. Such values are
shown with the reason.</p>
<h2>Operating point</h2>{_operating_summary(report)}
{host_section(report)}
<h2>Plots</h2>{figures}
<h2>Metrics</h2>{metric_tables(report["metrics"], share["sent"])}
<h2>Families</h2>{families}
{_top_false_positives(report)}
</body></html>
"""


_AGGREGATE_NOTE = """
At this level nothing is sent in clear: the rates (2 significant figures) go only into a vector
that secure aggregation masks, and the coordinator learns means over at least 3 such sites
(nothing under mode=fedavg). <code>fedsec check</code> lists them."""


def render_index(rounds: Sequence[Mapping]) -> str:
    """A page linking every round's report, with a few headline metrics per round."""
    columns = (
        "tpr_at_fpr_1e-4",
        "recall_at_budget",
        "fp_per_day",
        "fp_per_day_upper95",
        "host_fp_per_day_upper95",
        "unseen_family_recall",
        "churn",
    )
    rows = "".join(
        (
            f'<tr><td><a href="{escape(item["html"])}">round {item["round"]}</a> '
            if item.get("html")
            else f"<tr><td>round {item['round']} "
        )
        + f'(<a href="{escape(item["json"])}">json</a>)</td>'
        + "".join(td(_format(metric_value(item["metrics"], key)), numeric=True) for key in columns)
        + "</tr>"
        for item in rounds
    )
    head = "".join(f"<th>{escape(key)}</th>" for key in ("report", *columns))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fedsec fragility reports</title>
<style>{_STYLE}</style></head><body><h1>Fragility reports</h1>
<table><tr>{head}</tr>{rows}</table></body></html>
"""
