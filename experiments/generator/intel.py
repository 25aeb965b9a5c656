"""A site's intel files and config: a noisy blocklist, a top-N allowlist, site.toml."""

from __future__ import annotations

import csv
import heapq
import io
from dataclasses import dataclass

import numpy as np
import tomli_w

from experiments.generator.dga import FAMILIES
from experiments.generator.profiles import SiteProfile

UNKNOWN_FAMILY_RATE = 0.05  # feeds often list a DGA domain without naming its family


@dataclass(frozen=True)
class BlocklistStats:
    """How the written blocklist relates to what the site actually logged (registered domains)."""

    dga_logged: int
    dga_missed: int
    benign_logged: int
    benign_listed: int
    extra_unlogged: int
    unknown_family: int
    allowlist_conflicts: int

    def as_dict(self, site: SiteProfile) -> dict[str, float | int]:
        return {
            "miss_rate": site.miss_rate,
            "error_rate": site.error_rate,
            "dga_registered_logged": self.dga_logged,
            "dga_registered_missed": self.dga_missed,
            "benign_registered_logged": self.benign_logged,
            "benign_registered_listed": self.benign_listed,
            "listed_not_logged": self.extra_unlogged,
            "listed_family_unknown": self.unknown_family,
            "listed_and_allowlisted": self.allowlist_conflicts,
            "realised_miss_rate": round(self.dga_missed / max(self.dga_logged, 1), 6),
            "realised_error_rate": round(self.benign_listed / max(self.benign_logged, 1), 6),
        }


def blocklist(
    site: SiteProfile,
    rng: np.random.Generator,
    *,
    logged_dga: dict[str, str],
    logged_benign: list[str],
    allowlisted: set[str],
    feed: list[tuple[str, str]],
) -> tuple[str, BlocklistStats]:
    """CSV `domain,family`: logged DGA minus misses, wrong benign entries, unlogged feed entries."""
    rows: dict[str, str] = {}
    dga_names = sorted(logged_dga)
    missed = rng.random(len(dga_names)) < site.miss_rate
    unknown = rng.random(len(dga_names)) < UNKNOWN_FAMILY_RATE
    for name, is_missed, is_unknown in zip(dga_names, missed, unknown, strict=True):
        if not is_missed:
            rows[name] = "unknown" if is_unknown else logged_dga[name]
    benign_names = sorted(set(logged_benign))  # allowlisted ones too: real feeds conflict sometimes
    wrong = rng.random(len(benign_names)) < site.error_rate
    family_names = [family.name for family in FAMILIES]
    for name in (n for n, is_wrong in zip(benign_names, wrong, strict=True) if is_wrong):
        rows[name] = (
            "unknown" if rng.random() < 0.5 else family_names[int(rng.integers(len(family_names)))]
        )
    candidates = [(name, family) for name, family in feed if name not in logged_dga]
    n_extra = min(len(candidates), int(round(site.feed_extra_ratio * len(dga_names))))
    for i in np.sort(rng.choice(len(candidates), size=n_extra, replace=False)):
        rows.setdefault(candidates[i][0], candidates[i][1])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("domain", "family"))
    writer.writerows(sorted(rows.items()))
    stats = BlocklistStats(
        dga_logged=len(dga_names),
        dga_missed=int(missed.sum()),
        benign_logged=len(benign_names),
        benign_listed=int(wrong.sum()),
        extra_unlogged=n_extra,
        unknown_family=int((~missed & unknown).sum()),
        allowlist_conflicts=sum(
            1 for n, w in zip(benign_names, wrong, strict=True) if w and n in allowlisted
        ),
    )
    return buffer.getvalue(), stats


def allowlist(
    site: SiteProfile, query_counts_by_registered: dict[str, int]
) -> tuple[str, list[str]]:
    """The site's top-N benign registered domains by query volume (not every benign domain)."""
    ranked = heapq.nsmallest(  # the same as sorted(...)[:n], without sorting the long tail
        site.allowlist_size,
        query_counts_by_registered.items(),
        key=lambda item: (-item[1], item[0]),
    )
    top = sorted(name for name, _ in ranked)
    text = (
        f"# {site.site_id} allowlist: registered domains never alerted on\n"
        f"# top {len(top)} benign registered domains by query volume; one per line\n"
        + "".join(f"{name}\n" for name in top)
    )
    return text, top


def site_toml(site: SiteProfile) -> str:
    """`site.toml` for common.config.SiteConfig."""
    return tomli_w.dumps(
        {
            "site_id": site.site_id,
            "logs": {"paths": ["logs/dns.*.log.gz"], "format": "zeek-tsv"},
            "labels": {
                "blocklist": "intel/blocklist.csv",
                "allowlist": "intel/allowlist.txt",
                "unlisted": "benign",
            },
            "deployment": {
                "benign_events_per_day": site.benign_events_per_day,
                "base_rate": site.base_rate,
            },
            "analysts": {
                "count": site.analyst_count,
                "productive_hours_per_day": 5.6,
                "minutes_per_alert": site.minutes_per_alert,
            },
            "share": {"level": site.share_level},
        }
    )
