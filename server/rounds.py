"""One round's state as the strategy fills it, and the recorder that turns it into the run's record.

The strategy only aggregates: it fills a :class:`RoundState` and hands it to the
:class:`RoundRecorder`, which keeps `results.json` current, checkpoints the completed round and
logs one line per event.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from common.files import write_json
from server.polling import MessageTimes

log = logging.getLogger("fedsec.server")

# "failed": replies came but the coordinator rejected the round's delta; the model is unchanged.
TrainStatus = Literal["aggregated", "no-results", "halted", "failed"]
# The evaluation sum of the sites at share level `aggregate` (server/federation.py).
FederationStatus = Literal["aggregated", "too-few-sites", "needs-secagg", "halted", "refused"]
# Aggregated over the sites that shared them; everything else stays per site.
MEAN_METRICS = ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-4")


@dataclass
class TrainOutcome:
    """What the training half of a round produced, as the coordinator may know it."""

    status: TrainStatus
    mode: str
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure_reasons: list[str] = field(default_factory=list)
    mean_delta_norm: float | None = None
    step_norm: float | None = None  # what the model moved by, when server momentum is on
    rejected: dict[str, str] = field(default_factory=dict)  # site -> why its delta was left out
    notes: list[str] = field(default_factory=list)  # e.g. a site id two replies shared
    problem: str | None = None  # why the round's delta was rejected (status "failed")

    def fail(self, problem: str) -> None:
        """The coordinator rejects the round's delta: the model stays as it was."""
        self.status = "failed"
        self.problem = problem

    def to_json(self) -> dict[str, Any]:
        if self.status == "halted":  # SecAgg+ stopped: no site's reply reached the strategy
            return {"status": "halted", "mode": self.mode, "sites": {}}
        document: dict[str, Any] = {
            "status": self.status,
            "mode": self.mode,
            "results": len(self.sites),
            "failures": len(self.failure_reasons),
            "failure_reasons": self.failure_reasons,
            "sites": self.sites,
        }
        if self.mean_delta_norm is not None:
            document["mean_delta_norm"] = self.mean_delta_norm
        if self.step_norm is not None:
            document["step_norm"] = self.step_norm
        if self.rejected:
            document["rejected"] = dict(self.rejected)
        if self.notes:
            document["notes"] = list(self.notes)
        if self.problem is not None:
            document["problem"] = self.problem
        return document


@dataclass
class EvaluateOutcome:
    """Each site's shared figures (exactly what its share policy let through) and failures."""

    sites: dict[str, dict[str, Any]]
    failure_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def aggregate(self) -> dict[str, Any]:
        """Mean, min and max over sites of the headline metrics, and the failures."""
        aggregate: dict[str, Any] = {"sites": len(self.sites)}
        for key in MEAN_METRICS:
            # A TPR at an FPR the site's test set cannot resolve says nothing: left out.
            flag = f"{key}_resolvable" if key.startswith("tpr_at_fpr_") else None
            values = [
                float(s[key])
                for s in self.sites.values()
                if is_number(s.get(key)) and (flag is None or s.get(flag, 1.0) == 1.0)
            ]
            if values:
                aggregate[f"mean_{key}"] = float(np.mean(values))
                aggregate[f"min_{key}"] = float(np.min(values))
                aggregate[f"max_{key}"] = float(np.max(values))
        aggregate["failures"] = len(self.failure_reasons)
        aggregate["failure_reasons"] = self.failure_reasons
        if self.notes:
            aggregate["notes"] = list(self.notes)
        return aggregate


@dataclass
class FederationOutcome:
    """The round's evaluation sum: federation-level means of the `aggregate` sites' figures."""

    status: FederationStatus
    sites: int  # sites at share level `aggregate` that evaluated this round
    results: int = 0  # masked vectors in the sum
    means: dict[str, float] = field(default_factory=dict)
    contributors: dict[str, int] = field(default_factory=dict)
    failure_reasons: list[str] = field(default_factory=list)
    seconds: float | None = None  # the exchange's wall-clock time, when it ran

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "status": self.status,
            "sites": self.sites,
            "results": self.results,
            "failures": len(self.failure_reasons),
            "failure_reasons": self.failure_reasons,
        }
        if self.seconds is not None:
            document["seconds"] = self.seconds
        return document


