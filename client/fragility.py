"""One site's fragility report for one round: every metric of docs/metrics.md at threshold tau.

The full report (with the top false-positive domains) is written to WORK/fragility/ as JSON and
HTML and never leaves the site; `common.share.share_subset` picks what goes into the reply.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from client.dataset import Examples, SiteData
from client.fragility_html import FpCurve, PlotInputs, render_index, render_report_html
from common import calibration, fragility
from common.config import SiteConfig
from common.families import family_keys
from common.files import write_atomic, write_json
from common.fragility import BudgetPoint, HostDays
from common.metrics import (
    confusion_at_thresholds,
    partial_auc_mcclish,
    roc_auc,
    score_thresholds,
    threshold_for_fpr,
    tpr_at_fpr,
)
from common.protocol import FAMILY_RECALL_PREFIX
from common.share import share_subset

REPORT_DIR = "fragility"
PROBE_STATE_FILE = "probe-state.json"
PROBE_SIZE = 5_000
TOP_FP_COUNT = 20
FPR_TARGETS = {"1e-3": 1e-3, "1e-4": 1e-4, "1e-5": 1e-5}
CURVE_POINTS = 48
NAN = float("nan")
NO_CLIENT_COLUMN = "no client column"
HOSTS_NOT_READ = (
    "not computed: whatever made this report did not read the client hosts (a federated "
    "round and `fedsec evaluate` do)"
)


@dataclass(frozen=True)
class SiteReport:
    metrics: dict[str, float]
    json_path: Path
    html_path: Path | None  # None when the run config turned the HTML off for this round


# --- operating threshold -----------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingChoice:
    """The threshold tau and how it was chosen; ``budget`` is reported in both modes."""

    mode: str  # "budget" | "target_fpr"
    threshold: float
    feasible: bool
    budget: BudgetPoint
    budget_basis: str  # "tp+fp" | "fp_only" (TP volume unknown) | "undefined" (no benign)
    base_rate: float  # nan when unknown
    base_rate_source: str  # "config" | "measured"
    alert_budget_per_day: float


def measured_base_rate(test: Examples) -> float:
    """Share of test-day queries that hit the blocklist (query-weighted); nan without queries."""
    total = float(test.query_counts.sum())
    return float(test.query_counts[test.labels == 1].sum()) / total if total > 0 else NAN


def resolve_base_rate(config: SiteConfig, test: Examples) -> tuple[float, str]:
    """(pi, source); pi is nan when 'measured' finds no (or only) blocklisted queries."""
    configured = config.deployment.base_rate
    if configured == "measured":
        rate, source = measured_base_rate(test), "measured"
    else:
        rate, source = float(configured), "config"
    return (rate if 0.0 < rate < 1.0 else NAN), source


def _budget_point(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    benign_events_per_day: float,
    base_rate: float,
    alert_budget_per_day: float,
) -> tuple[BudgetPoint, str]:
    negatives = int((~labels).sum())
    if negatives == 0:
        return BudgetPoint(NAN, NAN, NAN, NAN, feasible=False), "undefined"
    if negatives < labels.size and math.isfinite(base_rate):
        point = fragility.threshold_at_budget(
            scores=scores,
            labels=labels,
            benign_events_per_day=benign_events_per_day,
            base_rate=base_rate,
            alert_budget_per_day=alert_budget_per_day,
        )
        return point, "tp+fp"
    # TP volume unknown (no test positives, or no base rate): the budget must hold the FPs alone.
    thresholds = score_thresholds(scores)
    fpr = confusion_at_thresholds(scores=scores, labels=labels, thresholds=thresholds).fpr
    index = int(np.argmax(fpr * benign_events_per_day <= alert_budget_per_day))
    point = BudgetPoint(
        threshold=float(thresholds[index]),
        tpr=NAN,
        fpr=float(fpr[index]),
        alerts_per_day=NAN,
        feasible=index < thresholds.size - 1,
    )
    return point, "fp_only"


def choose_operating_point(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    config: SiteConfig,
    base_rate: float,
    base_rate_source: str,
) -> OperatingChoice:
    """tau = the FPR-target threshold if ``operating.target_fpr`` is set, else the budget one."""
    analysts = config.analysts
    budget_per_day = fragility.alert_budget_per_day(
        analysts=analysts.count,
        productive_hours_per_day=analysts.productive_hours_per_day,
        minutes_per_alert=analysts.minutes_per_alert,
    )
    budget, basis = _budget_point(
        scores,
        labels,
        benign_events_per_day=config.deployment.benign_events_per_day,
        base_rate=base_rate,
        alert_budget_per_day=budget_per_day,
    )
    target = config.operating.target_fpr
    if target is None:
        mode, threshold, feasible = "budget", budget.threshold, budget.feasible
    else:
        mode = "target_fpr"
        threshold = threshold_for_fpr(scores=scores, labels=labels, target_fpr=target)
        # Like the budget: infeasible when meeting the target means flagging nothing at all.
        feasible = math.isfinite(threshold) and threshold <= float(scores.max())
    return OperatingChoice(
        mode=mode,
        threshold=threshold,
        feasible=bool(feasible),
        budget=budget,
        budget_basis=basis,
        base_rate=base_rate,
        base_rate_source=base_rate_source,
        alert_budget_per_day=budget_per_day,
    )


# --- metrics -----------------------------------------------------------------------------------


def _defined(function: Callable[..., float], **kwargs: float) -> float:
    """``function(**kwargs)``, or nan when an input is nan (volume checks reject nan inputs)."""
    if any(isinstance(value, float) and math.isnan(value) for value in kwargs.values()):
        return NAN
    return float(function(**kwargs))


def ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC, McClish pAUC at FPR <= 1e-3 and TPR at each FPR target with its resolvability flag."""
    metrics = {
        "auc": roc_auc(scores=scores, labels=labels),
        "pauc_fpr_1e-3": partial_auc_mcclish(scores=scores, labels=labels, max_fpr=1e-3),
    }
    for name, target in FPR_TARGETS.items():
        point = tpr_at_fpr(scores=scores, labels=labels, target_fpr=target)
        metrics[f"tpr_at_fpr_{name}"] = point.tpr
        metrics[f"tpr_at_fpr_{name}_resolvable"] = float(point.resolvable)
    return metrics


