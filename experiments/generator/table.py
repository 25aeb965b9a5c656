"""A site's benign name table: stable names plus each day's fresh ones, with Zipf query weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from experiments.generator import benign, hardnames
from experiments.generator.profiles import CATEGORY_SHAPE, SiteProfile
from experiments.generator.streams import stream, zipf_weights

Builder = Callable[[np.random.Generator, int, SiteProfile], benign.Named]

BUILDERS: dict[str, Builder] = {
    "popular": lambda rng, n, site: benign.popular_names(rng, n, languages=site.languages),
    "cdn": lambda rng, n, site: hardnames.cdn_names(rng, n),
    "telemetry": lambda rng, n, site: hardnames.telemetry_names(rng, n),
    "ads": lambda rng, n, site: benign.ad_names(rng, n),
    "longtail": lambda rng, n, site: benign.long_tail_names(rng, n, languages=site.languages),
    "idn": lambda rng, n, site: benign.idn_names(rng, n, languages=site.languages),
    "internal": lambda rng, n, site: hardnames.internal_names(
        rng, n, internal_domain=site.internal_domain
    ),
    "ptr": lambda rng, n, site: hardnames.ptr_names(rng, n, subnet=site.subnet),
    "short": lambda rng, n, site: benign.short_names(rng, n),
    "mdns": lambda rng, n, site: hardnames.mdns_names(rng, n),
}
# share of a category's names that are new each day (new CDN objects, new small sites, new PTRs)
FRESH_FRACTION = {
    "cdn": 0.25,
    "telemetry": 0.3,
    "ads": 0.2,
    "longtail": 0.2,
    "idn": 0.1,
    "ptr": 0.5,
    "internal": 0.1,
}


@dataclass(frozen=True)
class NameTable:
    """Distinct benign names with their response kind and the probability a query is for them."""

    names: list[str]
    kinds: list[str]
    weights: np.ndarray


def stable_names(site: SiteProfile, *, seed: int, n_distinct: int) -> dict[str, benign.Named]:
    """The names a site resolves every day, per category, in popularity order."""
    return {
        category: BUILDERS[category](
            stream(seed, "benign-stable", site.index, category),
            max(2, int(n_distinct * CATEGORY_SHAPE[category][1])),
            site,
        )
        for category in sorted(CATEGORY_SHAPE)
    }


def day_table(
    site: SiteProfile,
    stable: dict[str, benign.Named],
    *,
    seed: int,
    day_index: int,
    is_excluded: Callable[[str], bool],
) -> NameTable:
    """Stable names plus today's fresh ones, which slot into the middle and tail of the ranking."""
    names: list[str] = []
    kinds: list[str] = []
    weights: list[np.ndarray] = []
    seen: set[str] = set()
    for category in sorted(CATEGORY_SHAPE):
        rng = stream(seed, "benign-fresh", site.index, day_index, category)
        base = stable[category]
        fresh = (
            BUILDERS[category](rng, int(len(base) * FRESH_FRACTION.get(category, 0.0)), site)
            if category in FRESH_FRACTION
            else []
        )
        rank_keys = np.concatenate(
            [
                np.arange(len(base), dtype=float),
                rng.uniform(0.2 * len(base), len(base), size=len(fresh)),
            ]
        )
        candidates = base + fresh
        ordered = [candidates[i] for i in np.argsort(rank_keys, kind="stable")]
        kept = []
        for name, kind in ordered:
            if name not in seen and not is_excluded(name):
                seen.add(name)
                kept.append((name, kind))
        if not kept:
            continue
        names.extend(name for name, _ in kept)
        kinds.extend(kind for _, kind in kept)
        exponent = CATEGORY_SHAPE[category][2]
        weights.append(zipf_weights(len(kept), exponent=exponent) * site.benign_mix[category])
    joined = np.concatenate(weights)
    return NameTable(names=names, kinds=kinds, weights=joined / joined.sum())
