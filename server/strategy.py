"""FedAvg over client deltas that keeps every site's reply by node id and site id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
from common.run_config import RunSettings
from server.results import RunRecorder

log = logging.getLogger("fedsec.server")

SITE_KEY = "site-id"
ROUND_KEY = "server-round"
# Aggregated over sites, weighted by their test set size; everything else stays per site.
_MEAN_KEYS = ("auc", "tpr_at_fpr_1e-3", "tpr_at_fpr_1e-4")


class DeltaFedAvg(FedAvg):
    """Clients reply `local - global`; the new global model is `global + weighted mean delta`.

    `on_checkpoint(round, arrays)` runs once a round is trained, evaluated and recorded.

    Under SecAgg+ the workflow hands `aggregate_fit` the already-unmasked weighted mean as
    every result's parameters, so the same code serves both modes.
    """

    def __init__(
        self,
        *,
        settings: RunSettings,
        initial_arrays: list[np.ndarray],
        recorder: RunRecorder,
        on_checkpoint: Callable[[int, list[np.ndarray]], None],
    ) -> None:
        nodes = settings.min_nodes
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=nodes,
            min_evaluate_clients=nodes,
            min_available_clients=nodes,
            initial_parameters=ndarrays_to_parameters(initial_arrays),
            accept_failures=True,
        )
        self.settings = settings
        self.recorder = recorder
        self.on_checkpoint = on_checkpoint
        self.global_arrays = [array.copy() for array in initial_arrays]
        self._round_started: dict[int, float] = {}
        self._train_done: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"DeltaFedAvg(mode={self.settings.mode}, nodes={self.settings.min_nodes})"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self._round_started[server_round] = time.perf_counter()
        self.global_arrays = parameters_to_ndarrays(parameters)
        instructions = super().configure_fit(server_round, parameters, client_manager)
        for _, fit_ins in instructions:
            fit_ins.config = {ROUND_KEY: server_round}
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self._train_done[server_round] = time.perf_counter()
        sites = {_site_of(proxy, res.metrics): _plain(res.metrics, res.num_examples)
                 for proxy, res in results}
        train: dict[str, Any] = {
            "status": "aggregated" if results else "no-results",
            "mode": self.settings.mode,
            "results": len(results),
            "failures": len(failures),
            "failure_reasons": [_describe_failure(item) for item in failures],
            "sites": sites,
        }
        for reason in train["failure_reasons"]:
            log.warning("round %d: a site failed to train: %s", server_round, reason)
        if not results:
            self.recorder.record_train(server_round, train)
            return None, {}
        deltas = [parameters_to_ndarrays(res.parameters) for _, res in results]
        sample_weights = [float(res.num_examples) for _, res in results]
        mean_delta = weights.weighted_mean(deltas, weights=sample_weights)
        self.global_arrays = weights.add(self.global_arrays, mean_delta)
        train["mean_delta_norm"] = weights.global_norm(mean_delta)
        self.recorder.record_train(server_round, train)
        return ndarrays_to_parameters(self.global_arrays), {"sites": len(results)}

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if server_round not in self._train_done:
            # SecAgg+ halted (too few survivors): the model is unchanged; say so on disk.
            self.recorder.record_train(
                server_round, {"status": "halted", "mode": self.settings.mode, "sites": {}}
            )
            self._train_done[server_round] = time.perf_counter()
        instructions = super().configure_evaluate(server_round, parameters, client_manager)
        for _, evaluate_ins in instructions:
            evaluate_ins.config = {ROUND_KEY: server_round}
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        # Exactly what each site's share policy let through (its EvaluateRes count is a dummy).
        sites = {_site_of(proxy, res.metrics): {k: v for k, v in res.metrics.items()
                                                if k != SITE_KEY}
                 for proxy, res in results}
        aggregate = _aggregate(sites)
        aggregate["failures"] = len(failures)
        aggregate["failure_reasons"] = [_describe_failure(item) for item in failures]
        for reason in aggregate["failure_reasons"]:
            log.warning("round %d: a site failed to evaluate: %s", server_round, reason)
        self.recorder.record_evaluate(server_round, sites=sites, aggregate=aggregate)
        now = time.perf_counter()
        started = self._round_started.get(server_round, now)
        trained = self._train_done.get(server_round, now)
        self.recorder.record_timing(
            server_round, train=trained - started, evaluate=now - trained, total=now - started
        )
        self.recorder.flush()
        # The round is complete only now (trained, evaluated, recorded): checkpoint it.
        self.on_checkpoint(server_round, self.global_arrays)
        log.info("%s", _progress_line(server_round, self.settings.num_rounds, sites, now - started))
        loss = float(np.mean([res.loss for _, res in results])) if results else None
        return loss, {key: value for key, value in aggregate.items() if isinstance(value, float)}


def _site_of(proxy: ClientProxy, metrics: dict[str, Scalar]) -> str:
    return str(metrics.get(SITE_KEY, f"node-{proxy.node_id}"))


def _plain(metrics: dict[str, Scalar], num_examples: int) -> dict[str, Any]:
    plain = {key: value for key, value in metrics.items() if key != SITE_KEY}
    plain["num_examples"] = int(num_examples)
    return plain


def _describe_failure(failure: tuple[ClientProxy, Any] | BaseException) -> str:
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"[:300]
    proxy, res = failure
    return f"node {proxy.node_id}: {getattr(res, 'status', res)}"[:300]


def _aggregate(sites: dict[str, dict[str, Any]]) -> dict[str, Any]:
    aggregate: dict[str, Any] = {"sites": len(sites)}
    for key in _MEAN_KEYS:
        values = [float(s[key]) for s in sites.values() if _is_number(s.get(key))]
        if values:
            aggregate[f"mean_{key}"] = float(np.mean(values))
            aggregate[f"min_{key}"] = float(np.min(values))
            aggregate[f"max_{key}"] = float(np.max(values))
    return aggregate


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _progress_line(
    server_round: int, num_rounds: int, sites: dict[str, dict[str, Any]], seconds: float
) -> str:
    aucs = {site: float(m["auc"]) for site, m in sites.items() if _is_number(m.get("auc"))}
    if not aucs:
        return f"round {server_round}/{num_rounds}: {len(sites)} sites replied, {seconds:.1f} s"
    worst = min(aucs, key=aucs.__getitem__)
    return (
        f"round {server_round}/{num_rounds}: {len(sites)} sites, mean AUC "
        f"{np.mean(list(aucs.values())):.4f}, worst {worst} {aucs[worst]:.4f}, {seconds:.1f} s"
    )
