"""The federation report: every site, the worst site, spread and trends, from results.json."""

from __future__ import annotations

import fnmatch
import json
import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.files import json_ready, write_atomic
from common.protocol import ACK, AGGREGATE_ONLY, FAMILY_RECALL_PREFIX
from common.share import MIN_CONTRIBUTORS
from server.report_html import render_federation_html

SCHEMA = "fedsec/federation-report/1"
HIGHER = "higher"
LOWER = "lower"
HEADLINE_METRICS = (
    "auc",
    "tpr_at_fpr_1e-4",
    "fp_per_day_upper95",
    "host_fp_per_day_upper95",
    "precision_at_base_rate",
    "recall_at_budget",
    "analyst_hours_per_day",
    "unseen_family_recall",
    "ece",
    "churn",
)
FAMILY_PREFIX = FAMILY_RECALL_PREFIX
PHASES = ("train", "evaluate", "total")
# Reply bookkeeping, not measurements.
_NOT_METRICS = frozenset({ACK, AGGREGATE_ONLY})
# First match wins: `precision_at_base_rate` must be seen before `*_rate`.
_DIRECTIONS: tuple[tuple[str, str | None], ...] = (
    ("*_resolvable", None),
    ("precision_at_base_rate", HIGHER),
    ("federated_gain_auc", HIGHER),
    ("federated_gain_pauc_*", HIGHER),
    ("federated_gain_tpr_*", HIGHER),
    ("federated_gain_recall_*", HIGHER),
    ("federated_gain_*", None),
    ("auc", HIGHER),
    ("pauc_*", HIGHER),
    ("tpr_*", HIGHER),
    ("recall_*", HIGHER),
    ("unseen_family_recall", HIGHER),
    ("fpr*", LOWER),
    ("fp_per_day*", LOWER),
    # Per host (docs/metrics.md "Hosts"): FP hosts are worse; counts of hosts have no side.
    ("host_fpr*", LOWER),
    ("host_fp_per_day*", LOWER),
    ("alerts_per_incident", LOWER),
    ("analyst_hours_per_day", LOWER),
    ("ece", LOWER),
    ("brier", LOWER),
    ("churn", LOWER),
    ("psi_score", LOWER),
    ("budget_utilisation", LOWER),
    ("shortcut_ratio", LOWER),
    ("*_rate", LOWER),
    ("fraction_*", LOWER),  # share of `aggregate` sites past a limit (over budget, ...)
)
# (metric, limit, why): a site above the limit is flagged whatever the other sites do.
_FLAGS = (
    ("budget_utilisation", 1.0, "more alerts than the analysts can triage"),
    ("shortcut_ratio", 0.95, "a single-feature baseline nearly matches the model (shortcut)"),
)


def metric_direction(name: str) -> str | None:
    """`"higher"` or `"lower"` is better, or None for counts, thresholds and flags."""
    for pattern, direction in _DIRECTIONS:
        if fnmatch.fnmatchcase(name, pattern):
            return direction
    return None


def build_federation_report(results: Mapping[str, Any]) -> dict[str, Any]:
    """The report for a results document (`{"config": ..., "rounds": [...]}`); JSON-safe.

    Raises ValueError naming the field when the document does not have that shape.
    """
    config, rounds = _validated(results)
    sites_seen = sorted({site for entry in rounds for site in entry["sites"]})
    last_round = _last_round(rounds, sites_seen)
    last_sites = last_round["sites"]
    report = {
        "schema": SCHEMA,
        "summary": _summary(config, rounds, sites_seen),
        "last_round": last_round,
        "headline": {name: _spread(name, last_sites) for name in HEADLINE_METRICS},
        "flags": _flags(last_sites),
        "trends": _trends(rounds, sites_seen),
        "families": _family_matrix(last_sites),
        "federation_level": _federation_level(rounds),
        "privacy": _privacy(rounds, results.get("privacy_stop")),
        "selection": _selection(results.get("selection")),
        "config": dict(config),
    }
    return json_ready(report)


def _validated(results: Any) -> tuple[Mapping[str, Any], list[dict[str, Any]]]:
    if not isinstance(results, Mapping):
        raise ValueError("top level: expected an object with `config` and `rounds`")
    config = {} if results.get("config") is None else results["config"]
    if not isinstance(config, Mapping):
        raise ValueError("field `config`: expected an object")
    raw_rounds = results.get("rounds")
    if not isinstance(raw_rounds, list):
        raise ValueError("field `rounds`: expected a list of round records")
    rounds = [_validated_round(entry, index) for index, entry in enumerate(raw_rounds)]
    return config, sorted(rounds, key=lambda entry: entry["round"])


