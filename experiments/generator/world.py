"""The shared world: DGA pools every site draws from, and registered-domain helpers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from publicsuffixlist import PSLFILE, PublicSuffixList

from experiments.generator.dga import FAMILIES, epoch_of, family_pool

DAILY_POOL, FIXED_POOL = 1500, 6000


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@lru_cache(maxsize=1 << 18)
def registered_domain(name: str) -> str | None:
    """eTLD+1 under the full public suffix list (private suffixes like cloudfront.net included)."""
    return _psl().privatesuffix(name)


@lru_cache(maxsize=1)
def suffix_rules() -> frozenset[str]:
    """Every rule of the full public suffix list (`github.io`, `ltd.co.uk`, `*.ck`, ...): a
    name built as label + "." + TLD that matches one is a suffix, not a registered domain."""
    with open(PSLFILE, encoding="utf-8") as source:
        rules = (line.strip() for line in source)
        return frozenset(rule.lstrip("!") for rule in rules if rule and not rule.startswith("//"))


def is_listable(registered: str | None) -> bool:
    """Whether a benign registered domain could be on an intel list (not rDNS, mDNS, raw bytes)."""
    return (
        registered is not None
        and registered.isascii()
        and not registered.endswith(".arpa")
        and not registered.startswith("_")
    )


@dataclass(frozen=True)
class DgaWorld:
    """Every family's pools (shared by all sites: the same malware computes the same names)."""

    pools: dict[tuple[str, int], list[str]]
    live: dict[tuple[str, int], frozenset[str]]
    owner: dict[str, str]


def build_dga_world(*, seed: int, days: list[dt.date], scale: float) -> DgaWorld:
    pools, live, owner = {}, {}, {}
    for family in FAMILIES:
        for day_index, day in enumerate(days):
            key = (family.name, epoch_of(family, day_index))
            if key in pools:
                continue
            size = int((FIXED_POOL if family.epoch_days == 0 else DAILY_POOL) * max(1.0, scale))
            kept = [
                name
                for name in family_pool(family, seed=seed, epoch=key[1], day=day, size=size)
                if owner.setdefault(name, family.name) == family.name
            ]
            pools[key] = kept
            live[key] = frozenset(kept[: 3 if family.epoch_days == 0 else 2])
    return DgaWorld(pools, live, owner)
