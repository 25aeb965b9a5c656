"""Pure numpy math on lists of weight arrays (federated deltas): add, subtract, clip, average."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Arrays = Sequence[np.ndarray]


def _check_same_layout(first: Arrays, second: Arrays, *, what: str) -> None:
    if len(first) != len(second):
        raise ValueError(
            f"{what}: {len(first)} arrays vs {len(second)}; both must come from the same ModelSpec"
        )
    for index, (left, right) in enumerate(zip(first, second, strict=True)):
        if np.shape(left) != np.shape(right):
            raise ValueError(
                f"{what}: array {index} has shape {np.shape(left)} vs {np.shape(right)}"
            )


def subtract(a: Arrays, b: Arrays) -> list[np.ndarray]:
    """Element-wise a - b as float32 arrays (e.g. local weights - global weights = delta)."""
    _check_same_layout(a, b, what="subtract")
    return [
        (np.asarray(left, dtype=np.float64) - np.asarray(right, dtype=np.float64)).astype(
            np.float32
        )
        for left, right in zip(a, b, strict=True)
    ]


def add(a: Arrays, b: Arrays) -> list[np.ndarray]:
    """Element-wise a + b as float32 arrays (e.g. global weights + aggregated delta)."""
    _check_same_layout(a, b, what="add")
    return [
        (np.asarray(left, dtype=np.float64) + np.asarray(right, dtype=np.float64)).astype(
            np.float32
        )
        for left, right in zip(a, b, strict=True)
    ]


def global_norm(arrays: Arrays) -> float:
    """L2 norm over every element of every array (computed in float64)."""
    return math.sqrt(
        sum(float(np.sum(np.square(np.asarray(array, dtype=np.float64)))) for array in arrays)
    )


def clip_by_global_norm(arrays: Arrays, *, max_norm: float) -> tuple[list[np.ndarray], float]:
    """Scale all arrays by one factor so their global norm is at most max_norm.

    Returns (float32 clipped arrays, scale applied), scale in (0, 1]; direction is kept.
    Non-finite input raises: a broken update must not be silently rescaled.

    >>> clipped, scale = clip_by_global_norm([np.array([3.0, 4.0])], max_norm=1.0)
    >>> clipped[0].tolist(), scale
    ([0.6000000238418579, 0.800000011920929], 0.2)
    """
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be finite and > 0, got {max_norm}")
    norm = global_norm(arrays)
    if not math.isfinite(norm):
        raise ValueError(
            "arrays contain NaN or infinite values; refusing to clip (the update is broken)"
        )
    scale = 1.0 if norm <= max_norm else max_norm / norm
    # Scaling happens in float64; the float32 result may exceed max_norm by ~1e-7 relative.
    clipped = [(np.asarray(array, dtype=np.float64) * scale).astype(np.float32) for array in arrays]
    return clipped, scale


def weighted_mean(
    list_of_arrays: Sequence[Arrays], *, weights: Sequence[float]
) -> list[np.ndarray]:
    """Per position sum_i w_i * arrays_i / sum_i w_i, as float32; weights >= 0, positive sum."""
    if len(list_of_arrays) == 0:
        raise ValueError("weighted_mean needs at least one list of arrays")
    if len(weights) != len(list_of_arrays):
        raise ValueError(f"got {len(weights)} weights for {len(list_of_arrays)} lists of arrays")
    weight_values = np.asarray(weights, dtype=np.float64)
    if not (np.all(np.isfinite(weight_values)) and np.all(weight_values >= 0)):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    total = float(weight_values.sum())
    if total <= 0:
        raise ValueError("weights sum to 0; at least one contribution needs a positive weight")
    reference = list_of_arrays[0]
    for arrays in list_of_arrays[1:]:
        _check_same_layout(reference, arrays, what="weighted_mean")
    means = []
    for position in range(len(reference)):
        accumulated = np.zeros(np.shape(reference[position]), dtype=np.float64)
        for arrays, weight in zip(list_of_arrays, weight_values, strict=True):
            accumulated += weight * np.asarray(arrays[position], dtype=np.float64)
        means.append((accumulated / total).astype(np.float32))
    return means


# ---------------------------------------------------------------- wire form of a model


def pack(arrays: Arrays) -> list[np.ndarray]:
    """All arrays as one float32 vector, in a one-item list: how a model or delta travels.

    flwr's Fleet API turns every array of a message into two objects and fetches each with
    its own HTTP request: the default model's 13 arrays made a train or evaluate message 30
    objects, ~100 requests per site per round through the proxy. Packed, a message is 6.
    The values are the same, in state-dict order; `unpack` gives the arrays back.
    """
    return [np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays])]


def unpack(received: Arrays, *, layout: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Arrays of the shapes in `layout` from `received`: a packed vector (`pack`), or a list
    that already has one array per shape (a peer that sends arrays one by one), as it is."""
    if len(received) == len(layout):
        return [np.asarray(array) for array in received]
    sizes = [math.prod(shape) for shape in layout]
    if len(received) != 1 or np.ndim(received[0]) != 1 or np.size(received[0]) != sum(sizes):
        shapes = [tuple(np.shape(array)) for array in received[:3]]
        raise ValueError(
            f"received {len(received)} arrays (first shapes {shapes}); expected {len(layout)} "
            f"arrays or one packed vector of {sum(sizes)} values from the same ModelSpec"
        )
    flat = np.asarray(received[0])
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return [part.reshape(shape) for part, shape in zip(parts, layout, strict=True)]


def is_packed(received: Arrays, *, layout: Sequence[tuple[int, ...]]) -> bool:
    """True when `received` is `pack`'s form for a model of more than one array."""
    return len(received) == 1 and len(layout) != 1


def shapes(arrays: Arrays) -> list[tuple[int, ...]]:
    return [tuple(np.shape(array)) for array in arrays]