# The parts of a results.json round that are objects (an absent one reads as empty).
_ROUND_OBJECTS = (
    "train",
    "sites",
    "aggregate",
    "seconds",
    "federation_sum",
    "federation_means",
    "federation_contributors",
    "privacy",
)


def _validated_round(entry: Any, index: int) -> dict[str, Any]:
    where = f"rounds[{index}]"
    if not isinstance(entry, Mapping) or _number(entry.get("round")) is None:
        raise ValueError(f"field `{where}`: expected an object with a numeric `round`")
    checked: dict[str, Any] = {"round": int(entry["round"])}
    # Besides the round's parts: the evaluation sum of the sites at share level `aggregate`
    # and the ε ledger's entry (absent, so empty, when neither was on).
    for key in _ROUND_OBJECTS:
        part = {} if entry.get(key) is None else entry[key]
        if not isinstance(part, Mapping):
            raise ValueError(
                f"field `{where}.{key}`: expected an object, got {type(part).__name__}"
            )
        checked[key] = dict(part)
    for site, metrics in checked["sites"].items():
        if not isinstance(metrics, Mapping):
            raise ValueError(f"field `{where}.sites.{site}`: expected an object of metrics")
    checked["sites"] = {str(site): _metrics(m) for site, m in sorted(checked["sites"].items())}
    return checked


def _metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in metrics.items() if name not in _NOT_METRICS}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def resolvable_flag(name: str) -> str:
    """The flag a site sends next to ``name`` saying whether its test set resolves it.

    ``tpr_at_fpr_<x>`` has ``tpr_at_fpr_<x>_resolvable``; the federated gain in it is read on
    the same test set, so it shares that flag.
    """
    return f"{name.removeprefix('federated_gain_')}_resolvable"


def not_resolvable(metrics: Mapping[str, Any], name: str) -> bool:
    """The site flagged ``name`` not resolvable (`_resolvable = 0`): too few benign test names."""
    return metrics.get(resolvable_flag(name)) == 0


def _value(metrics: Mapping[str, Any], name: str) -> float | None:
    """A finite value, or None when missing, NaN or flagged not resolvable by the site."""
    if not_resolvable(metrics, name):
        return None
    return _number(metrics.get(name))


def _sent_or_flagged(metrics: Mapping[str, Any], name: str) -> bool:
    """Sent, or absent only because the site flagged it not resolvable (NaN is never sent)."""
    return name in metrics or not_resolvable(metrics, name)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _summary(
    config: Mapping[str, Any], rounds: list[dict[str, Any]], sites_seen: list[str]
) -> dict[str, Any]:
    statuses = [_round_status(entry) for entry in rounds]
    modes = [entry["train"].get("mode") for entry in rounds if entry["train"].get("mode")]
    return {
        "mode": config.get("mode") or (modes[-1] if modes else None),
        "rounds_recorded": len(rounds),
        "rounds_configured": config.get("num-rounds"),
        "sites_seen": sites_seen,
        "seconds": _seconds(rounds),
        "train_failures": sum(row["train_failures"] for row in statuses),
        "evaluate_failures": sum(row["evaluate_failures"] for row in statuses),
        "halted_rounds": [row["round"] for row in statuses if row["status"] == "halted"],
        "no_result_rounds": [row["round"] for row in statuses if row["status"] == "no-results"],
        "failed_rounds": [row["round"] for row in statuses if row["status"] == "failed"],
        "rounds": statuses,
    }


def _round_status(entry: dict[str, Any]) -> dict[str, Any]:
    train, aggregate = entry["train"], entry["aggregate"]
    train_reasons = [str(reason) for reason in train.get("failure_reasons") or []]
    evaluate_reasons = [str(reason) for reason in aggregate.get("failure_reasons") or []]
    return {
        "round": entry["round"],
        "status": train.get("status") or "unknown",
        "train_results": int(_number(train.get("results")) or 0),
        "train_failures": int(_number(train.get("failures")) or len(train_reasons)),
        "evaluate_sites": len(entry["sites"]),
        "evaluate_failures": int(_number(aggregate.get("failures")) or len(evaluate_reasons)),
        "failure_reasons": [*train_reasons, *evaluate_reasons],
        "mean_delta_norm": _number(train.get("mean_delta_norm")),
        "seconds": {phase: _number(entry["seconds"].get(phase)) for phase in PHASES},
    }


