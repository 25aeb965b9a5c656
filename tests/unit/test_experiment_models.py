"""The capacity experiment's other architectures (experiments/residual.py, recurrent.py): each
is seeded and learns on the product's trainer and scorer, as the CharCNN does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.model import ModelSpec
from common.training import TrainConfig, predict_scores, train_model
from experiments.recurrent import RecurrentLSTM
from experiments.residual import ResidualCNN

SPEC = ModelSpec()
SMALL = {
    "B-ResNet class": lambda seed: ResidualCNN(SPEC, channels=16, seed=seed),
    "LSTM": lambda seed: RecurrentLSTM(SPEC, embedding_dim=16, units=16, seed=seed),
}


@pytest.mark.parametrize("build", SMALL.values(), ids=list(SMALL))
def test_the_same_seed_gives_the_same_model_and_it_trains_on_the_product_trainer(build) -> None:
    first, second = build(1), build(1)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    dga = ["".join(rng.choice(letters, 16)) + ".com" for _ in range(64)]
    benign = [word + ".com" for word in ("mail", "news", "shop", "bank", "maps", "docs") * 10]
    domains = SPEC.encode(dga + benign)
    labels = np.array([1] * len(dga) + [0] * len(benign))
    model = build(0)
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
