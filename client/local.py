"""Local training and evaluation at one site: site data in, numbers out (nothing else leaves)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.dqa import enforce_quality_gate
from client.errors import InjectedFault
from client.fragility import (
    SiteReport,
    choose_operating_point,
    resolve_base_rate,
    site_fragility_report,
    threshold_metrics,
)
from client.hosts import round_host_view
from client.pipeline import PreparedSite
from common import weights
from common.dp import add_site_noise, secure_generator, site_noise_stddev
from common.memory import release_free_heap
from common.metrics import tpr_at_fpr
from common.model import (
    ModelSpec,
    build_model,
    model_from_bytes,
    model_to_bytes,
    model_to_ndarrays,
    ndarrays_to_model,
)
from common.protocol import (
    DELTA_CLIP_SCALE,
    DELTA_NORM,
    TRAIN_FINAL_LOSS,
    TRAIN_LOSS,
    WEIGHT_CAPPED,
)
from common.run_config import RunSettings
from common.training import (
    TrainConfig,
    missed_family_probabilities,
    predict_scores,
    required_capacity,
    scored_benign,
    top_scoring,
    train_model,
)

SPEC = ModelSpec()


def site_rng(*, seed: int, server_round: int, site_id: str, purpose: str) -> np.random.Generator:
    """A generator that depends only on the run seed, the round and the site (never on timing)."""
    digest = hashlib.sha256(f"{site_id}/{purpose}".encode()).digest()
    return np.random.default_rng([seed, server_round, int.from_bytes(digest[:8], "big")])


@dataclass(frozen=True)
class RoundDraws:
    """What a round's local training draws besides its uniform batches: the rows every batch
    schedule must carry, and the positives' draw probabilities (None: uniform)."""

    required: np.ndarray
    positive_probabilities: np.ndarray | None = None


def round_draws(
    site: PreparedSite,
    model,
    settings: RunSettings,
    *,
    config: TrainConfig,
    server_round: int,
    purpose: str,
) -> RoundDraws:
    """Judge the incoming model on the site's own training names, once, for both kinds of
    mining.

    Required rows: the analysts' verdict rows first, then the `hard-negatives` benign rows the
    model scores highest (mined afresh every round, never more than the batches' room for
    required rows leaves). Positive draws: with `hard-families` > 0, that share of them goes
    to the families the model misses at FPR 1e-3 (`missed_family_probabilities`). The benign
    names are scored once for both; nothing here leaves the site.
    """
    data = site.require_data()
    verdicts = data.verdict_rows
    room = required_capacity(config) - verdicts.size
    mining = settings.hard_negatives > 0 and room > 0
    if not mining and settings.hard_families == 0:
        return RoundDraws(required=verdicts)
    domains = site.encoded(SPEC).train
    labels = data.train.labels
    benign, benign_scores = scored_benign(
        model,
        domains=domains,
        labels=labels,
        generator=site_rng(
            seed=settings.seed,
            server_round=server_round,
            site_id=data.site_id,
            purpose=f"{purpose}/hard-negatives",
        ),
        exclude=verdicts,
    )
    required = verdicts
    if mining:
        # The highest few may be DGA names in a safelist (label noise): `hard-negatives-skip`.
        skip = math.ceil(settings.hard_negatives_skip * benign.size)
        mined = top_scoring(
            benign, benign_scores, count=min(settings.hard_negatives, room), skip=skip
        )
        required = np.union1d(verdicts, mined)
    chances = None
    if settings.hard_families > 0:
        chances = missed_family_probabilities(
            labels=labels,
            families=data.train.families,
            positive_scores=_scores(model, domains[labels == 1]),
            benign_scores=benign_scores,
            share=settings.hard_families,
        )
    return RoundDraws(required=required, positive_probabilities=chances)


@dataclass(frozen=True)
class TrainReply:
    delta: list[np.ndarray]
    weight: int
    metrics: dict[str, float | int]


