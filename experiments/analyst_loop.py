"""The analyst's loop, measured: the same federation with and without analysts' verdicts fed back.

    fedsec experiment analyst-loop [--full | --tiny] [--out ROOT]
    python -m experiments.analyst_loop [--full | --tiny] [--out ROOT] [--real-dev DIR]

Two arms train on copies of the same generated sites with the same seeds and rounds, over
fedsec's real ServerApp and ClientApp (`experiments.inprocess.LocalGrid`, one process, no Ray);
a third (default and full sizes) repeats the arm without the loop under another federation
seed, so each with-minus-without difference stands beside the difference chance alone makes.
In the loop arm, after every round but the last, each site's simulated analyst:

1. scores one of the site's *training* days (a different one each round, newest first,
   cycling, so the list does not run dry after round 1; never the test day) with the round's
   global model and the site's local allowlist, through `fedsec score`'s own code
   (`client.scoring.score_logs`, with `client.verdicts.local_allowlist` as `fedsec score --site`
   passes it);
2. works down that ranked list (host groups when the scorer writes them, else alerts), skipping
   what an earlier verdict already covered, until the site's alert budget for one day is spent
   (`[analysts]` count x productive_hours_per_day x 60 / minutes_per_alert);
3. judges each from the generator's ground truth (truth.csv) and appends the verdicts to the
   site's own verdict file with `client.verdicts.append_verdict`.

The next round's training reads that file (`client.pipeline`); the harness checks after every
review that the prepared training labels carry the verdicts and stops with an error when they
do not, rather than silently measuring two identical arms.

The headline is the operational queue, measured as the site lives it: after every round, in
every arm and before that round's review, each site scores *all* of its test day's logs
(never judged by the analyst) as `fedsec score --site` would that morning: the round's global
model, the site's local allowlist (empty without the loop), cut at the site's operating
threshold as `client.scoring.resolve_threshold` resolves it (the round's fragility report) and
at the analyst's fixed cut. Each alert is labelled by the truth; per site, arm and round the
results hold alerts, false-positive and true alerts, the false positives inside the one-day
budget queue (the analyst's ranking until the budget is spent), the queue's precision, the
hours to clear all alerts and how many alerts the allowlist removed (`summary.allowlisted`),
so the with-minus-without drop splits into the allowlist's part (recurring names judged
before) and the model's. Unlike the held-out evaluation set, the test day holds the site's
recurring names. The held-out figures, read from the site's own fragility report
(`WORK/fragility/round-NNN.json`) as the site computed it, are the table's second section.
With `--real-dev DIR` (benign.csv.gz and dga.csv.gz, as experiments.lowfpr reads) the sites
are built from real names and the names' own labels answer; results go to `NAME-real-dev`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments import lab
from experiments.lab import Column, Results

NAME = "analyst-loop"
TITLE = "The analyst's loop: verdicts fed back into training, with vs without, per site"
COMMAND = "fedsec experiment analyst-loop [--full]"
REAL_COMMAND = "python -m experiments.analyst_loop --real-dev DIR [--full]"
log = logging.getLogger("fedsec.experiments")

ARMS = ("without", "with")
NOISE_ARM = "reseeded"
"""Without the loop, federation seed SEED + 1 (same sites): how far two runs differ by chance."""
ARM_LABELS = {
    "without": "without the loop",
    "with": "with the loop",
    NOISE_ARM: "without, other seed",
}
SEED = 0
ANALYST = "simulated-analyst"
TRIAGE_THRESHOLD = 0.5
"""Where the analyst's scored list is cut before the budget is applied (`fedsec score`'s
default). The logs are a sample of a site's day, so the site's operating threshold, sized for
the full volume, would leave far fewer alerts in them than a real day's queue holds."""
METRIC_KEYS = (
    "fp_per_day",
    "fp_per_day_upper95",
    "recall_at_budget",
    "analyst_hours_per_day",
    "alerts_per_day",
    "alert_budget_per_day",
    "threshold",
    "threshold_feasible",
    "fpr",
    "fpr_upper95",
    "tpr_at_fpr_1e-3",
    "auc",
    "test_domains",
    "test_positives",
)
"""What each row takes from the site's fragility report of the round (docs/metrics.md)."""


@dataclass(frozen=True)
class Size:
    sites: int
    days: int
    scale: float
    rounds: int
    local_steps: int
    mode: str = "secagg"
    noise_arm: bool = True  # also run NOISE_ARM, the seed-to-seed yardstick

    @property
    def arms(self) -> tuple[str, ...]:
        return (*ARMS, NOISE_ARM) if self.noise_arm else ARMS


SIZES = {
    "tiny": Size(
        sites=2, days=2, scale=0.1, rounds=2, local_steps=8, mode="fedavg", noise_arm=False
    ),
    "default": Size(sites=4, days=4, scale=0.5, rounds=5, local_steps=40),
    "full": Size(sites=8, days=6, scale=1.0, rounds=10, local_steps=60),
}


class FeedbackMissing(RuntimeError):
    """The loop arm's verdicts did not reach the next round's training labels."""


class _Abort(BaseException):
    """Stops the federation from inside a ClientApp call (LocalGrid turns an Exception into an
    error reply and the run would go on, measuring nothing); the cause is re-raised after."""


# --- ground truth ------------------------------------------------------------------------------


def read_truth(path: Path) -> dict[str, str]:
    """Normalised name -> generator family ('' = benign), from `fedsec generate`'s truth.csv.

    Names are normalised as the logs' names are (case, trailing dot); a name logged in two
    spellings with different labels keeps its DGA family."""
    import pyarrow.csv as pacsv

    from client.domains import normalise_domain_array

    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={"domain": "string", "label": "string", "family": "string"}
        ),
    )
    names, _ = normalise_domain_array(table["domain"])
    truth: dict[str, str] = {}
    for name, label, family in zip(
        names.to_pylist(), table["label"].to_pylist(), table["family"].to_pylist(), strict=True
    ):
        if name is None:
            continue
        family = (family or "unknown") if label == "dga" else ""
        if family or name not in truth:
            truth[name] = family
    return truth


# --- the simulated analyst ---------------------------------------------------------------------


@dataclass
class Review:
    """One analyst day at one site: what was scored, reviewed and judged."""

    site: str
    round: int
    day: str
    threshold: float
    alerts: int = 0  # alerting names on the day
    units: str = "alerts"  # "hosts" when host groups were judged
    available: int = 0  # alerts or host groups not yet covered by a verdict
    reviewed: int = 0  # alerts or host groups judged (at most the budget)
    budget: int = 0
    malicious: int = 0  # names judged malicious
    benign: int = 0
    unsure: int = 0  # names the truth does not know
    hours: float = 0.0  # reviewed x minutes_per_alert / 60 (within the budget by construction)


def training_day_files(site: Any, server_round: int = 1) -> tuple[str, list[Path]]:
    """(the training day the round's analyst reviews, its log files): newest first, cycling.

    Each round's analyst reviews another training day (round 1 the newest), as a site's
    analysts face a new day's queue each day; reviewing one day over and over would run the
    list dry after round 1. The test day's files are refused, so nothing the round's figures
    are measured on is ever judged."""
    data = site.require_data()
    days = list(data.train_days)
    day = days[-1 - (server_round - 1) % len(days)]
    return day, _files_of_day(site, day, others=data.test_days, role="training")


def queue_day_files(site: Any) -> tuple[str, list[Path]]:
    """(the site's test day, its log files): the day the operational queue is measured on,
    which no analyst ever reviews (the last test day when there are several)."""
    data = site.require_data()
    day = data.test_days[-1]
    return day, _files_of_day(site, day, others=data.train_days, role="test")


