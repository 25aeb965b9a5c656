"""FedAvg over client deltas, checked by the coordinator (server/defences.py); each round's outcome
goes to a recorder, keyed by site id."""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from common import weights
from common.memory import release_free_heap
from common.protocol import AGGREGATE_ONLY, NUM_EXAMPLES, SERVER_ROUND, SITE_ERRORS, SITE_ID
from common.run_config import RunSettings
from server.defences import (
    MaskedRound,
    Screened,
    SiteReply,
    aggregate_problem,
    combine,
    screen_replies,
    unique_site_ids,
)
from server.momentum import ServerMomentum
from server.privacy import PrivacyLedger
from server.rounds import EvaluateOutcome, RoundRecorder, RoundState, TrainOutcome

Failure = tuple[ClientProxy, Any] | BaseException


class DeltaFedAvg(FedAvg):
    """Clients reply `local - global`; the new global model is `global + weighted mean delta`
    (with `server-momentum`, `global + server-learning-rate * velocity`: server/momentum.py).

    Under SecAgg+ the workflow hands `aggregate_fit` the already-unmasked weighted mean as
    every result's parameters (and `masked_round` what else the unmask stage learnt). A round
    whose delta fails the coordinator's checks leaves the model as it was: status "failed".
    """

    def __init__(
        self,
        *,
        settings: RunSettings,
        initial_arrays: list[np.ndarray],
        recorder: RoundRecorder,
        ledger: PrivacyLedger | None = None,
    ) -> None:
        nodes = settings.min_nodes
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=nodes,
            min_evaluate_clients=nodes,
            min_available_clients=nodes,
            initial_parameters=ndarrays_to_parameters(weights.pack(initial_arrays)),
            accept_failures=True,
        )
        self.settings = settings
        self.recorder = recorder
        self.ledger = ledger  # differential privacy on: what each released sum cost
        self.global_arrays = [array.copy() for array in initial_arrays]
        self.momentum = ServerMomentum(
            momentum=settings.server_momentum, learning_rate=settings.server_learning_rate
        )
        self.round: RoundState | None = None
        self.masked: MaskedRound | None = None  # this round's, from SecAgg+'s unmask stage

    @property
    def noise_multiplier(self) -> float:
        return self.ledger.noise_multiplier if self.ledger is not None else 0.0

    def masked_round(self, masked: MaskedRound) -> None:
        """SecAgg+'s unmask stage: the sum of the weight ratios, before `aggregate_fit`."""
        self.masked = masked

    def __repr__(self) -> str:
        return f"DeltaFedAvg(mode={self.settings.mode}, nodes={self.settings.min_nodes})"

    def _arrays(self, parameters: Parameters, *, lenient: bool = False) -> list[np.ndarray]:
        """Arrays shaped like the model from `parameters`: packed in one vector, as the model
        and deltas travel (common/weights.py, `pack`), or one array per layer. `lenient`: a
        site's reply that fits neither comes back as sent, for screening to leave it out with
        the reason, instead of failing the round."""
        received = parameters_to_ndarrays(parameters)
        try:
            return weights.unpack(received, layout=weights.shapes(self.global_arrays))
        except ValueError:
            if lenient:
                return received
            raise

    def _state(self, server_round: int) -> RoundState:
        if self.round is None or self.round.server_round != server_round:
            self.round = RoundState(server_round)
        return self.round

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        # The last phase's replies (a model-sized delta or a report per site) are garbage by
        # now: give their pages back, so the coordinator's memory does not grow with the sites.
        release_free_heap()
        self.round = RoundState(server_round)
        self.masked = None
        self.global_arrays = self._arrays(parameters)
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.round.sampled = len(instructions)
        for _, fit_ins in instructions:
            fit_ins.config = {SERVER_ROUND: server_round}
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Failure],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        state = self._state(server_round)
        state.trained_at = time.perf_counter()
        keys, notes = unique_site_ids([(p.node_id, _site_of(p, r.metrics)) for p, r in results])
        state.train = TrainOutcome(
            status="aggregated" if results else "no-results",
            mode=self.settings.mode,
            sites={key: _train_figures(res) for key, (_, res) in zip(keys, results, strict=True)},
            failure_reasons=[describe_failure(item) for item in failures],
            notes=notes,
        )
        mean_delta = self._round_delta(state.train, keys, results) if results else None
        if mean_delta is not None:
            step = self.momentum.step(mean_delta)
            self.global_arrays = weights.add(self.global_arrays, step)
            state.train.mean_delta_norm = weights.global_norm(mean_delta)
            if not self.momentum.is_plain:
                state.train.step_norm = weights.global_norm(step)
        if self.ledger is not None:
            state.privacy = self._spend(state, survivors=len(results))
        self.recorder.trained(state)
        if mean_delta is None:
            return None, {}
        return ndarrays_to_parameters(weights.pack(self.global_arrays)), {"sites": len(results)}

    def _round_delta(
        self, outcome: TrainOutcome, keys: list[str], results: list[tuple[ClientProxy, FitRes]]
    ) -> list[np.ndarray] | None:
        """The checked delta that moves the model, or None (outcome marked "failed")."""
        masked = None
        if self.settings.mode == "secagg":  # every result carries the same unmasked mean
            mean_delta = self._arrays(results[0][1].parameters)
            masked = self.masked
        else:
            replies = [
                SiteReply(key, self._arrays(res.parameters, lenient=True), int(res.num_examples))
                for key, (_, res) in zip(keys, results, strict=True)
            ]
            screened = screen_replies(
                replies,
                layout=self.global_arrays,
                settings=self.settings,
                noise_multiplier=self.noise_multiplier,
            )
            outcome.rejected = screened.rejected
            _record_weights(outcome, screened)
            if not screened.accepted:
                outcome.fail("every site's delta was left out")
                return None
            mean_delta = combine(screened, settings=self.settings)
        problem = aggregate_problem(
            mean_delta,
            layout=self.global_arrays,
            settings=self.settings,
            survivors=len(results),
            masked=masked,
            noise_multiplier=self.noise_multiplier,
        )
        if problem is not None:
            outcome.fail(problem)
            return None
        return mean_delta

    def _spend(self, state: RoundState, *, survivors: int) -> dict[str, Any]:
        assert self.ledger is not None
        if survivors == 0:
            return self.ledger.nothing_released()
        threshold = None  # FedAvg: the coordinator sees every delta alone
        if self.settings.mode == "secagg":
            threshold = self.settings.resolved_secagg_shares(num_nodes=state.sampled)[1]
        return self.ledger.spend(survivors=survivors, threshold=threshold)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        release_free_heap()  # the train replies, as in configure_fit
        state = self._state(server_round)
        if state.train is None:  # SecAgg+ halted (too few survivors): the model is unchanged
            state.train = TrainOutcome(status="halted", mode=self.settings.mode)
            state.trained_at = time.perf_counter()
            if self.ledger is not None:
                state.privacy = self.ledger.nothing_released()
            self.recorder.trained(state)
        instructions = super().configure_evaluate(server_round, parameters, client_manager)
        for _, evaluate_ins in instructions:
            evaluate_ins.config = {SERVER_ROUND: server_round}
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Failure],
    ) -> tuple[float | None, dict[str, Scalar]]:
        state = self._state(server_round)
        keys, notes = unique_site_ids([(p.node_id, _site_of(p, r.metrics)) for p, r in results])
        # Exactly what each site's share policy let through (its EvaluateRes count is a dummy).
        state.evaluation = EvaluateOutcome(
            sites={
                key: _without_site_id(res.metrics)
                for key, (_, res) in zip(keys, results, strict=True)
            },
            failure_reasons=[describe_failure(item) for item in failures],
            notes=notes,
        )
        # Their figures wait for the evaluation sum that follows (server/federation.py).
        state.aggregate_only = {
            proxy.node_id: key
            for key, (proxy, res) in zip(keys, results, strict=True)
            if res.metrics.get(AGGREGATE_ONLY) == 1
        }
        state.evaluated_at = time.perf_counter()
        self.recorder.evaluated(state, global_arrays=self.global_arrays)
        loss = float(np.mean([res.loss for _, res in results])) if results else None
        aggregate = state.evaluation.aggregate()
        return loss, {key: value for key, value in aggregate.items() if isinstance(value, float)}