def _seconds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Round 1 includes cold starts (imports, data loading), so the mean is over rounds >= 2."""
    per_round = [
        {"round": entry["round"], **{p: _number(entry["seconds"].get(p)) for p in PHASES}}
        for entry in rounds
    ]
    later = [row for row in per_round if row["round"] >= 2]
    first = next((row for row in per_round if row["round"] == 1), None)
    return {
        "per_round": per_round,
        "first_round": {p: first[p] for p in PHASES} if first else None,
        "mean_after_first": {
            p: _mean([row[p] for row in later if row[p] is not None]) for p in PHASES
        },
        "rounds_in_mean": len(later),
    }


def _last_round(rounds: list[dict[str, Any]], sites_seen: list[str]) -> dict[str, Any]:
    """The last round any site evaluated in (a round with no replies has nothing to show)."""
    evaluated = [entry for entry in rounds if entry["sites"]]
    entry = evaluated[-1] if evaluated else {"round": None, "sites": {}}
    sites = entry["sites"]
    names = {name for metrics in sites.values() for name in metrics}
    plain = sorted(name for name in names if not name.startswith(FAMILY_PREFIX))
    headline = [name for name in HEADLINE_METRICS if name in names]
    metrics = headline + [name for name in plain if name not in HEADLINE_METRICS]
    return {
        "round": entry["round"],
        "is_final_round": bool(rounds) and entry["round"] == rounds[-1]["round"],
        "sites": sites,
        "metrics": metrics,
        "directions": {name: metric_direction(name) for name in metrics},
        "no_reply": [site for site in sites_seen if site not in sites],
        # site -> metrics it flagged not resolvable: shown as such, left out of every summary
        "not_resolvable": {
            site: flagged
            for site, m in sites.items()
            if (flagged := [name for name in metrics if not_resolvable(m, name)])
        },
    }


def _spread(name: str, sites: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    direction = metric_direction(name)
    values = {site: v for site, m in sites.items() if (v := _value(m, name)) is not None}
    entry: dict[str, Any] = {
        "direction": direction,
        "worst": None,
        "best": None,
        "spread": {"min": None, "median": None, "max": None, "sites": len(values)},
        "not_shared": [site for site, m in sites.items() if not _sent_or_flagged(m, name)],
        # Includes the not-resolvable sites, which are also listed apart with their values.
        "not_computed": [
            site
            for site, m in sites.items()
            if _sent_or_flagged(m, name) and _value(m, name) is None
        ],
        "not_resolvable": [
            {"site": site, "value": _number(m.get(name))}
            for site, m in sites.items()
            if not_resolvable(m, name)
        ],
    }
    if values:
        # Sites iterate in sorted order, so a tie names the first site alphabetically.
        worst_pick, best_pick = (min, max) if direction == HIGHER else (max, min)
        worst = worst_pick(values, key=values.__getitem__)
        best = best_pick(values, key=values.__getitem__)
        entry["worst"] = {"site": worst, "value": values[worst]}
        entry["best"] = {"site": best, "value": values[best]}
        entry["spread"].update(
            min=min(values.values()),
            median=statistics.median(values.values()),
            max=max(values.values()),
        )
    return entry


def _flags(sites: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"site": site, "metric": name, "value": value, "limit": limit, "why": why}
        for name, limit, why in _FLAGS
        for site, metrics in sites.items()
        if (value := _value(metrics, name)) is not None and value > limit
    ]


def _trends(rounds: list[dict[str, Any]], sites_seen: list[str]) -> dict[str, Any]:
    """Column-oriented: `metrics[name]["mean"][i]` belongs to `rounds[i]`."""
    names = sorted(
        {
            name
            for entry in rounds
            for m in entry["sites"].values()
            for name in m
            if _number(m[name]) is not None and not name.endswith("_resolvable")
        }
    )
    metrics = {}
    for name in names:
        columns: dict[str, list[Any]] = {"mean": [], "min": [], "max": [], "sites": []}
        for entry in rounds:
            values = [v for m in entry["sites"].values() if (v := _value(m, name)) is not None]
            columns["mean"].append(_mean(values))
            columns["min"].append(min(values) if values else None)
            columns["max"].append(max(values) if values else None)
            columns["sites"].append(len(values))
        metrics[name] = columns
    per_site = {name: _per_site_series(rounds, sites_seen, name) for name in HEADLINE_METRICS}
    return {
        "rounds": [entry["round"] for entry in rounds],
        "metrics": metrics,
        "per_site": per_site,
    }


def _per_site_series(
    rounds: list[dict[str, Any]], sites_seen: list[str], name: str
) -> dict[str, list[float | None]]:
    series = {
        site: [_value(entry["sites"].get(site, {}), name) for entry in rounds]
        for site in sites_seen
    }
    return {site: values for site, values in series.items() if any(v is not None for v in values)}


def _family_matrix(sites: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`recall[family][site]`; None where the site has no such test data or did not share."""
    families = sorted(
        {
            name.removeprefix(FAMILY_PREFIX)
            for metrics in sites.values()
            for name in metrics
            if name.startswith(FAMILY_PREFIX)
        }
    )
    return {
        "families": families,
        "sites": list(sites),
        "recall": {
            family: {site: _value(m, FAMILY_PREFIX + family) for site, m in sites.items()}
            for family in families
        },
        "not_shared": [
            site for site, m in sites.items() if not any(n.startswith(FAMILY_PREFIX) for n in m)
        ],
    }


