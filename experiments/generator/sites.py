"""generate_sites: write N simulated sites (logs, intel, site.toml), truth.csv and manifest.json."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.generator import intel, longtail, table, traffic, zeek_writer
from experiments.generator.dga import FAMILIES, FAMILY_BY_NAME, epoch_of
from experiments.generator.profiles import (
    DEFAULT_BENIGN_MIX_SPREAD,
    DEFAULT_FAMILIES_PER_SITE,
    SiteProfile,
    check_benign_mix_spread,
    draw_profiles,
    families_range,
)
from experiments.generator.streams import stream
from experiments.generator.world import DgaWorld, build_dga_world, is_listable, registered_domain

START_DATE = dt.date(2026, 1, 1)
TRAIN_DAY_TAIL_SHARE = 0.25
"""The long tail of a training day, as a share of the test day's (the last day's, the one
`split.test_days = 1` tests on). The test day carries the whole tail so that low FPRs are
resolvable; a training day carries a quarter of it. Every day has the same mix of name
shapes; only the count of one-off names differs. Local training draws a fixed number of
class-balanced minibatches, so more one-off training names would cost parsing time in every
demo and test without changing what a round can learn; like every generated log, a training
day is a sample of the site's traffic (the deployment figures give its real volume)."""
EPOCH_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()


@dataclass
class SiteLedger:
    """What one site logged (valid lines only), for truth, intel and the manifest."""

    query_counts: Counter = field(default_factory=Counter)
    families: dict[str, str] = field(default_factory=dict)
    malformed: dict[str, dict[str, int]] = field(default_factory=dict)
    lines_by_day: dict[str, int] = field(default_factory=dict)
    distinct_by_day: dict[str, int] = field(default_factory=dict)
    tail_by_day: dict[str, int] = field(default_factory=dict)
    registered: dict[str, str] = field(default_factory=dict)  # known without a PSL look-up
    dga_lines: int = 0


def _dga_batches(
    site: SiteProfile,
    world: DgaWorld,
    rng: np.random.Generator,
    *,
    day_index: int,
    infected: dict[str, np.ndarray],
    scale: float,
) -> list[traffic.Queries]:
    """One batch per family the site is infected with: a few hundred of the day's names."""
    batches = []
    for name in site.families:
        family = FAMILY_BY_NAME[name]
        key = (name, epoch_of(family, day_index))
        unique = site.dga_unique_per_day[name] * scale * rng.lognormal(0.0, 0.15)
        batches.append(
            traffic.dga_queries(
                world.pools[key],
                world.live[key],
                rng,
                unique=max(1, int(round(unique))),
                infected=infected[name],
                www_probability=family.www_probability,
                day_start=EPOCH_START + day_index * traffic.DAY_SECONDS,
            )
        )
    return batches


def _tail_batch(
    site: SiteProfile,
    world: DgaWorld,
    clients: traffic.Clients,
    ledger: SiteLedger,
    *,
    seed: int,
    day_index: int,
    scale: float,
    test_day: bool,
) -> traffic.Queries:
    """The day's long tail: fresh registered domains, each queried once or a few times.

    Its own stream, so the recurring traffic of the day is drawn as before. Names are drawn
    fresh every day; a test-day name whose registered domain also came up on a training day
    (a short word or acronym under .com, say) is left out of the test set by the split, as
    it would be at a real site. Training days carry `TRAIN_DAY_TAIL_SHARE` of the tail (see
    there).
    """
    rng = stream(seed, "site-tail", site.index, day_index)
    share = 1.0 if test_day else TRAIN_DAY_TAIL_SHARE
    count = int(round(site.tail_names_per_day * share * scale * rng.uniform(0.97, 1.03)))
    names, registered, kinds, counts = longtail.tail_names(
        rng,
        count,
        languages=site.languages,
        excluded=world.owner,  # a benign name never shares a DGA registered domain
    )
    ledger.registered.update(zip(names, registered, strict=True))
    return traffic.tail_queries(
        names,
        kinds,
        counts,
        clients,
        rng,
        day_start=EPOCH_START + day_index * traffic.DAY_SECONDS,
        tz_offset_hours=site.tz_offset_hours,
    )