def threshold_metrics(
    test: Examples, scores: np.ndarray, *, choice: OperatingChoice, config: SiteConfig
) -> dict[str, float]:
    """Rates, volumes and costs at tau; FPR is per unique benign domain (the CP bound's trials)."""
    volume = config.deployment.benign_events_per_day
    labels = test.labels == 1
    threshold, base_rate = choice.threshold, choice.base_rate
    split = (
        fragility.fpr_query_vs_unique(
            scores=scores, labels=labels, threshold=threshold, query_counts=test.query_counts
        )
        if math.isfinite(threshold)
        else None
    )
    fpr = split.fpr_unique if split else NAN
    flagged_positives = int((scores[labels] >= threshold).sum()) if split else 0
    tpr = flagged_positives / labels.sum() if split and labels.any() else NAN
    fpr_upper = (
        fragility.clopper_pearson_upper(successes=split.fp_domains, trials=split.benign_domains)
        if split
        else NAN
    )
    precision = _defined(fragility.precision_at_base_rate, tpr=tpr, fpr=fpr, base_rate=base_rate)
    alerts = _defined(
        fragility.expected_alerts_per_day,
        tpr=tpr,
        fpr=fpr,
        benign_events_per_day=volume,
        base_rate=base_rate,
    )
    return {
        "tpr": tpr,
        "fpr": fpr,
        "fpr_upper95": fpr_upper,
        "fp_per_day": fpr * volume,
        "fp_per_day_upper95": fpr_upper * volume,
        "fpr_query": split.fpr_query if split else NAN,
        "fpr_unique": fpr,
        "precision_at_base_rate": precision,
        "alerts_per_incident": _defined(fragility.alerts_per_incident, precision=precision),
        "alerts_per_day": alerts,
        "analyst_hours_per_day": _defined(
            fragility.analyst_hours_per_day,
            alerts_per_day=alerts,
            minutes_per_alert=config.analysts.minutes_per_alert,
        ),
        "budget_utilisation": _defined(
            fragility.budget_utilisation,
            alerts_per_day=alerts,
            alert_budget_per_day=choice.alert_budget_per_day,
        ),
    }