def _federation_level(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Federation-level figures only: the means over the sites at share level `aggregate`.

    Column-oriented like the trends: `metrics[name]["mean"][i]` and `["contributors"][i]`
    belong to `rounds[i]`, the rounds that had such sites. No site's own value is known.
    """
    entries = [entry for entry in rounds if entry["federation_sum"]]
    rows = []
    for entry in entries:
        summed = entry["federation_sum"]
        rows.append(
            {
                "round": entry["round"],
                "status": str(summed.get("status") or "unknown"),
                "sites": int(_number(summed.get("sites")) or 0),
                "results": int(_number(summed.get("results")) or 0),
                "figures": sum(_number(v) is not None for v in entry["federation_means"].values()),
                "seconds": _number(summed.get("seconds")),
                "failure_reasons": [str(reason) for reason in summed.get("failure_reasons") or []],
            }
        )
    seen = {name for entry in entries for name in entry["federation_means"]}
    headline = [name for name in HEADLINE_METRICS if name in seen]
    names = headline + sorted(seen - set(headline))
    metrics = {
        name: {
            "direction": metric_direction(name),
            "mean": [_number(entry["federation_means"].get(name)) for entry in entries],
            "contributors": [
                int(_number(entry["federation_contributors"].get(name)) or 0) for entry in entries
            ],
        }
        for name in names
    }
    later = [row["seconds"] for row in rows if row["round"] >= 2 and row["seconds"] is not None]
    return {
        "min_contributors": MIN_CONTRIBUTORS,
        "rounds": rows,
        "metrics": metrics,
        "mean_seconds_after_first": _mean(later),
    }


PRIVACY_FIELDS = (
    "released",
    "survivors",
    "threshold",
    "effective_noise_multiplier",
    "epsilon_round",
    "epsilon",
    "delta",
)


def _privacy(rounds: list[dict[str, Any]], stop: Any) -> dict[str, Any]:
    """The ε ledger per round and the budget stop; empty without differential privacy."""
    entries = [
        {"round": entry["round"], **{key: entry["privacy"].get(key) for key in PRIVACY_FIELDS}}
        for entry in rounds
        if entry["privacy"]
    ]
    if not entries and not isinstance(stop, Mapping):
        return {}
    return {"rounds": entries, "stop": dict(stop) if isinstance(stop, Mapping) else None}


def _selection(selection: Any) -> dict[str, Any] | None:
    """The round `select-by` chose (server/selection.py), or None when the run deploys the last."""
    if selection is None:
        return None
    if not isinstance(selection, Mapping) or not isinstance(selection.get("round"), int):
        raise ValueError("field `selection`: expected an object with an integer `round`")
    return dict(selection)


def read_results(path: Path) -> dict[str, Any]:
    """Parse a results.json; ValueError naming the file when it is missing or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(
            f"{path}: not found (fix: pass the run directory the coordinator wrote "
            "results.json into, e.g. runs/flwr/<run>)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg} "
            "(fix: let the coordinator rewrite it after the next round, or restore it)"
        ) from None


def write_federation_report(run_dir: Path, *, html: bool = True) -> tuple[Path, Path | None]:
    """Read RUN/results.json; write RUN/report.json and (unless `html` is off) RUN/report.html
    atomically."""
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    results = read_results(results_path)
    try:
        report = build_federation_report(results)
    except ValueError as error:
        raise ValueError(f"{results_path}: {error}") from None
    json_path, html_path = run_dir / "report.json", run_dir / "report.html"
    text = json.dumps(report, indent=2, allow_nan=False)
    write_atomic(json_path, text.encode("utf-8") + b"\n")
    if not html:
        return json_path, None
    write_atomic(html_path, render_federation_html(report).encode("utf-8"))
    return json_path, html_path
