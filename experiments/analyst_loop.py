"""The analyst's loop, measured: the same federation with and without analysts' verdicts fed back.

    fedsec experiment analyst-loop [--full | --tiny] [--out ROOT]
    python -m experiments.analyst_loop [--full | --tiny] [--out ROOT] [--real-dev DIR]

Two arms train on copies of the same generated sites with the same seeds and rounds, over
fedsec's real ServerApp and ClientApp (`experiments.inprocess.LocalGrid`, one process, no Ray);
a third (default and full sizes) repeats the arm without the loop under another federation
seed, so each with-minus-without difference stands beside the difference chance alone makes.
In the loop arm, after every round but the last, each site's simulated analyst:

1. scores the site's most recent *training* day (never the test day, on which the round's
   fragility figures are measured) with the round's global model, through `fedsec score`'s
   own code (`client.scoring.score_logs`);
2. works down that ranked list (host groups when the scorer writes them, else alerts), skipping
   what an earlier verdict already covered, until the site's alert budget for one day is spent
   (`[analysts]` count x productive_hours_per_day x 60 / minutes_per_alert);
3. judges each from the generator's ground truth (truth.csv) and appends the verdicts to the
   site's own verdict file with `client.verdicts.append_verdict`.

The next round's training reads that file (`client.pipeline`); the harness checks after every
review that the prepared training labels carry the verdicts and stops with an error when they
do not, rather than silently measuring two identical arms. Every figure per round is read from
the site's own fragility report (`WORK/fragility/round-NNN.json`), as the site computed it.
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


def training_day_files(site: Any) -> tuple[str, list[Path]]:
    """(the site's most recent training day, its log files): what the analyst scores.

    The generator writes one file per day named after it; the test day's files are refused, so
    nothing the round's figures are measured on is ever judged."""
    from client.pipeline import log_files

    data = site.require_data()
    day = data.train_days[-1]
    files = [path for path in log_files(site.site_dir, site.config) if day in path.name]
    if not files or any(test in path.name for path in files for test in data.test_days):
        raise RuntimeError(
            f"{site.site_dir}: no log file named after training day {day} alone (fix: the "
            "analyst-loop experiment needs one log file per day, as fedsec generate writes)"
        )
    return day, files


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
        from client.scoring import score_logs
        from client.verdicts import append_verdict, read_verdicts, verdicts_path
        from common.fragility import alert_budget_per_day

        site = load_site(self.site_dir)
        day, files = training_day_files(site)
        out = self.work / site.site_id / f"round-{server_round:03d}" / "alerts.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = score_logs(
            model,
            files,
            out=out,
            threshold=TRIAGE_THRESHOLD,
            quarantine_dir=out.parent / "quarantine",
            log_format=site.config.logs.format,
            mapping=site.config.logs.columns,
        )
        alerts = _read_jsonl(out)
        analysts = site.config.analysts
        budget = int(
            alert_budget_per_day(
                analysts=analysts.count,
                productive_hours_per_day=analysts.productive_hours_per_day,
                minutes_per_alert=analysts.minutes_per_alert,
            )
        )
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


