"""experiments/residual.py: the capacity experiment's B-ResNet-class model."""

from __future__ import annotations

import numpy as np
import torch

from common.model import ModelSpec, parameter_count
from experiments import residual
from experiments.residual import ResidualCNN

SPEC = ModelSpec()


def test_cropping_shared_padding_changes_no_score(monkeypatch) -> None:
    model = ResidualCNN(SPEC, channels=16, seed=3).eval()
    with torch.no_grad():  # weak characters, strong biases: padding positions can win the max
        model.embedding.weight.mul_(0.01)
        model.conv1.bias.fill_(1.0)
    names = ["abc.com", "qwxz.net", "a.b.example.co.uk"]
    ids = torch.from_numpy(SPEC.encode(names).astype(np.int64))
    with torch.inference_mode():
        # Together (cropped to the longest name) and one by one (cropped to each name).
        cropped = [model(ids), *(model(ids[row : row + 1]) for row in range(len(names)))]
        monkeypatch.setattr(residual, "_crop_shared_padding", lambda domains, keep: domains)
        whole = model(ids)
    assert ids.shape[1] > 30  # the batch really had shared padding to crop
    torch.testing.assert_close(cropped[0], whole, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.cat(cropped[1:]), whole, rtol=1e-6, atol=1e-7)


def test_a_b_resnet_class_size() -> None:
    assert 100_000 < parameter_count(ResidualCNN(SPEC, seed=1)) < 160_000  # ~10^5 parameters
