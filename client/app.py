"""The ClientApp: flwr records in, fedsec's local train/evaluate, flwr records out. Thin.

In deployment every message starts a fresh process. Three of SecAgg+'s four train messages
(setup, key sharing, unmasking) need no model, so torch and the training stack are imported
only by the handlers that train or evaluate; the reply guard needs only the site's names.

A site at share level `aggregate` answers an evaluate message with an acknowledgement only and
keeps its figures in the node's context (which stays on the node); a later train message whose
config asks for the evaluation sum gets them as a vector for SecAgg+ to mask, never in clear.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from flwr.app import Context, Message, MetricRecord
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import (
    Code,
    EvaluateRes,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
)
from flwr.compat.common import recorddict_compat as compat

from client.audit import make_reply_guard
from client.errors import make_error_guard
from client.site import find_site_dirs
from client.worker import forward, warm_names
from common import weights
from common.masks import use_cryptographic_masks
from common.protocol import SERVER_ROUND, SITE_ID, TASK, TASK_EVALUATION_SUM
from common.run_config import RunSettings
from common.share import (
    FEDERATION_KEYS,
    masked_figures,
    share_subset,
    share_train_metrics,
    shared_weight,
)

# SecAgg+ masks from the whole seed (ChaCha20), not flwr 1.42's 32-bit-seeded generator.
use_cryptographic_masks()

log = logging.getLogger("fedsec.client")


def site_location(context: Context) -> tuple[Path, Path | None]:
    """(site folder, work folder): from node config in deployment, by partition in simulation."""
    node_config = context.node_config
    if "site-dir" in node_config:
        work = node_config.get("work-dir")
        return Path(str(node_config["site-dir"])), Path(str(work)) if work else None
    data_dir = str(context.run_config.get("data-dir", ""))
    if not data_dir or "partition-id" not in node_config:
        raise ValueError(
            "this node has no site: set node config site-dir=PATH "
            "(deployment) or run config data-dir (simulation)"
        )
    sites = _simulated_sites(Path(data_dir), context.run_id)
    return sites[int(node_config["partition-id"]) % len(sites)], None


@functools.lru_cache(maxsize=4)
def _simulated_sites(data_dir: Path, run_id: int) -> tuple[Path, ...]:
    """A simulated run's site folders, listed once per run and process. Listing them costs
    ~26 ms at 1,000 sites and every message asks more than once, which made a round's cost per
    site grow with the number of sites; it also keeps each node on one site for the whole run,
    whatever folders appear meanwhile."""
    return tuple(find_site_dirs(data_dir))


def _site(context: Context):
    """The site this node serves, read once per process (guard, training and evaluation)."""
    from client.pipeline import load_site

    site_dir, work_dir = site_location(context)
    return load_site(site_dir, work_dir=work_dir)


def _site_config(context: Context):
    """The site's site.toml only, for the stages that need no logs (masked weight, evaluation
    sum): a message's ClientApp then reads no log when a warm worker serves the node."""
    from client.site import load_site_config

    return load_site_config(site_location(context)[0])


def _site_names(context: Context) -> frozenset[str]:
    """Every name the site read, for the reply guard (no model, no torch needed); from the
    node's warm worker when one wrote them for the site's current files (client/worker)."""
    warm = warm_names(context)
    return warm if warm is not None else _site(context).names


def _work_dir(context: Context) -> Path:
    site_dir, work_dir = site_location(context)
    return (work_dir or site_dir / "work").resolve()


def _audit_dir(context: Context) -> Path | None:
    if not RunSettings.from_run_config(context.run_config).audit_replies:
        return None
    return _work_dir(context) / "audit"


# Outermost first: any exception, the guard's own included, leaves as a fixed code only.
app = ClientApp(
    mods=[
        make_error_guard(work_dir=_work_dir),
        make_reply_guard(site_names=_site_names, audit_dir=_audit_dir),
    ]
)


def _threads() -> None:
    import torch

    # Simulation packs several sites per core: one intra-op thread each avoids oversubscription.
    torch.set_num_threads(1)


def _fit(msg: Message, context: Context) -> Message:
    fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    task = fit_ins.config.get(TASK)
    if task == TASK_EVALUATION_SUM:
        return _evaluation_sum(msg, context, fit_ins)
    if task is not None:
        raise ValueError(f"unknown task {task!r} in a train message")
    warm = forward("train", msg, context)  # the node's warm worker, if one runs (client/worker)
    if warm is not None:
        return warm
    _threads()
    from client.local import dp_noised_delta, train_round

    settings = RunSettings.from_run_config(context.run_config)
    site = _site(context)
    server_round = int(fit_ins.config.get(SERVER_ROUND, 0))
    global_arrays, packed = _received_model(fit_ins.parameters)
    reply = train_round(
        site, global_arrays=global_arrays, settings=settings, server_round=server_round
    )
    level = site.config.share.level
    masked = RECORD_KEY_CONFIGS in msg.content.config_records
    delta = reply.delta
    if settings.dp_enabled:
        delta = dp_noised_delta(
            delta, settings=settings, threshold=_secagg_threshold(context) if masked else 1
        )
    fit_res = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(weights.pack(delta) if packed else delta),
        # SecAgg+'s mod reads the true weight from here to scale the masked vector; `train`
        # replaces it by what the share level allows once the vector is masked.
        num_examples=reply.weight
        if masked
        else shared_weight(reply.weight, level=level, masked=False),
        metrics={SITE_ID: site.site_id, **share_train_metrics(reply.metrics, level=level)},
    )
    return Message(compat.fitres_to_recorddict(fit_res, keep_input=False), reply_to=msg)


