"""An LSTM character model, for the capacity experiment only (not a fedsec model).

Woodbridge et al. 2016's LSTM for DGA detection ("Predicting Domain Generation Algorithms with
Long Short-Term Memory Networks"): an embedding of 128, one LSTM layer of 128 units, dropout
0.5 on its last hidden state, a dense layer to one logit. The published anchor for a
character model of this size (~137k parameters). It reads the same encoded names as fedsec's
CharCNN (`ModelSpec.encode`) and trains on the same trainer and optimiser
(`common.training.train_model` needs only `.spec` for the input checks and
`forward(ids, generator=...)`), so `experiments.capacity` can compare it with CharCNN at equal
samples. The model file format, the federation and the product do not know it: it becomes a
product model only if a measurement says it should.

Names arrive left-padded with PAD_ID. The LSTM reads each name from its first to its last
character and nothing else: the batch's shared padding is cropped, then each name is moved to
the start of its row and packed with its own length. Its padding never enters the recurrence,
so a name's score does not depend on the names it is batched with, and the last hidden state
is the one after its last character. (Woodbridge et al. ran their LSTM over the padding too.)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from common.features import PAD_ID
from common.model import ModelSpec, _crop_shared_padding, _dropout, seed_embedding, seed_layers


class RecurrentLSTM(nn.Module):
    """Embedding -> LSTM over each name's characters -> last hidden state -> dropout -> logit."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        embedding_dim: int = 128,
        units: int = 128,
        dropout: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec  # what the trainer checks inputs against; its CharCNN fields unused
        self.dropout = dropout
        generator = torch.Generator().manual_seed(int(seed))
        self.embedding = nn.Embedding(spec.vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embedding_dim, units, batch_first=True)
        self.output = nn.Linear(units, 1)
        # Seeded like build_model: the same seed, the same weights. The LSTM takes torch's own
        # scheme (every weight uniform in +-1/sqrt(units)) from the same generator.
        seed_embedding(self.embedding, generator=generator)
        bound = 1.0 / math.sqrt(units)
        with torch.no_grad():
            for weight in self.lstm.parameters():
                nn.init.uniform_(weight, -bound, bound, generator=generator)
        seed_layers((self.output,), generator=generator)

    def forward(
        self, domains: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # Keep one column so that a batch of empty names still has a step to read.
        domains = _crop_shared_padding(domains, keep=1).long()
        positions = domains.shape[1]
        is_character = domains != PAD_ID
        start = torch.where(
            is_character.any(dim=1), is_character.to(torch.int8).argmax(dim=1), positions
        )
        lengths = positions - start
        # Left-padded -> left-aligned: each row starts at its first character, padding after.
        shifted = (torch.arange(positions)[None, :] + start[:, None]) % positions
        characters = self.embedding(torch.gather(domains, 1, shifted))
        packed = pack_padded_sequence(
            characters, lengths.clamp_min(1), batch_first=True, enforce_sorted=False
        )
        _, (last_hidden, _) = self.lstm(packed)  # each name's state after its last character
        hidden = _dropout(
            last_hidden[-1], rate=self.dropout, active=self.training, generator=generator
        )
        return self.output(hidden).squeeze(1)
