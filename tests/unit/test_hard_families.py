"""Hard families: common.training.missed_family_probabilities, the weighted positive draw, and
client.local.round_draws with `hard-families`."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from client.local import SPEC, round_draws
from common.config import ConfigError
from common.features import encode_domains
from common.model import ModelSpec, build_model
from common.run_config import RunSettings
from common.training import (
    TrainConfig,
    draw_balanced_batch,
    missed_family_probabilities,
    predict_scores,
    train_model,
)

SMALL = ModelSpec(embedding_dim=16, filters_per_width=16, widths=(2, 3, 4), hidden=16, max_chars=32)


def _three_families():
    """1,000 benign scores spread over [0, 0.5]; family a (300 rows) always above them,
    b (100 rows) always below, c (100 rows) half and half."""
    benign_scores = np.linspace(0.0, 0.5, 1000)
    labels = np.array([0] * 10 + [1] * 500)
    families = np.array([""] * 10 + ["a"] * 300 + ["b"] * 100 + ["c"] * 100, dtype=object)
    positive_scores = np.concatenate(
        [np.full(300, 0.9), np.full(100, 0.1), np.tile([0.2, 0.8], 50)]
    )
    return labels, families, positive_scores, benign_scores


def test_the_share_goes_to_the_missed_families_by_their_miss_rate() -> None:
    labels, families, positive_scores, benign_scores = _three_families()
    chances = missed_family_probabilities(
        labels=labels,
        families=families,
        positive_scores=positive_scores,
        benign_scores=benign_scores,
        share=0.5,
    )
    assert np.all(chances[labels == 0] == 0)
    assert chances.sum() == pytest.approx(1.0)
    per_family = {name: chances[families == name].sum() for name in ("a", "b", "c")}
    # Uniform half: 0.6 / 0.2 / 0.2 by size; missed half: miss rates 0 / 1 / 0.5 -> 0 / 2/3 / 1/3.
    assert per_family["a"] == pytest.approx(0.5 * 0.6)
    assert per_family["b"] == pytest.approx(0.5 * 0.2 + 0.5 * 2 / 3)
    assert per_family["c"] == pytest.approx(0.5 * 0.2 + 0.5 * 1 / 3)
    # Even within a family.
    assert np.ptp(chances[families == "c"]) == 0


def test_share_zero_nothing_missed_or_no_benign_scores_keep_the_uniform_draw() -> None:
    labels, families, positive_scores, benign_scores = _three_families()
    uniform = np.where(labels == 1, 1 / 500, 0.0)
    for share, scores, benign in (
        (0.0, positive_scores, benign_scores),
        (1.0, np.full(500, 0.99), benign_scores),
        (1.0, positive_scores, np.zeros(0)),
    ):
        got = missed_family_probabilities(
            labels=labels,
            families=families,
            positive_scores=scores,
            benign_scores=benign,
            share=share,
        )
        assert np.allclose(got, uniform)


def test_the_threshold_is_the_benign_score_at_the_fpr() -> None:
    # 2,000 benign: k = 2, so the threshold is the second-highest benign score (0.7); a
    # positive at 0.75 is detected, one at exactly 0.7 is missed.
    benign_scores = np.concatenate([np.zeros(1998), [0.7, 0.9]])
    labels = np.array([1, 1])
    families = np.array(["x", "y"], dtype=object)
    chances = missed_family_probabilities(
        labels=labels,
        families=families,
        positive_scores=np.array([0.75, 0.7]),
        benign_scores=benign_scores,
        share=1.0,
    )
    assert chances.tolist() == [0.0, 1.0]


def test_bad_arguments_are_refused() -> None:
    labels, families, positive_scores, benign_scores = _three_families()
    with pytest.raises(ValueError, match="share"):
        missed_family_probabilities(
            labels=labels,
            families=families,
            positive_scores=positive_scores,
            benign_scores=benign_scores,
            share=1.5,
        )
    with pytest.raises(ValueError, match="one score per positive row"):
        missed_family_probabilities(
            labels=labels,
            families=families,
            positive_scores=positive_scores[:-1],
            benign_scores=benign_scores,
            share=0.5,
        )


def test_the_batch_draws_positives_by_the_given_weights() -> None:
    positives = np.array([3, 5, 7])
    cdf = np.cumsum([0.7, 0.0, 0.3])
    generator = np.random.default_rng(0)
    drawn = np.concatenate(
        [
            draw_balanced_batch(
                positives=positives,
                negatives=np.array([0, 1]),
                batch_size=200,
                positive_fraction=1.0,
                generator=generator,
                positive_cdf=cdf,
            )
            for _ in range(50)
        ]
    )
    counts = {row: int((drawn == row).sum()) for row in (3, 5, 7)}
    assert counts[5] == 0
    assert counts[3] / drawn.size == pytest.approx(0.7, abs=0.02)


def _names(rng, alphabet, count, length):
    return ["".join(rng.choice(list(alphabet), size=length)) + ".com" for _ in range(count)]


def test_training_with_hard_families_lifts_a_small_family_the_model_misses() -> None:
    """Positives: 300 names of a common pattern and 6 of a rare one; benign: dictionary-like
    names. With the whole positive draw sent to the missed family the rare family's names
    score higher than with uniform draws from the same start."""
    rng = np.random.default_rng(0)
    benign = [
        "".join(rng.choice(["mail", "shop", "news", "home", "blog", "cloud", "app"], size=2))
        + ".com"
        for _ in range(600)
    ]
    common = _names(rng, "bcdfghjklmnpqrstvwxz", 300, 14)
    rare = _names(rng, "0123456789", 6, 12)
    names = benign + common + rare
    labels = np.array([0] * 600 + [1] * 306)
    families = np.array([""] * 600 + ["common"] * 300 + ["rare"] * 6, dtype=object)
    domains = encode_domains(names, max_chars=SMALL.max_chars)
    config = TrainConfig(steps=30, batch_size=32)
    start = build_model(SMALL, seed=1)
    train_model(start, domains=domains, labels=labels, config=config, generator=rng)
    scores = predict_scores(start, domains=domains)
    chances = missed_family_probabilities(
        labels=labels,
        families=families,
        positive_scores=scores[labels == 1],
        benign_scores=scores[labels == 0],
        share=1.0,
    )
    assert chances[families == "rare"].sum() > 0.5  # the model misses them after the start

    def rare_scores(probabilities):
        model = build_model(SMALL, seed=1)
        model.load_state_dict(start.state_dict())
        train_model(
            model,
            domains=domains,
            labels=labels,
            config=config,
            generator=np.random.default_rng(7),
            positive_probabilities=probabilities,
        )
        return predict_scores(model, domains=domains[families == "rare"])

    assert rare_scores(chances).mean() > rare_scores(None).mean() + 0.1


def test_round_draws_judge_the_sites_own_families_once_per_round() -> None:
    rng = np.random.default_rng(3)
    names = _names(rng, "abcdef", 200, 8) + _names(rng, "0123456789", 40, 10)
    labels = np.array([0] * 200 + [1] * 40)
    families = np.array([""] * 200 + ["a"] * 20 + ["b"] * 20, dtype=object)
    data = SimpleNamespace(
        site_id="site-00",
        train=SimpleNamespace(labels=labels, families=families),
        verdict_rows=np.zeros(0, dtype=np.int64),
    )
    encoded = SimpleNamespace(train=SPEC.encode(names))
    site = SimpleNamespace(require_data=lambda: data, encoded=lambda spec: encoded)
    model = build_model(SPEC, seed=0)
    config = TrainConfig(steps=2, batch_size=40)
    settings = RunSettings(**{"hard-negatives": 0, "hard-families": 0.5})
    draws = round_draws(site, model, settings, config=config, server_round=1, purpose="train")
    assert draws.required.size == 0
    chances = draws.positive_probabilities
    assert chances is not None and chances.sum() == pytest.approx(1.0)
    assert np.all(chances[labels == 0] == 0)
    scores = predict_scores(model, domains=encoded.train)
    expected = missed_family_probabilities(
        labels=labels,
        families=families,
        positive_scores=scores[labels == 1],
        benign_scores=scores[labels == 0],
        share=0.5,
    )
    assert np.allclose(chances, expected)


def test_the_run_config_key_is_a_share_between_0_and_1() -> None:
    assert RunSettings().hard_families == 0.0
    assert RunSettings.from_run_config({"hard-families": 0.25}).hard_families == 0.25
    with pytest.raises(ConfigError, match="hard-families"):
        RunSettings.from_run_config({"hard-families": 1.5})
