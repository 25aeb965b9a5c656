"""From a site's parsed records to labelled, time-split examples: one row per unique domain.

Pure over Arrow tables and the site's intel (no file is read here): `client.pipeline` reads the
logs once and hands the records over.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.domains import registered_domain
from client.site import SITE_FILE, Intel
from common.config import ConfigError, SiteConfig

SECONDS_PER_DAY = 86_400
ANALYST_FAMILY = "analyst"  # the family of a positive that only an analyst's verdict labels
VERDICT_LABELS = {"malicious": 1, "benign": 0}


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
    # Rows of `train` labelled by an analyst's verdict (they train every round: common.training)
    verdict_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def hard_negatives(self) -> np.ndarray:
        """Training rows an analyst judged benign: the false positives the site saw."""
        rows = self.verdict_rows
        return rows[self.train.labels[rows] == 0]


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
    counts: Counter,
    intel: Intel,
    *,
    unlisted_benign: bool,
    keep: Callable[[str], bool],
    verdicts: Mapping[str, str] | None = None,
    adds: Callable[[str], bool] = lambda registered: True,
) -> Examples:
    """One example per name whose registered domain `keep` accepts; conflicts are dropped.

    A name with an analyst's verdict (`verdicts`: name -> 'malicious' | 'benign') takes it
    instead of the intel's label: the analyst judged this site's own traffic, the more
    specific source. A judged name the intel leaves unlabelled (conflict, or unlisted when
    unlisted names are dropped) becomes an example only where `adds` accepts its registered
    domain. Contradictions are counted by `client.dqa.verdict_figures`, not here.
    """
    verdicts = verdicts or {}
    rows = []
    for name in sorted(counts):
        registered = registered_domain(name)
        if not keep(registered):
            continue
        label, family = intel.lookup(name, registered)
        usable = label in ("dga", "benign") or (label == "unlisted" and unlisted_benign)
        if name in verdicts and (usable or adds(registered)):
            label = VERDICT_LABELS[verdicts[name]]
            rows.append((name, label, ANALYST_FAMILY if label else "", counts[name], registered))
        elif usable:
            rows.append((name, 1 if label == "dga" else 0, family, counts[name], registered))
    return _examples(rows)


def _examples(rows: list[tuple[str, int, str, int, str]]) -> Examples:
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


def concat_examples(first: Examples, second: Examples) -> Examples:
    """`first`'s rows, then `second`'s (row numbers of `first` are kept)."""
    if len(second) == 0:
        return first
    return Examples(
        domains=np.concatenate([first.domains, second.domains]),
        labels=np.concatenate([first.labels, second.labels]).astype(np.int8),
        families=np.concatenate([first.families, second.families]),
        query_counts=np.concatenate([first.query_counts, second.query_counts]).astype(np.int64),
        registered=np.concatenate([first.registered, second.registered]),
    )


def verdict_only_examples(
    verdicts: Mapping[str, str], logged: set[str], *, keep: Callable[[str], bool]
) -> Examples:
    """Judged names the logs never queried (judged from another day's scoring): labelled
    examples with no queries, kept only where `keep` accepts their registered domain."""
    rows = []
    for name in sorted(set(verdicts) - logged):
        registered = registered_domain(name)
        if keep(registered):
            label = VERDICT_LABELS[verdicts[name]]
            rows.append((name, label, ANALYST_FAMILY if label else "", 0, registered))
    return _examples(rows)


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
    per_day: dict[str, Counter],
    intel: Intel,
    *,
    config: SiteConfig,
    site_dir: Path,
    verdicts: Mapping[str, str] | None = None,
) -> SiteData:
    """The last `split.test_days` days test, earlier days train; no registered domain on both.

    A held-out share of registered domains never trains, so popular names reach the test set;
    test names whose registered domain was trained on are removed (natural leakage).

    Analysts' verdicts (name -> 'malicious' | 'benign') label training examples only, never
    the test: a verdict overrides the intel on a name queried on a training day, and a judged
    name the logs never queried trains as an example of its own, unless its registered domain
    is held out or queried on a test day (as is a training-day name the intel leaves
    unlabelled). Test labels stay the intel's, so the evaluation does not grade the model
    against the analysts' answers, and no verdict adds, removes or relabels a test example
    (a judged test-day name trains only once it is queried on a training day, as any name).
    Raises ConfigError when the logs hold too few days to split.
    """
    days = sorted(per_day)
    test_count = config.split.test_days
    if len(days) <= test_count:
        raise ConfigError(
            f"{site_dir / SITE_FILE}: field split.test_days: the logs hold {len(days)} day(s) "
            f"but {test_count} are kept for testing (fix: add log days or lower split.test_days)"
        )
    verdicts = verdicts or {}
    train_days, test_days = days[:-test_count], days[-test_count:]
    train_counts = sum((per_day[d] for d in train_days), Counter())
    test_counts = sum((per_day[d] for d in test_days), Counter())
    unlisted_benign = config.labels.unlisted == "benign"
    fraction = config.split.holdout_fraction

    def trains(registered: str) -> bool:
        return not held_out(registered, site_id=config.site_id, fraction=fraction)

    logged = set(train_counts) | set(test_counts)
    # Only verdicts need it (a judged name never trains on a tested registered domain).
    test_registered = {registered_domain(name) for name in test_counts} if verdicts else set()
    from_logs = label_examples(
        train_counts,
        intel,
        unlisted_benign=unlisted_benign,
        keep=trains,
        verdicts=verdicts,
        adds=lambda r: r not in test_registered,
    )
    judged_only = verdict_only_examples(
        verdicts, logged, keep=lambda r: trains(r) and r not in test_registered
    )
    train = concat_examples(from_logs, judged_only)
    train_registered = set(train.registered.tolist())
    test = label_examples(
        test_counts,
        intel,
        unlisted_benign=unlisted_benign,
        keep=lambda r: r not in train_registered,
    )
    verdict_rows = np.flatnonzero(np.array([name in verdicts for name in train.domains], bool))
    return SiteData(
        site_id=config.site_id,
        site_dir=site_dir,
        config=config,
        train=train,
        test=test,
        train_days=tuple(train_days),
        test_days=tuple(test_days),
        train_families=frozenset(train.families[train.labels == 1].tolist()),
        intel_only=intel_only_examples(intel, logged | set(judged_only.domains.tolist())),
        verdict_rows=verdict_rows.astype(np.int64),
    )
