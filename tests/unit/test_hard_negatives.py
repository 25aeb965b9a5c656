"""Hard-negative mining: common.training.scored_benign and top_scoring (the rows a round mines)
and client.local.round_draws."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from client.local import SPEC, round_draws
from common.features import encode_domains
from common.model import ModelSpec, build_model
from common.run_config import RunSettings
from common.training import (
    TrainConfig,
    predict_scores,
    required_capacity,
    scored_benign,
    top_scoring,
)

SMALL = ModelSpec(embedding_dim=8, filters_per_width=8, widths=(2, 3), hidden=8, max_chars=24)


def _data(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    names = [
        "".join(rng.choice(alphabet, size=int(rng.integers(4, 16)))) + ".com" for _ in range(n)
    ]
    labels = (rng.random(n) < 0.3).astype(np.int64)
    return names, labels


def hardest_negatives(model, *, domains, labels, count, generator, exclude=None, pool=None):
    # How client.local.round_draws mines: score the benign rows (or a pool), keep the top.
    extra = {} if pool is None else {"pool": pool}
    rows, scores = scored_benign(
        model, domains=domains, labels=labels, generator=generator, exclude=exclude, **extra
    )
    return top_scoring(rows, scores, count=count)


def test_the_hardest_negatives_are_the_top_scoring_benign_rows() -> None:
    names, labels = _data(0)
    domains = encode_domains(names, max_chars=SMALL.max_chars)
    model = build_model(SMALL, seed=2)
    scores = predict_scores(model, domains=domains)
    benign = np.flatnonzero(labels == 0)
    expected = np.sort(benign[np.argsort(-scores[benign], kind="stable")[:25]])
    got = hardest_negatives(
        model, domains=domains, labels=labels, count=25, generator=np.random.default_rng(0)
    )
    assert np.array_equal(got, expected)
    assert np.all(labels[got] == 0)


def test_excluded_rows_are_skipped_and_small_sets_come_back_whole() -> None:
    names, labels = _data(1, n=60)
    domains = encode_domains(names, max_chars=SMALL.max_chars)
    model = build_model(SMALL, seed=3)
    benign = np.flatnonzero(labels == 0)
    rng = np.random.default_rng(0)
    top = hardest_negatives(model, domains=domains, labels=labels, count=5, generator=rng)
    again = hardest_negatives(
        model, domains=domains, labels=labels, count=5, generator=rng, exclude=top
    )
    assert not set(top) & set(again) and np.all(labels[again] == 0)
    everything = hardest_negatives(
        model, domains=domains, labels=labels, count=10**6, generator=rng
    )
    assert np.array_equal(everything, benign)
    assert (
        hardest_negatives(model, domains=domains, labels=labels, count=0, generator=rng).size == 0
    )
    with pytest.raises(ValueError, match="count and skip must be >= 0"):
        hardest_negatives(model, domains=domains, labels=labels, count=-1, generator=rng)


def test_a_pool_bounds_the_scoring_to_a_random_sample() -> None:
    names, labels = _data(2)
    domains = encode_domains(names, max_chars=SMALL.max_chars)
    model = build_model(SMALL, seed=4)
    picks = [
        hardest_negatives(
            model,
            domains=domains,
            labels=labels,
            count=10,
            pool=50,
            generator=np.random.default_rng(seed),
        )
        for seed in range(3)
    ]
    full = hardest_negatives(
        model, domains=domains, labels=labels, count=10, generator=np.random.default_rng(0)
    )
    assert all(pick.size == 10 and np.all(labels[pick] == 0) for pick in picks)
    assert any(not np.array_equal(pick, full) for pick in picks)  # a sample, not every row


def _site(names, labels, verdicts):
    data = SimpleNamespace(
        site_id="site-00",
        train=SimpleNamespace(labels=labels, families=np.where(labels == 1, "fam", "")),
        verdict_rows=np.asarray(verdicts),
    )
    encoded = SimpleNamespace(train=SPEC.encode(names))
    return SimpleNamespace(require_data=lambda: data, encoded=lambda spec: encoded)


def test_required_rows_put_the_analysts_verdicts_first_then_mine() -> None:
    names, labels = _data(3)
    verdicts = np.flatnonzero(labels == 0)[:3]
    site = _site(names, labels, verdicts)
    model = build_model(SPEC, seed=0)
    config = TrainConfig(steps=2, batch_size=40)  # room for 2 x 10 = 20 required rows
    off = RunSettings(**{"hard-negatives": 0})
    off = round_draws(site, model, off, config=config, server_round=1, purpose="train")
    assert np.array_equal(off.required, verdicts) and off.positive_probabilities is None
    settings = RunSettings(**{"hard-negatives": 1000})
    rows = round_draws(site, model, settings, config=config, server_round=1, purpose="train")
    rows = rows.required
    assert set(verdicts) <= set(rows) and rows.size == required_capacity(config) == 20
    assert np.all(labels[rows] == 0)
    # Refreshed from the model each round: the same model and round give the same rows.
    again = round_draws(
        site, model, settings, config=config, server_round=1, purpose="train"
    ).required
    assert np.array_equal(rows, again)


def test_a_skip_leaves_the_highest_scores_out_and_mines_the_next() -> None:
    rows = np.array([10, 11, 12, 13, 14, 15])
    scores = np.array([0.2, 0.99, 0.5, 0.97, 0.1, 0.6])  # ranks: 11, 13, 15, 12, 10, 14
    assert np.array_equal(top_scoring(rows, scores, count=2), [11, 13])
    assert np.array_equal(top_scoring(rows, scores, count=2, skip=2), [12, 15])
    assert np.array_equal(top_scoring(rows, scores, count=10, skip=4), [10, 14])  # what is left
    assert top_scoring(rows, scores, count=3, skip=6).size == 0
    with pytest.raises(ValueError, match="count and skip must be >= 0"):
        top_scoring(rows, scores, count=1, skip=-1)


def test_the_run_configs_skip_leaves_a_share_of_the_benign_pool_out_of_the_mining() -> None:
    names, labels = _data(4)
    site = _site(names, labels, np.zeros(0, dtype=np.int64))
    model = build_model(SPEC, seed=1)
    config = TrainConfig(steps=2, batch_size=40)  # room for 20 required rows
    benign = np.flatnonzero(labels == 0)
    scores = predict_scores(model, domains=SPEC.encode(names)[benign])
    ranked = benign[np.argsort(-scores, kind="stable")]

    def mined(skip: float) -> np.ndarray:
        settings = RunSettings(**{"hard-negatives": 1000, "hard-negatives-skip": skip})
        return round_draws(site, model, settings, config=config, server_round=1, purpose="t")

    assert np.array_equal(mined(0.0).required, np.sort(ranked[:20]))
    # 5% of the benign pool, rounded up, is left out: the next 20 are mined.
    left_out = int(np.ceil(0.05 * benign.size))
    assert np.array_equal(mined(0.05).required, np.sort(ranked[left_out : left_out + 20]))
    with pytest.raises(ValueError, match="hard-negatives-skip"):
        RunSettings(**{"hard-negatives-skip": 0.5})


def test_the_mining_share_sets_how_much_of_every_batch_required_rows_take() -> None:
    assert required_capacity(TrainConfig(steps=10, batch_size=128)) == 10 * 32  # a quarter
    assert required_capacity(TrainConfig(steps=10, batch_size=128, required_share=0.375)) == 480
    assert required_capacity(TrainConfig(steps=3, batch_size=2, required_share=0.25)) == 3
    with pytest.raises(ValueError, match="required_share"):
        TrainConfig(required_share=0.75)
    names, labels = _data(5)
    site = _site(names, labels, np.zeros(0, dtype=np.int64))
    model = build_model(SPEC, seed=1)

    def mined(share: float) -> np.ndarray:
        settings = RunSettings(**{"hard-negatives": 10**4, "hard-negatives-share": share})
        config = TrainConfig(steps=2, batch_size=40, required_share=share)
        return round_draws(site, model, settings, config=config, server_round=1, purpose="t")

    assert mined(0.25).required.size == 20 and mined(0.5).required.size == 40
    assert set(mined(0.25).required) <= set(mined(0.5).required)  # the top 20 of the top 40
    with pytest.raises(ValueError, match="hard-negatives-share"):
        RunSettings(**{"hard-negatives-share": 0.6})
