"""flwr's legacy round loop, able to start at any round: what resuming from a checkpoint needs.

It also runs an optional `round_end` workflow after each round's evaluation: the masked
evaluation sum of share level `aggregate` (server/federation.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import ConfigRecord, Context
from flwr.server import LegacyContext
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key
from flwr.server.workflow.default_workflows import default_init_params_workflow
from flwr.serverapp import Grid

log = logging.getLogger("fedsec.server")


class ResumableWorkflow(DefaultWorkflow):
    """`DefaultWorkflow` whose rounds run from `first_round` (round numbers seed the clients),
    with `round_end(grid, context)` after each round's evaluation when given, and
    `round_start(round)` before each round: False ends the run there (the ε budget)."""

    def __init__(
        self,
        *,
        first_round: int = 1,
        round_end: Callable[[Grid, LegacyContext], None] | None = None,
        round_start: Callable[[int], bool] | None = None,
        **workflows,
    ) -> None:
        super().__init__(**workflows)
        if first_round < 1:
            raise ValueError(f"first_round must be >= 1, got {first_round}")
        self.first_round = first_round
        self.round_end = round_end
        self.round_start = round_start

    def __call__(self, grid: Grid, context: Context) -> None:
        if not isinstance(context, LegacyContext):
            raise TypeError(f"expected a LegacyContext, got {type(context).__name__}")
        thread, stop, registered = start_update_client_manager_thread(grid, context.client_manager)
        try:
            registered.wait()
            default_init_params_workflow(grid, context)
            config = ConfigRecord()
            context.state.config_records[MAIN_CONFIGS_RECORD] = config
            for server_round in range(self.first_round, context.config.num_rounds + 1):
                if self.round_start is not None and not self.round_start(server_round):
                    break
                config[Key.CURRENT_ROUND] = server_round
                self.fit_workflow(grid, context)
                self.evaluate_workflow(grid, context)
                if self.round_end is not None:
                    self.round_end(grid, context)
        finally:
            stop.set()
            thread.join()
