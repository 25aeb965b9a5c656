"""Server momentum (FedAvgM, Hsu, Qi and Brown 2019): the coordinator's own optimiser step.

Each round the coordinator has one vector, the checked mean of the sites' deltas (under
SecAgg+ the only thing it ever sees). Plain FedAvg adds it to the model. FedAvgM keeps a
velocity across rounds and adds that instead:

    v <- beta * v + mean_delta
    model <- model + eta * v

With beta = 0 and eta = 1 this is FedAvg exactly. The steady-state step is eta / (1 - beta)
times the mean delta, which is the "effective learning rate" the paper's sweeps follow. It is
post-processing of the released sum, so it changes neither what SecAgg+ hides nor any
differential-privacy figure. A failed or halted round moves neither the model nor v.
"""

from __future__ import annotations

import numpy as np

from common import weights


class ServerMomentum:
    """The velocity and the step rule; `velocity` is None until the first applied round."""

    def __init__(self, *, momentum: float, learning_rate: float) -> None:
        self.momentum = float(momentum)
        self.learning_rate = float(learning_rate)
        self.velocity: list[np.ndarray] | None = None

    @property
    def is_plain(self) -> bool:
        """FedAvg exactly: the step is the mean delta, and nothing need be kept or saved."""
        return self.momentum == 0.0 and self.learning_rate == 1.0

    def step(self, mean_delta: list[np.ndarray]) -> list[np.ndarray]:
        """What the model moves by this round, given the round's checked mean delta."""
        if self.is_plain:
            return mean_delta
        if self.velocity is None:
            velocity = [np.asarray(array, dtype=np.float32).copy() for array in mean_delta]
        else:
            velocity = weights.add([self.momentum * v for v in self.velocity], mean_delta)
        self.velocity = [np.asarray(v, dtype=np.float32) for v in velocity]
        return [self.learning_rate * v for v in self.velocity]

    def restore(self, velocity: list[np.ndarray] | None) -> None:
        """On resume: the velocity saved with the last completed round (None: start from 0)."""
        self.velocity = None if velocity is None else [v.copy() for v in velocity]