def _site_of(proxy: ClientProxy, metrics: dict[str, Scalar]) -> str:
    return str(metrics.get(SITE_ID, f"node-{proxy.node_id}"))


def _without_site_id(metrics: dict[str, Scalar]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if key != SITE_ID}


def _train_figures(res: FitRes) -> dict[str, Any]:
    return _without_site_id(res.metrics) | {NUM_EXAMPLES: int(res.num_examples)}


def _record_weights(outcome: TrainOutcome, screened: Screened) -> None:
    """Each accepted FedAvg site's weight as the coordinator used it (`max-weight` applied)."""
    for site, _, weight in screened.accepted:
        outcome.sites[site][COORDINATOR_WEIGHT] = weight


COORDINATOR_WEIGHT = "coordinator_weight"


SITE_ERROR = re.compile(r"fedsec-(E\d+):")
"""A site's fixed error code (client/errors.py), wherever flwr wrapped it."""
FEDSEC_CODE = re.compile(r"fedsec-[A-Z]\d+: .*?(?='>|\n|$)")
"""Any other fedsec code and its line (the text after it is the coder's fixed sentence)."""


def describe_failure(failure: Failure) -> str:
    """One line per failed reply, at most 300 characters: a site's fixed error code and its
    sentence when there is one (a refusal such as its quality gate), else the first line."""
    if isinstance(failure, BaseException):
        text = f"{type(failure).__name__}: {failure}"
    else:
        proxy, res = failure
        text = f"node {proxy.node_id}: {getattr(res, 'status', res)}"
    found = SITE_ERROR.search(text)
    if found and found.group(1) in SITE_ERRORS:
        return f"fedsec-{found.group(1)}: {SITE_ERRORS[found.group(1)]}"
    marked = FEDSEC_CODE.search(text)  # e.g. a data holder's app guard (deploy/app_guard.py)
    if marked:
        return marked.group(0).strip()[:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else text)[:300]
