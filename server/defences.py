"""What the coordinator checks of its sites' train replies before a round moves the model.

A site's reply is its word: its example count, its delta, its site id. Each check here uses only
what the coordinator sees in its mode and its own run config, never what the site claims
about itself (issue 18):

- FedAvg (each delta in clear): a site's weight is capped by `max-weight` (1 under
  differential privacy); a delta of the wrong layout, non-finite or longer than the clip norm
  (plus the noise the site was told to add) is left out of the round, with its reason.
- SecAgg+ (the coordinator sees only the weighted mean and the sum of the weight ratios): the
  ratios cannot sum to more than one per site, and the mean cannot be longer than the clip norm
  (plus quantisation and noise); otherwise the whole round is rejected.
- Either way a non-finite aggregate is rejected: the round is marked failed and the model stays.
- Two replies under one site id are both kept, the second renamed, so neither overwrites the
  other's results.
- FedAvg can replace the weighted mean by flwr's coordinate-wise median or trimmed mean
  (`robust-rule`), which one or two hostile sites cannot drag far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from flwr.server.strategy.aggregate import aggregate_median, aggregate_trimmed_avg

from common import weights
from common.dp import site_noise_stddev
from common.run_config import QUANTIZATION_RANGE, RunSettings

NORM_TOLERANCE = 1e-4
"""Relative slack on the clip norm: the client clips in float64 and sends float32."""
NOISE_SIGMAS = 10.0
"""Slack, in standard deviations of a noise vector's norm, before a noised delta counts as long.