def operating_metrics(choice: OperatingChoice) -> dict[str, float]:
    return {
        "threshold": choice.threshold,
        "threshold_feasible": float(choice.feasible),
        "operating_mode_budget": float(choice.mode == "budget"),
        "alert_budget_per_day": choice.alert_budget_per_day,
        "threshold_at_budget": choice.budget.threshold,
        "recall_at_budget": choice.budget.tpr,
    }


def stability_metrics(
    test_scores: np.ndarray, labels: np.ndarray, train_scores: np.ndarray
) -> dict[str, float]:
    return {
        "ece": calibration.expected_calibration_error(scores=test_scores, labels=labels, bins=15),
        "brier": calibration.brier_score_loss(scores=test_scores, labels=labels),
        "psi_score": calibration.population_stability_index(
            expected_scores=train_scores, actual_scores=test_scores
        ),
    }


def shortcut_metrics(test: Examples, *, model_auc: float) -> tuple[dict[str, float], str]:
    """(shortcut_ratio and baseline_auc, name of the best single feature).

    The baseline reads only the test names, so a site computes it once per test set and every
    round reuses it (kept on the frozen Examples' own __dict__; ~70 ms a round otherwise)."""
    cached = test.__dict__.get("_best_single_feature")
    if cached is None:
        cached = fragility.best_single_feature_auc(domains=test.domains, labels=test.labels)
        test.__dict__["_best_single_feature"] = cached
    feature, baseline = cached
    ratio = fragility.shortcut_ratio(baseline_auc=baseline, model_auc=model_auc)
    return {"shortcut_ratio": ratio, "baseline_auc": baseline}, feature


# --- hosts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostView:
    """The test days' host-days (`common.fragility.HostDays`), or why there are none.

    ``host_days`` None with ``reason`` NO_CLIENT_COLUMN when the logs name no client, or
    HOSTS_NOT_READ when the report's producer did not read the hosts at all.
    """

    host_days: HostDays | None
    reason: str | None = None
    test_days: int = 0
    records_without_client: int = 0  # test-day records that name no client: left out


def host_block(view: HostView, metrics: Mapping[str, float], *, config: SiteConfig) -> dict:
    """The report's ``hosts`` section: the host figures beside the per-domain ones, and how
    the observed host-days scale to the site's volume (stays on the site)."""
    beside = ("alerts_per_day", "fpr", "fpr_upper95", "fp_per_day", "fp_per_day_upper95")
    per_domain = {key: metrics.get(key, NAN) for key in beside}
    block: dict = {
        "available": view.host_days is not None,
        "reason": view.reason,
        "definition": "a host alerts on a test day when a name it queried scores >= threshold; "
        "it is a false-positive host when none of its alerting names is blocklisted",
        "per_domain": per_domain,
        "per_host": {key: metrics.get(key, NAN) for key in fragility.HOST_METRICS},
    }
    if view.host_days is None:
        return block
    count, days = len(view.host_days), max(view.test_days, 1)
    threshold = float(metrics.get("threshold", NAN))
    alerting, false_positives = (
        fragility.host_alerts(view.host_days, threshold=threshold)
        if math.isfinite(threshold)
        else (0, 0)
    )
    observed = count / days
    hosts = metrics.get("hosts_per_day", NAN)
    block |= {
        "test_days": view.test_days,
        "observed_hosts_per_day": observed,
        "benign_queries_per_test_day": float(view.host_days.benign_queries.sum()) / days,
        "benign_events_per_day": config.deployment.benign_events_per_day,
        "scale_to_site_volume": hosts / observed if observed > 0 else NAN,
        "alerting_host_days": alerting,
        "false_positive_host_days": false_positives,
        "records_without_client": view.records_without_client,
    }
    return block


# --- families ----------------------------------------------------------------------------------


