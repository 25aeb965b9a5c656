"""The federation report as one self-contained HTML page: tables plus inline PNG plots."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from common.html import html_table, td

NOT_SHARED = "not shared by this site's policy"
NOT_COMPUTED = "shared, but not computable or not resolvable this round (too few test samples)"
NOT_RESOLVABLE = (
    "not resolvable: the site's test set holds fewer than 3/FPR benign names, so this TPR "
    "allows (almost) no false positive and cannot measure that rate; left out of the worst "
    "site, the spread and the trends"
)
NOT_RESOLVABLE_MARK = "(not resolvable)"
NO_REPLY = "this site did not reply in this round"
NO_FAMILY = "no test examples of this family at this site"
_SITE_COLOUR = "tab:blue"
MAX_SITES_DRAWN = 40
"""Up to this many sites, the per-site plots draw a bar or a column per site and the family
table has a column per site. Beyond it they show the spread over the sites instead: a column
per site made the plots 0.55-0.6 inch wider a site (53,000 pixels at 1,000 sites, ~1 GiB of the
coordinator's memory to render, unreadable), and the table 1,000 columns wide. Each site's own
figures stay in the sites table and in report.json."""
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { text-align: center; color: #999; cursor: help; }
td.worst { background: #fde2e1; font-weight: 600; }
td.unresolved { color: #777; font-style: italic; cursor: help; }
.scroll { overflow-x: auto; }
.note { color: #666; font-size: 0.9em; }
.flag { color: #a40000; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
"""


def render_federation_html(report: Mapping[str, Any]) -> str:
    """The whole page for a report built by `server.report.build_federation_report`."""
    sections: tuple[Callable[[Mapping[str, Any]], str], ...] = (
        _summary_section,
        _headline_section,
        _sites_section,
        _federation_section,
        _privacy_section,
        _selection_section,
        _families_section,
        _trends_section,
        _rounds_section,
    )
    body = "\n".join(section(report) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>fedsec federation report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>fedsec federation report</h1>\n"
        f"{body}\n</body>\n</html>\n"
    )


def format_number(value: Any) -> str:
    """Four significant digits for small floats, thousands separators for large numbers."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    # Volumes (false positives, alerts per day) read better as whole numbers.
    if 1e3 <= abs(value) < 1e12:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return html_table(header, rows, scroll=True)


def _td(text: Any, *, numeric: bool = False, css: str = "", title: str = "") -> str:
    return td(format_number(text) if numeric else text, numeric=numeric, css=css, title=title)


def _missing(title: str) -> str:
    return f'<td class="missing" title="{escape(title)}">—</td>'


def _metric_cell(
    metrics: Mapping[str, Any] | None, name: str, *, worst: bool, unresolvable: bool = False
) -> str:
    if metrics is None:
        return _missing(NO_REPLY)
    if name not in metrics:
        return _missing(NOT_COMPUTED if unresolvable else NOT_SHARED)
    value = metrics[name]
    if unresolvable:
        return _td(
            f"{format_number(value)} {NOT_RESOLVABLE_MARK}", css="unresolved", title=NOT_RESOLVABLE
        )
    if value is None:
        return _td("n/a", css="missing", title=NOT_COMPUTED)
    return _td(value, numeric=True, css="worst" if worst else "")


def _summary_section(report: Mapping[str, Any]) -> str:
    summary, last = report["summary"], report["last_round"]
    seconds = summary["seconds"]
    first, later = seconds["first_round"] or {}, seconds["mean_after_first"]
    replied = len(last["sites"])
    rows = [
        ("mode", summary["mode"] or "unknown"),
        (
            "rounds recorded / configured",
            f"{summary['rounds_recorded']} / {summary['rounds_configured'] or 'unknown'}",
        ),
        (
            "sites",
            f"{replied} replied in round {last['round']}, "
            f"{len(summary['sites_seen'])} seen in any round",
        ),
        ("seconds, round 1 (includes cold starts)", format_number(first.get("total"))),
        (
            f"mean seconds per round, rounds ≥ 2 ({seconds['rounds_in_mean']} rounds)",
            f"{format_number(later['total'])} (train {format_number(later['train'])}, "
            f"evaluate {format_number(later['evaluate'])})",
        ),
        (
            "failed site replies (train / evaluate)",
            f"{summary['train_failures']} / {summary['evaluate_failures']}",
        ),
        ("halted rounds (model unchanged)", _round_list(summary["halted_rounds"])),
        ("rounds with no training results", _round_list(summary["no_result_rounds"])),
    ]
    table = _table([], [[f"<th>{escape(key)}</th>", _td(value)] for key, value in rows])
    flags = "".join(
        f'<li class="flag">{escape(flag["site"])}: {escape(flag["metric"])} = '
        f"{escape(format_number(flag['value']))} &gt; {escape(format_number(flag['limit']))}: "
        f"{escape(flag['why'])}</li>"
        for flag in report["flags"]
    )
    flag_list = f"<h3>Flags</h3><ul>{flags}</ul>" if flags else ""
    return f"<h2>Run summary</h2>\n{table}\n{flag_list}"


def _round_list(rounds: Sequence[int]) -> str:
    return ", ".join(str(number) for number in rounds) or "none"


def _headline_section(report: Mapping[str, Any]) -> str:
    header = [
        "metric",
        "better",
        "worst site",
        "worst value",
        "min",
        "median",
        "max",
        "sites shared",
        "not shared",
        "not computable",
        "not resolvable (value, left out)",
    ]
    rows = []
    for name, entry in report["headline"].items():
        worst, spread = entry["worst"] or {}, entry["spread"]
        unresolved = entry.get("not_resolvable") or []
        apart = {row["site"] for row in unresolved}
        not_computed = [site for site in entry["not_computed"] if site not in apart]
        rows.append(
            [
                _td(name),
                _td(entry["direction"] or "—"),
                _td(worst.get("site", "—")),
                _td(worst.get("value"), numeric=True),
                *(_td(spread[key], numeric=True) for key in ("min", "median", "max")),
                _td(spread["sites"], numeric=True),
                _td(", ".join(entry["not_shared"]) or "—"),
                _td(", ".join(not_computed) or "—"),
                _td(
                    ", ".join(f"{r['site']} ({format_number(r['value'])})" for r in unresolved)
                    or "—",
                    title=NOT_RESOLVABLE if unresolved else "",
                ),
            ]
        )
    return (
        f"<h2>Worst site and spread, round {report['last_round']['round']}</h2>\n"
        f"{_table(header, rows)}"
    )


def _sites_section(report: Mapping[str, Any]) -> str:
    last = report["last_round"]
    names = last["metrics"]
    worst_of = {
        name: (entry["worst"] or {}).get("site") for name, entry in report["headline"].items()
    }
    unresolved = last.get("not_resolvable") or {}
    rows = [
        [
            _td(site),
            *(
                _metric_cell(
                    last["sites"].get(site),
                    name,
                    worst=worst_of.get(name) == site,
                    unresolvable=name in unresolved.get(site, ()),
                )
                for name in names
            ),
        ]
        for site in [*last["sites"], *last["no_reply"]]
    ]
    note = (
        ""
        if last["is_final_round"]
        else (
            '<p class="note">The final round has no evaluation replies; this is the last round '
            "that has.</p>"
        )
    )
    plot = _plot_or_note(plot_fp_per_day(last), "fp_per_day_upper95 per site (log scale)")
    not_sharing = [site for site, m in last["sites"].items() if "fp_per_day_upper95" not in m]
    listed = (
        (f'<p class="note">Not shared (fp_per_day_upper95): {escape(", ".join(not_sharing))}</p>')
        if not_sharing
        else ""
    )
    listed += _host_plot(last)
    return (
        f"<h2>Every site, round {last['round']}</h2>\n{note}"
        '<p class="note">— = not shared by the site\'s policy (hover for details); '
        "shaded = worst site for a headline metric; "
        f"{NOT_RESOLVABLE_MARK} = the site's test set holds fewer than 3/FPR benign names, "
        "so it cannot measure a TPR at that FPR: shown, never ranked.</p>\n"
        f"{_table(['site', *names], rows)}\n<h3>False positives per day (upper 95%)</h3>\n"
        f"{plot}\n{listed}"
    )


FEDERATION_STATUS = {
    "aggregated": "summed",
    "too-few-sites": "not run: fewer sites at 'aggregate' than a sum needs",
    "needs-secagg": "not run: mode=fedavg has no secure aggregation; the figures stay at the sites",
    "halted": "halted: too few sites left to unmask",
    "refused": "not run: the SecAgg+ settings cannot work over these sites",
}


def _federation_section(report: Mapping[str, Any]) -> str:
    """Means over the sites at share level `aggregate`: no site's own value exists here."""
    federation = report.get("federation_level") or {}
    rows = federation.get("rounds") or []
    if not rows:
        return ""
    minimum = federation["min_contributors"]
    status_rows = [
        [
            _td(row["round"]),
            _td(
                FEDERATION_STATUS.get(row["status"], row["status"]),
                css="" if row["status"] == "aggregated" else "worst",
            ),
            _td(row["sites"], numeric=True),
            _td(row["results"], numeric=True),
            _td(row["figures"], numeric=True),
            _td(row["seconds"], numeric=True),
        ]
        for row in rows
    ]
    status_table = _table(
        [
            "round",
            "evaluation sum",
            "sites at 'aggregate'",
            "in the sum",
            "figures (≥ " + str(minimum) + " sites)",
            "seconds",
        ],
        status_rows,
    )
    metric_rows = []
    for name, entry in federation["metrics"].items():
        cells = [
            _td(f"{format_number(mean)} ({count})")
            if mean is not None
            else _missing(
                f"{count} site(s) contributed; fewer than {minimum} give no figure"
                if count
                else "no site contributed"
            )
            for mean, count in zip(entry["mean"], entry["contributors"], strict=True)
        ]
        metric_rows.append([_td(name), _td(entry["direction"] or "—"), *cells])
    metric_table = (
        _table(["metric", "better", *(f"round {row['round']}" for row in rows)], metric_rows)
        if metric_rows
        else "<p>No federation-level figure yet.</p>"
    )
    extra = federation.get("mean_seconds_after_first")
    cost = (
        f'<p class="note">The evaluation sum added {format_number(extra)} s per round '
        "(mean over rounds ≥ 2).</p>"
        if extra is not None
        else ""
    )
    return (
        "<h2>Federation-level only (aggregate sites)</h2>\n"
        '<p class="note">Sites at share level <code>aggregate</code> send no figure in clear: '
        "their figures travel only inside a SecAgg+-masked sum, so these are means over the "
        f"sites that contributed (in brackets), never one site's value. A figure needs at least "
        f"{minimum} contributing sites. <code>fraction_*</code> is the share of those sites "
        "past a limit (budget_utilisation &gt; 1, shortcut_ratio &gt; 0.95, psi_score &gt; "
        "0.25).</p>\n"
        f"{status_table}\n{metric_table}\n{cost}"
    )


def _privacy_section(report: Mapping[str, Any]) -> str:
    """The ε ledger: what each released round cost, cumulative ε, and the budget stop."""
    privacy = report.get("privacy") or {}
    if not privacy:
        return ""
    rows = [
        [
            _td(row["round"]),
            _td("yes" if row["released"] else "no (nothing released)"),
            _td(row["survivors"] if row["released"] else "—", numeric=True),
            _td(row["threshold"] if row["threshold"] is not None else "— (FedAvg)", numeric=True),
            _td(format_number(row["effective_noise_multiplier"]), numeric=True),
            _td(format_number(row["epsilon_round"]), numeric=True),
            _td(format_number(row["epsilon"]), numeric=True),
            _td(format_number(row["delta"]), numeric=True),
        ]
        for row in privacy["rounds"]
    ]
    table = _table(
        [
            "round",
            "sum released",
            "sites in the sum",
            "threshold t",
            "noise multiplier present",
            "ε of the round",
            "cumulative ε",
            "δ",
        ],
        rows,
    )
    stop = privacy.get("stop")
    stop_note = (
        f'<p class="flag">The run stopped before round {stop["stopped_before_round"]}: it would '
        f"have taken ε from {format_number(stop['epsilon'])} to "
        f"{format_number(stop['epsilon_if_run'])}, past the budget "
        f"{format_number(stop['epsilon_budget'])} (δ {format_number(stop['delta'])}).</p>"
        if stop
        else ""
    )
    return (
        "<h2>Differential privacy (ε ledger)</h2>\n"
        '<p class="note">Site-level (ε, δ) over the rounds, from dp-accounting\'s RDP accountant, '
        "with the noise actually present in each released sum (z·√(k/t) for k sites whose noise "
        "was sized for the threshold t; z under FedAvg). The evaluation figures sites share are "
        "not covered (docs/differential-privacy.md).</p>\n"
        f"{stop_note}\n{table}"
    )


def _selection_section(report: Mapping[str, Any]) -> str:
    """Which round's model `select-by` chose, and each round's signal."""
    selection = report.get("selection")
    if not selection:
        return ""
    signal = escape(str(selection["signal"]))
    if selection.get("value") is None:
        chosen = (
            f'<p class="flag">No round carried {signal} from any site: '
            f"{escape(str(selection['file']))} is the last round's model "
            f"(round {selection['round']}).</p>"
        )
    else:
        chosen = (
            f"<p>{escape(str(selection['file']))} is round {selection['round']}'s model: the "
            f"highest mean {signal} over the sites' own held-out days "
            f"({format_number(selection['value'])}, over {format_number(selection['sites'])} "
            "site figures). model.npz is the last round's.</p>"
        )
    rows = [
        [_td(int(key)), _td(value, numeric=True)]
        for key, value in sorted(selection.get("by_round", {}).items(), key=lambda kv: int(kv[0]))
    ]
    return (
        "<h2>Model selection</h2>\n"
        '<p class="note">select-by: the coordinator keeps the round whose global model the sites '
        "rank highest on their own held-out days, by one figure they share (a TPR only where "
        "the site's test set resolves it), not only the last round (docs/training.md).</p>\n"
        f"{chosen}\n{_table(['round', str(selection['signal'])], rows) if rows else ''}"
    )


def _families_section(report: Mapping[str, Any]) -> str:
    families = report["families"]
    if not families["families"]:
        return "<h2>Recall per DGA family</h2>\n<p>No site shared per-family recall.</p>"
    if len(families["sites"]) > MAX_SITES_DRAWN:
        return _family_spread_section(report)
    rows = []
    for family in families["families"]:
        cells = [_td(family)]
        for site in families["sites"]:
            value = families["recall"][family][site]
            if site in families["not_shared"]:
                cells.append(_missing(NOT_SHARED))
            elif value is None:
                cells.append(_missing(NO_FAMILY))
            else:
                cells.append(_td(value, numeric=True))
        rows.append(cells)
    plot = _plot_or_note(plot_family_heatmap(families), "recall per family and site")
    return (
        f"<h2>Recall per DGA family × site, round {report['last_round']['round']}</h2>\n"
        f"{_table(['family', *families['sites']], rows)}\n{plot}"
    )


def _family_spread_section(report: Mapping[str, Any]) -> str:
    """Too many sites for a column each: per family, how its recall spreads over the sites
    that have it (report.json keeps every site's figure)."""
    families = report["families"]
    rows = []
    for family, values in _family_spread(families).items():
        if not values.size:
            rows.append([_td(family), _td(0, numeric=True), *[_missing(NO_FAMILY)] * 5])
            continue
        rows.append(
            [
                _td(family),
                _td(values.size, numeric=True),
                *(_td(float(q), numeric=True) for q in np.quantile(values, [0.0, 0.5, 1.0])),
                _td(int(np.sum(values < 0.5)), numeric=True),
                _td(", ".join(_lowest(families, family)), css="note"),
            ]
        )
    header = ["family", "sites with it", "min", "median", "max", "sites < 0.5", "lowest sites"]
    shared = len(families["sites"]) - len(families["not_shared"])
    plot = _plot_or_note(plot_family_spread(families), "recall per family over the sites")
    return (
        f"<h2>Recall per DGA family over the sites, round {report['last_round']['round']}</h2>\n"
        f'<p class="note">{shared} of {len(families["sites"])} sites shared per-family recall '
        f"(more than {MAX_SITES_DRAWN} sites: each site's figure is in report.json).</p>\n"
        f"{_table(header, rows)}\n{plot}"
    )


def _lowest(families: Mapping[str, Any], family: str, count: int = 3) -> list[str]:
    """The sites with the lowest recall of `family`, lowest first."""
    recall = families["recall"][family]
    known = [
        (value, site)
        for site, value in recall.items()
        if value is not None and not math.isnan(value)
    ]
    return [site for _, site in sorted(known)[:count]]


def _trends_section(report: Mapping[str, Any]) -> str:
    trends = report["trends"]
    rounds = trends["rounds"]
    rows = []
    for name in report["headline"]:
        columns = trends["metrics"].get(name)
        if columns is None:
            continue
        cells = [
            _td(f"{format_number(mean)} ({format_number(low)}–{format_number(high)})")
            if mean is not None
            else _missing("no site shared it this round")
            for mean, low, high in zip(columns["mean"], columns["min"], columns["max"], strict=True)
        ]
        rows.append([_td(name), *cells])
    table = _table(["metric", *(f"round {number}" for number in rounds)], rows)
    plot = _plot_or_note(plot_trends(trends), "headline metrics per round")
    return (
        "<h2>Trends over rounds</h2>\n"
        '<p class="note">Mean over sites (min–max). In the plots each faint line is one '
        "site, the dark line the mean. Values a site flagged not resolvable are left out.</p>\n"
        f"{table}\n{plot}"
    )


def _rounds_section(report: Mapping[str, Any]) -> str:
    header = [
        "round",
        "status",
        "trained",
        "train failures",
        "evaluated",
        "evaluate failures",
        "train s",
        "evaluate s",
        "total s",
    ]
    rows, reasons = [], []
    for row in report["summary"]["rounds"]:
        seconds = row["seconds"]
        css = "worst" if row["status"] != "aggregated" else ""
        rows.append(
            [
                _td(row["round"]),
                _td(row["status"], css=css),
                *(
                    _td(row[key], numeric=True)
                    for key in (
                        "train_results",
                        "train_failures",
                        "evaluate_sites",
                        "evaluate_failures",
                    )
                ),
                *(_td(seconds[phase], numeric=True) for phase in ("train", "evaluate", "total")),
            ]
        )
        reasons += [f"round {row['round']}: {reason}" for reason in row["failure_reasons"]]
    listed = "".join(f"<li>{escape(reason)}</li>" for reason in reasons)
    plot = _plot_or_note(plot_seconds(report["summary"]), "seconds per round")
    return f"<h2>Rounds</h2>\n{_table(header, rows)}\n{plot}\n" + (
        f"<h3>Failure reasons</h3><ul>{listed}</ul>" if listed else ""
    )


def _plot_or_note(png_base64: str | None, alt: str) -> str:
    if png_base64 is None:
        return f'<p class="note">No data to plot: {escape(alt)}.</p>'
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{png_base64}">'


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    # No Software/date metadata: the same report renders to the same bytes.
    figure.savefig(buffer, format="png", dpi=96, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def plot_trends(trends: Mapping[str, Any]) -> str | None:
    """One panel per headline metric: a faint line per site (beyond MAX_SITES_DRAWN sites, the
    band of their middle 80% and the median) and the mean across sites."""
    rounds, per_site = trends["rounds"], trends["per_site"]
    names = [name for name, series in per_site.items() if series]
    if not names or not rounds:
        return None
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.2 * columns, 2.8 * rows), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for ax, name in zip(axes, names, strict=False):
        banded = len(per_site[name]) > MAX_SITES_DRAWN
        if banded:
            _spread_band(ax, rounds, per_site[name].values())
        else:
            for series in per_site[name].values():
                ax.plot(rounds, _floats(series), color=_SITE_COLOUR, alpha=0.3, lw=1, marker=".")
        mean = _floats(trends["metrics"][name]["mean"])
        ax.plot(rounds, mean, color="black", lw=2, marker="o", label="mean")
        if banded:
            ax.legend(fontsize=7)
        finite = [v for s in per_site[name].values() for v in s if v is not None]
        if name.startswith("fp_per_day") and finite and min(finite) > 0:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return _png(figure)


def _spread_band(ax: Any, rounds: Sequence[int], series: Any) -> None:
    """Too many sites for a line each: the band their middle 80% spans each round, and the
    median."""
    matrix = np.array([_floats(values) for values in series])
    drawn = ~np.all(np.isnan(matrix), axis=0)
    if not drawn.any():
        return
    x = np.asarray(rounds)[drawn]
    low, median, high = np.nanquantile(matrix[:, drawn], [0.1, 0.5, 0.9], axis=0)
    ax.fill_between(x, low, high, color=_SITE_COLOUR, alpha=0.25, lw=0, label="sites, 10-90%")
    ax.plot(x, median, color=_SITE_COLOUR, lw=1.5, marker=".", label="median site")


HOST_FP_METRIC = "host_fp_per_day_upper95"


def _host_plot(last_round: Mapping[str, Any]) -> str:
    """False-positive hosts a day beside the per-domain plot, when any site sent them."""
    sites = last_round["sites"]
    if not any(HOST_FP_METRIC in metrics for metrics in sites.values()):
        return (
            '<p class="note">False-positive hosts per day: no site sent them (they need a '
            "client column in the logs and share level rates+volumes).</p>"
        )
    without = [site for site, metrics in sites.items() if HOST_FP_METRIC not in metrics]
    note = (
        f'<p class="note">Not sent ({HOST_FP_METRIC}): {escape(", ".join(without))}</p>'
        if without
        else ""
    )
    plot = plot_fp_per_day(
        last_round, metric=HOST_FP_METRIC, label="false-positive hosts / day (95% upper)"
    )
    return (
        "<h3>False-positive hosts per day (upper 95%)</h3>\n"
        f"{_plot_or_note(plot, f'{HOST_FP_METRIC} per site (log scale)')}\n{note}"
    )


def plot_fp_per_day(
    last_round: Mapping[str, Any],
    *,
    metric: str = "fp_per_day_upper95",
    label: str = "false positives / day (95% upper)",
) -> str | None:
    """``metric`` per site on a log scale; non-sharing sites are labelled, no bar."""
    sites = list(last_round["sites"])
    heights = [last_round["sites"][site].get(metric) for site in sites]
    if not any(isinstance(h, int | float) and h > 0 for h in heights):
        return None
    if len(sites) > MAX_SITES_DRAWN:
        return _plot_ranked(last_round, metric=metric, label=label)
    figure = Figure(figsize=(max(5.0, 0.55 * len(sites) + 2), 3.6), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(sites))
    bars = [h if isinstance(h, int | float) and h > 0 else np.nan for h in heights]
    ax.bar(positions, bars, color="tab:red")
    ax.set_yscale("log")
    for position, site, height in zip(positions, sites, heights, strict=True):
        if metric not in last_round["sites"][site]:
            label = "not shared"
        elif height is None:
            label = "n/a"
        elif height <= 0:
            label = "0"
        else:
            continue
        ax.text(
            position,
            0.03,
            label,
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="bottom",
            color="#777",
            fontsize=8,
        )
    ax.set_xticks(positions, sites, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    return _png(figure)


RANKED_NAMED = 5
"""The ranked plot names this many of the highest sites."""


def _plot_ranked(last_round: Mapping[str, Any], *, metric: str, label: str) -> str:
    """``metric`` of many sites, highest first, on a log scale: how many sites sit at which
    level, the highest few named; the sites without a positive value are counted in the
    title."""
    values = {
        site: metrics[metric]
        for site, metrics in last_round["sites"].items()
        if isinstance(metrics.get(metric), int | float) and metrics[metric] > 0
    }
    ranked = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    counts = _without_value(last_round["sites"], metric)
    figure = Figure(figsize=(8.0, 3.6), layout="constrained")
    ax = figure.subplots()
    ranks = np.arange(1, len(ranked) + 1)
    ax.plot(ranks, [value for _, value in ranked], color="tab:red", marker=".", lw=1)
    highest = "\n".join(
        f"{rank}. {site}: {value:.3g}"
        for rank, (site, value) in enumerate(ranked[:RANKED_NAMED], start=1)
    )
    ax.text(
        0.99,
        0.95,
        f"highest:\n{highest}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox={"facecolor": "white", "edgecolor": "#ccc", "alpha": 0.9},
    )
    ax.set_yscale("log")
    ax.set_xlabel("site rank (highest first)")
    ax.set_ylabel(label)
    ax.set_title(f"{len(ranked)} of {len(last_round['sites'])} sites{counts}", fontsize=9)
    ax.grid(alpha=0.3)
    return _png(figure)


def _without_value(sites: Mapping[str, Mapping[str, Any]], metric: str) -> str:
    """'; 3 not shared, 2 n/a, 1 at 0' for the sites a ranked plot cannot draw."""
    kinds = {"not shared": 0, "n/a": 0, "at 0": 0}
    for metrics in sites.values():
        value = metrics.get(metric)
        if metric not in metrics:
            kinds["not shared"] += 1
        elif not isinstance(value, int | float) or math.isnan(value):
            kinds["n/a"] += 1
        elif value <= 0:
            kinds["at 0"] += 1
    shown = [f"{count} {kind}" for kind, count in kinds.items() if count]
    return f"; {', '.join(shown)}" if shown else ""


def _family_spread(families: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each family's recall at the sites that have a figure for it (none: an empty array)."""
    spread = {}
    for family in families["families"]:
        values = _floats([v for v in families["recall"][family].values() if v is not None])
        spread[family] = values[~np.isnan(values)]
    return spread


def plot_family_spread(families: Mapping[str, Any]) -> str | None:
    """Recall per family over the sites (too many for a column each): the range, the middle
    half and the median of the sites that have the family, and how many of them are below
    0.5."""
    spread = _family_spread(families)
    names = [family for family, values in spread.items() if values.size]
    if not names:
        return None
    figure = Figure(figsize=(8.0, max(2.5, 0.35 * len(names) + 1.5)), layout="constrained")
    ax = figure.subplots()
    for row, family in enumerate(names):
        values = spread[family]
        low, q1, median, q3, high = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
        ax.plot([low, high], [row, row], color="#999", lw=1)
        ax.plot([q1, q3], [row, row], color=_SITE_COLOUR, lw=6, solid_capstyle="butt")
        ax.plot([median], [row], marker="o", color="black", markersize=4)
        below = int(np.sum(values < 0.5))
        ax.text(1.02, row, f"{below}/{values.size} < 0.5", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.2)
    ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
    ax.axvline(0.5, color="#a40000", lw=0.8, ls="--")
    ax.set_xlabel("recall over the sites (line: range; bar: middle half; dot: median)")
    ax.grid(axis="x", alpha=0.3)
    return _png(figure)


def plot_family_heatmap(families: Mapping[str, Any]) -> str | None:
    """Recall in [0, 1] per family (rows) and site (columns); grey where there is none."""
    names, sites = families["families"], families["sites"]
    if not names or not sites:
        return None
    if len(sites) > MAX_SITES_DRAWN:
        return plot_family_spread(families)
    matrix = np.ma.masked_invalid(
        np.array([_floats([families["recall"][f][s] for s in sites]) for f in names])
    )
    figure = Figure(
        figsize=(max(4.5, 0.6 * len(sites) + 3), max(2.5, 0.35 * len(names) + 1.5)),
        layout="constrained",
    )
    ax = figure.subplots()
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(matrix, cmap=colours, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if matrix.size <= 400:
        for (row, column), value in np.ndenumerate(matrix.filled(np.nan)):
            if not np.isnan(value):
                ax.text(
                    column,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value < 0.5 else "black",
                )
    for column, site in enumerate(sites):
        if site in families["not_shared"]:
            ax.text(
                column,
                (len(names) - 1) / 2,
                "not shared",
                rotation=90,
                ha="center",
                va="center",
                color="#777",
                fontsize=8,
            )
    figure.colorbar(image, ax=ax, label="recall")
    return _png(figure)


def plot_seconds(summary: Mapping[str, Any]) -> str | None:
    """Train and evaluate seconds stacked per round, with the mean over rounds >= 2."""
    per_round = summary["seconds"]["per_round"]
    if not any(row["total"] is not None or row["train"] is not None for row in per_round):
        return None
    rounds = [row["round"] for row in per_round]
    train = np.nan_to_num(_floats([row["train"] for row in per_round]))
    evaluate = np.nan_to_num(_floats([row["evaluate"] for row in per_round]))
    figure = Figure(figsize=(max(5.0, 0.4 * len(rounds) + 3), 3.2), layout="constrained")
    ax = figure.subplots()
    ax.bar(rounds, train, label="train", color="tab:blue")
    ax.bar(rounds, evaluate, bottom=train, label="evaluate", color="tab:orange")
    tops = dict(zip(rounds, train + evaluate, strict=True))
    mean_total = summary["seconds"]["mean_after_first"]["total"]
    if mean_total is not None:
        ax.axhline(mean_total, color="black", ls="--", lw=1, label="mean total, rounds ≥ 2")
    for number in summary["halted_rounds"]:
        ax.annotate(
            "halted",
            (number, tops.get(number, 0.0)),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            color="#a40000",
            fontsize=8,
        )
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
    ax.set_xticks(rounds)
    ax.legend(fontsize=8)
    return _png(figure)