def train_round(
    site: PreparedSite, *, global_arrays: list[np.ndarray], settings: RunSettings, server_round: int
) -> TrainReply:
    """Train from the global weights; reply with the norm-clipped delta and a bounded weight."""
    if settings.fails_at(site_id=site.site_id, server_round=server_round):
        raise InjectedFault(
            f"fault injected for {site.site_id} in round {server_round} (fail-sites)"
        )
    # A site whose logs fail its own quality gate refuses to train rather than poison the
    # federation; the round goes on without it.
    enforce_quality_gate(site.quality.report, site.config.dqa, site_id=site.site_id)
    data = site.require_data()
    if len(data.train) == 0:
        raise ValueError(f"{data.site_id}: no training examples after labelling and split")
    model = ndarrays_to_model(global_arrays, spec=SPEC)
    config = TrainConfig(
        steps=settings.local_steps,
        batch_size=settings.batch_size,
        learning_rate=settings.round_learning_rate(server_round),
        required_share=settings.hard_negatives_share,
    )
    rng = site_rng(
        seed=settings.seed, server_round=server_round, site_id=data.site_id, purpose="train"
    )
    draws = round_draws(
        site, model, settings, config=config, server_round=server_round, purpose="train"
    )
    summary = train_model(
        model,
        domains=site.encoded(SPEC).train,
        labels=data.train.labels,
        config=config,
        generator=rng,
        required_rows=draws.required,
        positive_probabilities=draws.positive_probabilities,
    )
    delta = weights.subtract(model_to_ndarrays(model), global_arrays)
    raw_norm = weights.global_norm(delta)
    delta, scale = weights.clip_by_global_norm(delta, max_norm=settings.delta_clip_norm)
    # SecAgg+ multiplies each update by weight / max_weight before masking: a weight above
    # max_weight risks overflow, so it is capped (and the cap is reported). Under differential
    # privacy every site weighs 1: the sum's sensitivity to one site is then the clip norm.
    weight = 1 if settings.dp_enabled else int(min(len(data.train), settings.max_weight))
    metrics = {
        TRAIN_LOSS: summary.mean_loss,
        TRAIN_FINAL_LOSS: summary.final_loss,
        DELTA_NORM: raw_norm,
        DELTA_CLIP_SCALE: scale,
        WEIGHT_CAPPED: int(not settings.dp_enabled and weight < len(data.train)),
    }
    attack = settings.poison_attack(site.site_id)
    if attack is not None:
        delta, weight = poisoned(delta, weight, attack=attack)
    del model, summary
    release_free_heap()  # a process that serves many sites keeps only what it uses
    return TrainReply(delta=delta, weight=weight, metrics=metrics)


POISON_SCALE = 100.0
POISON_COUNT = 10**12


def poisoned(delta: list[np.ndarray], weight: int, *, attack: str) -> tuple[list[np.ndarray], int]:
    """A hostile site's reply, for the poisoning experiment only (run config `poison-sites`):
    made after the honest clip, as an attacker who skips it would."""
    if attack == "scale":
        return [array * np.float32(POISON_SCALE) for array in delta], weight
    if attack == "sign-flip":
        return [-array for array in delta], weight
    if attack == "nan":
        return [np.full_like(array, np.nan) for array in delta], weight
    if attack == "huge-count":
        return delta, POISON_COUNT
    raise ValueError(f"unknown poison attack {attack!r}")


def dp_noised_delta(
    delta: list[np.ndarray], *, settings: RunSettings, threshold: int
) -> list[np.ndarray]:
    """The clipped delta plus this site's share of the Gaussian noise, N(0, (z·C)²/t) per value,
    from the operating system's CSPRNG (never the run seed: a known seed would let anyone
    subtract the noise). `threshold` is the round's SecAgg+ reconstruction threshold, 1 under
    FedAvg (the coordinator sees each delta alone, so each carries the whole noise)."""
    stddev = site_noise_stddev(
        noise_multiplier=settings.noise_multiplier(),
        clip_norm=settings.delta_clip_norm,
        threshold=threshold,
    )
    return add_site_noise(delta, stddev=stddev, generator=secure_generator())


def _scores(model, encoded: np.ndarray) -> np.ndarray:
    if encoded.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return predict_scores(model, domains=encoded)