The norm of d Gaussian values of standard deviation s is s·√d give or take s/√2: ten of those
(added to s·√d) is a bound an honest site's noise passes but for ~1e-23.
"""


@dataclass(frozen=True)
class SiteReply:
    """One train reply as the coordinator received it: site id (made unique), delta, claimed
    example count."""

    site: str
    delta: list[np.ndarray]
    claimed: int


@dataclass
class Screened:
    """The replies allowed into the round (with the coordinator's weight) and the rest, by site."""

    accepted: list[tuple[str, list[np.ndarray], float]] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MaskedRound:
    """What SecAgg+'s unmask stage knows beyond the mean: the sum of the sites' weight ratios
    (weight / max-weight, quantised), the clipping range and the reconstruction threshold."""

    weight_sum: float
    clipping_range: float
    threshold: int


def unique_site_ids(replies: list[tuple[int, str]]) -> tuple[list[str], list[str]]:
    """(one key per (node id, site id) reply, notes): a repeated site id gets `@node-N`."""
    keys: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    for node_id, site in replies:
        key = site
        if key in seen:
            key = f"{site}@node-{node_id}"
            notes.append(
                f"two replies came as {site}: node {node_id}'s is recorded as {key} "
                "(site ids must be unique; check that node's site.toml)"
            )
        seen.add(key)
        keys.append(key)
    return keys, notes


def coordinator_weight(claimed: int, *, settings: RunSettings) -> float:
    """A FedAvg site's weight: its claimed count capped by the coordinator's `max-weight`
    (every site weighs 1 under differential privacy)."""
    cap = 1.0 if settings.dp_enabled else settings.max_weight
    return float(min(max(claimed, 0), cap))


def delta_norm_bound(settings: RunSettings, *, num_values: int, noise_multiplier: float) -> float:
    """The longest delta an honest FedAvg site sends: the clip norm, plus the whole DP noise
    (z·C per value: nothing masks a FedAvg reply, so each carries all of it)."""
    clip = settings.delta_clip_norm * (1 + NORM_TOLERANCE)
    if noise_multiplier <= 0:
        return clip
    stddev = site_noise_stddev(
        noise_multiplier=noise_multiplier, clip_norm=settings.delta_clip_norm, threshold=1
    )
    return clip + stddev * (math.sqrt(num_values) + NOISE_SIGMAS)


def _layout_problem(delta: list[np.ndarray], layout: list[np.ndarray]) -> str | None:
    if len(delta) != len(layout):
        return f"{len(delta)} arrays where the model has {len(layout)}"
    for index, (got, want) in enumerate(zip(delta, layout, strict=True)):
        if got.shape != want.shape:
            return f"array {index} has shape {got.shape}, the model's is {want.shape}"
        if not np.issubdtype(got.dtype, np.floating):
            return f"array {index} is {got.dtype}, not floating point"
    return None


def screen_replies(
    replies: list[SiteReply],
    *,
    layout: list[np.ndarray],
    settings: RunSettings,
    noise_multiplier: float = 0.0,
) -> Screened:
    """FedAvg: each delta checked alone; the ones that pass get the coordinator's weight."""
    num_values = sum(int(array.size) for array in layout)
    bound = delta_norm_bound(settings, num_values=num_values, noise_multiplier=noise_multiplier)
    screened = Screened()
    for reply in replies:
        problem = _layout_problem(reply.delta, layout)
        norm = math.nan if problem else weights.global_norm(reply.delta)
        if problem is None and not math.isfinite(norm):
            problem = "its delta has NaN or infinite values"
        elif problem is None and norm > bound:
            problem = f"its delta's norm {norm:.4g} exceeds the bound {bound:.4g} (delta-clip-norm)"
        elif problem is None and reply.claimed < 1:
            problem = f"it claimed {reply.claimed} examples"
        if problem is not None:
            screened.rejected[reply.site] = f"left out: {problem}"
            continue
        weight = coordinator_weight(reply.claimed, settings=settings)
        screened.accepted.append((reply.site, reply.delta, weight))
    return screened


def combine(screened: Screened, *, settings: RunSettings) -> list[np.ndarray]:
    """The round's delta from the accepted replies, by `robust-rule` (FedAvg only)."""
    deltas = [delta for _, delta, _ in screened.accepted]
    site_weights = [weight for _, _, weight in screened.accepted]
    if settings.robust_rule == "median":
        combined = aggregate_median([(delta, 1) for delta in deltas])
    elif settings.robust_rule == "trimmed-mean":
        combined = aggregate_trimmed_avg(
            [(delta, 1) for delta in deltas], proportiontocut=settings.trim_fraction
        )
    else:
        return weights.weighted_mean(deltas, weights=site_weights)
    return [np.asarray(array, dtype=np.float32) for array in combined]


def masked_bound(
    settings: RunSettings, *, masked: MaskedRound, survivors: int, num_values: int, noise: float
) -> float:
    """The longest weighted mean honest SecAgg+ sites produce.

    Every site's delta is at most C long and is scaled by its ratio r_i <= 1, so the sum is at
    most C·Σr_i long; each site's stochastic rounding adds under one step (2·range / 2^22) per
    value, and under DP the sum carries noise of z·C·√(k/t) per value. Divided by Σr_i.
    """
    step = 2 * masked.clipping_range / QUANTIZATION_RANGE
    total = settings.delta_clip_norm * masked.weight_sum * (1 + NORM_TOLERANCE)
    total += survivors * step * math.sqrt(num_values)
    if noise > 0:
        stddev = noise * settings.delta_clip_norm * math.sqrt(survivors / masked.threshold)
        total += stddev * (math.sqrt(num_values) + NOISE_SIGMAS)
    return total / masked.weight_sum


def aggregate_problem(
    mean_delta: list[np.ndarray],
    *,
    layout: list[np.ndarray],
    settings: RunSettings,
    survivors: int,
    masked: MaskedRound | None = None,
    noise_multiplier: float = 0.0,
) -> str | None:
    """Why the round's delta must not move the model, or None when it may."""
    problem = _layout_problem(mean_delta, layout)
    if problem is not None:
        return f"the aggregate's layout is wrong: {problem}"
    norm = weights.global_norm(mean_delta)
    if not math.isfinite(norm):
        return "the aggregate has NaN or infinite values"
    if masked is None:
        return None
    # Each site's ratio is at most 1 (its weight capped at max-weight): more means a site
    # claimed more (its ratio may also have wrapped flwr's modulus).
    if not 0 < masked.weight_sum <= survivors * (1 + NORM_TOLERANCE):
        return (
            f"the masked weights sum to {masked.weight_sum:.4g} over {survivors} sites, "
            "each at most 1: a site claimed more than max-weight"
        )
    num_values = sum(int(array.size) for array in layout)
    bound = masked_bound(
        settings,
        masked=masked,
        survivors=survivors,
        num_values=num_values,
        noise=noise_multiplier,
    )
    if norm > bound:
        return (
            f"the aggregate's norm {norm:.4g} exceeds {bound:.4g}, the most sites clipping to "
            f"delta-clip-norm {settings.delta_clip_norm:g} can produce"
        )
    return None
