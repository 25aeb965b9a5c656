"""The ServerApp: wiring between flwr's legacy workflows (SecAgg+ lives only there) and fedsec."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.serverapp import Grid

from common.masks import use_cryptographic_masks
from common.model import ModelSpec, build_model, model_to_ndarrays
from common.run_config import RunSettings
from server.checkpoints import CheckpointStore
from server.federation import EvaluationSum
from server.polling import MessageTimes, prompt_replies
from server.privacy import PrivacyLedger
from server.quiet import quiet_site_refusals
from server.report import write_federation_report
from server.rounds import RoundRecorder
from server.secagg import RoundSizedSecAggPlus
from server.selection import SELECTED_MODEL, save_selected
from server.strategy import DeltaFedAvg
from server.workflow import ResumableWorkflow

# Unmask with the clients' mask generator (ChaCha20 from the whole seed, common/masks.py).
use_cryptographic_masks()
# A refusing site is one line (its fixed error code), not flwr's traceback of it, per round.
quiet_site_refusals()

log = logging.getLogger("fedsec.server")

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    times = MessageTimes()
    grid = prompt_replies(grid, times=times)
    settings = RunSettings.from_run_config(context.run_config)
    if settings.mode == "secagg":
        settings.check_secagg_capacity(num_nodes=settings.min_nodes)
    out_dir = Path(settings.out_dir).resolve()
    spec = ModelSpec()
    initial = model_to_ndarrays(build_model(spec, seed=settings.seed))
    log.info(
        "fedsec run: mode=%s rounds=%d nodes=%d params=%d out=%s",
        settings.mode,
        settings.num_rounds,
        settings.min_nodes,
        sum(int(np.prod(a.shape)) for a in initial),
        out_dir,
    )
    checkpoints = CheckpointStore(out_dir / "checkpoints", spec=spec)
    recorder = RoundRecorder(
        out_dir,
        config=settings.to_run_config(),
        num_rounds=settings.num_rounds,
        # The strategy exists by the first checkpoint; its velocity (server momentum) resumes.
        on_checkpoint=lambda server_round, arrays: checkpoints.save(
            server_round, arrays, velocity=strategy.momentum.velocity
        ),
        message_times=times,
    )
    ledger = privacy_ledger(settings)
    first_round = 1
    completed = checkpoints.completed_rounds() if settings.resume else []
    if completed:
        initial = checkpoints.load(completed[-1])
        recorder.load_completed(up_to_round=completed[-1])
        if ledger is not None:  # exactly the rounds the previous process released
            ledger.load_rounds(recorder.rounds.values())
        first_round = completed[-1] + 1
        log.info("resuming after round %d of %d", completed[-1], settings.num_rounds)
    strategy = DeltaFedAvg(
        settings=settings, initial_arrays=initial, recorder=recorder, ledger=ledger
    )
    if completed:
        strategy.momentum.restore(checkpoints.load_velocity(completed[-1]))
    legacy_context = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=settings.num_rounds, round_timeout=settings.round_timeout),
        strategy=strategy,
    )
    if first_round <= settings.num_rounds:
        fit_workflow = None
        if settings.mode == "secagg":
            fit_workflow = RoundSizedSecAggPlus(
                settings,
                noise_multiplier=ledger.noise_multiplier if ledger else 0.0,
                on_unmasked=strategy.masked_round,
            )
        # After each round's evaluation: the masked sum of the `aggregate` sites' figures.
        round_end = EvaluationSum(settings, strategy=strategy, recorder=recorder)
        workflow = ResumableWorkflow(
            first_round=first_round,
            fit_workflow=fit_workflow,
            round_end=round_end,
            round_start=_budget_check(ledger, recorder),
        )
        workflow(grid, legacy_context)
    checkpoints.save_final(strategy.global_arrays, out_dir / "model.npz")
    if settings.select_by != "last":
        recorder.selection = save_selected(
            recorder.document()["rounds"],
            signal=settings.select_by,
            checkpoints=checkpoints,
            path=out_dir / SELECTED_MODEL,
        )
    recorder.flush()
    json_path, html_path = write_federation_report(out_dir, html=settings.report_html)
    log.info("federation report: %s", html_path or json_path)


def privacy_ledger(settings: RunSettings) -> PrivacyLedger | None:
    """The run's ε ledger when differential privacy is on (every site in every round: q = 1)."""
    if not settings.dp_enabled:
        return None
    ledger = PrivacyLedger(
        noise_multiplier=settings.noise_multiplier(),
        delta=settings.dp_delta,
        epsilon_budget=settings.dp_epsilon_budget,
    )
    log.info(
        "differential privacy: noise multiplier %.4g, clip norm %g, δ %g, weights 1; "
        "ε after %d rounds with only t sites surviving: %.3g%s",
        ledger.noise_multiplier,
        settings.delta_clip_norm,
        settings.dp_delta,
        settings.num_rounds,
        ledger.epsilon([ledger.noise_multiplier] * settings.num_rounds),
        f", budget {settings.dp_epsilon_budget:g}" if settings.dp_epsilon_budget else "",
    )
    return ledger


def _budget_check(ledger: PrivacyLedger | None, recorder: RoundRecorder):
    if ledger is None or ledger.epsilon_budget <= 0:
        return None

    def round_start(server_round: int) -> bool:
        refusal = ledger.budget_refusal(server_round)
        if refusal is not None:
            recorder.stopped_by_budget(refusal)
        return refusal is None

    return round_start