def _received_model(parameters) -> tuple[list[np.ndarray], bool]:
    """The global model's arrays, and whether they came packed in one vector (then the reply
    goes back packed too: common/weights.py, `pack`)."""
    from client.local import SPEC
    from common.model import array_shapes

    layout = array_shapes(SPEC)
    received = parameters_to_ndarrays(parameters)
    return weights.unpack(received, layout=layout), weights.is_packed(received, layout=layout)


def _secagg_threshold(context: Context) -> int:
    """The round's reconstruction threshold, as SecAgg+'s setup stage stored it on this node."""
    state = context.state.config_records[RECORD_KEY_STATE]
    return int(state["threshold"])


# In the node's context (it never leaves the node): the figures of the last evaluation at level
# `aggregate`, until the evaluation sum of that round takes them.
MASKED_FIGURES_RECORD = "fedsec.masked-figures"


def _keep_masked_figures(context: Context, metrics: dict, *, server_round: int) -> None:
    values, valid = masked_figures(metrics)
    context.state[MASKED_FIGURES_RECORD] = MetricRecord(
        {"round": server_round, "values": values.tolist(), "valid": valid.tolist()}
    )


def _evaluation_sum(msg: Message, context: Context, fit_ins) -> Message:
    """This site's part of the round's evaluation sum: its figures if it is at `aggregate` and
    SecAgg+ masks the reply, zeros otherwise (a `rates` site's figures are sent in clear, and an
    unmasked request gets nothing); weight 1, so every site counts once in the mean."""
    config = _site_config(context)
    server_round = int(fit_ins.config.get(SERVER_ROUND, 0))
    masked = RECORD_KEY_CONFIGS in msg.content.config_records
    kept = context.state.metric_records.pop(MASKED_FIGURES_RECORD, None)  # used once
    values = np.zeros(len(FEDERATION_KEYS), dtype=np.float64)
    valid = np.zeros(len(FEDERATION_KEYS), dtype=np.float64)
    if (
        masked
        and config.share.level == "aggregate"
        and kept is not None
        and int(kept["round"]) == server_round
    ):
        values = np.asarray(kept["values"], dtype=np.float64)
        valid = np.asarray(kept["valid"], dtype=np.float64)
    elif config.share.level == "aggregate" and not masked:
        log.warning("an evaluation sum was asked for without SecAgg+: this site sent zeros")
    fit_res = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters([values, valid]),
        num_examples=1,
        metrics={SITE_ID: config.site_id},
    )
    return Message(compat.fitres_to_recorddict(fit_res, keep_input=False), reply_to=msg)


NUM_EXAMPLES_RECORD = "fitres.num_examples"  # where flwr's compat layer keeps FitRes.num_examples


@app.train()
def train(msg: Message, context: Context) -> Message:
    # SecAgg+ exists only on flwr's legacy path; its mod wraps training when the server asks.
    if RECORD_KEY_CONFIGS not in msg.content.config_records:
        return _fit(msg, context)
    reply = secaggplus_mod(msg, context, _fit)
    counts = reply.content.metric_records.get(NUM_EXAMPLES_RECORD)
    if counts is not None:  # the masked-vector stage: the weight is inside the vector now
        level = _site_config(context).share.level
        counts["num_examples"] = shared_weight(
            int(counts["num_examples"]), level=level, masked=True
        )
    return reply


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    warm = forward("evaluate", msg, context)
    if warm is not None:
        return warm
    from client.local import evaluate_round

    _threads()
    site = _site(context)
    settings = RunSettings.from_run_config(context.run_config)
    evaluate_ins = compat.recorddict_to_evaluateins(msg.content, keep_input=True)
    report = evaluate_round(
        site,
        global_arrays=_received_model(evaluate_ins.parameters)[0],
        settings=settings,
        server_round=int(evaluate_ins.config.get(SERVER_ROUND, 0)),
    )
    # Only the share policy's subset leaves; the full report stays in the site's work folder.
    level = site.config.share.level
    shared = share_subset(report.metrics, level=level)
    if level == "aggregate":
        server_round = int(evaluate_ins.config.get(SERVER_ROUND, 0))
        if settings.mode == "secagg":
            _keep_masked_figures(context, report.metrics, server_round=server_round)
        else:  # nothing masks a reply under FedAvg: the figures stay here
            log.info(
                "share level 'aggregate' under mode=fedavg: round %d's figures stay at the site",
                server_round,
            )
    evaluate_res = EvaluateRes(
        status=Status(code=Code.OK, message=""),
        loss=float(shared.get("brier", 0.0)),
        num_examples=1,  # a count of test domains is a volume: it travels only in `shared`
        metrics={SITE_ID: site.site_id, **shared},
    )
    return Message(compat.evaluateres_to_recorddict(evaluate_res), reply_to=msg)