def family_recall(
    data: SiteData,
    test_scores: np.ndarray,
    *,
    intel_only: Examples,
    intel_only_scores: np.ndarray,
    threshold: float,
) -> tuple[list[dict], dict[str, float]]:
    """Recall per family over test positives plus intel-only names: (table rows, metrics).

    Metric keys name a family only from the fixed public vocabulary (`common.families`); any
    other family string is `local_<k>` there, and only the site's own rows say which is which.
    """
    positives = data.test.labels == 1
    names = np.concatenate([data.test.families[positives], intel_only.families]).astype(str)
    scores = np.concatenate([test_scores[positives], intel_only_scores])
    from_test = np.arange(names.size) < int(positives.sum())
    keys = family_keys([*names.tolist(), *data.train_families])
    unique_names, name_index = np.unique(names, return_inverse=True)
    slugs = np.array([keys[name] for name in unique_names.tolist()], dtype=str)[name_index]
    seen = {keys[name] for name in data.train_families}
    if math.isfinite(threshold):
        recall = fragility.per_family_recall(scores=scores, families=slugs, threshold=threshold)
        unseen = fragility.unseen_family_recall(
            scores=scores, families=slugs, seen_families=seen, threshold=threshold
        )
    else:
        recall, unseen = {str(slug): NAN for slug in np.unique(slugs)}, NAN
    rows = [
        {
            "family": slug,
            "names": sorted(set(names[slugs == slug].tolist())),  # stays on site
            "seen_in_training": slug in seen,
            "test_positives": int((from_test & (slugs == slug)).sum()),
            "intel_only": int((~from_test & (slugs == slug)).sum()),
            "recall": value,
        }
        for slug, value in recall.items()
    ]
    metrics = {f"{FAMILY_RECALL_PREFIX}{slug}": value for slug, value in recall.items()}
    metrics["unseen_family_recall"] = unseen
    metrics["unseen_families"] = float(sum(not row["seen_in_training"] for row in rows))
    return rows, metrics


# --- decision churn on a fixed probe set -------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProbeDecisions:
    """Decisions at tau on the probe set, keyed by a 64-bit hash of each domain (no names kept)."""

    server_round: int
    hashes: np.ndarray  # uint64, ascending
    flagged: np.ndarray  # bool
    false_positive: np.ndarray  # bool

    def to_json(self) -> dict:
        return {
            "hashes": _b64(self.hashes.astype(">u8").tobytes()),
            "flagged": _b64(np.packbits(self.flagged).tobytes()),
            "false_positive": _b64(np.packbits(self.false_positive).tobytes()),
            "size": int(self.hashes.size),
        }

    @classmethod
    def from_json(cls, server_round: int, state: Mapping) -> ProbeDecisions:
        size = int(state["size"])

        def bits(key: str) -> np.ndarray:
            packed = np.frombuffer(base64.b64decode(state[key]), dtype=np.uint8)
            return np.unpackbits(packed, count=size).astype(bool)

        hashes = np.frombuffer(base64.b64decode(state["hashes"]), dtype=">u8").astype(np.uint64)
        if hashes.size != size:
            raise ValueError("probe state: hash count does not match its size")
        return cls(server_round, hashes, bits("flagged"), bits("false_positive"))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def domain_hashes(domains: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash per domain (blake2b), the same in every round and process."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(name).encode(), digest_size=8).digest(), "big")
            for name in domains
        ),
        dtype=np.uint64,
        count=len(domains),
    )


def probe_decisions(
    test: Examples,
    scores: np.ndarray,
    *,
    threshold: float,
    server_round: int,
    size: int = PROBE_SIZE,
) -> ProbeDecisions:
    """The ``size`` test domains with the smallest hashes: the same set every round."""
    hashes = domain_hashes(test.domains)
    chosen = np.argpartition(hashes, size - 1)[:size] if hashes.size > size else hashes.argsort()
    chosen = chosen[np.argsort(hashes[chosen])]
    flagged = scores[chosen] >= threshold
    return ProbeDecisions(
        server_round, hashes[chosen], flagged, flagged & (test.labels[chosen] == 0)
    )