def _files_of_day(site: Any, day: str, *, others: Sequence[str], role: str) -> list[Path]:
    """The log files named after `day` and no day of `others` (one file per day, as the
    generator writes), so a training day's review never reads the test day, nor the reverse."""
    from client.pipeline import log_files

    files = [path for path in log_files(site.site_dir, site.config) if day in path.name]
    if not files or any(other in path.name for path in files for other in others):
        raise RuntimeError(
            f"{site.site_dir}: no log file named after {role} day {day} alone (fix: the "
            "analyst-loop experiment needs one log file per day, as fedsec generate writes)"
        )
    return files


def ranked_units(
    alerts_path: Path, alerts: list[dict], *, by_host: bool = True
) -> tuple[str, list[tuple[str, list[str]]]]:
    """("hosts" | "alerts", [(target, names)]) in rank order: the scorer's host groups when it
    wrote them (client.triage, issue 16) and `by_host`, else one unit per alerting name."""
    try:
        from client.triage import hosts_path, read_host_groups
    except ImportError:
        hosts_path = None
    if by_host and hosts_path is not None and hosts_path(alerts_path).is_file():
        groups = read_host_groups(hosts_path(alerts_path))
        if groups and groups[0].get("host") is not None:
            return "hosts", [(str(group["host"]), list(group["names"])) for group in groups]
    return "alerts", [(str(alert["domain"]), [str(alert["domain"])]) for alert in alerts]


def judge(names: Sequence[str], truth: dict[str, str]) -> dict[str, list[str]]:
    """The truth's answer per name: malicious (a DGA name), benign, or unsure (unknown name)."""
    verdicts: dict[str, list[str]] = {"malicious": [], "benign": [], "unsure": []}
    for name in names:
        family = truth.get(name)
        verdicts["unsure" if family is None else "malicious" if family else "benign"].append(name)
    return verdicts


@dataclass
class SiteAnalyst:
    """The analysts of one site, answering from the generator's truth within their budget."""

    site_dir: Path
    truth: dict[str, str]
    work: Path
    by_host: bool = True  # judge host groups (False: one alert at a time)
    reviews: list[Review] = field(default_factory=list)

    def review(self, model: Any, server_round: int) -> Review:
        """Score the latest training day, judge the top of the list, append the verdicts."""
        from client.pipeline import load_site
        from client.verdicts import append_verdict, read_verdicts, verdicts_path

        site = load_site(self.site_dir)
        day, files = training_day_files(site, server_round)
        out = self.work / site.site_id / f"round-{server_round:03d}" / "alerts.jsonl"
        summary, alerts = score_day(
            site,
            files,
            model,
            out,
            threshold=TRIAGE_THRESHOLD,
            allowlist=site_allowlist(self.site_dir),
        )
        analysts = site.config.analysts
        budget = daily_budget(site)
        path = verdicts_path(self.site_dir)
        judged = set(read_verdicts(path).latest_by_name())
        units, ranked = ranked_units(out, alerts, by_host=self.by_host)
        result = Review(
            site=site.site_id,
            round=server_round,
            day=day,
            threshold=TRIAGE_THRESHOLD,
            alerts=summary.alerts,
            units=units,
            available=sum(1 for _, names in ranked if set(names) - judged),
            budget=budget,
        )
        for target, names in ranked:
            if result.reviewed >= budget:
                break
            # A name judged earlier (or under another host today) is shown as judged: skipped.
            fresh = [name for name in names if name not in judged]
            if not fresh:
                continue
            judged.update(fresh)
            for verdict, covered in judge(fresh, self.truth).items():
                for entry in _verdicts(units, target, verdict, covered, server_round, day):
                    append_verdict(path, entry)
                setattr(result, verdict, getattr(result, verdict) + len(covered))
            result.reviewed += 1
        result.hours = result.reviewed * analysts.minutes_per_alert / 60.0
        self.reviews.append(result)
        return result


def _verdicts(
    units: str, target: str, verdict: str, names: list[str], server_round: int, day: str
) -> list[Any]:
    """The verdict lines for one judged alert or host group (a host's names split by answer)."""
    from client.verdicts import MAX_NAMES, make_verdict

    if not names:
        return []
    why = f"simulated from the generator's truth, round {server_round}, day {day}"
    if units == "alerts":
        return [
            make_verdict(analyst=ANALYST, subject="domain", target=name, verdict=verdict, why=why)
            for name in names
        ]
    return [
        make_verdict(
            analyst=ANALYST,
            subject="host",
            target=target,
            verdict=verdict,
            names=names[start : start + MAX_NAMES],
            why=why,
        )
        for start in range(0, len(names), MAX_NAMES)
    ]


def daily_budget(site: Any) -> int:
    """Alerts (or host groups) the site's analysts clear in one day ([analysts] in site.toml)."""
    from common.fragility import alert_budget_per_day

    analysts = site.config.analysts
    return int(
        alert_budget_per_day(
            analysts=analysts.count,
            productive_hours_per_day=analysts.productive_hours_per_day,
            minutes_per_alert=analysts.minutes_per_alert,
        )
    )


def site_allowlist(site_dir: Path) -> frozenset[str]:
    """The site's local allowlist, read as `fedsec score --site` reads it (names whose latest
    verdict is benign; empty without a verdict file, as in the arms without the loop)."""
    from client.verdicts import local_allowlist

    return local_allowlist(site_dir)


def score_day(
    site: Any,
    files: list[Path],
    model: Any,
    out: Path,
    *,
    threshold: float,
    allowlist: frozenset[str],
) -> tuple[Any, list[dict]]:
    """Some of a site's log files scored as `fedsec score --site` scores them (its format,
    columns and local allowlist), and the alerts read back through the product's reader."""
    from client.scoring import score_logs
    from client.triage import read_alerts

    out.parent.mkdir(parents=True, exist_ok=True)
    summary = score_logs(
        model,
        files,
        out=out,
        threshold=threshold,
        quarantine_dir=out.parent / "quarantine",
        log_format=site.config.logs.format,
        mapping=site.config.logs.columns,
        allowlist=allowlist,
    )
    return summary, read_alerts(out)


# --- the operational queue on the test day ----------------------------------------------------

QUEUE_POINTS = {"op": "the site's operating threshold", "fixed": f"score {TRIAGE_THRESHOLD:g}"}
"""Where the test day's alerts are cut: the site's own operating threshold, as `fedsec score
--site` resolves it (the round's fragility report), and the analyst's fixed cut."""
QUEUE_KEYS = (
    "threshold",
    "alerts",
    "fp_alerts",
    "true_alerts",
    "unknown_alerts",
    "queue_alerts",
    "queue_fp_alerts",
    "queue_precision",
    "clear_hours",
    "allowlisted",
)
"""Per point, each row's `test_<point>_<key>` (see QueueMeter.measure)."""


def queue_key(point: str, key: str) -> str:
    return f"test_{point}_{key}"


