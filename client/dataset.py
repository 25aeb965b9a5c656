"""From a site's parsed records to labelled, time-split examples: one row per unique domain.

Pure over Arrow tables and the site's intel (no file is read here): `client.pipeline` reads the
logs once and hands the records over.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.domains import registered_domain
from client.site import SITE_FILE, Intel
from common.config import ConfigError, SiteConfig

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Examples:
    """Unique domains with their intel label, family ('' when benign) and query counts."""

    domains: np.ndarray
    labels: np.ndarray
    families: np.ndarray
    query_counts: np.ndarray
    registered: np.ndarray

    def __len__(self) -> int:
        return int(self.domains.shape[0])

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


def no_examples() -> Examples:
    empty = np.array([], dtype=object)
    return Examples(
        domains=empty,
        labels=np.array([], dtype=np.int8),
        families=empty,
        query_counts=np.array([], dtype=np.int64),
        registered=empty,
    )


@dataclass(frozen=True)
class SiteData:
    """A site's examples after labelling and the time split (what training and evaluation see)."""

    site_id: str
    site_dir: Path
    config: SiteConfig
    train: Examples
    test: Examples
    train_days: tuple[str, ...]
    test_days: tuple[str, ...]
    train_families: frozenset[str]
    intel_only: Examples


def count_by_day(
    names: pa.Array | pa.ChunkedArray, ts: pa.Array | pa.ChunkedArray
) -> dict[str, Counter]:
    """UTC day (YYYY-MM-DD) -> queries per valid name; `names` null where a name is invalid."""
    table = pa.table({"ts": ts, "query": names}).filter(pc.is_valid(names))
    day_index = pc.cast(pc.floor(pc.divide(table["ts"], SECONDS_PER_DAY)), pa.int64())
    grouped = (
        pa.table({"day": day_index, "query": table["query"]})
        .group_by(["day", "query"])
        .aggregate([("query", "count")])
    )
    per_day: dict[str, Counter] = {}
    for day, name, count in zip(
        grouped["day"].to_pylist(),
        grouped["query"].to_pylist(),
        grouped["query_count"].to_pylist(),
        strict=True,
    ):
        label = str(np.datetime64(int(day), "D"))
        per_day.setdefault(label, Counter())[name] += count
    return per_day


def held_out(registered: str, *, site_id: str, fraction: float) -> bool:
    """Whether a registered domain is kept out of training (a stable per-site hash draw)."""
    digest = hashlib.blake2b(registered.encode(), key=site_id.encode()[:64], digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < fraction


def label_examples(
    counts: Counter, intel: Intel, *, unlisted_benign: bool, keep: Callable[[str], bool]
) -> Examples:
    """One example per name whose registered domain `keep` accepts; conflicts are dropped."""
    rows = []
    for name in sorted(counts):
        registered = registered_domain(name)
        if not keep(registered):
            continue
        label, family = intel.lookup(name, registered)
        if label == "conflict" or (label == "unlisted" and not unlisted_benign):
            continue
        rows.append((name, 1 if label == "dga" else 0, family, counts[name], registered))
    if not rows:
        return no_examples()
    names, labels, families, query_counts, registered = zip(*rows, strict=True)
    return Examples(
        domains=np.array(names, dtype=object),
        labels=np.array(labels, dtype=np.int8),
        families=np.array(families, dtype=object),
        query_counts=np.array(query_counts, dtype=np.int64),
        registered=np.array(registered, dtype=object),
    )


def intel_only_examples(intel: Intel, logged: set[str]) -> Examples:
    """Blocklisted names this site never queried: real names of families it may never have seen."""
    logged_registered = {registered_domain(name) for name in logged}
    names = sorted(
        name
        for name in intel.blocklist
        if name not in logged and registered_domain(name) not in logged_registered
    )
    return Examples(
        domains=np.array(names, dtype=object),
        labels=np.ones(len(names), dtype=np.int8),
        families=np.array([intel.blocklist[name] for name in names], dtype=object),
        query_counts=np.zeros(len(names), dtype=np.int64),
        registered=np.array([registered_domain(name) for name in names], dtype=object),
    )


def split_site(
    per_day: dict[str, Counter], intel: Intel, *, config: SiteConfig, site_dir: Path
) -> SiteData:
    """The last `split.test_days` days test, earlier days train; no registered domain on both.

    A held-out share of registered domains never trains, so popular names reach the test set;
    test names whose registered domain was trained on are removed (natural leakage).
    Raises ConfigError when the logs hold too few days to split.
    """
    days = sorted(per_day)
    test_count = config.split.test_days
    if len(days) <= test_count:
        raise ConfigError(
            f"{site_dir / SITE_FILE}: field split.test_days: the logs hold {len(days)} day(s) "
            f"but {test_count} are kept for testing (fix: add log days or lower split.test_days)"
        )
    train_days, test_days = days[:-test_count], days[-test_count:]
    train_counts = sum((per_day[d] for d in train_days), Counter())
    test_counts = sum((per_day[d] for d in test_days), Counter())
    unlisted_benign = config.labels.unlisted == "benign"
    fraction = config.split.holdout_fraction
    train = label_examples(
        train_counts,
        intel,
        unlisted_benign=unlisted_benign,
        keep=lambda r: not held_out(r, site_id=config.site_id, fraction=fraction),
    )
    train_registered = set(train.registered.tolist())
    test = label_examples(
        test_counts,
        intel,
        unlisted_benign=unlisted_benign,
        keep=lambda r: r not in train_registered,
    )
    return SiteData(
        site_id=config.site_id,
        site_dir=site_dir,
        config=config,
        train=train,
        test=test,
        train_days=tuple(train_days),
        test_days=tuple(test_days),
        train_families=frozenset(train.families[train.labels == 1].tolist()),
        intel_only=intel_only_examples(intel, set(train_counts) | set(test_counts)),
    )