@dataclass
class RoundState:
    """One round from `configure_fit` to `aggregate_evaluate` (times from `perf_counter`)."""

    server_round: int
    started: float = field(default_factory=time.perf_counter)
    train: TrainOutcome | None = None
    trained_at: float | None = None
    evaluation: EvaluateOutcome | None = None
    evaluated_at: float | None = None
    # node id -> site id of the sites whose evaluate reply said "share level aggregate"
    aggregate_only: dict[int, str] = field(default_factory=dict)
    sampled: int = 0  # nodes the strategy asked to train
    privacy: dict[str, Any] | None = None  # the ε ledger's entry (differential privacy on)

    def seconds(self) -> dict[str, float]:
        now = time.perf_counter()
        trained = self.trained_at or now
        evaluated = self.evaluated_at or now
        return {
            "train": trained - self.started,
            "evaluate": evaluated - trained,
            "total": evaluated - self.started,
        }


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class RoundRecorder:
    """Keeps `results.json` current, checkpoints each completed round, logs one line per event.

    `on_checkpoint(round, arrays)` runs once a round is trained, evaluated and recorded.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        config: dict[str, Any],
        num_rounds: int,
        on_checkpoint: Callable[[int, list[np.ndarray]], object],
        message_times: MessageTimes | None = None,
    ) -> None:
        self.path = Path(out_dir) / "results.json"
        self.config = dict(config)
        self.num_rounds = num_rounds
        self.on_checkpoint = on_checkpoint
        # Where each phase's seconds went, message by message (deployment only: server/polling.py).
        self.message_times = message_times
        self.rounds: dict[int, dict[str, Any]] = {}
        self.privacy_stop: dict[str, Any] | None = None
        self.selection: dict[str, Any] | None = None  # server/selection.py, after the run
        # Where the last round's `seconds.total` ended (its evaluation, plus its evaluation
        # sum's seconds): a round's "before" is the gap from there to its own start (the
        # recording, checkpoint and anything else between rounds), so that start to start is
        # `before` + `total`, and no time goes unmeasured.
        self._counted_until: float | None = None

    def load_completed(self, *, up_to_round: int) -> None:
        """On resume: keep the rounds a previous process completed, drop anything later."""
        if not self.path.is_file():
            return
        previous = json.loads(self.path.read_text())
        self.rounds = {
            entry["round"]: entry
            for entry in previous.get("rounds", [])
            if entry["round"] <= up_to_round
        }

    def _entry(self, server_round: int) -> dict[str, Any]:
        return self.rounds.setdefault(
            server_round, {"round": server_round, "train": {}, "sites": {}, "aggregate": {}}
        )

    def trained(self, state: RoundState) -> None:
        assert state.train is not None
        entry = self._entry(state.server_round)
        entry["train"] = state.train.to_json()
        if state.privacy is not None:
            entry["privacy"] = state.privacy
        for reason in state.train.failure_reasons:
            log.warning("round %d: a site failed to train: %s", state.server_round, reason)
        for note in state.train.notes:
            log.warning("round %d: %s", state.server_round, note)
        for site, reason in state.train.rejected.items():
            log.warning("round %d: %s's delta %s", state.server_round, site, reason)
        if state.train.status == "failed":
            log.warning(
                "round %d failed: %s; the model is unchanged",
                state.server_round,
                state.train.problem,
            )
        if state.train.status == "halted":
            log.warning(
                "round %d: secure aggregation halted (too few sites left); the model is unchanged",
                state.server_round,
            )

    def evaluated(self, state: RoundState, *, global_arrays: list[np.ndarray]) -> None:
        """Record the evaluation, write results.json, then checkpoint: the round is complete."""
        assert state.evaluation is not None
        for reason in state.evaluation.failure_reasons:
            log.warning("round %d: a site failed to evaluate: %s", state.server_round, reason)
        for note in state.evaluation.notes:
            log.warning("round %d (evaluation): %s", state.server_round, note)
        entry = self._entry(state.server_round)
        entry["sites"] = state.evaluation.sites
        entry["aggregate"] = state.evaluation.aggregate()
        seconds = state.seconds()
        if self._counted_until is not None:
            seconds["before"] = state.started - self._counted_until
        entry["seconds"] = seconds
        drained = self.message_times.drain() if self.message_times is not None else {}
        if drained:  # the simulation's grid records none
            entry["messages"] = drained
        self.flush()
        self.on_checkpoint(state.server_round, global_arrays)
        line = progress_line(
            state.server_round, self.num_rounds, state.evaluation.sites, seconds["total"]
        )
        log.info("%s%s", line, privacy_suffix(entry.get("privacy")))
        self._counted_until = state.evaluated_at or time.perf_counter()

    def stopped_by_budget(self, refusal: dict[str, Any]) -> None:
        """The ε budget stops the run before a round: one line, and `privacy_stop` in the record."""
        self.privacy_stop = dict(refusal)
        log.warning(
            "stopping before round %d: its worst case would take ε from %.3g to %.3g, past the "
            "budget dp-epsilon-budget = %g (δ = %g)",
            refusal["stopped_before_round"],
            refusal["epsilon"],
            refusal["epsilon_if_run"],
            refusal["epsilon_budget"],
            refusal["delta"],
        )
        self.flush()

    def federation_summed(self, server_round: int, outcome: FederationOutcome) -> None:
        """Record the round's evaluation sum (after `evaluated`: the round is already complete)."""
        entry = self._entry(server_round)
        entry["federation_sum"] = outcome.to_json()
        entry["federation_means"] = dict(outcome.means)
        entry["federation_contributors"] = dict(outcome.contributors)
        drained = self.message_times.drain(as_one="evaluation_sum") if self.message_times else {}
        if drained:
            entry.setdefault("messages", {}).update(drained)
        if outcome.seconds is not None:
            seconds = entry.setdefault("seconds", {})
            seconds["federation_sum"] = outcome.seconds
            seconds["total"] = seconds.get("total", 0.0) + outcome.seconds
        for reason in outcome.failure_reasons:
            log.warning("round %d: a site failed in the evaluation sum: %s", server_round, reason)
        self.flush()
        if outcome.status == "aggregated":
            log.info(
                "round %d: evaluation sum over %d of %d 'aggregate' sites: %d federation-level "
                "figures, %.1f s",
                server_round,
                outcome.results,
                outcome.sites,
                len(outcome.means),
                outcome.seconds or 0.0,
            )
        if self._counted_until is not None and outcome.seconds is not None:
            self._counted_until += outcome.seconds

    def document(self) -> dict[str, Any]:
        document = {
            "config": self.config,
            "rounds": [self.rounds[key] for key in sorted(self.rounds)],
        }
        if self.privacy_stop is not None:
            document["privacy_stop"] = self.privacy_stop
        if self.selection is not None:
            document["selection"] = self.selection
        return document

    def flush(self) -> Path:
        return write_json(self.path, self.document(), sort_keys=True)


def privacy_suffix(privacy: dict[str, Any] | None) -> str:
    """`, ε 1.2 (round 0.41) at δ 1e-06` for the progress line; empty without DP."""
    if not privacy:
        return ""
    return (
        f", ε {privacy['epsilon']:.3g} (round {privacy['epsilon_round']:.3g}) "
        f"at δ {privacy['delta']:g}"
    )


def progress_line(
    server_round: int, num_rounds: int, sites: dict[str, dict[str, Any]], seconds: float
) -> str:
    aucs = {site: float(m["auc"]) for site, m in sites.items() if is_number(m.get("auc"))}
    if not aucs:
        return f"round {server_round}/{num_rounds}: {len(sites)} sites replied, {seconds:.1f} s"
    worst = min(aucs, key=aucs.__getitem__)
    return (
        f"round {server_round}/{num_rounds}: {len(sites)} sites, mean AUC "
        f"{np.mean(list(aucs.values())):.4f}, worst {worst} {aucs[worst]:.4f}, {seconds:.1f} s"
    )