def churn_metrics(previous: ProbeDecisions | None, current: ProbeDecisions) -> dict[str, float]:
    """churn and new_fp_rate over probe domains present in both rounds; nan in the first round."""
    if previous is None:
        return {"churn": NAN, "new_fp_rate": NAN}
    _, before, now = np.intersect1d(previous.hashes, current.hashes, return_indices=True)
    if before.size == 0:
        return {"churn": NAN, "new_fp_rate": NAN}
    return {
        "churn": calibration.decision_churn(
            previous_decisions=previous.flagged[before], current_decisions=current.flagged[now]
        ),
        "new_fp_rate": calibration.new_fp_rate(
            previous_fp_mask=previous.false_positive[before],
            current_fp_mask=current.false_positive[now],
        ),
    }


def load_previous_probe(path: Path, *, server_round: int) -> ProbeDecisions | None:
    """The stored round just before ``server_round``; a missing or unreadable file means none."""
    try:
        rounds = json.loads(path.read_text(encoding="utf-8"))["rounds"]
        earlier = [int(key) for key in rounds if int(key) < server_round]
        if not earlier:
            return None
        latest = max(earlier)
        return ProbeDecisions.from_json(latest, rounds[str(latest)])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_probe(path: Path, current: ProbeDecisions, previous: ProbeDecisions | None) -> None:
    # Rounds after the current one belong to an earlier run in this folder: dropped.
    rounds = {str(current.server_round): current.to_json()}
    if previous is not None:
        rounds[str(previous.server_round)] = previous.to_json()
    write_atomic(path, json.dumps({"version": 1, "rounds": rounds}, sort_keys=True))


# --- what the site looks at: top false positives and the FP/day curve --------------------------


def top_false_positives(
    test: Examples, scores: np.ndarray, *, threshold: float, count: int = TOP_FP_COUNT
) -> dict:
    """The most-queried FPs at tau (then highest score), or the highest-scored benign names."""
    benign = np.flatnonzero(test.labels == 0)
    flagged = benign[scores[benign] >= threshold] if math.isfinite(threshold) else benign[:0]
    if flagged.size:
        kind = "false_positives_at_threshold"
        chosen = flagged[np.lexsort((-scores[flagged], -test.query_counts[flagged]))[:count]]
    else:
        kind = "highest_scored_benign"
        chosen = benign[np.argsort(-scores[benign], kind="stable")[:count]]
    rows = [
        {
            "domain": str(test.domains[i]),
            "score": float(scores[i]),
            "queries": int(test.query_counts[i]),
        }
        for i in chosen
    ]
    return {"kind": kind, "false_positives_at_threshold": int(flagged.size), "rows": rows}


def fp_per_day_curve(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    benign_events_per_day: float,
    points: int = CURVE_POINTS,
) -> FpCurve:
    """FP/day and its Clopper-Pearson upper bound at thresholds flagging ~1..n benign domains."""
    benign = np.sort(scores[~labels])
    if benign.size == 0:
        empty = np.array([])
        return FpCurve(thresholds=empty, fp_per_day=empty, fp_per_day_upper95=empty)
    flagged_counts = np.unique(np.geomspace(1, benign.size, points).astype(np.int64))
    thresholds = np.unique(
        np.append(benign[benign.size - flagged_counts], np.nextafter(benign[-1], np.inf))
    )
    false_positives = benign.size - np.searchsorted(benign, thresholds, side="left")
    upper = [
        fragility.clopper_pearson_upper(successes=int(fp), trials=benign.size)
        for fp in false_positives
    ]
    return FpCurve(
        thresholds=thresholds,
        fp_per_day=false_positives / benign.size * benign_events_per_day,
        fp_per_day_upper95=np.asarray(upper) * benign_events_per_day,
    )


# --- the report --------------------------------------------------------------------------------