@dataclass
class QueueMeter:
    """The site's operational queue on its test day, round by round, in every arm: what its
    analysts would face the next morning running `fedsec score --site` on that day's logs."""

    site_dir: Path
    truth: dict[str, str]
    work: Path
    by_host: bool = True
    rounds: dict[int, dict[str, Any]] = field(default_factory=dict)

    def measure(self, model: Any, server_round: int) -> dict[str, Any]:
        """Score every name of the test day with the round's model and the site's allowlist,
        at both cut points; label the alerts by the truth and fill the one-day budget queue.

        Called once the site has evaluated the round (its fragility report, hence its
        operating threshold, is the round's) and before that round's review, so the
        allowlist holds exactly the verdicts the round's model trained on."""
        from client.pipeline import load_site
        from client.scoring import resolve_threshold

        site = load_site(self.site_dir)
        day, files = queue_day_files(site)
        allowlist = site_allowlist(self.site_dir)
        tau, source = resolve_threshold(threshold=None, site_dir=self.site_dir)
        report = f"round-{server_round:03d}.json"
        if Path(source).name != report:
            raise RuntimeError(
                f"{self.site_dir}: the operating threshold came from {source}, not the round's "
                f"fragility report {report} (fix: the site must write it when it evaluates)"
            )
        figures: dict[str, Any] = {"test_day": day, "allowlist_names": len(allowlist)}
        for point, threshold in (("op", tau), ("fixed", TRIAGE_THRESHOLD)):
            out = self.work / site.site_id / f"round-{server_round:03d}" / point / "alerts.jsonl"
            queue = self._queue(site, files, model, out, threshold, allowlist)
            figures.update({queue_key(point, key): queue[key] for key in QUEUE_KEYS})
        self.rounds[server_round] = figures
        return figures

    def _queue(
        self,
        site: Any,
        files: list[Path],
        model: Any,
        out: Path,
        threshold: float,
        allowlist: frozenset[str],
    ) -> dict[str, float]:
        summary, alerts = score_day(
            site, files, model, out, threshold=threshold, allowlist=allowlist
        )
        _, ranked = ranked_units(out, alerts, by_host=self.by_host)
        queue: dict[str, None] = {}
        for _, names in ranked[: daily_budget(site)]:
            queue.update(dict.fromkeys(names))
        answers = judge([str(alert["domain"]) for alert in alerts], self.truth)
        in_queue = judge(list(queue), self.truth)
        queued = len(in_queue["malicious"]) + len(in_queue["benign"])
        return {
            "threshold": threshold,
            "alerts": summary.alerts,
            "fp_alerts": len(answers["benign"]),
            "true_alerts": len(answers["malicious"]),
            "unknown_alerts": len(answers["unsure"]),
            "queue_alerts": len(queue),
            "queue_fp_alerts": len(in_queue["benign"]),
            "queue_precision": len(in_queue["malicious"]) / queued if queued else math.nan,
            "clear_hours": summary.alerts * site.config.analysts.minutes_per_alert / 60.0,
            "allowlisted": summary.allowlisted,
        }


# --- did the verdicts reach training? ----------------------------------------------------------


def feedback_check(site_dir: Path) -> dict[str, int]:
    """How the site's next prepared training set carries its verdicts; FeedbackMissing if not.

    Prepares the site through `client.pipeline.load_site` (the cache the ClientApp reads next
    round). Names whose verdict contradicts the intel label (a DGA name the blocklist missed,
    a benign name it lists) must carry the verdict's label in training; every verdict must be
    counted in the data-quality figures when the pipeline reports them."""
    from client.pipeline import load_site
    from client.verdicts import read_verdicts, verdicts_path

    labels = read_verdicts(verdicts_path(site_dir)).labels()
    site = load_site(site_dir)
    data = site.require_data()
    train = dict(zip(data.train.domains.tolist(), data.train.labels.tolist(), strict=True))
    intel = _intel_labels(site, labels)
    wanted = {name: int(verdict == "malicious") for name, verdict in labels.items()}
    in_train = [name for name in wanted if name in train]
    contradicting = [name for name in in_train if intel[name] != wanted[name]]
    carried = [name for name in in_train if train[name] == wanted[name]]
    dqa = site.quality.report.verdicts
    figures = {
        "verdict_names": len(wanted),
        "in_train": len(in_train),
        "train_label_is_verdict": len(carried),
        "relabelled_in_train": len(contradicting),
        "relabelled_carried": sum(train[name] == wanted[name] for name in contradicting),
        "dqa_trained": -1 if dqa is None else dqa.trained,
        "dqa_withheld": -1 if dqa is None else dqa.withheld,
    }
    if wanted and (dqa is None or dqa.malicious + dqa.benign != len(wanted)):
        raise FeedbackMissing(
            f"{site_dir}: the data-quality report does not count the {len(wanted)} judged "
            "names (fix: client/pipeline.py must report the verdicts it read, issue 16 item 4)"
        )
    if wanted and not in_train:
        raise FeedbackMissing(
            f"{site_dir}: none of the {len(wanted)} judged names is in the next round's "
            "training set (fix: client/pipeline.py must read the verdict file into training)"
        )
    if figures["relabelled_carried"] < len(contradicting):
        raise FeedbackMissing(
            f"{site_dir}: {len(contradicting) - figures['relabelled_carried']} of "
            f"{len(contradicting)} judged names that contradict the intel keep the intel's "
            "label in the next round's training set (fix: client/pipeline.py must let a "
            "verdict override the intel, issue 16 item 4)"
        )
    return figures


def _intel_labels(site: Any, names: dict[str, str]) -> dict[str, int]:
    """1 where the site's intel alone would label the name DGA, else 0."""
    from client.domains import registered_domain
    from client.quarantine import Quarantine
    from client.site import load_intel

    with tempfile.TemporaryDirectory() as scratch, Quarantine(Path(scratch)) as quarantine:
        intel = load_intel(site.site_dir, site.config, quarantine=quarantine)
    return {name: int(intel.lookup(name, registered_domain(name))[0] == "dga") for name in names}


# --- one arm -----------------------------------------------------------------------------------


class AnalystClientApp:
    """fedsec's ClientApp, then the site's analyst once the site has evaluated a round."""

    def __init__(self, app: Any, on_evaluated: Callable[[Any, Any], None] | None) -> None:
        self.app = app
        self.on_evaluated = on_evaluated
        self.failure: BaseException | None = None

    def __call__(self, *, message: Any, context: Any) -> Any:
        from flwr.common import MessageType

        reply = self.app(message=message, context=context)
        if (
            self.on_evaluated is not None
            and message.metadata.message_type == MessageType.EVALUATE
            and not reply.has_error()
        ):
            try:
                self.on_evaluated(message, context)
            except Exception as error:  # noqa: BLE001 - kept and re-raised after the run
                self.failure = error
                raise _Abort from error
        return reply


