"""experiments/recurrent.py: the capacity experiment's LSTM (after Woodbridge et al. 2016)."""

from __future__ import annotations

import numpy as np
import torch

from common.model import ModelSpec, parameter_count
from experiments import recurrent
from experiments.recurrent import RecurrentLSTM

SPEC = ModelSpec()
NAMES = ["abc.com", "qwxz.net", "a.b.example.co.uk", "x.de"]


def _ids(names: list[str]) -> torch.Tensor:
    return torch.from_numpy(SPEC.encode(names).astype(np.int64))


def test_one_logit_per_name_and_the_published_size() -> None:
    model = RecurrentLSTM(SPEC, seed=0).eval()
    with torch.inference_mode():
        logits = model(_ids(NAMES))
    assert logits.shape == (len(NAMES),) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # Embedding 41 x 128, LSTM 4 x 128 x (128 + 128) + two biases of 4 x 128, dense 128 + 1.
    assert parameter_count(model) == 41 * 128 + 4 * 128 * 256 + 2 * 4 * 128 + 129 == 137_473


def test_every_parameter_gets_a_gradient() -> None:
    model = RecurrentLSTM(SPEC, embedding_dim=16, units=16, seed=0).train()
    model(_ids(NAMES), generator=torch.Generator().manual_seed(0)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert not model.embedding.weight.grad[0].any()  # padding is never read


def test_padding_changes_no_logit(monkeypatch) -> None:
    model = RecurrentLSTM(SPEC, embedding_dim=16, units=16, seed=3).eval()
    with torch.no_grad():  # strong biases: a state run over padding would drift far from zero
        for name, parameter in model.lstm.named_parameters():
            if name.startswith("bias"):
                parameter.fill_(1.0)
    ids = _ids(NAMES)
    with torch.inference_mode():
        # Together (cropped to the longest name) and one by one (cropped to each name).
        cropped = [model(ids), *(model(ids[row : row + 1]) for row in range(len(NAMES)))]
        monkeypatch.setattr(recurrent, "_crop_shared_padding", lambda domains, keep: domains)
        whole = model(ids)  # all 64 positions, most of them padding
    assert ids.shape[1] > 30  # the batch really had shared padding to crop
    torch.testing.assert_close(cropped[0], whole, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.cat(cropped[1:]), whole, rtol=1e-5, atol=1e-6)


def test_the_last_step_reads_the_last_character() -> None:
    model = RecurrentLSTM(SPEC, embedding_dim=16, units=16, seed=1).eval()
    with torch.inference_mode():
        logits = model(_ids(["abcdef.com", "abcdef.co", "bbcdef.com"]))
    # A different last character or a different first one changes the score.
    assert logits[0] != logits[1] and logits[0] != logits[2]
