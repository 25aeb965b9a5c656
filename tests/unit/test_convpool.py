"""common.convpool against the module-by-module computation it replaces: same outputs, same
gradients, for the default spec and for odd ones (unsorted, repeated and single widths)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from common.convpool import conv_max_pool, conv_max_pool_reference
from common.features import PAD_ID, VOCAB_SIZE
from common.model import CharCNN, ModelSpec, build_model


def _reference(model: CharCNN, ids: torch.Tensor) -> torch.Tensor:
    """What CharCNN computed before: the modules themselves (nn.Embedding, nn.Conv1d)."""
    embedded = model.embedding(ids).transpose(1, 2)
    return torch.cat([torch.relu(conv(embedded)).amax(dim=2) for conv in model.convs], dim=1)


def _arguments(model: CharCNN, ids: torch.Tensor):
    weights = tuple(conv.weight for conv in model.convs)
    return ids, model.embedding.weight, weights, tuple(conv.bias for conv in model.convs)


def _fused(model: CharCNN, ids: torch.Tensor) -> torch.Tensor:
    return conv_max_pool(*_arguments(model, ids))


def _functional_reference(model: CharCNN, ids: torch.Tensor) -> torch.Tensor:
    return conv_max_pool_reference(*_arguments(model, ids))


def _ids(generator: torch.Generator, batch: int, chars: int) -> torch.Tensor:
    """Left-padded random names of random lengths, as encode_domains writes them."""
    ids = torch.randint(PAD_ID + 1, VOCAB_SIZE, (batch, chars), generator=generator)
    lengths = torch.randint(1, chars + 1, (batch,), generator=generator)
    ids[torch.arange(chars)[None, :] < (chars - lengths)[:, None]] = PAD_ID
    return ids


def _gradients(model: CharCNN, forward, ids: torch.Tensor, mix: torch.Tensor):
    model.zero_grad(set_to_none=True)
    (forward(model, ids) * mix).sum().backward()
    return {
        name: parameter.grad.clone()
        for name, parameter in model.named_parameters()
        if parameter.grad is not None
    }


def _check_same(spec: ModelSpec, seed: int, batch: int, forward=_fused) -> None:
    model = build_model(spec, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    ids = _ids(generator, batch, spec.max_chars)
    expected, actual = _reference(model, ids), forward(model, ids)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    # Weight each output differently (some negative) so a gradient routed to the wrong filter,
    # tap or character shows.
    mix = torch.randn(expected.shape, generator=generator)
    want = _gradients(model, _reference, ids, mix)
    got = _gradients(model, forward, ids, mix)
    assert want.keys() == got.keys() and "embedding.weight" in got
    for name in want:
        scale = max(1.0, float(want[name].abs().max()))
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5 * scale)
    assert torch.all(got["embedding.weight"][PAD_ID] == 0)


def test_default_model_outputs_and_gradients_equal_the_module_computation() -> None:
    _check_same(ModelSpec(), seed=0, batch=128)


def test_the_benchmarks_reference_is_the_module_computation() -> None:
    # experiments/bench_train times conv_max_pool_reference as "before"; it must be that.
    _check_same(ModelSpec(), seed=1, batch=32, forward=_functional_reference)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    filters=st.integers(1, 9),
    dim=st.integers(1, 8),
    chars=st.integers(6, 20),
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_any_spec_outputs_and_gradients_equal_the_module_computation(
    widths, filters, dim, chars, batch, seed
) -> None:
    spec = ModelSpec(
        embedding_dim=dim,
        filters_per_width=filters,
        widths=tuple(widths),
        hidden=4,
        max_chars=chars,
    )
    _check_same(spec, seed=seed, batch=batch)


def test_inference_takes_the_same_values_without_building_a_graph() -> None:
    model = build_model(ModelSpec(), seed=3)
    ids = _ids(torch.Generator().manual_seed(3), 64, ModelSpec().max_chars)
    with torch.no_grad():
        plain = _fused(model, ids)
    assert not plain.requires_grad
    torch.testing.assert_close(plain, _reference(model, ids).detach(), rtol=1e-5, atol=1e-5)


def test_a_second_backward_through_the_pooling_is_refused() -> None:
    model = build_model(ModelSpec(), seed=4)
    ids = _ids(torch.Generator().manual_seed(4), 8, ModelSpec().max_chars)
    pooled = _fused(model, ids)
    (grad,) = torch.autograd.grad(pooled.sum(), model.embedding.weight, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()
