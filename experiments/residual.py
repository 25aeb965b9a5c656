"""A B-ResNet-class character model, for the capacity experiment only (not a fedsec model).

Drichel et al. 2020's B-ResNet for DGA detection: an embedding, one residual block of two
same-padded Conv1d layers, global max pooling, a dense output. It reads the same encoded
names as fedsec's CharCNN (`ModelSpec.encode`) and trains on the same trainer
(`common.training.train_model` needs only `.spec` for the input checks and
`forward(ids, generator=...)`), so `experiments.capacity` can compare it with CharCNN at equal
samples. The model file format, the federation and the product do not know it: it becomes a
product model only if a measurement says it should.
"""

from __future__ import annotations

import torch
from torch import nn

from common.features import PAD_ID
from common.model import ModelSpec, _crop_shared_padding, _dropout, seed_embedding, seed_layers


class ResidualCNN(nn.Module):
    """Embedding -> [Conv1d k3 -> ReLU -> Conv1d k3] + skip -> ReLU -> max pool -> MLP -> logit."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        channels: int = 128,
        kernel: int = 3,
        hidden: int = 64,
        dropout: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec  # what the trainer checks inputs against; its CharCNN fields unused
        self.kernel = kernel
        self.dropout = dropout
        generator = torch.Generator().manual_seed(int(seed))
        self.embedding = nn.Embedding(spec.vocab_size, channels, padding_idx=PAD_ID)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.hidden = nn.Linear(channels, hidden)
        self.output = nn.Linear(hidden, 1)
        # Seeded like build_model: the same seed, the same weights.
        seed_embedding(self.embedding, generator=generator)
        seed_layers((self.conv1, self.conv2, self.hidden, self.output), generator=generator)

    def forward(
        self, domains: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # Positions beyond the two convolutions' reach of any real character all give the same
        # activation, so cropping shared left padding to that reach changes no output.
        domains = _crop_shared_padding(domains, keep=2 * self.kernel).long()
        x = self.embedding(domains).transpose(1, 2)  # [batch, channels, positions]
        y = self.conv2(torch.relu(self.conv1(x)))
        pooled = torch.relu(x + y).amax(dim=2)
        hidden = torch.relu(self.hidden(pooled))
        hidden = _dropout(hidden, rate=self.dropout, active=self.training, generator=generator)
        return self.output(hidden).squeeze(1)
