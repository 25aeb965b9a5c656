"""Distributed differential privacy: each site's share of the Gaussian noise; ε from dp-accounting.

The mechanism is the Gaussian mechanism on the sum of the sites' clipped deltas (L2
sensitivity `clip_norm`, every site weight 1). Each site adds N(0, (z·C)²/t) per coordinate,
t being the round's SecAgg+ reconstruction threshold, so any sum of k ≥ t sites carries
variance k(z·C)²/t ≥ (z·C)². The accounting itself is Google's `dp-accounting` (RDP); this
module only builds its events and never does privacy arithmetic of its own.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np

NOISE_CLAMP_SIGMAS = 10.0
"""SecAgg+'s clipping range is C + this many per-site standard deviations: a coordinate is
clamped with probability 2·Φ(−10) ≈ 1.5e-23, far below any δ a run would use."""


def secure_generator() -> np.random.Generator:
    """A numpy generator seeded from the operating system's CSPRNG (fresh on every call)."""
    return np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(32), "big")))


def site_noise_stddev(*, noise_multiplier: float, clip_norm: float, threshold: int) -> float:
    """Per-coordinate standard deviation of one site's noise: z·C/√t."""
    if noise_multiplier < 0 or clip_norm <= 0 or threshold < 1:
        raise ValueError(
            f"need noise_multiplier >= 0, clip_norm > 0, threshold >= 1; got "
            f"{noise_multiplier}, {clip_norm}, {threshold}"
        )
    return noise_multiplier * clip_norm / math.sqrt(threshold)


def add_site_noise(
    arrays: list[np.ndarray], *, stddev: float, generator: np.random.Generator
) -> list[np.ndarray]:
    """`arrays` plus independent N(0, stddev²) on every value (float64 noise, input dtype kept)."""
    return [
        (array + generator.normal(0.0, stddev, size=array.shape)).astype(array.dtype, copy=False)
        for array in arrays
    ]


def noised_clipping_range(*, clip_norm: float, site_stddev: float) -> float:
    """The SecAgg+ clipping range that leaves a noised, clipped delta unclamped (but for 1e-23)."""
    return clip_norm + NOISE_CLAMP_SIGMAS * site_stddev


def effective_noise_multiplier(*, noise_multiplier: float, survivors: int, threshold: int) -> float:
    """The multiplier of the noise in a sum of `survivors` sites' shares sized for `threshold`:
    z·√(k/t), never below z when k ≥ t."""
    if survivors < 1 or threshold < 1:
        raise ValueError(f"need survivors >= 1 and threshold >= 1; got {survivors}, {threshold}")
    return noise_multiplier * math.sqrt(survivors / threshold)


def _round_event(noise_multiplier: float, sampling_rate: float):
    import dp_accounting

    event = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        return dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    return event


def epsilon_of_rounds(
    noise_multipliers: list[float], *, sampling_rate: float = 1.0, delta: float
) -> float:
    """ε at `delta` after one Gaussian round per multiplier (RDP accountant of dp-accounting).

    `sampling_rate` < 1 means each site takes part in a round independently with that
    probability (Poisson sampling); 1 means every site is in every round.
    """
    from dp_accounting import rdp

    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling_rate must be in (0, 1]; got {sampling_rate}")
    if not noise_multipliers:
        return 0.0
    if min(noise_multipliers) <= 0:
        return math.inf  # a round without noise: no finite guarantee
    accountant = rdp.RdpAccountant()
    for multiplier in noise_multipliers:
        accountant.compose(_round_event(multiplier, sampling_rate))
    return float(accountant.get_epsilon(delta))


@lru_cache(maxsize=32)
def noise_multiplier_for_epsilon(
    *, epsilon: float, delta: float, num_rounds: int, sampling_rate: float = 1.0
) -> float:
    """The smallest z whose `num_rounds` worst-case rounds stay within (ε, δ), by dp-accounting's
    calibration (bisection over z with a fresh RDP accountant)."""
    import dp_accounting
    from dp_accounting import rdp

    if epsilon <= 0 or num_rounds < 1:
        raise ValueError(f"need epsilon > 0 and num_rounds >= 1; got {epsilon}, {num_rounds}")
    return float(
        dp_accounting.calibrate_dp_mechanism(
            rdp.RdpAccountant,
            lambda z: dp_accounting.SelfComposedDpEvent(_round_event(z, sampling_rate), num_rounds),
            epsilon,
            delta,
        )
    )
