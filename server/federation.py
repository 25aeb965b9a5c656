"""The evaluation sum: federation-level figures of the sites at share level `aggregate`.

A site at `aggregate` answers each evaluate message with an acknowledgement only. After the
round's evaluation, if at least `MIN_CONTRIBUTORS` sites said so, the ServerApp runs one more
SecAgg+ exchange over those sites: its train messages carry no model, only the round and
`TASK = TASK_EVALUATION_SUM`, and every site answers with two arrays over the fixed vocabulary
`FEDERATION_KEYS` (its figures, 0 where invalid, and 1/0 validity) at weight 1. SecAgg+ hands
back only their mean, from which `federation_means` gives, per figure, the mean over the sites
that contributed and how many did (no mean from fewer than `MIN_CONTRIBUTORS`).

The exchange has its own SecAgg+ parameters: clipping range `MASKED_RANGE` (every figure lies in
[-1, 1]) and max weight 1, so a site's weight ratio is exactly 1 and the mean is exact to one
quantisation step (2 / 2^22). Its strategy returns no parameters: flwr then leaves the global
model in `context.state` as the training round left it.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping

import numpy as np
from flwr.common import FitIns, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.server import LegacyContext
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.serverapp import Grid

from common.config import ConfigError
from common.protocol import SERVER_ROUND, SITE_ID, TASK, TASK_EVALUATION_SUM
from common.run_config import RunSettings
from common.share import MASKED_RANGE, MIN_CONTRIBUTORS, federation_means
from server.rounds import FederationOutcome, RoundRecorder
from server.secagg import RoundSizedSecAggPlus
from server.strategy import DeltaFedAvg, Failure, describe_failure

log = logging.getLogger("fedsec.server")

_NO_MODEL = Parameters(tensors=[], tensor_type="numpy.ndarray")


class EvaluationSumStrategy:
    """The legacy strategy SecAgg+ drives for one evaluation sum.

    `configure_fit` asks the given nodes for their masked figures (no model); `aggregate_fit`
    keeps the unmasked mean and returns no parameters, so the global model is not replaced.
    """

    def __init__(self, nodes: Mapping[int, str]) -> None:
        self.nodes = dict(nodes)
        self.mean: list[np.ndarray] | None = None
        self.results = 0
        self.replied: list[str] = []
        self.failure_reasons: list[str] = []

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        proxies = {proxy.node_id: proxy for proxy in client_manager.all().values()}
        config: dict[str, Scalar] = {SERVER_ROUND: server_round, TASK: TASK_EVALUATION_SUM}
        return [
            (proxies[node], FitIns(parameters=_NO_MODEL, config=dict(config)))
            for node in sorted(self.nodes)
            if node in proxies
        ]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Failure],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self.failure_reasons = [describe_failure(item) for item in failures]
        self.results = len(results)
        self.replied = sorted(
            str(res.metrics.get(SITE_ID, f"node-{proxy.node_id}")) for proxy, res in results
        )
        if results:  # under SecAgg+ every result carries the same unmasked mean
            self.mean = parameters_to_ndarrays(results[0][1].parameters)
        return None, {}


class EvaluationSum:
    """`round_end` workflow: the evaluation sum of the round the training strategy just ran."""

    def __init__(
        self, settings: RunSettings, *, strategy: DeltaFedAvg, recorder: RoundRecorder
    ) -> None:
        self.settings = settings
        self.strategy = strategy
        self.recorder = recorder
        self._warned_fedavg = False
        self.secagg = (
            RoundSizedSecAggPlus(
                settings,
                clipping_range=MASKED_RANGE,
                max_weight=1.0,
                label="SecAgg+ (evaluation sum)",
            )
            if settings.mode == "secagg"
            else None
        )

    def __call__(self, grid: Grid, context: LegacyContext) -> None:
        state = self.strategy.round
        if state is None or not state.aggregate_only:
            return  # no site at share level `aggregate` evaluated: nothing to sum, no cost
        nodes = state.aggregate_only
        if self.secagg is None:
            if not self._warned_fedavg:
                log.warning(
                    "%d site(s) share at level 'aggregate': their figures travel only inside a "
                    "SecAgg+ sum, and mode=fedavg has none, so they stay at the sites "
                    '(set mode = "secagg" to learn federation-level figures)',
                    len(nodes),
                )
                self._warned_fedavg = True
            outcome = FederationOutcome(status="needs-secagg", sites=len(nodes))
        elif len(nodes) < MIN_CONTRIBUTORS:
            # Not even asked: a sum over 1-2 sites would reveal them to the coordinator.
            log.warning(
                "round %d: %d site(s) at share level 'aggregate' evaluated; an evaluation sum "
                "needs %d, so there is no federation-level figure this round",
                state.server_round,
                len(nodes),
                MIN_CONTRIBUTORS,
            )
            outcome = FederationOutcome(status="too-few-sites", sites=len(nodes))
        else:
            outcome = self._sum(grid, context, nodes)
        self.recorder.federation_summed(state.server_round, outcome)

    def _sum(
        self, grid: Grid, context: LegacyContext, nodes: Mapping[int, str]
    ) -> FederationOutcome:
        assert self.secagg is not None
        proxy = EvaluationSumStrategy(nodes)
        sum_context = copy.copy(context)
        sum_context.strategy = proxy
        started = time.perf_counter()
        try:
            self.secagg(grid, sum_context)
        except ConfigError as error:  # shares/threshold that cannot work over these nodes
            log.warning("evaluation sum not run: %s", error)
            return FederationOutcome(
                status="refused",
                sites=len(nodes),
                failure_reasons=[str(error)[:300]],
                seconds=time.perf_counter() - started,
            )
        seconds = time.perf_counter() - started
        if proxy.mean is None:
            log.warning("evaluation sum halted (too few sites left): no federation-level figure")
            return FederationOutcome(
                status="halted",
                sites=len(nodes),
                failure_reasons=proxy.failure_reasons,
                seconds=seconds,
            )
        means, contributors = federation_means(*proxy.mean, sites=proxy.results)
        return FederationOutcome(
            status="aggregated",
            sites=len(nodes),
            results=proxy.results,
            means=means,
            contributors=contributors,
            failure_reasons=proxy.failure_reasons,
            seconds=seconds,
        )