def _write_site(
    site: SiteProfile,
    world: DgaWorld,
    site_dir: Path,
    *,
    seed: int,
    days: list[dt.date],
    scale: float,
) -> SiteLedger:
    ledger = SiteLedger()
    rng = stream(seed, "site-traffic", site.index)
    lines_per_day = max(200, int(site.lines_per_day * scale))
    clients = traffic.make_clients(site, rng, count=max(30, lines_per_day // 40))
    infected = {
        name: rng.choice(len(clients.addresses), size=int(rng.integers(1, 4)), replace=False)
        for name in site.families
    }
    stable = table.stable_names(site, seed=seed, n_distinct=max(300, int(lines_per_day * 0.3)))
    renderer = traffic.Renderer(site)
    (site_dir / "logs").mkdir(parents=True)
    for day_index, day in enumerate(days):
        day_rng = stream(seed, "site-day", site.index, day_index)
        batches = _dga_batches(
            site, world, day_rng, day_index=day_index, infected=infected, scale=scale
        )
        n_dga = sum(len(batch.names) for batch in batches)
        target = int(lines_per_day * day_rng.uniform(0.9, 1.1))
        names = table.day_table(
            site,
            stable,
            seed=seed,
            day_index=day_index,
            is_excluded=lambda query: registered_domain(query) in world.owner,
        )
        batches.append(
            traffic.benign_queries(
                names,
                clients,
                day_rng,
                count=max(int(0.7 * lines_per_day), target - n_dga),
                day_start=EPOCH_START + day_index * traffic.DAY_SECONDS,
                tz_offset_hours=site.tz_offset_hours,
            )
        )
        tail = _tail_batch(
            site,
            world,
            clients,
            ledger,
            seed=seed,
            day_index=day_index,
            scale=scale,
            test_day=day_index == len(days) - 1,
        )
        batches.append(tail)
        queries = traffic.concat(batches)
        lines = renderer.render(queries, clients, day_rng)
        lines, malformed = zeek_writer.with_malformed(lines, day_rng)
        file_name = f"dns.{day:%Y-%m-%d}.log.gz"
        (site_dir / "logs" / file_name).write_bytes(zeek_writer.log_bytes(lines, day))
        ledger.malformed[file_name] = malformed
        ledger.lines_by_day[file_name] = len(queries.names)
        ledger.distinct_by_day[file_name] = len(set(queries.names))
        ledger.tail_by_day[file_name] = len(set(tail.names))
        ledger.dga_lines += n_dga
        ledger.query_counts.update(queries.names)
        for query, kind in zip(queries.names, queries.kinds, strict=True):
            if kind == "dga":
                ledger.families[query] = world.owner[query.removeprefix("www.")]
    return ledger


def _write_intel(
    site: SiteProfile, world: DgaWorld, ledger: SiteLedger, site_dir: Path, *, seed: int
) -> dict:
    benign_counts: Counter = Counter()
    logged_dga: dict[str, str] = {}
    for query in sorted(ledger.query_counts):
        count = ledger.query_counts[query]
        if query in ledger.families:
            logged_dga[query.removeprefix("www.")] = ledger.families[query]
        elif is_listable(registered := ledger.registered.get(query) or registered_domain(query)):
            benign_counts[registered] += count
    allow_text, allowed = intel.allowlist(site, dict(benign_counts))
    feed = sorted(world.owner.items())
    block_text, stats = intel.blocklist(
        site,
        stream(seed, "intel", site.index),
        logged_dga=logged_dga,
        logged_benign=sorted(benign_counts),
        allowlisted=set(allowed),
        feed=feed,
    )
    (site_dir / "intel").mkdir()
    (site_dir / "intel" / "blocklist.csv").write_text(block_text, encoding="utf-8")
    (site_dir / "intel" / "allowlist.txt").write_text(allow_text, encoding="utf-8")
    (site_dir / "site.toml").write_text(intel.site_toml(site), encoding="utf-8")
    return stats.as_dict(site)


def _site_manifest(
    site: SiteProfile, ledger: SiteLedger, blocklist_stats: dict, *, seed: int, scale: float
) -> dict:
    total = sum(ledger.lines_by_day.values())
    return {
        "site_id": site.site_id,
        "seed": seed,
        "stream_keys": ["profile", site.index],
        "families": list(site.families),
        "dga_unique_per_day": {
            name: int(round(n * scale)) for name, n in site.dga_unique_per_day.items()
        },
        "benign_mix": site.benign_mix,
        "languages": site.languages,
        "internal_domain": site.internal_domain,
        "blocklist": blocklist_stats,
        "allowlist_size": site.allowlist_size,
        "volume": {
            "lines_per_day_at_scale_1": site.lines_per_day,
            "tail_names_per_day_at_scale_1": site.tail_names_per_day,
            "scale": scale,
            "data_lines_by_file": ledger.lines_by_day,
            "distinct_names_by_file": ledger.distinct_by_day,
            "tail_names_by_file": ledger.tail_by_day,
            "distinct_queries": len(ledger.query_counts),
        },
        "dga_share": round(ledger.dga_lines / max(total, 1), 6),
        "malformed_lines": ledger.malformed,
        "deployment": {
            "benign_events_per_day": site.benign_events_per_day,
            "base_rate": site.base_rate,
        },
        "analysts": {"count": site.analyst_count, "minutes_per_alert": site.minutes_per_alert},
    }


def _truth_csv(ledgers: list[SiteLedger]) -> str:
    labels: dict[str, str] = {}
    for ledger in ledgers:
        for query in ledger.query_counts:
            labels[query] = ledger.families.get(query, "")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("domain", "label", "family"))
    writer.writerows(
        (query, "dga" if labels[query] else "benign", labels[query]) for query in sorted(labels)
    )
    return buffer.getvalue()


def _build(
    staging: Path,
    *,
    n_sites: int,
    n_days: int,
    seed: int,
    scale: float,
    families_per_site: tuple[int, int],
    benign_mix_spread: float,
) -> list[str]:
    days = [START_DATE + dt.timedelta(days=i) for i in range(n_days)]
    profiles = draw_profiles(
        seed=seed,
        n_sites=n_sites,
        families_per_site=families_per_site,
        benign_mix_spread=benign_mix_spread,
    )
    world = build_dga_world(seed=seed, days=days, scale=scale)
    ledgers, site_entries = [], []
    for site in profiles:
        site_dir = staging / site.site_id
        ledger = _write_site(site, world, site_dir, seed=seed, days=days, scale=scale)
        stats = _write_intel(site, world, ledger, site_dir, seed=seed)
        ledgers.append(ledger)
        site_entries.append(_site_manifest(site, ledger, stats, seed=seed, scale=scale))
    (staging / "truth.csv").write_text(_truth_csv(ledgers), encoding="utf-8")
    manifest = {
        "seed": seed,
        "n_sites": n_sites,
        "n_days": n_days,
        "scale": scale,
        "start_date": START_DATE.isoformat(),
        "families": {
            family.name: {
                "class": family.algorithm_class,
                "names_change": {0: "never (fixed pool)", 1: "daily", 7: "weekly"}[
                    family.epoch_days
                ],
                "sites": [p.site_id for p in profiles if family.name in p.families],
            }
            for family in FAMILIES
        },
        "sites": site_entries,
    }
    (staging / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return [site.site_id for site in profiles]


def generate_sites(
    out_dir: Path,
    *,
    n_sites: int = 8,
    n_days: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    families_per_site: int | tuple[int, int] = DEFAULT_FAMILIES_PER_SITE,
    benign_mix_spread: float = DEFAULT_BENIGN_MIX_SPREAD,
) -> list[Path]:
    """Write `n_sites` simulated sites into `out_dir` (absent or empty); return the site folders.

    Everything is built in a hidden sibling folder and renamed into place, so a crash leaves
    nothing half-written.

    Two knobs make the sites more or less alike (non-IID stress); their defaults give
    exactly the output of a call without them, byte for byte:

    - `families_per_site`: how many DGA families infect each site, a whole number (1 up to
      all 10) or an inclusive (low, high) range; default (2, 4), each site drawing its own
      count. Families are dealt so that every family appears somewhere when the sites have
      room for them all. Each family keeps its own daily volume, so more families means more
      DGA traffic at a site.
    - `benign_mix_spread`: how far each site's benign category mix (popular, cdn, telemetry,
      ptr, ...) leans away from the typical mix, as a power of the drawn lean in log space:
      0 gives every site the typical mix, 1 the default lean, 3 very different sites. The
      direction each site leans is the same for every spread (the same random draws).

    Either knob changes only what it names: for the same seed, volumes, languages, intel
    noise and deployment figures stay the same, so settings can be compared site by site.
    Invalid values raise ValueError naming the parameter and a valid value.
    """
    if n_sites < 1 or n_days < 1:
        raise ValueError(f"n_sites and n_days must be >= 1, got n_sites={n_sites}, n_days={n_days}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    per_site = families_range(families_per_site, n_families=len(FAMILIES))
    spread = check_benign_mix_spread(benign_mix_spread)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir}: output folder is not empty; choose a new folder or empty this one"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        site_ids = _build(
            staging,
            n_sites=n_sites,
            n_days=n_days,
            seed=seed,
            scale=scale,
            families_per_site=per_site,
            benign_mix_spread=spread,
        )
        os.chmod(staging, 0o755)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out_dir / site_id for site_id in site_ids]
