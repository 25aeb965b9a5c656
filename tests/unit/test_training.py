"""Tests for common.training: determinism, balanced draws, one-class sites, learnability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.features import encode_domains
from common.model import ModelSpec, build_model, model_to_ndarrays
from common.training import TrainConfig, draw_balanced_batch, predict_scores, train_model

SMALL = ModelSpec(embedding_dim=16, filters_per_width=16, widths=(2, 3, 4), hidden=16, max_chars=32)
FAST = TrainConfig(steps=8, batch_size=32)
WORDS = [
    "apple", "river", "stone", "cloud", "garden", "market", "light", "house", "paper", "music",
    "green", "table", "water", "winter", "summer", "bright", "silver", "north", "south", "travel",
    "secure", "mobile", "online", "store", "news", "media", "photo", "video",
]  # fmt: skip
TLDS = [".com", ".net", ".org"]


def _dictionary_names(rng: np.random.Generator, count: int) -> list[str]:
    return [
        "".join(rng.choice(WORDS, size=rng.integers(1, 3))) + rng.choice(TLDS) for _ in range(count)
    ]


def _random_names(rng: np.random.Generator, count: int) -> list[str]:
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789")
    return [
        "".join(rng.choice(alphabet, size=rng.integers(10, 20))) + rng.choice(TLDS)
        for _ in range(count)
    ]


def _toy_data(seed: int, *, benign: int = 60, malicious: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = _dictionary_names(rng, benign) + _random_names(rng, malicious)
    labels = np.r_[np.zeros(benign, dtype=np.int64), np.ones(malicious, dtype=np.int64)]
    return encode_domains(names, max_chars=SMALL.max_chars), labels


def _trained_arrays(seed: int, **kwargs: object) -> list[np.ndarray]:
    domains, labels = _toy_data(0)
    model = build_model(SMALL, seed=1)
    train_model(
        model,
        domains=domains,
        labels=labels,
        config=FAST,
        generator=np.random.default_rng(seed),
        **kwargs,
    )
    return model_to_ndarrays(model)


def test_same_inputs_and_seed_give_identical_weights() -> None:
    first, second = _trained_arrays(11), _trained_arrays(11)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_different_seed_gives_different_weights() -> None:
    first, other = _trained_arrays(11), _trained_arrays(12)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_training_does_not_touch_global_torch_rng() -> None:
    state = torch.random.get_rng_state()
    _trained_arrays(3)
    assert torch.equal(state, torch.random.get_rng_state())


def test_summary_counts_and_mode_restored() -> None:
    domains, labels = _toy_data(0)
    model = build_model(SMALL, seed=0).eval()
    summary = train_model(
        model, domains=domains, labels=labels, config=FAST, generator=np.random.default_rng(0)
    )
    assert (summary.steps, summary.examples_seen) == (8, 8 * 32)
    assert math.isfinite(summary.mean_loss) and math.isfinite(summary.final_loss)
    assert not model.training


def test_balanced_batch_draws_rare_positives_at_the_requested_fraction() -> None:
    positives, negatives = np.array([3]), np.arange(100, 1100)
    batch = draw_balanced_batch(
        positives=positives,
        negatives=negatives,
        batch_size=4000,
        positive_fraction=0.25,
        generator=np.random.default_rng(0),
    )
    share = float(np.mean(batch == 3))
    assert abs(share - 0.25) < 0.03
    assert set(batch[batch != 3]) <= set(negatives)


@pytest.mark.parametrize("only_label", [0, 1])
def test_one_class_site_trains_without_crashing(only_label: int) -> None:
    domains, _ = _toy_data(0)
    labels = np.full(len(domains), only_label)
    model = build_model(SMALL, seed=0)
    summary = train_model(
        model, domains=domains, labels=labels, config=FAST, generator=np.random.default_rng(0)
    )
    assert summary.steps == FAST.steps and math.isfinite(summary.final_loss)


def test_empty_site_returns_zero_step_summary_and_keeps_weights() -> None:
    model = build_model(SMALL, seed=0)
    before = model_to_ndarrays(model)
    summary = train_model(
        model,
        domains=np.zeros((0, SMALL.max_chars), dtype=np.int64),
        labels=np.zeros(0, dtype=np.int64),
        config=FAST,
        generator=np.random.default_rng(0),
    )
    assert (summary.steps, summary.examples_seen) == (0, 0) and math.isnan(summary.mean_loss)
    assert all(np.array_equal(a, b) for a, b in zip(before, model_to_ndarrays(model), strict=True))


def test_sample_weights_change_the_update_and_zero_weights_are_safe() -> None:
    _, labels = _toy_data(0)
    weighted = _trained_arrays(5, sample_weights=np.where(labels == 1, 5.0, 1.0))
    plain = _trained_arrays(5)
    assert not all(np.array_equal(a, b) for a, b in zip(weighted, plain, strict=True))
    zeros = _trained_arrays(5, sample_weights=np.zeros(len(labels)))
    assert all(np.isfinite(array).all() for array in zeros)


def test_invalid_inputs_are_rejected_with_the_fix() -> None:
    domains, labels = _toy_data(0)
    model = build_model(SMALL, seed=0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="encode_domains"):
        train_model(model, domains=domains[:, :5], labels=labels, config=FAST, generator=rng)
    with pytest.raises(ValueError, match="0 \\(benign\\) or 1"):
        train_model(model, domains=domains, labels=labels * 2, config=FAST, generator=rng)
    with pytest.raises(ValueError, match="sample_weights"):
        train_model(
            model,
            domains=domains,
            labels=labels,
            config=FAST,
            generator=rng,
            sample_weights=-np.ones(len(labels)),
        )
    with pytest.raises(ValueError, match="positive_fraction"):
        TrainConfig(positive_fraction=1.5)


def test_random_names_become_separable_from_dictionary_names() -> None:
    rng = np.random.default_rng(0)
    train_names = _dictionary_names(rng, 400) + _random_names(rng, 400)
    labels = np.r_[np.zeros(400, dtype=np.int64), np.ones(400, dtype=np.int64)]
    model = build_model(SMALL, seed=0)
    train_model(
        model,
        domains=encode_domains(train_names, max_chars=SMALL.max_chars),
        labels=labels,
        config=TrainConfig(steps=60, batch_size=64),
        generator=np.random.default_rng(1),
    )
    benign = predict_scores(
        model, domains=encode_domains(_dictionary_names(rng, 200), max_chars=SMALL.max_chars)
    )
    malicious = predict_scores(
        model, domains=encode_domains(_random_names(rng, 200), max_chars=SMALL.max_chars)
    )
    pairwise_auc = float(np.mean(malicious[:, None] > benign[None, :]))
    assert malicious.mean() - benign.mean() > 0.5
    assert pairwise_auc > 0.95


def test_predict_scores_range_order_mode_and_batching() -> None:
    domains, _ = _toy_data(2)
    model = build_model(SMALL, seed=0).train()
    scores = predict_scores(model, domains=domains, batch_size=7)
    assert scores.dtype == np.float64 and scores.shape == (len(domains),)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert model.training
    np.testing.assert_allclose(
        scores, predict_scores(model, domains=domains, batch_size=1024), rtol=0, atol=1e-6
    )
    # Input order is kept even though rows are scored sorted by length.
    np.testing.assert_allclose(
        predict_scores(model, domains=domains[::-1]), scores[::-1], rtol=0, atol=1e-6
    )
    assert predict_scores(model, domains=domains[:0]).shape == (0,)
