"""experiments/residual.py: the capacity experiment's B-ResNet-class model."""

from __future__ import annotations

import numpy as np
import torch

from common.model import ModelSpec, parameter_count
from common.training import TrainConfig, predict_scores, train_model
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


def test_the_same_seed_gives_the_same_model_and_it_trains_on_the_product_trainer() -> None:
    first, second = ResidualCNN(SPEC, seed=1), ResidualCNN(SPEC, seed=1)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert 100_000 < parameter_count(first) < 160_000  # B-ResNet class: ~10^5 parameters
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    dga = ["".join(rng.choice(letters, 16)) + ".com" for _ in range(64)]
    benign = [word + ".com" for word in ("mail", "news", "shop", "bank", "maps", "docs") * 10]
    domains = SPEC.encode(dga + benign)
    labels = np.array([1] * len(dga) + [0] * len(benign))
    model = ResidualCNN(SPEC, channels=16, seed=0)
    before = predict_scores(model, domains=domains)
    summary = train_model(
        model,
        domains=domains,
        labels=labels,
        config=TrainConfig(steps=60, batch_size=32, learning_rate=1e-2),
        generator=np.random.default_rng(0),
    )
    after = predict_scores(model, domains=domains)
    assert summary.final_loss < 0.3
    gap = lambda scores: scores[labels == 1].mean() - scores[labels == 0].mean()  # noqa: E731
    assert gap(after) > gap(before) + 0.5
