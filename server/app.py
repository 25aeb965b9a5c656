"""The ServerApp: wiring between flwr's legacy workflows (SecAgg+ lives only there) and fedsec."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

from common.model import ModelSpec, build_model, model_to_ndarrays
from common.run_config import RunSettings
from server.checkpoints import CheckpointStore
from server.report import write_federation_report
from server.results import RunRecorder
from server.strategy import DeltaFedAvg
from server.workflow import ResumableWorkflow

log = logging.getLogger("fedsec.server")

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(context.run_config)
    out_dir = Path(settings.out_dir).resolve()
    spec = ModelSpec()
    initial = model_to_ndarrays(build_model(spec, seed=settings.seed))
    log.info(
        "fedsec run: mode=%s rounds=%d nodes=%d params=%d out=%s",
        settings.mode, settings.num_rounds, settings.min_nodes,
        sum(int(np.prod(a.shape)) for a in initial), out_dir,
    )
    recorder = RunRecorder(out_dir, config=settings.to_run_config())
    checkpoints = CheckpointStore(out_dir / "checkpoints", spec=spec)
    first_round = 1
    completed = checkpoints.completed_rounds() if settings.resume else []
    if completed:
        initial = checkpoints.load(completed[-1])
        recorder.load_completed(up_to_round=completed[-1])
        first_round = completed[-1] + 1
        log.info("resuming after round %d of %d", completed[-1], settings.num_rounds)
    strategy = DeltaFedAvg(
        settings=settings,
        initial_arrays=initial,
        recorder=recorder,
        on_checkpoint=checkpoints.save,
    )
    legacy_context = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=settings.num_rounds, round_timeout=settings.round_timeout),
        strategy=strategy,
    )
    if first_round <= settings.num_rounds:
        workflow = ResumableWorkflow(first_round=first_round, fit_workflow=_fit_workflow(settings))
        workflow(grid, legacy_context)
    checkpoints.save_final(strategy.global_arrays, out_dir / "model.npz")
    recorder.flush()
    _, html_path = write_federation_report(out_dir)
    log.info("federation report: %s", html_path)


def _fit_workflow(settings: RunSettings) -> SecAggPlusWorkflow | None:
    if settings.mode == "fedavg":
        return None
    # A float is a fraction flwr resolves every round; ints are counts (see RunSettings).
    num_shares, threshold = settings.secagg_shares(num_nodes=settings.min_nodes)
    resolved = settings.resolved_secagg_shares(num_nodes=settings.min_nodes)
    log.info("SecAgg+: num_shares=%s reconstruction_threshold=%s (%d shares, threshold %d "
             "over %d nodes)", num_shares, threshold, *resolved, settings.min_nodes)
    # Clients clip their delta to an L2 norm of `delta_clip_norm`, so no single value can
    # exceed it: that is the smallest clipping range that never clamps (a larger one only
    # coarsens the quantization step, 2 * range / 2**22).
    return SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        clipping_range=settings.delta_clip_norm,
        max_weight=settings.max_weight,
        timeout=settings.round_timeout,
    )