def _scores(name: str, values: np.ndarray | None, size: int) -> np.ndarray:
    array = np.asarray(values if values is not None else [], dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(
            f"{name} must hold one score per domain: shape ({size},), got {array.shape}"
        )
    return array


def _merge(metrics: dict[str, float], more: Mapping[str, float] | None, *, source: str) -> None:
    for key, value in (more or {}).items():
        if key in metrics:
            raise ValueError(f"{source} metric {key!r} would overwrite a computed metric")
        metrics[key] = float(value)


def _operating_block(choice: OperatingChoice, config: SiteConfig) -> dict:
    return {
        "mode": choice.mode,
        "threshold": choice.threshold,
        "feasible": choice.feasible,
        "target_fpr": config.operating.target_fpr,
        "base_rate": choice.base_rate,
        "base_rate_source": choice.base_rate_source,
        "benign_events_per_day": config.deployment.benign_events_per_day,
        "alert_budget_per_day": choice.alert_budget_per_day,
        "budget_basis": choice.budget_basis,
        "budget_point": {
            "threshold": choice.budget.threshold,
            "tpr": choice.budget.tpr,
            "fpr": choice.budget.fpr,
            "alerts_per_day": choice.budget.alerts_per_day,
            "feasible": choice.budget.feasible,
        },
    }


@dataclass(frozen=True)
class SiteEvaluation:
    """Every metric of one round and the detail behind it (computed without I/O)."""

    metrics: dict[str, float]
    choice: OperatingChoice
    families: list[dict]
    shortcut_feature: str
    probe: ProbeDecisions | None


def compute_metrics(
    data: SiteData,
    *,
    intel_only: Examples,
    test_scores: np.ndarray,
    train_scores: np.ndarray,
    intel_only_scores: np.ndarray,
    previous_probe: ProbeDecisions | None,
    server_round: int,
    host_days: HostDays | None = None,
) -> SiteEvaluation:
    """Every documented metric at tau, and this round's probe decisions (for next round's churn).

    ``host_days`` None (no client column, or not read) leaves every host figure nan.
    """
    test, config = data.test, data.config
    labels = test.labels == 1
    base_rate, source = resolve_base_rate(config, test)
    choice = choose_operating_point(
        test_scores, labels, config=config, base_rate=base_rate, base_rate_source=source
    )
    metrics: dict[str, float] = {
        "test_domains": float(len(test)),
        "test_positives": float(labels.sum()),
        "test_queries": float(test.query_counts.sum()),
    }
    metrics |= ranking_metrics(test_scores, labels)
    metrics |= operating_metrics(choice)
    metrics |= threshold_metrics(test, test_scores, choice=choice, config=config)
    metrics |= fragility.host_metrics(
        host_days,
        threshold=choice.threshold,
        benign_events_per_day=config.deployment.benign_events_per_day,
    )
    metrics |= stability_metrics(test_scores, labels, train_scores)
    shortcut, feature = shortcut_metrics(test, model_auc=metrics["auc"])
    metrics |= shortcut
    families, family_metrics = family_recall(
        data,
        test_scores,
        intel_only=intel_only,
        intel_only_scores=intel_only_scores,
        threshold=choice.threshold,
    )
    metrics |= family_metrics
    probe = None
    if math.isfinite(choice.threshold) and len(test):
        probe = probe_decisions(
            test, test_scores, threshold=choice.threshold, server_round=server_round
        )
        metrics |= churn_metrics(previous_probe, probe)
    else:
        metrics |= {"churn": NAN, "new_fp_rate": NAN}
    return SiteEvaluation(
        metrics=metrics, choice=choice, families=families, shortcut_feature=feature, probe=probe
    )


def site_fragility_report(
    *,
    data: SiteData,
    intel_only: Examples | None,
    test_scores: np.ndarray,
    train_scores: np.ndarray,
    intel_only_scores: np.ndarray | None,
    server_round: int,
    work_dir: Path,
    dqa: dict[str, float] | None = None,
    extra: dict[str, float] | None = None,
    html: bool = True,
    evaluation: Mapping[str, object] | None = None,
    hosts: HostView | None = None,
) -> SiteReport:
    """Compute every fragility metric for this round and write WORK/fragility/round-NNN.{json,html}.

    ``test_scores`` align with ``data.test``; ``intel_only`` holds blocklisted names absent from
    the logs (scored by ``intel_only_scores``); ``dqa`` and ``extra`` are merged as given.
    ``html=False`` writes the JSON report only: the plots are most of a report's cost, which
    matters when one machine simulates hundreds of sites. ``evaluation`` becomes the report's
    ``evaluation`` field: its ``kind`` says what produced the report (default: a federated
    round on the test days held in memory; `fedsec evaluate` passes "full, streamed" and notes).
    ``hosts`` holds the test days' host-days; None means they were not read (HOSTS_NOT_READ).
    """
    started = time.perf_counter()
    test, config = data.test, data.config
    hosts = hosts or HostView(host_days=None, reason=HOSTS_NOT_READ)
    test_scores = _scores("test_scores", test_scores, len(test))
    train_scores = np.asarray(train_scores, dtype=np.float64).ravel()
    if intel_only is None:
        intel_only, intel_only_scores = _no_examples(), None
    intel_only_scores = _scores("intel_only_scores", intel_only_scores, len(intel_only))
    report_dir = Path(work_dir) / REPORT_DIR
    probe_path = report_dir / PROBE_STATE_FILE
    previous = load_previous_probe(probe_path, server_round=server_round)
    computed = compute_metrics(
        data,
        intel_only=intel_only,
        test_scores=test_scores,
        train_scores=train_scores,
        intel_only_scores=intel_only_scores,
        previous_probe=previous,
        server_round=server_round,
        host_days=hosts.host_days,
    )
    metrics, choice = computed.metrics, computed.choice
    _merge(metrics, dqa, source="data-quality")
    _merge(metrics, extra, source="extra")
    metrics = {key: float(value) for key, value in metrics.items()}
    report = {
        "schema": "fedsec.site-fragility/1",
        "site_id": data.site_id,
        "round": int(server_round),
        "evaluation": (
            dict(evaluation) if evaluation else {"kind": "federated round, test days in memory"}
        ),
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_days": list(data.train_days),
        "test_days": list(data.test_days),
        "operating_point": _operating_block(choice, config),
        "metrics": metrics,
        "shortcut": {"feature": computed.shortcut_feature, "baseline_auc": metrics["baseline_auc"]},
        "families": computed.families,
        "top_false_positives": top_false_positives(test, test_scores, threshold=choice.threshold),
        "hosts": host_block(hosts, metrics, config=config),
        "data_quality": dict(dqa or {}),
        "extra": dict(extra or {}),
        "probe": {
            "size": int(computed.probe.hashes.size) if computed.probe else 0,
            "compared_with_round": previous.server_round if previous else None,
        },
        "share": {
            "level": config.share.level,
            "sent": share_subset(metrics, level=config.share.level),
        },
    }
    page = None
    if html:
        plots = PlotInputs(
            test_scores=test_scores,
            test_labels=test.labels == 1,
            intel_only_scores=intel_only_scores,
            fp_curve=fp_per_day_curve(
                test_scores,
                test.labels == 1,
                benign_events_per_day=config.deployment.benign_events_per_day,
            ),
        )
        page = render_report_html(report, plots)
    report["compute_seconds"] = round(time.perf_counter() - started, 3)
    return _write_report(
        report, page, report_dir=report_dir, probe=computed.probe, previous=previous
    )


def _write_report(
    report: dict,
    page: str | None,
    *,
    report_dir: Path,
    probe: ProbeDecisions | None,
    previous: ProbeDecisions | None,
) -> SiteReport:
    json_path = report_dir / f"round-{report['round']:03d}.json"
    html_path = json_path.with_suffix(".html")
    write_json(json_path, report, indent=1)
    if page is None:
        html_path.unlink(missing_ok=True)  # a resumed round must not keep an older model's page
        html_path = None
    else:
        write_atomic(html_path, page)
    if probe is not None:
        save_probe(report_dir / PROBE_STATE_FILE, probe, previous)
    write_atomic(report_dir / "index.html", render_index(_index_rows(report_dir)))
    return SiteReport(metrics=report["metrics"], json_path=json_path, html_path=html_path)


def _index_rows(report_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(report_dir.glob("round-*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            metrics = {
                key: (NAN if value is None else value) for key, value in report["metrics"].items()
            }
            html = path.with_suffix(".html")
            rows.append(
                {
                    "round": int(report["round"]),
                    "metrics": metrics,
                    "json": path.name,
                    "html": html.name if html.exists() else None,
                }
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a report from another version or a half-copied file: not listed
    return sorted(rows, key=lambda row: row["round"])


def _no_examples() -> Examples:
    empty = np.array([], dtype=object)
    return Examples(
        domains=empty,
        labels=np.array([], dtype=np.int8),
        families=empty,
        query_counts=np.array([], dtype=np.int64),
        registered=empty,
    )
