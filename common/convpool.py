"""CharCNN's convolutions and max pooling as one operation with a sparse backward pass.

CharCNN computes, for every filter f of every width w, relu(max over positions p of
b_f + sum_k W_f[:, k] . E[x_{p+k}]). Autograd through `nn.Conv1d` and `amax` builds the
gradient of the whole activation map ([batch, filters, positions]) and runs a dense
convolution backward over it, although only the one winning window of each (name, filter)
receives any gradient. That dense backward was ~60% of a training step.

Here the backward touches only the winners. The gradient of a filter's weights at tap k is
a sum over names of g[name, f] · E[token at winner + k], so it is a scatter-add of the
[batch, filters] output gradient into a [vocabulary, filters] table per tap, then two small
matrix products give the embedding's and the weights' gradients. Nothing of size
[batch, filters, positions] is built in the backward pass.

The forward pass runs each width as a channels-last 2-D convolution followed by a
channels-last max pooling over all positions, which also returns where each maximum was
(the winners the backward pass needs). Outputs and gradients equal the module-by-module
computation up to float rounding (tests/unit/test_convpool.py checks both). Ties between
positions go to one window rather than being split, which changes nothing: tied windows of
one name either hold the same characters (same gradient) or tie by coincidence of floats.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional

from common.features import PAD_ID


def _maps(ids: torch.Tensor, embedding: torch.Tensor, weights, biases):
    """Each width's activation map, [batch, filters, 1, positions] in channels-last memory.

    Channels-last (filters contiguous) is what makes the max over positions fast: torch's
    channels-last max pooling runs vectorised over filters, with its indices, in ~1/8 the time
    of `max(dim=...)` on the same values.
    """
    # [batch, chars, dim] viewed as NCHW [batch, dim, 1, chars] is already channels-last.
    embedded = functional.embedding(ids, embedding).permute(0, 2, 1).unsqueeze(2)
    for weight, bias in zip(weights, biases, strict=True):
        kernel = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        yield functional.conv2d(embedded, kernel, bias)


def _pool(activations: torch.Tensor, *, winners: bool):
    return functional.max_pool2d(activations, (1, activations.shape[3]), return_indices=winners)


class _ConvMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, embedding, *weights_and_biases):
        count = len(weights_and_biases) // 2
        weights, biases = weights_and_biases[:count], weights_and_biases[count:]
        maxima, positions = zip(
            *(_pool(block, winners=True) for block in _maps(ids, embedding, weights, biases)),
            strict=True,
        )
        pooled = torch.cat(maxima, dim=1).flatten(1)
        winners = torch.cat(positions, dim=1).flatten(1)  # [batch, all filters]
        ctx.save_for_backward(ids, embedding, pooled, winners, *weights)
        return torch.relu(pooled)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        ids, embedding, pooled, winners, *weights = ctx.saved_tensors
        grad = grad_output * (pooled > 0)  # relu's derivative, as torch takes it at 0
        vocabulary = embedding.shape[0]
        grad_embedding = torch.zeros_like(embedding)
        grad_weights, grad_biases = [], []
        start = 0
        for weight in weights:
            filters, width = weight.shape[0], weight.shape[2]
            block = grad[:, start : start + filters]
            where = winners[:, start : start + filters]
            start += filters
            grad_biases.append(block.sum(dim=0))
            # The winners' characters, tap by tap: [batch, width, filters].
            taps = torch.arange(width).view(1, width, 1)
            tokens = ids.gather(1, (where.unsqueeze(1) + taps).flatten(1)).view_as(
                where.unsqueeze(1).expand(-1, width, -1)
            )
            # One [vocabulary, filters] table of output gradient per tap, in one scatter.
            table = embedding.new_zeros(width * vocabulary, filters)
            table.scatter_add_(
                0,
                (tokens + taps * vocabulary).flatten(0, 1),
                block.unsqueeze(1).expand(-1, width, -1).flatten(0, 1),
            )
            table = table.view(width, vocabulary, filters)
            grad_weights.append(torch.einsum("kvf,vd->fdk", table, embedding))
            grad_embedding += torch.einsum("kvf,fdk->vd", table, weight)
        grad_embedding[PAD_ID] = 0  # nn.Embedding(padding_idx=PAD_ID) never updates padding
        return (None, grad_embedding, *grad_weights, *grad_biases)


def conv_max_pool_reference(
    ids: torch.Tensor,
    embedding: torch.Tensor,
    weights: tuple[torch.Tensor, ...],
    biases: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """The same value through autograd's own modules (embedding, Conv1d per width, relu, amax):
    what CharCNN ran before this module, kept as the reference for tests and benchmarks."""
    embedded = functional.embedding(ids, embedding, padding_idx=PAD_ID).transpose(1, 2)
    return torch.cat(
        [
            torch.relu(functional.conv1d(embedded, weight, bias)).amax(dim=2)
            for weight, bias in zip(weights, biases, strict=True)
        ],
        dim=1,
    )


def conv_max_pool(
    ids: torch.Tensor,
    embedding: torch.Tensor,
    weights: tuple[torch.Tensor, ...],
    biases: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """relu(max over positions of each filter's convolution), [batch, all filters] in order.

    ids: int64 [batch, chars], chars >= the widest filter; embedding: [vocabulary, dim];
    weights: Conv1d weights [filters, dim, width]; biases: [filters].
    """
    if not torch.is_grad_enabled() or not any(
        tensor.requires_grad for tensor in (embedding, *weights, *biases)
    ):
        maps = _maps(ids, embedding, weights, biases)
        pooled = torch.cat([_pool(block, winners=False) for block in maps], dim=1)
        return torch.relu(pooled.flatten(1))
    return _ConvMaxPool.apply(ids, embedding, *weights, *biases)
