"""The share policy: which fragility metrics leave a site at each share level, and how rounded.

An allow-list, never a deny-list: a metric passes only if its name is listed for the level (or
starts with a listed prefix, for per-family recall). Values are rounded to 2 significant figures
and non-finite values are not sent at all.

At level `aggregate` nothing is sent in clear: the site's rates go only into a vector that
SecAgg+ masks (`masked_figures`), and the coordinator learns means over at least
`MIN_CONTRIBUTORS` such sites (`federation_means`).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Final, get_args

import numpy as np

from common.config import ShareLevel
from common.families import KNOWN_FAMILIES
from common.protocol import (
    ACK,
    AGGREGATE_ONLY,
    DELTA_CLIP_SCALE,
    FAMILY_RECALL_PREFIX,
    RATE_METRICS,
    TRAIN_FINAL_LOSS,
    TRAIN_LOSS,
    TRAIN_METRICS,
    VOLUME_METRICS,
    WEIGHT_CAPPED,
)

__all__ = [
    "FEDERATION_FRACTIONS",
    "FEDERATION_KEYS",
    "MASKED_RANGE",
    "MIN_CONTRIBUTORS",
    "SHARE_KEYS",
    "SHARE_LEVELS",
    "SHARE_PREFIXES",
    "federation_means",
    "is_shared",
    "masked_figures",
    "round_significant",
    "share_subset",
    "share_train_metrics",
    "shared_weight",
]

SHARE_LEVELS: tuple[ShareLevel, ...] = get_args(ShareLevel)

SHARE_KEYS: dict[ShareLevel, frozenset[str]] = {
    "none": frozenset(),
    "aggregate": frozenset(),  # in clear; its rates travel only masked (masked_figures)
    "rates": RATE_METRICS,
    "rates+volumes": RATE_METRICS | VOLUME_METRICS,
}
SHARE_PREFIXES: dict[ShareLevel, tuple[str, ...]] = {
    "none": (),
    "aggregate": (),
    "rates": (FAMILY_RECALL_PREFIX,),
    "rates+volumes": (FAMILY_RECALL_PREFIX,),
}
_SLUG = re.compile(r"[a-z0-9_]+")
# What a site at level "none" replies, so the coordinator can tell "evaluated" from "failed".
_ACK = {ACK: 1.0}
# At "aggregate" it also says that its figures wait for the masked evaluation sum.
_AGGREGATE_ACK = {ACK: 1.0, AGGREGATE_ONLY: 1.0}


def _check_level(level: str) -> None:
    if level not in SHARE_KEYS:
        raise ValueError(f"share level must be one of {list(SHARE_LEVELS)}; got {level!r}")


def is_shared(key: str, *, level: ShareLevel) -> bool:
    """Whether metric ``key`` may leave the site at ``level`` (before the finiteness check).

    A prefixed key passes only with a non-empty ``[a-z0-9_]`` suffix (a family slug), so no
    dotted name can ride along in a key.
    """
    _check_level(level)
    if key in SHARE_KEYS[level]:
        return True
    return any(
        key.startswith(prefix) and _SLUG.fullmatch(key[len(prefix) :])
        for prefix in SHARE_PREFIXES[level]
    )


def round_significant(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant figures; 0, nan and +-inf come back unchanged.

    Values within a rounding step of the largest float round up to inf.

    >>> round_significant(0.0123456), round_significant(123456), round_significant(-0.987)
    (0.012, 120000.0, -0.99)
    """
    if int(digits) != digits or digits < 1:
        raise ValueError(f"digits must be a whole number >= 1; got {digits}")
    value = float(value)
    if value == 0.0 or not math.isfinite(value):
        return value + 0.0  # turns -0.0 into 0.0
    # Formatting in scientific notation rounds the decimal mantissa exactly once.
    return float(f"{value:.{int(digits) - 1}e}")