def evaluate_round(
    site: PreparedSite, *, global_arrays: list[np.ndarray], settings: RunSettings, server_round: int
) -> SiteReport:
    """Score the test days with the global model and write this round's fragility report."""
    data = site.require_data()
    model = ndarrays_to_model(global_arrays, spec=SPEC)
    test_scores = _scores(model, site.encoded(SPEC).test)
    extra = None
    if settings.compare_local:
        extra = federated_gain(
            site, global_scores=test_scores, settings=settings, server_round=server_round
        )
    report = site_fragility_report(
        data=data,
        intel_only=data.intel_only,
        test_scores=test_scores,
        train_scores=_scores(model, site.encoded(SPEC).train_sample),
        intel_only_scores=_scores(model, site.encoded(SPEC).intel_only),
        server_round=server_round,
        work_dir=site.work_dir,
        dqa=site.quality.report.metrics(),
        extra=extra,
        html=settings.site_html_at(server_round),
        hosts=round_host_view(
            site.test_hosts,
            scores=test_scores,
            labels=data.test.labels,
            test_days=len(data.test_days),
        ),
    )
    del model, test_scores
    release_free_heap()  # a process that serves many sites keeps only what it uses
    return report


def _gain_metrics(site: PreparedSite, scores: np.ndarray) -> dict[str, float]:
    data = site.require_data()
    base_rate, source = resolve_base_rate(data.config, data.test)
    choice = choose_operating_point(
        scores, data.test.labels, config=data.config, base_rate=base_rate, base_rate_source=source
    )
    at_threshold = threshold_metrics(data.test, scores, choice=choice, config=data.config)
    return {
        "tpr_at_fpr_1e-4": tpr_at_fpr(scores=scores, labels=data.test.labels, target_fpr=1e-4).tpr,
        "recall_at_budget": choice.budget.tpr,
        "fp_per_day": at_threshold["fp_per_day"],
    }


def federated_gain(
    site: PreparedSite, *, global_scores: np.ndarray, settings: RunSettings, server_round: int
) -> dict[str, float]:
    """Global minus a local-only model trained here with the same steps per round."""
    local = LocalOnlyModel(site.work_dir / "local-only", spec=SPEC)
    model = local.advance_to(server_round, site=site, settings=settings)
    global_metrics = _gain_metrics(site, global_scores)
    local_metrics = _gain_metrics(site, _scores(model, site.encoded(SPEC).test))
    return {
        f"federated_gain_{key}": global_metrics[key] - local_metrics[key] for key in global_metrics
    }


class LocalOnlyModel:
    """A model trained only on this site's data, kept on disk so any process can continue it."""

    def __init__(self, directory: Path, *, spec: ModelSpec) -> None:
        self.path = directory / "model.npz"
        self.round_path = directory / "round.txt"
        self.spec = spec

    def advance_to(self, server_round: int, *, site: PreparedSite, settings: RunSettings):
        trained = int(self.round_path.read_text()) if self.round_path.is_file() else 0
        if 0 < trained <= server_round and self.path.is_file():
            model, _ = model_from_bytes(self.path.read_bytes())
        else:  # a new run (or a rerun of an earlier round): start from the global init
            trained, model = 0, build_model(self.spec, seed=settings.seed)
        for catch_up in range(trained + 1, server_round + 1):
            config = TrainConfig(
                steps=settings.local_steps,
                batch_size=settings.batch_size,
                learning_rate=settings.round_learning_rate(catch_up),
                required_share=settings.hard_negatives_share,
            )
            rng = site_rng(
                seed=settings.seed,
                server_round=catch_up,
                site_id=site.site_id,
                purpose="local-only",
            )
            draws = round_draws(
                site, model, settings, config=config, server_round=catch_up, purpose="local-only"
            )
            train_model(
                model,
                domains=site.encoded(SPEC).train,
                labels=site.require_data().train.labels,
                config=config,
                generator=rng,
                required_rows=draws.required,
                positive_probabilities=draws.positive_probabilities,
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(model_to_bytes(model))
        self.round_path.write_text(str(server_round))
        return model
