"""SecAgg+ with fedsec's share rule applied to the nodes actually sampled in each round.

flwr's `SecAggPlusWorkflow` takes its share count once, at construction. fedsec's default
(min(15, n) shares, odd, threshold just over half) and whole counts depend on n, the nodes
sampled in the round, which is known only once the strategy has sampled them: this workflow
resolves them then, and refuses a round whose sum could wrap flwr's modulus.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable
from typing import Any

from flwr.server import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

from common.dp import noised_clipping_range, site_noise_stddev
from common.run_config import MODULUS_RANGE, QUANTIZATION_RANGE, RunSettings
from server.defences import MaskedRound

log = logging.getLogger("fedsec.server")


class _CountingStrategy:
    """The round's strategy, reporting how many nodes its `configure_fit` sampled."""

    def __init__(self, strategy: Any, on_sampled: Callable[[int], None]) -> None:
        self._strategy = strategy
        self._on_sampled = on_sampled

    def configure_fit(self, server_round, parameters, client_manager):
        instructions = self._strategy.configure_fit(server_round, parameters, client_manager)
        if instructions:
            self._on_sampled(len(instructions))
        return instructions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._strategy, name)


class RoundSizedSecAggPlus(SecAggPlusWorkflow):
    """`SecAggPlusWorkflow` whose shares and threshold follow the nodes sampled each round.

    A fraction is passed on as a float (flwr resolves it); fedsec's default and whole counts
    are resolved here by `RunSettings.resolved_secagg_shares`. Clients clip their delta to
    an L2 norm of `delta_clip_norm`, so no value exceeds it: that is the smallest clipping
    range that never clamps (a larger one only coarsens the quantisation step).
    """

    def __init__(
        self,
        settings: RunSettings,
        *,
        clipping_range: float | None = None,
        max_weight: float | None = None,
        label: str = "SecAgg+",
        noise_multiplier: float = 0.0,
        on_unmasked: Callable[[MaskedRound], None] | None = None,
    ) -> None:
        """`clipping_range` and `max_weight` default to the training round's (`delta-clip-norm`,
        `max-weight`); the evaluation sum passes its own (values in [-1, 1], weight 1).

        With `noise_multiplier` z > 0 (differential privacy) every site weighs 1 and adds
        N(0, (z·C)²/t) per value: the clipping range widens each round, once t is known, to
        C + 10 per-site standard deviations so that the noise is (but for ~1e-23) never clamped.

        `on_unmasked` learns, before the strategy aggregates, what the unmask stage knows beyond
        the mean (the sum of the weight ratios): the coordinator's checks need it.
        """
        self.settings = settings
        self.on_unmasked = on_unmasked
        self.label = label
        self.noise_multiplier = noise_multiplier
        self._resolved: tuple[int, int] | None = None
        if noise_multiplier > 0:
            max_weight = 1.0
        # Checked against min-nodes now, so a setting that could never aggregate fails at start.
        shares, threshold = settings.secagg_shares(num_nodes=settings.min_nodes)
        super().__init__(
            num_shares=shares,
            reconstruction_threshold=threshold,
            clipping_range=settings.delta_clip_norm if clipping_range is None else clipping_range,
            quantization_range=QUANTIZATION_RANGE,
            modulus_range=MODULUS_RANGE,
            max_weight=settings.max_weight if max_weight is None else max_weight,
            timeout=settings.round_timeout,
        )

    def setup_stage(self, grid: Grid, context: LegacyContext, state) -> bool:
        setup_context = copy.copy(context)
        setup_context.strategy = _CountingStrategy(context.strategy, self._resize)
        return super().setup_stage(grid, setup_context, state)

    def unmask_stage(self, grid: Grid, context: LegacyContext, state) -> bool:
        """flwr's unmask stage, with the sum of the weight ratios passed to `on_unmasked`.

        flwr 1.42 splits that sum off the unmasked vector (`factor_extract`) and divides by it
        without keeping it: the stage's own binding of `factor_extract` is wrapped for the call.
        """
        if self.on_unmasked is None:
            return super().unmask_stage(grid, context, state)
        module = sys.modules[SecAggPlusWorkflow.__module__]
        original = module.factor_extract

        def recording(parameters):
            factor, rest = original(parameters)
            threshold = self._resolved[1] if self._resolved else int(self.reconstruction_threshold)
            self.on_unmasked(
                MaskedRound(
                    weight_sum=float(factor) / self.quantization_range,
                    clipping_range=float(self.clipping_range),
                    threshold=threshold,
                )
            )
            return factor, rest

        module.factor_extract = recording
        try:
            return super().unmask_stage(grid, context, state)
        finally:
            module.factor_extract = original

    def _resize(self, sampled_nodes: int) -> None:
        # Raises ConfigError before any message is sent when n nodes could wrap the modulus.
        self.settings.check_secagg_capacity(num_nodes=sampled_nodes)
        self.num_shares, self.reconstruction_threshold = self.settings.secagg_shares(
            num_nodes=sampled_nodes
        )
        resolved = self.settings.resolved_secagg_shares(num_nodes=sampled_nodes)
        if self.noise_multiplier > 0:
            self.clipping_range = noised_clipping_range(
                clip_norm=self.settings.delta_clip_norm,
                site_stddev=site_noise_stddev(
                    noise_multiplier=self.noise_multiplier,
                    clip_norm=self.settings.delta_clip_norm,
                    threshold=resolved[1],
                ),
            )
        if resolved != self._resolved:
            log.info(
                "%s: %d shares, threshold %d over the %d sampled nodes",
                self.label,
                *resolved,
                sampled_nodes,
            )
            self._resolved = resolved