def share_subset(metrics: Mapping[str, float], *, level: ShareLevel) -> dict[str, float]:
    """The metrics a site sends at ``level``: allowed keys, finite values, 2 significant figures.

    ``none`` sends only ``{"ack": 1.0}``; ``aggregate`` adds ``{"aggregate_only": 1.0}`` and
    nothing else (its figures travel masked). Values become plain Python floats; a value that is
    not a real number under an allowed key raises ``TypeError`` (a bug upstream, not data to send).
    """
    _check_level(level)
    if level == "none":
        return dict(_ACK)
    if level == "aggregate":
        return dict(_AGGREGATE_ACK)
    shared: dict[str, float] = {}
    for key in sorted(metrics):
        if not is_shared(key, level=level):
            continue
        value = metrics[key]
        if not isinstance(value, numbers.Real):
            raise TypeError(f"metric {key!r} must be a real number to be shared; got {value!r}")
        rounded = round_significant(float(value)) if math.isfinite(value) else math.nan
        # Rounding can overflow at the very top of the float range (1.79e308 -> 1.8e308 = inf).
        if math.isfinite(rounded):
            shared[key] = rounded
    return shared


# --- training replies --------------------------------------------------------------------------

_TRAIN_KEYS: dict[ShareLevel, frozenset[str]] = {
    "none": frozenset(),
    "aggregate": frozenset(),
    "rates": frozenset({TRAIN_LOSS, TRAIN_FINAL_LOSS, DELTA_CLIP_SCALE, WEIGHT_CAPPED}),
    "rates+volumes": TRAIN_METRICS,
}


def share_train_metrics(metrics: Mapping[str, float], *, level: ShareLevel) -> dict[str, float]:
    """What a train reply may carry beside the update: nothing at `none` and `aggregate`;
    losses and the clip scale at `rates`; also the pre-clip update norm at `rates+volumes`;
    2 significant figures.
    """
    _check_level(level)
    allowed = _TRAIN_KEYS[level]
    shared: dict[str, float] = {}
    for key in sorted(metrics):
        value = float(metrics[key])
        if key in allowed and math.isfinite(value):
            shared[key] = round_significant(value)
    return shared


def shared_weight(weight: int, *, level: ShareLevel, masked: bool) -> int:
    """The example count a train reply shows in clear.

    Under secure aggregation the true weight travels inside the masked vector, so the clear
    field is 1 unless the site shares volumes (so 1 at `aggregate` too). Without it (FedAvg)
    the weight must be readable to average; below `rates+volumes` it is rounded to 2
    significant figures.
    """
    _check_level(level)
    if int(weight) < 1:
        raise ValueError(f"weight must be >= 1; got {weight}")
    if level == "rates+volumes":
        return int(weight)
    if masked:
        return 1
    return max(1, int(round_significant(float(weight))))


# --- share level "aggregate": figures only inside a masked sum -------------------------------

MASKED_RANGE: Final = 1.0
"""SecAgg+'s clipping range for the evaluation sum: every masked figure lies in [-1, 1].

Rates, flags and federated gains of rates all do, and a range of 1 keeps SecAgg+'s quantisation
step at 2 / 2^22 (5e-7) per value, far below the 2 significant figures a figure is rounded to.
"""
MIN_CONTRIBUTORS: Final = 3
"""No federation-level figure from fewer sites: a mean over one site is its figure, and over
two, each site can subtract its own."""

MEAN_DECIMALS: Final = 6
"""Federation means are rounded to this many decimals: SecAgg+'s quantisation noise is below."""

FEDERATION_FRACTIONS: Final = {
    # federation key: (rate, limit). These rates have no upper bound (a budget can be overrun
    # many times over; PSI reaches ~18; the shortcut ratio is inf at a model AUC of 0), so their
    # mean would need a clipping range that coarsens every other figure, and clipping them would
    # bias it. The federation learns instead which share of sites is past the limit that the
    # federation report flags.
    "fraction_over_budget": ("budget_utilisation", 1.0),
    "fraction_shortcut": ("shortcut_ratio", 0.95),
    "fraction_psi_major_shift": ("psi_score", 0.25),
}
_UNBOUNDED = frozenset(rate for rate, _ in FEDERATION_FRACTIONS.values())

