"""The share policy: which fragility metrics leave a site at each share level, and how rounded.

An allow-list, never a deny-list: a metric passes only if its name is listed for the level (or
starts with a listed prefix, for per-family recall). Values are rounded to 2 significant figures
and non-finite values are not sent at all.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import get_args

from common.config import ShareLevel
from common.protocol import (
    ACK,
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
    "SHARE_KEYS",
    "SHARE_LEVELS",
    "SHARE_PREFIXES",
    "is_shared",
    "round_significant",
    "share_subset",
    "share_train_metrics",
    "shared_weight",
]

SHARE_LEVELS: tuple[ShareLevel, ...] = get_args(ShareLevel)

SHARE_KEYS: dict[ShareLevel, frozenset[str]] = {
    "none": frozenset(),
    "rates": RATE_METRICS,
    "rates+volumes": RATE_METRICS | VOLUME_METRICS,
}
SHARE_PREFIXES: dict[ShareLevel, tuple[str, ...]] = {
    "none": (),
    "rates": (FAMILY_RECALL_PREFIX,),
    "rates+volumes": (FAMILY_RECALL_PREFIX,),
}
_SLUG = re.compile(r"[a-z0-9_]+")
# What a site at level "none" replies, so the coordinator can tell "evaluated" from "failed".
_ACK = {ACK: 1.0}


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

    ``none`` sends only ``{"ack": 1.0}``. Values become plain Python floats; a value that is not
    a real number under an allowed key raises ``TypeError`` (a bug upstream, not data to send).
    """
    _check_level(level)
    if level == "none":
        return dict(_ACK)
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
    "rates": frozenset({TRAIN_LOSS, TRAIN_FINAL_LOSS, DELTA_CLIP_SCALE, WEIGHT_CAPPED}),
    "rates+volumes": TRAIN_METRICS,
}


def share_train_metrics(metrics: Mapping[str, float], *, level: ShareLevel) -> dict[str, float]:
    """What a train reply may carry beside the update: nothing at `none`; losses and the clip
    scale at `rates`; also the pre-clip update norm at `rates+volumes`; 2 significant figures.
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
    field is 1 unless the site shares volumes. Without it (FedAvg) the weight must be readable
    to average; below `rates+volumes` it is rounded to 2 significant figures.
    """
    _check_level(level)
    if int(weight) < 1:
        raise ValueError(f"weight must be >= 1; got {weight}")
    if level == "rates+volumes":
        return int(weight)
    if masked:
        return 1
    return max(1, int(round_significant(float(weight))))