def _read_jsonl(path: Path) -> list[dict]:
    import json

    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


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
    analysts: dict[Path, SiteAnalyst] | None,
    seed: int = SEED,
):
    """One federation over `data_dir`; with `analysts`, each reviews after every round but the
    last. Returns the feedback checks per (site, round)."""
    from flwr.app import Context, RecordDict
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    import client.app
    import server.app
    from client.local import SPEC
    from common.model import ndarrays_to_model
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
        if analysts is None or server_round >= shape.rounds:
            return
        site_dir = client.app.site_location(context)[0].resolve()
        model = ndarrays_to_model(parameters_to_ndarrays(ins.parameters), spec=SPEC)
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
    wrapped = AnalystClientApp(client.app.app, on_evaluated if analysts else None)
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
            analysts = None
            if arm == "with":
                analysts = {
                    # lowfpr's real-name sites draw each query's client at random: their hosts
                    # are no infection, so the analyst judges alerts there, not host groups.
                    site_dir.resolve(): SiteAnalyst(
                        site_dir, truth, Path(temp) / arm / "analyst", by_host=real_dev is None
                    )
                    for site_dir in sorted(p for p in data_dir.iterdir() if p.is_dir())
                }
            run_dir = Path(temp) / arm / "run"
            with lab.stopwatch() as watch:
                arm_checks = run_arm(
                    data_dir,
                    run_dir,
                    shape,
                    analysts=analysts,
                    seed=SEED + 1 if arm == NOISE_ARM else SEED,
                )
            timings[f"{arm}_s"] = watch["seconds"]
            log.info("arm %s: %d rounds in %.0f s", arm, shape.rounds, watch["seconds"])
            arm_reviews = [r for a in (analysts or {}).values() for r in a.reviews]
            supplement = equal_tpr_figures(data_dir, run_dir, shape.rounds, truth)
            for row in arm_rows(arm, data_dir, shape, arm_reviews):
                rows.append({**row, **supplement[(row["site"], row["round"])]})
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
    results.add_table(
        f"With minus without the loop, per site, at round {last} (the sites' fragility figures)",
        payload["last_round"],
        _diff_columns(FRAGILITY_DIFF, verdicts=True, noise=noise),
        notes=[
            "Each site's own fragility report of the last round, at its operating threshold "
            "(the alert budget). A negative FP/day or analyst-hours difference and a positive "
            "recall difference favour the loop. Verdicts: names judged before the last round.",
            *yardstick,
        ],
    )
    results.add_table(
        f"Supplementary: FP/day at equal recall, round {last}",
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
    order = list(ARM_LABELS)
    ordered = sorted(rows, key=lambda r: (r["site"], r["round"], order.index(r["arm"])))
    results.add_table("Per site, round and arm", ordered, ROUND_COLUMNS)
    results.plot("fp_per_day.png", lambda figure: _draw(figure, rows), size=(16.0, 4.4))
    results.write_table_md(
        size=payload["size"],
        command=REAL_COMMAND if payload.get("data") == "real-dev" else COMMAND,
        intro=intro(payload),
        plots=["fp_per_day.png"],
    )


def _draw(figure: Any, rows: list[dict]) -> None:
    panels = (
        ("fp_per_day", "FP/day at the budget threshold"),
        ("fp_per_day_upper95", "FP/day, 95% upper bound"),
        ("truth_fp_per_day_at_tpr_0.5", "FP/day at TPR=0.5 (truth)"),
        ("truth_fp_per_day_at_tpr_0.9", "FP/day at TPR=0.9 (truth)"),
        ("recall_at_budget", "recall inside the alert budget"),
    )
    sites = list(dict.fromkeys(r["site"] for r in rows))
    colours = {site: f"C{index % 10}" for index, site in enumerate(sites)}
    for index, (key, title) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
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
        elif key != "recall_at_budget":
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
        "simulated analyst scored the site's latest training day (never the test day, on which "
        "the figures are measured) with the round's global model through `fedsec score`'s "
        f"code (client.scoring.score_logs, cut at score {TRIAGE_THRESHOLD:g}), took the "
        f"highest-priority {' / '.join(units)} no earlier verdict covered until the site's "
        "alert budget for one day was spent (one budget unit per host group or alert), "
        f"answered from {oracle} and appended the verdicts to the site's verdict file, which "
        f"the next round's training read (checked after every review: {FEEDBACK_NOTE}). "
        f"{sum(r['reviewed'] for r in reviews)} {' / '.join(units)} were judged in all, "
        f"covering {sum(r['malicious'] for r in reviews)} names judged malicious and "
        f"{sum(r['benign'] for r in reviews)} benign. The logs do not grow between rounds, so "
        "each round's analyst works further down the same training day's list."
    )
    definitions = (
        "FP/day, its 95% upper bound, recall inside the alert budget and analyst hours per "
        "day are each site's own fragility figures for the round (WORK/fragility/"
        "round-NNN.json, docs/metrics.md), on test names labelled by the site's intel: analyst "
        "h/day = alerts/day at the operating threshold x minutes per alert / 60, not capped "
        "(the budget threshold keeps it inside the budget when one fits); 'review h' is the "
        "simulated analyst's time (judged x minutes per alert / 60), capped by the budget."
    )
    return "\n\n".join([design, definitions, findings(payload), limits(payload)])


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
            "The budget operating point cannot show fewer false positives at these test "
            "sizes: FP/day there is 0 in both arms and its bound is set by N alone; the loop "
            "can only move recall inside the budget and the equal-recall figures."
        )
    else:
        budget_point = (
            "At the budget operating point one flagged benign test name is worth V / N "
            "FP/day, so FP/day there moves in steps of V / N."
        )
    later = [r for r in reviews if r["round"] > 1]
    malicious = sum(r["malicious"] for r in reviews)
    if any(r["available"] < r["budget"] for r in later):
        coverage = (
            f"The analyst's list runs dry: {share:.0%} of the {judged} judged names were "
            "judged in the first review (after round 1); the logs do not grow, and later "
            f"models score few new names of the same training day {TRIAGE_THRESHOLD:g} or more."
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
    return (
        f"What limits it here. (1) {budget_point} (2) {coverage}{top} "
        "(3) Most verdicts confirm what training already believed: "
        f"of {trained} judged names in the last training sets, {relabelled} changed label "
        "(DGA names the intel missed; unlisted names are already benign negatives), so the rest "
        "act only as examples trained every round; "
        f"{withheld} judged names never trained (held-out registered domains, or on the test "
        "side). (4) No test "
        "name shares a registered domain with training, so a verdict reaches the test day only "
        f"through similar names, never the same ones. (5) One seed per arm{chance}"
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
