"""Tests for common.weights: hand-computed delta math and clipping invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from common import weights
from common.weights import add, clip_by_global_norm, global_norm, subtract, weighted_mean

A = [np.array([1.0, 2.0], dtype=np.float32), np.array([[3.0]], dtype=np.float32)]
B = [np.array([0.5, -1.0], dtype=np.float32), np.array([[1.0]], dtype=np.float32)]


def _as_lists(values: list[np.ndarray]) -> list[list]:
    return [value.tolist() for value in values]


def test_subtract_and_add_by_hand() -> None:
    delta = subtract(A, B)
    assert _as_lists(delta) == [[0.5, 3.0], [[2.0]]]
    assert all(value.dtype == np.float32 for value in delta)
    assert _as_lists(add(B, delta)) == _as_lists(A)


def test_float64_inputs_come_back_as_float32() -> None:
    assert add([np.array([1.0])], [np.array([2.0])])[0].dtype == np.float32


def test_shape_mismatch_names_the_array() -> None:
    with pytest.raises(ValueError, match=r"array 1 has shape \(1, 1\) vs \(2,\)"):
        subtract(A, [B[0], np.zeros(2)])
    with pytest.raises(ValueError, match="2 arrays vs 1"):
        add(A, B[:1])


def test_global_norm_by_hand() -> None:
    # sqrt(1 + 4 + 9) over both arrays
    assert global_norm(A) == pytest.approx(np.sqrt(14.0))
    assert global_norm([]) == 0.0


def test_clip_by_hand() -> None:
    clipped, scale = clip_by_global_norm([np.array([3.0, 4.0])], max_norm=1.0)
    assert scale == pytest.approx(0.2)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8], rtol=1e-6)


def test_clip_leaves_small_updates_alone() -> None:
    clipped, scale = clip_by_global_norm(A, max_norm=10.0)
    assert scale == 1.0 and _as_lists(clipped) == _as_lists(A)
    assert clipped[0] is not A[0]


def test_clip_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_global_norm(A, max_norm=0.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        clip_by_global_norm([np.array([np.nan])], max_norm=1.0)


def test_weighted_mean_by_hand() -> None:
    mean = weighted_mean([A, B], weights=[3.0, 1.0])
    # (3*[1, 2] + [0.5, -1]) / 4 and (3*3 + 1) / 4
    assert _as_lists(mean) == [[0.875, 1.25], [[2.5]]]


def test_weighted_mean_validation() -> None:
    with pytest.raises(ValueError, match="sum to 0"):
        weighted_mean([A, B], weights=[0.0, 0.0])
    with pytest.raises(ValueError, match=">= 0"):
        weighted_mean([A, B], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 weights for 1"):
        weighted_mean([A], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        weighted_mean([], weights=[])
    with pytest.raises(ValueError, match="weighted_mean: array 0"):
        weighted_mean([A, [np.zeros(3), B[1]]], weights=[1.0, 1.0])


_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)
_weight_lists = st.lists(
    arrays(np.float32, st.integers(min_value=0, max_value=6), elements=_finite),
    min_size=1,
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(_weight_lists, st.floats(min_value=1e-3, max_value=1e3))
def test_property_clip_bounds_norm_and_keeps_direction(
    values: list[np.ndarray], max_norm: float
) -> None:
    clipped, scale = clip_by_global_norm(values, max_norm=max_norm)
    assert 0.0 < scale <= 1.0
    assert global_norm(clipped) <= max_norm * (1 + 1e-6)
    for original, result in zip(values, clipped, strict=True):
        # Same direction: every element is the original times the one scale factor.
        np.testing.assert_allclose(
            result, original.astype(np.float64) * scale, rtol=1e-6, atol=1e-30
        )


@settings(max_examples=50, deadline=None)
@given(_weight_lists, st.floats(min_value=0.01, max_value=100.0))
def test_property_weighted_mean_of_copies_is_identity(
    values: list[np.ndarray], weight: float
) -> None:
    mean = weighted_mean([values, values], weights=[weight, 2 * weight])
    for original, result in zip(values, mean, strict=True):
        np.testing.assert_allclose(result, original, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- wire form (pack/unpack)


def test_a_model_travels_as_one_vector_and_comes_back_exactly():
    from common.model import ModelSpec, array_shapes, build_model, model_to_ndarrays

    arrays = model_to_ndarrays(build_model(ModelSpec(), seed=3))
    layout = array_shapes(ModelSpec())
    assert layout == weights.shapes(arrays) and len(layout) > 1
    packed = weights.pack(arrays)
    assert len(packed) == 1 and packed[0].dtype == np.float32
    assert packed[0].size == sum(a.size for a in arrays)
    assert weights.is_packed(packed, layout=layout)
    back = weights.unpack(packed, layout=layout)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
    # A peer that sends one array per layer is taken as it is.
    assert not weights.is_packed(arrays, layout=layout)
    assert weights.unpack(arrays, layout=layout)[0] is not None


@pytest.mark.parametrize(
    "received",
    [
        [np.zeros(6, np.float32)],  # too few values
        [np.zeros((2, 3), np.float32)],  # not a vector
        [np.zeros(3, np.float32), np.zeros(3, np.float32)],  # neither form
    ],
)
def test_a_vector_that_fits_no_model_of_the_layout_is_refused_by_name(received):
    with pytest.raises(ValueError, match="packed vector of 7 values"):
        weights.unpack(received, layout=[(2, 2), (2,), (1, 1, 1)])