FEDERATION_KEYS: Final[tuple[str, ...]] = tuple(
    sorted(
        (RATE_METRICS - _UNBOUNDED)
        | {f"{FAMILY_RECALL_PREFIX}{family}" for family in KNOWN_FAMILIES}
        | set(FEDERATION_FRACTIONS)
    )
)
"""The fixed vocabulary of the masked vector, the same on every node: the bounded rates, recall
on every public family name (never a `local_<k>` key: those mean different things at different
sites) and the fractions above. Sorted, so position i means the same key everywhere."""


def _resolvable_flag(key: str) -> str:
    # As the federation report reads it: a federated gain in a TPR shares that TPR's flag.
    return f"{key.removeprefix('federated_gain_')}_resolvable"


def masked_figures(metrics: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid), float64 arrays over `FEDERATION_KEYS`: a site's part of the masked sum.

    A figure is valid when the site computed it (finite), its test set resolves it (a TPR at an
    FPR whose `_resolvable` flag is 0 is left out, as the federation report leaves it out) and,
    rounded to 2 significant figures as `rates` would send it, it lies in [-1, 1]. Rounding
    first means that even if every other contributor colluded with the coordinator, they would
    learn no more than the site would send at `rates`. Invalid figures are 0 with valid 0.
    """
    values = np.zeros(len(FEDERATION_KEYS), dtype=np.float64)
    valid = np.zeros(len(FEDERATION_KEYS), dtype=np.float64)
    for index, key in enumerate(FEDERATION_KEYS):
        if key in FEDERATION_FRACTIONS:
            rate, limit = FEDERATION_FRACTIONS[key]
            value = _real(metrics.get(rate))
            if value is not None and not math.isnan(value):  # +inf is past any limit
                values[index], valid[index] = float(round_significant(value) > limit), 1.0
            continue
        value = _real(metrics.get(key))
        if value is None or not math.isfinite(value) or metrics.get(_resolvable_flag(key)) == 0:
            continue
        value = round_significant(value)
        if -MASKED_RANGE <= value <= MASKED_RANGE:
            values[index], valid[index] = value, 1.0
    return values, valid


def _real(value: object) -> float | None:
    return float(value) if isinstance(value, numbers.Real) else None


def federation_means(
    mean_values: np.ndarray,
    mean_valid: np.ndarray,
    *,
    sites: int,
    min_contributors: int = MIN_CONTRIBUTORS,
) -> tuple[dict[str, float], dict[str, int]]:
    """({key: mean over the sites that contributed}, {key: how many contributed}) from the
    unmasked mean of `sites` vectors built by `masked_figures` (each weighted 1).

    A mean is given only for keys with at least `min_contributors` contributors; counts are
    given for every key with at least one. SecAgg+ quantises each value to a step of
    2 x MASKED_RANGE / 2^22 (4.8e-7), so a mean is off by at most `sites / count` steps: means
    are rounded to 6 decimals (no -1e-7 for a mean of zeros) and clipped to [-1, 1].
    """
    mean_values = np.asarray(mean_values, dtype=np.float64).ravel()
    mean_valid = np.asarray(mean_valid, dtype=np.float64).ravel()
    if mean_values.shape != (len(FEDERATION_KEYS),) or mean_valid.shape != mean_values.shape:
        raise ValueError(
            f"a masked evaluation sum holds 2 x {len(FEDERATION_KEYS)} values; got "
            f"{mean_values.shape} and {mean_valid.shape}"
        )
    if sites < 1:
        raise ValueError(f"sites must be >= 1; got {sites}")
    means: dict[str, float] = {}
    contributors: dict[str, int] = {}
    for key, value, share in zip(FEDERATION_KEYS, mean_values, mean_valid, strict=True):
        count = min(sites, max(0, round(float(share) * sites)))
        if count == 0:
            continue
        contributors[key] = count
        if count >= min_contributors:
            mean = round(float(value) * sites / count, MEAN_DECIMALS) + 0.0  # no -0.0
            means[key] = min(MASKED_RANGE, max(-MASKED_RANGE, mean))
    return means, contributors
