"""Local training and evaluation at one site: site data in, numbers out (nothing else leaves)."""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.dataset import SiteData, prepare_site
from common import weights
from common.features import encode_domains
from common.metrics import roc_auc, tpr_at_fpr
from common.model import ModelSpec, model_to_ndarrays, ndarrays_to_model
from common.run_config import RunSettings
from common.training import TrainConfig, predict_scores, train_model

SPEC = ModelSpec()


@dataclass(frozen=True)
class PreparedSite:
    data: SiteData
    train_encoded: np.ndarray
    test_encoded: np.ndarray
    work_dir: Path

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """Every name of the site's traffic that must never leave: full and registered."""
        parts = (self.data.train.domains, self.data.test.domains,
                 self.data.train.registered, self.data.test.registered)
        return frozenset(name for part in parts for name in part.tolist())


_cache: dict[tuple[Path, Path | None], PreparedSite] = {}
_cache_lock = threading.Lock()


def prepared_site(site_dir: Path, *, work_dir: Path | None = None) -> PreparedSite:
    """Parse a site once per process (simulation actors serve many rounds and sites)."""
    key = (site_dir.resolve(), work_dir)
    with _cache_lock:
        if key not in _cache:
            work = (work_dir or site_dir / "work").resolve()
            data = prepare_site(site_dir, work_dir=work)
            _cache[key] = PreparedSite(
                data=data,
                work_dir=work,
                train_encoded=encode_domains(data.train.domains.tolist(), max_chars=SPEC.max_chars),
                test_encoded=encode_domains(data.test.domains.tolist(), max_chars=SPEC.max_chars),
            )
        return _cache[key]


def site_rng(*, seed: int, server_round: int, site_id: str, purpose: str) -> np.random.Generator:
    """A generator that depends only on the run seed, the round and the site (never on timing)."""
    digest = hashlib.sha256(f"{site_id}/{purpose}".encode()).digest()
    return np.random.default_rng([seed, server_round, int.from_bytes(digest[:8], "big")])


@dataclass(frozen=True)
class TrainReply:
    delta: list[np.ndarray]
    weight: int
    metrics: dict[str, float | int]


def train_round(site: PreparedSite, *, global_arrays: list[np.ndarray], settings: RunSettings,
                server_round: int) -> TrainReply:
    """Train from the global weights; reply with the norm-clipped delta and a bounded weight."""
    data = site.data
    if settings.fails_at(site_id=data.site_id, server_round=server_round):
        raise RuntimeError(
            f"fault injected for {data.site_id} in round {server_round} (fail-sites)")
    if len(data.train) == 0:
        raise ValueError(f"{data.site_id}: no training examples after labelling and split")
    model = ndarrays_to_model(global_arrays, spec=SPEC)
    config = TrainConfig(steps=settings.local_steps, batch_size=settings.batch_size,
                         learning_rate=settings.learning_rate)
    rng = site_rng(seed=settings.seed, server_round=server_round, site_id=data.site_id,
                   purpose="train")
    summary = train_model(model, domains=site.train_encoded, labels=data.train.labels,
                          config=config, generator=rng)
    delta = weights.subtract(model_to_ndarrays(model), global_arrays)
    raw_norm = weights.global_norm(delta)
    delta, scale = weights.clip_by_global_norm(delta, max_norm=settings.delta_clip_norm)
    # SecAgg+ multiplies each update by weight / max_weight before masking: a weight above
    # max_weight risks overflow, so it is capped (and the cap is reported).
    weight = int(min(len(data.train), settings.max_weight))
    metrics = {
        "train_loss": summary.mean_loss,
        "train_final_loss": summary.final_loss,
        "delta_norm": raw_norm,
        "delta_clip_scale": scale,
        "weight_capped": int(weight < len(data.train)),
    }
    return TrainReply(delta=delta, weight=weight, metrics=metrics)


def evaluate_round(
    site: PreparedSite, *, global_arrays: list[np.ndarray]
) -> dict[str, float | int]:
    """Score the site's test days with the global model: ranking metrics and sample sizes."""
    data = site.data
    model = ndarrays_to_model(global_arrays, spec=SPEC)
    scores = predict_scores(model, domains=site.test_encoded)
    labels = data.test.labels
    metrics: dict[str, float | int] = {
        "auc": roc_auc(scores=scores, labels=labels),
        "test_domains": len(data.test),
        "test_positives": data.test.positives,
        "train_domains": len(data.train),
        "train_positives": data.train.positives,
    }
    for target in (1e-3, 1e-4):
        point = tpr_at_fpr(scores=scores, labels=labels, target_fpr=target)
        metrics[f"tpr_at_fpr_{target:.0e}".replace("e-0", "e-")] = point.tpr
        metrics[f"tpr_at_fpr_{target:.0e}_resolvable".replace("e-0", "e-")] = int(point.resolvable)
    return metrics