def run_arm(
    data_dir: Path,
    out_dir: Path,
    shape: Size,
    *,
    meters: dict[Path, QueueMeter],
    analysts: dict[Path, SiteAnalyst] | None,
    seed: int = SEED,
):
    """One federation over `data_dir`: after every round each site's meter measures its
    test-day queue; with `analysts`, each then reviews, after every round but the last.
    Returns the feedback checks per (site, round)."""
    from flwr.app import Context, RecordDict
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    import client.app
    import server.app
    from client.local import SPEC
    from common import weights
    from common.model import array_shapes, ndarrays_to_model
    from common.protocol import SERVER_ROUND
    from experiments.inprocess import LocalGrid
    from experiments.simulate import quiet_frameworks, run_settings

    overrides = {
        "num-rounds": shape.rounds,
        "local-steps": shape.local_steps,
        "seed": seed,
        "mode": shape.mode,
        "site-html": "off",
        "report-html": False,
    }
    settings = run_settings(data_dir=data_dir, out_dir=out_dir, overrides=overrides)
    checks: dict[tuple[str, int], dict[str, int]] = {}

    def on_evaluated(message: Any, context: Any) -> None:
        ins = compat.recorddict_to_evaluateins(message.content, keep_input=True)
        server_round = int(ins.config.get(SERVER_ROUND, 0))
        site_dir = client.app.site_location(context)[0].resolve()
        received = parameters_to_ndarrays(ins.parameters)  # packed in one vector on the wire
        arrays = weights.unpack(received, layout=array_shapes(SPEC))
        model = ndarrays_to_model(arrays, spec=SPEC)
        meters[site_dir].measure(model, server_round)
        if analysts is None or server_round >= shape.rounds:
            return
        review = analysts[site_dir].review(model, server_round)
        checks[(review.site, server_round)] = feedback_check(site_dir)
        log.info(
            "round %d %s: analyst judged %d of %d %s (%d malicious, %d benign names)",
            server_round,
            review.site,
            review.reviewed,
            review.available,
            review.units,
            review.malicious,
            review.benign,
        )

    quiet_frameworks()
    run_config = settings.to_run_config()
    wrapped = AnalystClientApp(client.app.app, on_evaluated)
    grid = LocalGrid(client_app=wrapped, num_nodes=settings.min_nodes, run_config=run_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = Context(
        run_id=grid.run_id, node_id=0, node_config={}, state=RecordDict(), run_config=run_config
    )
    with contextlib.suppress(_Abort):
        server.app.app(grid, context)
    if wrapped.failure is not None:
        raise wrapped.failure
    return checks


def round_metrics(site_dir: Path, server_round: int) -> dict[str, Any]:
    """The site's own figures for the round, from its fragility report (docs/metrics.md)."""
    import json

    path = site_dir / "work" / "fragility" / f"round-{server_round:03d}.json"
    if not path.is_file():
        raise RuntimeError(f"{path}: missing; the site did not evaluate round {server_round}")
    metrics = json.loads(path.read_text(encoding="utf-8"))["metrics"]
    return {key: _number(metrics.get(key)) for key in METRIC_KEYS}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


EQUAL_TPRS = (0.5, 0.9)
"""Where the supplementary FP/day is read: the FPR at the highest threshold that still catches
this share of the test DGA names, x the site's volume (as experiments.value does)."""


def equal_tpr_figures(
    data_dir: Path, run_dir: Path, rounds: int, truth: dict[str, str]
) -> dict[tuple[str, int], dict[str, float]]:
    """(site, round) -> FP/day at equal TPR, against the intel's test labels (those of the
    fragility report) and against the generator's truth (the intel misses some DGA names).

    The budget threshold puts FP/day at 0 whenever no benign test name can be flagged within
    the budget, whatever the model; a fixed recall shows whether benign names moved down."""
    from client.local import SPEC
    from client.pipeline import load_site
    from common.model import ndarrays_to_model
    from common.training import predict_scores
    from experiments.value import fpr_at_tpr
    from server.checkpoints import CheckpointStore

    store = CheckpointStore(run_dir / "checkpoints", spec=SPEC)
    models = {r: ndarrays_to_model(store.load(r), spec=SPEC) for r in range(1, rounds + 1)}
    figures: dict[tuple[str, int], dict[str, float]] = {}
    for site_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        site = load_site(site_dir)
        data = site.require_data()
        volume = data.config.deployment.benign_events_per_day
        intel_labels = data.test.labels == 1
        truth_labels = np.array([bool(truth.get(name)) for name in data.test.domains], bool)
        encoded = site.encoded(SPEC).test
        for server_round, model in models.items():
            scores = predict_scores(model, domains=encoded)
            entry = {}
            for target in EQUAL_TPRS:
                for prefix, labels in (("", intel_labels), ("truth_", truth_labels)):
                    fpr = fpr_at_tpr(scores=scores, labels=labels, target_tpr=target)
                    entry[f"{prefix}fp_per_day_at_tpr_{target}"] = fpr * volume
            figures[(site.site_id, server_round)] = entry
    return figures


# --- the run -----------------------------------------------------------------------------------


def run(
    *,
    size: str,
    root: Path = lab.RESULTS_ROOT,
    keep: Path | None = None,
    real_dev: Path | None = None,
) -> dict:
    """Generate the sites once, run both arms on copies, write the results.

    The sites, verdict files and runs live in a temporary folder, or in `keep` (new or empty)
    when given, for a look at what each arm's sites hold afterwards (`keep/ARM/sites`). With
    `real_dev` (a folder of real benign names and DGA family lists, as experiments.lowfpr
    reads) the sites are built from those names and the results go to `NAME-real-dev`."""
    from experiments.value import one_torch_thread

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    shape = SIZES[size]
    with (
        lab.PeakRss() as peak,
        lab.stopwatch() as total,
        one_torch_thread(),
        _work_folder(keep) as temp,
    ):
        generated = Path(temp) / "generated"
        truth = write_sites(generated, shape, real_dev)
        rows, reviews, checks, timings = [], [], [], {}
        for arm in shape.arms:
            data_dir = Path(temp) / arm / "sites"
            shutil.copytree(generated, data_dir)
            site_dirs = sorted(p for p in data_dir.iterdir() if p.is_dir())
            # lowfpr's real-name sites draw each query's client at random: their hosts are no
            # infection, so the analyst judges (and the queue ranks) alerts there, not hosts.
            by_host = real_dev is None
            meters = {
                site_dir.resolve(): QueueMeter(
                    site_dir, truth, Path(temp) / arm / "queue", by_host=by_host
                )
                for site_dir in site_dirs
            }
            analysts = None
            if arm == "with":
                analysts = {
                    site_dir.resolve(): SiteAnalyst(
                        site_dir, truth, Path(temp) / arm / "analyst", by_host=by_host
                    )
                    for site_dir in site_dirs
                }
            run_dir = Path(temp) / arm / "run"
            with lab.stopwatch() as watch:
                arm_checks = run_arm(
                    data_dir,
                    run_dir,
                    shape,
                    meters=meters,
                    analysts=analysts,
                    seed=SEED + 1 if arm == NOISE_ARM else SEED,
                )
            timings[f"{arm}_s"] = watch["seconds"]
            log.info("arm %s: %d rounds in %.0f s", arm, shape.rounds, watch["seconds"])
            arm_reviews = [r for a in (analysts or {}).values() for r in a.reviews]
            supplement = equal_tpr_figures(data_dir, run_dir, shape.rounds, truth)
            queues = {(d.name, r): f for d, m in meters.items() for r, f in m.rounds.items()}
            for row in arm_rows(arm, data_dir, shape, arm_reviews):
                key = (row["site"], row["round"])
                if key not in queues:
                    raise RuntimeError(f"arm {arm}: no test-day queue for {key} (a site failed)")
                rows.append({**row, **queues[key], **supplement[key]})
            reviews.extend({"arm": arm, **asdict(r)} for r in arm_reviews)
            checks.extend(
                {"site": site, "round": rnd, **figures}
                for (site, rnd), figures in sorted(arm_checks.items())
            )
    timings["total_s"] = total["seconds"]
    payload = build_payload(size, shape, rows, reviews, checks, timings, peak.peak_mib)
    payload["data"] = "generated" if real_dev is None else "real-dev"
    name, title = (NAME, TITLE) if real_dev is None else (f"{NAME}-real-dev", REAL_TITLE)
    write_outputs(Results(name, title, root), payload)
    return payload


REAL_TITLE = TITLE + " (real development names)"
REAL_TEST_BENIGN = 60_000  # lowfpr's pooled test names: withheld from every site here too
REAL_SITE_TEST_FRACTION = 0.05  # a site's names on its test day (lowfpr's default)


def write_sites(out: Path, shape: Size, real_dev: Path | None) -> dict[str, str]:
    """The sites both arms copy, and their truth (normalised name -> family, '' = benign).

    Generated by default; from real names with `real_dev`, through experiments.lowfpr's split
    and site writer (3 training days and a test day, every site DGA name on its blocklist)."""
    if real_dev is None:
        from experiments.generator import generate_sites

        generate_sites(
            out_dir=out, n_sites=shape.sites, n_days=shape.days, seed=SEED, scale=shape.scale
        )
        return read_truth(out / "truth.csv")
    from experiments import lowfpr

    corpus = lowfpr.load_corpus(lowfpr.real_dev_folder(real_dev))
    split = lowfpr.split_corpus(
        corpus,
        n_sites=shape.sites,
        test_benign=REAL_TEST_BENIGN,
        site_test_fraction=REAL_SITE_TEST_FRACTION,
        seed=SEED,
    )
    out.mkdir(parents=True)
    lowfpr.write_sites(split, out, seed=SEED)
    return {
        str(name): str(family) if label == 1 else ""
        for name, label, family in zip(corpus.names, corpus.labels, corpus.families, strict=True)
    }


@contextlib.contextmanager
def _work_folder(keep: Path | None):
    if keep is not None:
        yield str(keep)
        return
    with tempfile.TemporaryDirectory(prefix="fedsec-analyst-loop-") as temp:
        yield temp


def arm_rows(arm: str, data_dir: Path, shape: Size, reviews: list[Review]) -> list[dict]:
    """One row per site and round: the site's figures and the verdicts its training could use
    (those given after earlier rounds; the analyst never judges a name twice)."""
    rows = []
    for site_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        site = site_dir.name
        mine = sorted((r for r in reviews if r.site == site), key=lambda r: r.round)
        for server_round in range(1, shape.rounds + 1):
            earlier = [r for r in mine if r.round < server_round]
            after = [r for r in mine if r.round == server_round]
            rows.append(
                {
                    "arm": arm,
                    "site": site,
                    "round": server_round,
                    **round_metrics(site_dir, server_round),
                    "verdicts_malicious": sum(r.malicious for r in earlier),
                    "verdicts_benign": sum(r.benign for r in earlier),
                    "verdicts_unsure": sum(r.unsure for r in earlier),
                    "reviewed_after_round": sum(r.reviewed for r in after),
                    "reviewed_day": ", ".join(r.day for r in after),
                    "review_hours": sum(r.hours for r in after),
                }
            )
    return rows


# --- results -----------------------------------------------------------------------------------

COMPARED = (
    "fp_per_day",
    "fp_per_day_upper95",
    "recall_at_budget",
    "analyst_hours_per_day",
    "tpr_at_fpr_1e-3",
    "auc",
    *(f"{prefix}fp_per_day_at_tpr_{t}" for t in EQUAL_TPRS for prefix in ("", "truth_")),
    *(queue_key(point, key) for point in QUEUE_POINTS for key in QUEUE_KEYS),
)


def last_round_rows(rows: list[dict], rounds: int) -> list[dict]:
    """Per site at the last round: each arm's figures and with minus without."""
    by = {(r["arm"], r["site"]): r for r in rows if r["round"] == rounds}
    out = []
    for site in dict.fromkeys(r["site"] for r in rows):
        without, with_ = by[("without", site)], by[("with", site)]
        entry: dict[str, Any] = {"site": site}
        for key in COMPARED:
            entry[f"without_{key}"] = without[key]
            entry[f"with_{key}"] = with_[key]
            entry[f"diff_{key}"] = with_[key] - without[key]
        noise = by.get((NOISE_ARM, site))
        if noise is not None:
            for key in COMPARED:
                entry[f"noise_{key}"] = noise[key] - without[key]
        for point in QUEUE_POINTS:
            # The drop in FP alerts, split: the allowlist removed `allowlisted` alerting names
            # (all judged benign by the truth-answering analyst); the rest is the model's.
            allowlisted = with_[queue_key(point, "allowlisted")]
            entry[f"allowlist_part_{point}"] = -allowlisted
            entry[f"model_part_{point}"] = entry[f"diff_{queue_key(point, 'fp_alerts')}"] + (
                allowlisted
            )
        entry["test_day"] = with_.get("test_day", "")
        entry["verdicts"] = with_["verdicts_malicious"] + with_["verdicts_benign"]
        entry["verdicts_malicious"] = with_["verdicts_malicious"]
        entry["verdicts_benign"] = with_["verdicts_benign"]
        entry["same_test_set"] = (
            without["test_domains"] == with_["test_domains"]
            and without["test_positives"] == with_["test_positives"]
        )
        out.append(entry)
    return out


def build_payload(
    size: str,
    shape: Size,
    rows: list[dict],
    reviews: list[dict],
    checks: list[dict],
    timings: dict[str, float],
    peak_mib: float,
) -> dict:
    return {
        "experiment": NAME,
        "size": size,
        "shape": asdict(shape),
        "seed": SEED,
        "triage_threshold": TRIAGE_THRESHOLD,
        "rows": rows,
        "last_round": last_round_rows(rows, shape.rounds),
        "reviews": reviews,
        "feedback_checks": checks,
        "timings": timings,
        "peak_rss_mib": peak_mib,
    }


ROUND_COLUMNS = (
    Column("site", "site"),
    Column("round", "round", "{:d}"),
    Column("arm_label", "arm"),
    Column("fp_per_day", "FP/day", "{:,.0f}"),
    Column("fp_per_day_upper95", "FP/day (95% upper)", "{:,.0f}"),
    Column("recall_at_budget", "recall at budget"),
    Column("analyst_hours_per_day", "analyst h/day", "{:,.1f}"),
    Column("truth_fp_per_day_at_tpr_0.5", "FP/day at TPR=0.5 (truth)", "{:,.0f}"),
    Column("truth_fp_per_day_at_tpr_0.9", "FP/day at TPR=0.9 (truth)", "{:,.0f}"),
    Column("tpr_at_fpr_1e-3", "TPR@FPR=1e-3"),
    Column("auc", "AUC", "{:.4f}"),
    Column("verdicts_malicious", "verdicts so far: malicious", "{:d}"),
    Column("verdicts_benign", "benign", "{:d}"),
    Column("reviewed_after_round", "judged after round", "{:d}"),
    Column("review_hours", "review h", "{:.1f}"),
)


FRAGILITY_DIFF = (
    ("fp_per_day", "FP/day", "{:,.0f}"),
    ("fp_per_day_upper95", "FP/day 95% upper", "{:,.0f}"),
    ("recall_at_budget", "recall at budget", "{:.3f}"),
    ("analyst_hours_per_day", "analyst h/day", "{:,.1f}"),
)
EQUAL_TPR_DIFF = tuple(
    (f"{prefix}fp_per_day_at_tpr_{t}", f"FP/day at TPR={t} ({source})", "{:,.0f}")
    for t in EQUAL_TPRS
    for prefix, source in (("", "intel labels"), ("truth_", "truth"))
) + (("tpr_at_fpr_1e-3", "TPR@FPR=1e-3", "{:.3f}"),)


def _diff_columns(
    keys: Sequence[tuple[str, str, str]], *, verdicts: bool, noise: bool
) -> list[Column]:
    columns = [Column("site", "site")]
    for key, header, fmt in keys:
        columns.append(Column(f"without_{key}", f"{header} without", fmt))
        columns.append(Column(f"with_{key}", "with", fmt))
        columns.append(Column(f"diff_{key}", "with - without", "{:+,.3g}"))
        if noise:
            columns.append(Column(f"noise_{key}", "other seed - without", "{:+,.3g}"))
    if verdicts:
        columns.append(Column("verdicts_malicious", "verdicts: malicious", "{:d}"))
        columns.append(Column("verdicts_benign", "benign", "{:d}"))
    return columns


QUEUE_HEADLINE = tuple(
    column
    for point, where in (("op", "operating threshold"), ("fixed", f"score {TRIAGE_THRESHOLD:g}"))
    for column in (
        Column(f"without_{queue_key(point, 'threshold')}", f"{where}: tau without", "{:.4f}"),
        Column(f"with_{queue_key(point, 'threshold')}", "tau with", "{:.4f}"),
        Column(f"without_{queue_key(point, 'fp_alerts')}", "FP alerts without", "{:,.0f}"),
        Column(f"with_{queue_key(point, 'fp_alerts')}", "with", "{:,.0f}"),
        Column(f"diff_{queue_key(point, 'fp_alerts')}", "with - without", "{:+,.0f}"),
        Column(f"allowlist_part_{point}", "of which allowlist", "{:+,.0f}"),
        Column(f"model_part_{point}", "of which model", "{:+,.0f}"),
        Column(f"noise_{queue_key(point, 'fp_alerts')}", "other seed - without", "{:+,.0f}"),
    )
)
QUEUE_COLUMNS = (
    ("alerts", "alerts", "{:,.0f}"),
    ("fp_alerts", "FP alerts", "{:,.0f}"),
    ("true_alerts", "true alerts", "{:,.0f}"),
    ("queue_fp_alerts", "FP in budget queue", "{:,.0f}"),
    ("queue_precision", "queue precision", "{:.3f}"),
    ("clear_hours", "h to clear all", "{:,.1f}"),
    ("allowlisted", "allowlisted", "{:,.0f}"),
)


def queue_columns(points: Sequence[str] = tuple(QUEUE_POINTS)) -> list[Column]:
    """Per-arm queue figures at each cut point (the rows carry `test_<point>_<key>`)."""
    columns = [Column("site", "site"), Column("round", "round", "{:d}"), Column("arm_label", "arm")]
    for point in points:
        where = "op" if point == "op" else f"{TRIAGE_THRESHOLD:g}"
        if point == "op":  # the fixed cut's tau is TRIAGE_THRESHOLD in every row
            columns.append(Column(queue_key(point, "threshold"), "[op] tau", "{:.4f}"))
        columns.extend(
            Column(queue_key(point, key), f"[{where}] {header}", fmt)
            for key, header, fmt in QUEUE_COLUMNS
        )
    columns.append(Column("reviewed_day", "training day reviewed after round"))
    return columns


def write_outputs(results: Results, payload: dict) -> None:
    shape, rows = payload["shape"], payload["rows"]
    for row in rows:
        row["arm_label"] = ARM_LABELS[row["arm"]]
    results.write_json(payload)
    results.write_csv(rows, "rounds.csv")
    results.write_csv(payload["last_round"], "last_round.csv")
    results.write_csv(payload["reviews"], "reviews.csv")
    results.write_csv(payload["feedback_checks"], "feedback_checks.csv")
    last = shape["rounds"]
    noise = shape.get("noise_arm", False)
    yardstick = (
        [
            "'other seed - without': the run without the loop repeated with another federation "
            "seed; a with-minus-without difference no larger than it is within chance."
        ]
        if noise
        else []
    )
    order = list(ARM_LABELS)
    ordered = sorted(rows, key=lambda r: (r["site"], r["round"], order.index(r["arm"])))
    headline = [c for c in QUEUE_HEADLINE if noise or not c.key.startswith("noise_")]
    results.add_table(
        f"Headline: false-positive alerts on the site's test day at round {last}, with minus "
        "without the loop",
        payload["last_round"],
        [Column("site", "site"), Column("test_day", "test day"), *headline],
        notes=[
            "Every name the site logged on its test day (never reviewed by the analyst), scored "
            "as `fedsec score --site` scores it: the round's global model, the site's local "
            "allowlist (names whose latest verdict is benign; empty without the loop), cut at "
            "the site's operating threshold (tau, from the round's fragility report) and at "
            f"the analyst's fixed cut {TRIAGE_THRESHOLD:g}; an alert is a false positive when "
            "the generator's truth calls the name benign. Counts are for the generated day's "
            "logs (one day at the generator's scale, not scaled to the site's configured "
            "volume). 'of which allowlist': alerts the allowlist removed (all judged benign); "
            "'of which model': the rest of the difference, from the model trained on the "
            "verdicts. Negative favours the loop.",
            *yardstick,
        ],
    )
    results.add_table(
        f"The test day's queue at round {last}, per arm",
        [r for r in ordered if r["round"] == last],
        queue_columns(),
        notes=[
            "FP in budget queue: benign names among the alerts an analyst reaches in one day "
            "(host groups, or alerts, in the analyst's ranking until the site's daily budget "
            "is spent); queue precision: DGA share of the judged names in that queue; h to "
            "clear all: alerts x minutes per alert / 60; allowlisted: alerting names the "
            "local allowlist left out (summary.allowlisted)."
        ],
    )
    results.add_table(
        f"The test day's queue by round at score {TRIAGE_THRESHOLD:g} and the operating threshold",
        ordered,
        [
            *queue_columns(("fixed",))[:-1],
            Column(queue_key("op", "threshold"), "[op] tau", "{:.4f}"),
            Column(queue_key("op", "alerts"), "[op] alerts", "{:,.0f}"),
            Column(queue_key("op", "fp_alerts"), "[op] FP alerts", "{:,.0f}"),
            Column(queue_key("op", "allowlisted"), "[op] allowlisted", "{:,.0f}"),
            Column("reviewed_day", "training day reviewed after round"),
        ],
        notes=[
            "Round 1 is the same model and an empty allowlist in both arms with the same seed "
            "(identical figures unless SecAgg+'s rounding differs); each later round's loop "
            "arm carries the verdicts of the reviews before it. Each round's analyst reviewed "
            "a different training day, newest first, cycling through the training days."
        ],
    )
    results.add_table(
        f"Held-out evaluation set: with minus without the loop, per site, at round {last} "
        "(the sites' fragility figures)",
        payload["last_round"],
        _diff_columns(FRAGILITY_DIFF, verdicts=True, noise=noise),
        notes=[
            "Each site's own fragility report of the last round, at its operating threshold "
            "(the alert budget), on the held-out test names (registered domains never in "
            "training). A negative FP/day or analyst-hours difference and a positive "
            "recall difference favour the loop. Verdicts: names judged before the last round.",
            *yardstick,
        ],
    )
    results.add_table(
        f"Held-out evaluation set, supplementary: FP/day at equal recall, round {last}",
        payload["last_round"],
        _diff_columns(EQUAL_TPR_DIFF, verdicts=False, noise=noise),
        notes=[
            *yardstick,
            "FPR at the highest threshold that still flags this share of the test DGA names, "
            "x the site's volume (experiments.value's definition), from the round's global "
            "model on the same test names as the fragility report; 'truth' labels the test "
            "names by the generator instead of the site's intel (which misses some DGA names).",
        ],
    )
    results.add_table("Held-out evaluation set: per site, round and arm", ordered, ROUND_COLUMNS)
    results.plot("fp_per_day.png", lambda figure: _draw(figure, rows), size=(16.0, 8.0))
    results.write_table_md(
        size=payload["size"],
        command=REAL_COMMAND if payload.get("data") == "real-dev" else COMMAND,
        intro=intro(payload),
        plots=["fp_per_day.png"],
    )


PANELS = (
    (queue_key("op", "fp_alerts"), "test day: FP alerts at the operating threshold"),
    (queue_key("fixed", "fp_alerts"), f"test day: FP alerts at score {TRIAGE_THRESHOLD:g}"),
    (queue_key("fixed", "allowlisted"), f"test day: alerts allowlisted at {TRIAGE_THRESHOLD:g}"),
    (queue_key("fixed", "queue_fp_alerts"), "test day: FP in the one-day budget queue"),
    ("fp_per_day", "held-out: FP/day at the budget threshold"),
    ("truth_fp_per_day_at_tpr_0.5", "held-out: FP/day at TPR=0.5 (truth)"),
    ("truth_fp_per_day_at_tpr_0.9", "held-out: FP/day at TPR=0.9 (truth)"),
    ("recall_at_budget", "held-out: recall inside the alert budget"),
)
LINEAR = {"recall_at_budget", *(queue_key(p, k) for p in QUEUE_POINTS for k in QUEUE_KEYS)}


def _draw(figure: Any, rows: list[dict]) -> None:
    sites = list(dict.fromkeys(r["site"] for r in rows))
    colours = {site: f"C{index % 10}" for index, site in enumerate(sites)}
    columns = (len(PANELS) + 1) // 2
    for index, (key, title) in enumerate(PANELS, start=1):
        axes = figure.add_subplot(2, columns, index)
        for site in sites:
            for arm, style in (("without", "--"), ("with", "-"), (NOISE_ARM, ":")):
                chosen = sorted(
                    (r for r in rows if r["site"] == site and r["arm"] == arm),
                    key=lambda r: r["round"],
                )
                if not chosen:
                    continue
                axes.plot(
                    [r["round"] for r in chosen],
                    [r[key] for r in chosen],
                    style,
                    marker="" if arm == NOISE_ARM else "o",
                    linewidth=0.8 if arm == NOISE_ARM else 1.5,
                    color=colours[site],
                    label=f"{site} {ARM_LABELS[arm]}",
                )
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("round")
        if all(r[key] == 0 for r in rows):
            axes.set_ylim(-0.5, 1.0)
            axes.text(0.5, 0.15, "0 in every arm and round", transform=axes.transAxes, ha="center")
        elif key not in LINEAR:
            axes.set_yscale("symlog", linthresh=1.0)
    figure.axes[0].legend(fontsize=6)


def intro(payload: dict) -> str:
    """What ran, how the figures are defined, and what the last round shows (from the data)."""
    shape, reviews = payload["shape"], payload["reviews"]
    if payload.get("data") == "real-dev":
        data = (
            f"{shape['sites']} sites built from real development names (experiments.lowfpr's "
            "split and site writer: 3 training days and a test day, every DGA name of a site "
            "on its blocklist, so a malicious verdict relabels nothing and only benign "
            "verdicts, trained every round as hard negatives, can change training)"
        )
        oracle = "the names' own labels"
    else:
        data = (
            f"{shape['sites']} generated sites ({shape['days']} log days, scale "
            f"{shape['scale']:g}, seed {SEED}; the intel misses some DGA names, which a "
            "malicious verdict turns into positives)"
        )
        oracle = "the generator's truth (truth.csv)"
    units = sorted({r["units"] for r in reviews}) or ["alerts"]
    design = (
        f"{data}; {shape['rounds']} rounds x {shape['local_steps']} local steps under "
        f"{shape['mode']}, fedsec's ServerApp and ClientApp in one process; both arms start "
        "from copies of the same sites with the same seeds. In the loop arm, after each round "
        "but the last (a verdict after the last round would train nothing), each site's "
        "simulated analyst scored one of the site's training days (a different one each "
        "round, newest first, cycling; never the test day, on which the figures are measured) "
        "with the round's global model and the site's local allowlist through `fedsec "
        f"score`'s code (client.scoring.score_logs, cut at score {TRIAGE_THRESHOLD:g}), took the "
        f"highest-priority {' / '.join(units)} no earlier verdict covered until the site's "
        "alert budget for one day was spent (one budget unit per host group or alert), "
        f"answered from {oracle} and appended the verdicts to the site's verdict file, which "
        f"the next round's training read (checked after every review: {FEEDBACK_NOTE}). "
        f"{sum(r['reviewed'] for r in reviews)} {' / '.join(units)} were judged in all, "
        f"covering {sum(r['malicious'] for r in reviews)} names judged malicious and "
        f"{sum(r['benign'] for r in reviews)} benign (days reviewed: {reviewed_days(reviews)})."
    )
    queue = (
        "The operational queue (headline): after every round, in every arm, each site scored "
        "all of its test day's logs as `fedsec score --site` would that morning (the round's "
        "global model; the site's local allowlist, i.e. the names its analysts' latest verdict "
        "calls benign, empty without the loop; the site's operating threshold as `fedsec score "
        "--site` resolves it from the round's fragility report, and the analyst's fixed cut "
        f"{TRIAGE_THRESHOLD:g}), before that round's review; each alert is labelled by "
        f"{oracle}. Unlike the held-out set, the test day's logs hold the site's recurring "
        "names, so a false positive judged on a training day can come back there."
    )
    definitions = (
        "Held-out evaluation set (second section). FP/day, its 95% upper bound, recall "
        "inside the alert budget and analyst hours per day are each site's own fragility "
        "figures for the round (WORK/fragility/"
        "round-NNN.json, docs/metrics.md), on test names labelled by the site's intel: analyst "
        "h/day = alerts/day at the operating threshold x minutes per alert / 60, not capped "
        "(the budget threshold keeps it inside the budget when one fits); 'review h' is the "
        "simulated analyst's time (judged x minutes per alert / 60), capped by the budget."
    )
    return "\n\n".join(
        [design, queue, queue_findings(payload), definitions, findings(payload), limits(payload)]
    )


def reviewed_days(reviews: Sequence[dict]) -> str:
    """Which training day each round's analyst reviewed ('round 1: DAY; ...')."""
    days = {r["round"]: r["day"] for r in reviews}
    return "; ".join(f"after round {k}: {v}" for k, v in sorted(days.items())) or "none"


def queue_findings(payload: dict) -> str:
    """The headline in numbers: FP alerts on the test day at the last round, with minus
    without, split into the allowlist's part and the model's, beside the yardstick."""
    last, rounds = payload["last_round"], payload["shape"]["rounds"]
    noise = all(f"noise_{queue_key('op', 'fp_alerts')}" in r for r in last)
    parts = []
    for point, where in QUEUE_POINTS.items():
        fp = queue_key(point, "fp_alerts")
        without = sum(r[f"without_{fp}"] for r in last)
        with_ = sum(r[f"with_{fp}"] for r in last)
        allow = -sum(r[f"allowlist_part_{point}"] for r in last)
        model = sum(r[f"model_part_{point}"] for r in last)
        diffs = [r[f"diff_{fp}"] for r in last]
        per_site = ", ".join(f"{value:+,.0f}" for value in diffs)
        lower = sum(1 for r in last if r[f"diff_{fp}"] < 0)
        higher = sum(1 for r in last if r[f"diff_{fp}"] > 0)
        text = (
            f"at {where}, {without:,.0f} FP alerts without the loop and {with_:,.0f} with it "
            f"over the {len(last)} sites ({_change(with_, without)}; per site "
            f"{per_site}), lower at "
            f"{lower} and higher at {higher} of {len(last)} sites; the allowlist removed "
            f"{allow:,.0f} alerts, the model's change accounts for {model:+,.0f}"
        )
        if noise:
            yard = ", ".join(f"{r[f'noise_{fp}']:+,.0f}" for r in last)
            text += (
                f"; the other seed moves it by {yard} (per site), so the loop is lower beyond "
                f"chance at {beyond_chance(last, fp, -1)} and higher at "
                f"{beyond_chance(last, fp, 1)}"
            )
        queue_fp = queue_key(point, "queue_fp_alerts")
        hours = queue_key(point, "clear_hours")
        true = [sum(r[f"{arm}_{queue_key(point, 'true_alerts')}"] for r in last) for arm in ARMS]
        text += f"; true alerts {true[0]:,.0f} -> {true[1]:,.0f}"
        queued = [sum(r[f"{arm}_{queue_fp}"] for r in last) for arm in ARMS]
        clear = [sum(r[f"{arm}_{hours}"] for r in last) for arm in ARMS]
        text += (
            f"; FP inside the one-day budget queue {queued[0]:,.0f} -> {queued[1]:,.0f}; "
            f"hours to clear all alerts {clear[0]:,.1f} -> {clear[1]:,.1f}"
        )
        parts.append(text)
    return (
        f"Headline, the test day at round {rounds}, with minus without the loop: "
        + "; and ".join(parts)
        + ". The split is in that order: the allowlist counts only judged names the round's "
        "model still flags, so 'the model's change' includes recurring judged names the "
        "retrained model no longer scores above the cut; the allowlist's part is a lower "
        "bound on what the verdicts on recurring names did."
    )


def _change(new: float, old: float) -> str:
    if old == 0:
        return "no change" if new == 0 else f"{new - old:+,.0f}"
    return f"{(new - old) / old:+.0%}"


FEEDBACK_NOTE = (
    "every judged name in the next training set carries its verdict's label, including those "
    "that contradict the intel, and the data-quality report counts them"
)


def findings(payload: dict) -> str:
    """The last round in numbers: what the loop changed at each site, and what limits it."""
    last = payload["last_round"]
    zero = sum(1 for r in last if r["without_fp_per_day"] == 0 and r["with_fp_per_day"] == 0)
    same = all(r["same_test_set"] for r in last)

    def spread(key: str, fmt: str) -> str:
        values = [r[f"diff_{key}"] for r in last]
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return "n/a"
        return (
            f"mean {fmt.format(_mean(finite))} (sites from {fmt.format(min(finite))} "
            f"to {fmt.format(max(finite))})"
        )

    lower = sum(1 for r in last if r["diff_fp_per_day_at_tpr_0.9"] < 0)
    lower_truth = sum(1 for r in last if r["diff_truth_fp_per_day_at_tpr_0.9"] < 0)
    text = (
        f"At round {payload['shape']['rounds']}, with minus without the loop"
        f"{' (the same test names in both arms)' if same else ' (TEST SETS DIFFER: see rows)'}: "
        f"FP/day at the budget threshold {spread('fp_per_day', '{:+,.0f}')}, 0 in both arms "
        f"at {zero} of {len(last)} sites (one flagged benign test name of N is worth V / N "
        "FP/day, more than a budget affords, so the budget threshold flags none whatever the "
        "model, and the upper bound, about 3 V / N, depends on N only); recall inside the budget "
        f"{spread('recall_at_budget', '{:+.3f}')}; analyst h/day "
        f"{spread('analyst_hours_per_day', '{:+.1f}')}. At equal recall (TPR = 0.9), where "
        "benign names must actually move down the ranking: FP/day by intel labels "
        f"{spread('fp_per_day_at_tpr_0.9', '{:+,.0f}')}, lower at {lower} of {len(last)} "
        f"sites; against the truth {spread('truth_fp_per_day_at_tpr_0.9', '{:+,.0f}')}, "
        f"lower at {lower_truth} of {len(last)} sites. Higher in the ranking (TPR = 0.5): "
        f"against the truth {spread('truth_fp_per_day_at_tpr_0.5', '{:+,.0f}')}; TPR at FPR "
        f"1e-3 {spread('tpr_at_fpr_1e-3', '{:+.3f}')}."
    )
    if not all("noise_fp_per_day" in r for r in last):
        return text
    checks = (
        ("truth_fp_per_day_at_tpr_0.5", "FP/day at TPR = 0.5 (truth)", -1),
        ("truth_fp_per_day_at_tpr_0.9", "FP/day at TPR = 0.9 (truth)", -1),
        ("tpr_at_fpr_1e-3", "TPR at FPR 1e-3", 1),
        ("recall_at_budget", "recall inside the budget", 1),
    )
    parts = [
        f"{label}: better at {beyond_chance(last, key, sign)} and worse at "
        f"{beyond_chance(last, key, -sign)} of {len(last)} sites"
        for key, label, sign in checks
    ]
    return (
        f"{text} Against the seed-to-seed yardstick (the run without the loop repeated with "
        "another federation seed), a site counts only where the loop's difference is larger "
        f"than that run's: {'; '.join(parts)}."
    )


def limits(payload: dict) -> str:
    """What keeps the loop from showing more here, with this run's own counts."""
    reviews, checks = payload["reviews"], payload["feedback_checks"]
    judged = sum(r["malicious"] + r["benign"] for r in reviews)
    first = sum(r["malicious"] + r["benign"] for r in reviews if r["round"] == 1)
    latest: dict[str, dict] = {}
    for check in checks:
        latest[check["site"]] = check  # rounds ascend: the last check per site
    relabelled = sum(c["relabelled_in_train"] for c in latest.values())
    trained = sum(c["in_train"] for c in latest.values())
    withheld = sum(max(c.get("dqa_withheld", 0), 0) for c in latest.values())
    share = first / judged if judged else math.nan
    last = payload["last_round"]
    if all(r["without_fp_per_day"] == 0 and r["with_fp_per_day"] == 0 for r in last):
        budget_point = (
            "On the held-out set the budget operating point cannot show fewer false positives "
            "at these test sizes: FP/day there is 0 in both arms and its bound is set by N "
            "alone; the loop can only move recall inside the budget and the equal-recall "
            "figures there (the test day's queue, the headline, does not have this limit)."
        )
    else:
        budget_point = (
            "At the budget operating point one flagged benign test name is worth V / N "
            "FP/day, so FP/day there moves in steps of V / N."
        )
    later = [r for r in reviews if r["round"] > 1]
    malicious = sum(r["malicious"] for r in reviews)
    short = sum(1 for r in later if r["available"] < r["budget"])
    if short:
        coverage = (
            f"The analyst's list runs short: {share:.0%} of the {judged} judged names were "
            "judged in the first review (after round 1); later reviews, each on another "
            f"training day, found fewer {reviews[0]['units']} no verdict covered (fewer than "
            f"the budget at {short} of {len(later)} later reviews)."
        )
    else:
        reviewed = sum(r["reviewed"] for r in reviews)
        available = sum(r["available"] for r in reviews)
        coverage = (
            f"The budget reaches only the top of the list: {reviewed} of {available} "
            f"{reviews[0]['units'] if reviews else 'alerts'} scoring {TRIAGE_THRESHOLD:g} or "
            "more were judged."
        )
    top = ""
    if judged and malicious / judged >= 0.5:
        top = (
            f" The top of the list is mostly DGA: {malicious / judged:.0%} of the judged names "
            "were malicious, so benign verdicts (the hard negatives that could lower false "
            f"positives) were only {judged - malicious}."
        )
    elif judged:
        top = (
            f" {malicious / judged:.0%} of the judged names were malicious; the "
            f"{judged - malicious} benign ones are the hard negatives that can lower false "
            "positives."
        )
    chance = (
        ", and one repeated run as the yardstick of chance."
        if payload["shape"].get("noise_arm")
        else "; no repeated run measures chance at this size."
    )
    if payload["shape"].get("mode") == "secagg":
        chance += (
            " Under SecAgg+ even the same seed does not repeat a run exactly: its stochastic "
            "rounding draws fresh randomness (round-1 AUCs differ in the sixth decimal) and "
            "the difference grows over rounds, so read single-site differences near the "
            "yardstick's size as chance."
        )
    op_alerts = [r[queue_key("op", "alerts")] for r in payload["rows"]]
    op_point = ""
    if op_alerts and max(op_alerts) <= 10:
        op_point = (
            " (7) At the site's operating threshold (sized so the held-out FP/day fits the "
            "budget) the test day's queue held at most "
            f"{max(op_alerts):.0f} alerts per site in any arm and round, so false-positive "
            "alerts there are 0 or 1 with or without the loop; the loop's effect on the day's "
            f"queue shows at the analyst's cut {TRIAGE_THRESHOLD:g}."
        )
    return (
        f"What limits it here. (1) {budget_point} (2) {coverage}{top} "
        "(3) Most verdicts confirm what training already believed: "
        f"of {trained} judged names in the last training sets, {relabelled} changed label "
        "(DGA names the intel missed; unlisted names are already benign negatives), so the rest "
        "act only as examples trained every round; "
        f"{withheld} judged names never trained (held-out registered domains, or on the test "
        "side). (4) No held-out test name shares a registered domain with training, so a "
        "verdict reaches the held-out set only through similar names; on the test day's logs "
        "it also reaches the same names when they recur (the allowlist's part of the "
        "headline). (5) The test-day counts are for one generated day at the generator's "
        "scale: a count, not a rate scaled to the site's volume. (6) One seed per "
        f"arm{chance}{op_point}"
    )


def beyond_chance(last: list[dict], key: str, sign: int) -> int:
    """Sites where with-minus-without has this sign and exceeds the seed-to-seed difference."""
    count = 0
    for row in last:
        diff, noise = row[f"diff_{key}"], row[f"noise_{key}"]
        if math.isfinite(diff) and math.isfinite(noise) and sign * diff > abs(noise):
            count += 1
    return count


def _mean(values: list[float]) -> float:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def main(argv: list[str] | None = None) -> None:
    """`python -m experiments.analyst_loop [--full | --tiny] [--out ROOT] [--real-dev DIR]`."""
    import argparse

    from common.config import ConfigError

    parser = argparse.ArgumentParser(prog="python -m experiments.analyst_loop", description=TITLE)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_const", const="full", dest="size")
    group.add_argument("--tiny", action="store_const", const="tiny", dest="size")
    parser.add_argument("--out", type=Path, default=lab.RESULTS_ROOT, help="results root")
    parser.add_argument(
        "--real-dev",
        type=Path,
        default=None,
        help="folder of real names (benign.csv.gz, dga.csv.gz) instead of generated sites",
    )
    args = parser.parse_args(argv)
    lab.setup_logging()
    try:
        run(size=args.size or "default", root=args.out, real_dev=args.real_dev)
    except ConfigError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
