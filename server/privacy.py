"""The ε ledger: what each round's released sum cost in differential privacy, and the budget stop.

A round that releases a sum of k surviving sites' noised deltas (noise sized for the
reconstruction threshold t) is a Gaussian mechanism with multiplier z·√(k/t) ≥ z; under
FedAvg the coordinator sees each delta alone, so the multiplier is z. A halted round
releases nothing and costs nothing. The state is the list of released multipliers, kept per
round in `results.json`, so a resumed run rebuilds exactly the ledger it had.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.dp import effective_noise_multiplier, epsilon_of_rounds


class PrivacyLedger:
    """Cumulative (ε, δ) of a run's released rounds, by dp-accounting's RDP accountant."""

    def __init__(
        self,
        *,
        noise_multiplier: float,
        delta: float,
        sampling_rate: float = 1.0,
        epsilon_budget: float = 0.0,
    ) -> None:
        if noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier must be > 0; got {noise_multiplier}")
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.sampling_rate = sampling_rate
        self.epsilon_budget = epsilon_budget
        self.released: list[float] = []  # effective multiplier of every released round, in order

    def epsilon(self, multipliers: Iterable[float] | None = None) -> float:
        """Cumulative ε at δ of the released rounds (or of `multipliers`)."""
        chosen = self.released if multipliers is None else list(multipliers)
        return epsilon_of_rounds(chosen, sampling_rate=self.sampling_rate, delta=self.delta)

    def spend(self, *, survivors: int, threshold: int | None) -> dict[str, Any]:
        """Record a released sum of `survivors` sites (`threshold` None: FedAvg, no masking)."""
        effective = (
            self.noise_multiplier
            if threshold is None
            else effective_noise_multiplier(
                noise_multiplier=self.noise_multiplier, survivors=survivors, threshold=threshold
            )
        )
        self.released.append(effective)
        return {
            "released": True,
            "survivors": survivors,
            "threshold": threshold,
            "noise_multiplier": self.noise_multiplier,
            "effective_noise_multiplier": effective,
            "sampling_rate": self.sampling_rate,
            "delta": self.delta,
            "epsilon_round": self.epsilon([effective]),
            "epsilon": self.epsilon(),
        }

    def nothing_released(self) -> dict[str, Any]:
        """A round whose sum never reached the coordinator (SecAgg+ halted, no results)."""
        return {
            "released": False,
            "delta": self.delta,
            "epsilon_round": 0.0,
            "epsilon": self.epsilon(),
        }

    def budget_refusal(self, server_round: int) -> dict[str, Any] | None:
        """Why round `server_round` must not run (its worst case, only t survivors, would take ε
        past the budget), or None when it may."""
        if self.epsilon_budget <= 0:
            return None
        worst = self.epsilon([*self.released, self.noise_multiplier])
        if worst <= self.epsilon_budget:
            return None
        return {
            "stopped_before_round": server_round,
            "epsilon": self.epsilon(),
            "epsilon_if_run": worst,
            "epsilon_budget": self.epsilon_budget,
            "delta": self.delta,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"released": list(self.released)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.released = [float(value) for value in state["released"]]

    def load_rounds(self, rounds: Iterable[dict[str, Any]]) -> None:
        """On resume: the released multipliers recorded by the completed rounds, in round order."""
        entries = sorted(rounds, key=lambda entry: entry["round"])
        self.load_state_dict(
            {
                "released": [
                    entry["privacy"]["effective_noise_multiplier"]
                    for entry in entries
                    if entry.get("privacy", {}).get("released")
                ]
            }
        )
