"""Site profiles: how simulated organisations differ (families, mix, volume, label noise)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from experiments.generator.dga import FAMILIES
from experiments.generator.streams import stream

# category -> (share of benign queries, share of distinct names, Zipf exponent inside the category)
CATEGORY_SHAPE: dict[str, tuple[float, float, float]] = {
    "popular": (0.42, 0.07, 1.2),
    "cdn": (0.12, 0.16, 0.9),
    "telemetry": (0.07, 0.08, 0.9),
    "ads": (0.08, 0.05, 1.0),
    "longtail": (0.12, 0.36, 0.7),
    "idn": (0.015, 0.04, 0.7),
    "internal": (0.09, 0.10, 1.0),
    "ptr": (0.035, 0.09, 0.6),
    "short": (0.02, 0.03, 0.9),
    "mdns": (0.005, 0.002, 1.0),
}
HOME_LANGUAGES = ("de", "es", "id", "tr", "pl", "zh", "ru")
TZ_OFFSET_HOURS = {"de": 1, "es": 1, "id": 7, "tr": 3, "pl": 1, "zh": 8, "ru": 3}
COMPANY_WORDS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "tyrell",
    "cyberdyne",
    "soylent",
    "wonka",
    "oscorp",
    "vandelay",
    "aperture",
    "massive",
    "nakatomi",
)
LINES_PER_DAY_RANGE = (15_000, 60_000)
TAIL_NAMES_PER_DAY_RANGE = (36_000, 72_000)
"""Long-tail names a day at scale 1: registered domains the site sees only that day, each
queried once or a few times (on top of `LINES_PER_DAY_RANGE`, which is recurring traffic).
The low end leaves a test day at least 30,000 distinct benign names after the time split, so
an FPR of 1e-4 is resolvable (3 / 1e-4) at every site."""
DEFAULT_FAMILIES_PER_SITE = (2, 4)
"""Families per site (low, high), inclusive: each site draws a count in this range."""
DEFAULT_BENIGN_MIX_SPREAD = 1.0
"""How far sites' benign category mixes lean away from the typical one (0: not at all)."""


@dataclass(frozen=True)
class SiteProfile:
    """Every knob of one simulated site, drawn once from the run seed."""

    site_id: str
    index: int
    families: tuple[str, ...]
    dga_unique_per_day: dict[str, int]  # at scale 1.0
    lines_per_day: int  # at scale 1.0, DGA included, long tail excluded
    tail_names_per_day: int  # at scale 1.0: distinct one-day names on top of lines_per_day
    benign_mix: dict[str, float]
    languages: dict[str, float]
    internal_domain: str
    subnet: tuple[int, int]
    tz_offset_hours: int
    miss_rate: float
    error_rate: float
    feed_extra_ratio: float
    allowlist_size: int
    benign_events_per_day: float
    base_rate: float
    analyst_count: int
    minutes_per_alert: float
    share_level: str


def assign_families(
    rng: np.random.Generator,
    n_sites: int,
    names: tuple[str, ...],
    *,
    per_site: tuple[int, int] = DEFAULT_FAMILIES_PER_SITE,
) -> list[tuple[str, ...]]:
    """`per_site` = (low, high) families per site, inclusive (default 2-4).

    Every family is dealt once before any repeats when the sites have room for them all
    (with the default, 3 or more sites).
    """
    low, high = per_site
    counts = rng.integers(low, high + 1, size=n_sites)
    while counts.sum() < len(names) and (counts < high).any():
        counts[rng.choice(np.flatnonzero(counts < high))] += 1
    assigned: list[list[str]] = [[] for _ in range(n_sites)]
    tie_break = rng.permutation(n_sites)
    for name in (names[i] for i in rng.permutation(len(names))):
        free = [site for site in tie_break if len(assigned[site]) < counts[site]]
        if not free:
            break
        target = max(free, key=lambda site: counts[site] - len(assigned[site]))
        assigned[target].append(name)
    for site in range(n_sites):
        others = [name for name in names if name not in assigned[site]]
        while len(assigned[site]) < counts[site]:
            assigned[site].append(others.pop(int(rng.integers(len(others)))))
    return [tuple(sorted(chosen)) for chosen in assigned]


def families_range(families_per_site: int | tuple[int, int], *, n_families: int) -> tuple[int, int]:
    """`families_per_site` as an inclusive (low, high) range, checked against the families known."""
    value = families_per_site
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (int(value), int(value))
    valid = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
        and 1 <= value[0] <= value[1] <= n_families
    )
    if not valid:
        raise ValueError(
            f"families_per_site must be a whole number or a (low, high) pair with "
            f"1 <= low <= high <= {n_families} (the families known), got {families_per_site!r} "
            f"(fix: 1 for one family per site, {DEFAULT_FAMILIES_PER_SITE} for the default "
            f"range, or {n_families} for every family at every site)"
        )
    return int(value[0]), int(value[1])


def check_benign_mix_spread(benign_mix_spread: float) -> float:
    """The spread must be a finite number >= 0 (0: every site has the typical mix)."""
    value = benign_mix_spread
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )
    if not (number and math.isfinite(value) and value >= 0):
        raise ValueError(
            f"benign_mix_spread must be a finite number >= 0, got {value!r} "
            f"(fix: 0 for identical benign mixes, {DEFAULT_BENIGN_MIX_SPREAD} for the default, "
            "3 for very different ones)"
        )
    return float(value)


def _log_uniform(
    rng: np.random.Generator, low: float, high: float, quantile: float | None = None
) -> float:
    position = rng.random() if quantile is None else quantile
    return float(np.exp(np.log(low) + position * (np.log(high) - np.log(low))))


def _languages(rng: np.random.Generator, home: str) -> dict[str, float]:
    weights = {"en": float(rng.uniform(0.25, 0.6)), home: float(rng.uniform(0.25, 0.6))}
    for other in rng.choice(
        [lang for lang in HOME_LANGUAGES if lang != home], size=2, replace=False
    ):
        weights[str(other)] = float(rng.uniform(0.02, 0.1))
    total = sum(weights.values())
    return {lang: round(weight / total, 4) for lang, weight in sorted(weights.items())}


def _benign_mix(
    rng: np.random.Generator, *, spread: float = DEFAULT_BENIGN_MIX_SPREAD
) -> dict[str, float]:
    names = sorted(CATEGORY_SHAPE)
    typical = np.array([CATEGORY_SHAPE[name][0] for name in names])
    typical = typical / typical.sum()
    # e.g. a cloud-heavy shop vs a mail-heavy ISP
    leaning = typical * rng.lognormal(0.0, 0.35, size=len(names))
    mix = rng.dirichlet(leaning / leaning.sum() * 150)
    if spread != DEFAULT_BENIGN_MIX_SPREAD:
        # The same draws, scaled away from (or towards) the typical mix in log space: only
        # how far the sites lean changes, never which way, nor any other draw.
        mix = typical * (mix / typical) ** spread
        mix = mix / mix.sum()
    mix = np.maximum(mix, 0.3 * typical)  # no hard class vanishes entirely
    mix = mix / mix.sum()
    return {name: round(float(share), 4) for name, share in zip(names, mix, strict=True)}


def _tail_names(seed: int, index: int, quantile: float) -> int:
    """Bigger sites see a longer tail, but not strictly; its own stream leaves the other
    profile draws as they were before the long tail existed."""
    rng = stream(seed, "profile-tail", index)
    tail_q = float(np.clip(quantile + rng.normal(0, 0.15), 0.0, 1.0))
    return int(_log_uniform(rng, *TAIL_NAMES_PER_DAY_RANGE, tail_q))


def _dga_rates(
    site_rng: np.random.Generator,
    default_families: tuple[str, ...],
    families: tuple[str, ...],
    *,
    seed: int,
    index: int,
) -> dict[str, int]:
    """Unique names per day per family; the default families' draws are always made first,
    so another family setting leaves every later draw of the site unchanged."""
    drawn = {name: int(site_rng.integers(120, 450)) for name in default_families}
    if families == default_families:
        return drawn
    extra = stream(seed, "profile-extra-families", index)
    return {
        name: drawn[name] if name in drawn else int(extra.integers(120, 450)) for name in families
    }


def draw_profiles(
    *,
    seed: int,
    n_sites: int,
    families_per_site: int | tuple[int, int] = DEFAULT_FAMILIES_PER_SITE,
    benign_mix_spread: float = DEFAULT_BENIGN_MIX_SPREAD,
) -> list[SiteProfile]:
    """All site profiles for one run; volumes and deployment sizes are stratified so they spread.

    The two non-IID knobs (see `generate_sites`) change only what they name: volumes,
    languages, intel noise and deployments stay the same for the same seed.
    """
    names = tuple(family.name for family in FAMILIES)
    per_site = families_range(families_per_site, n_families=len(names))
    spread = check_benign_mix_spread(benign_mix_spread)
    rng = stream(seed, "profiles")
    default_sets = assign_families(rng, n_sites, names)
    family_sets = (
        default_sets
        if per_site == DEFAULT_FAMILIES_PER_SITE
        else assign_families(
            stream(seed, "profiles-families", *per_site), n_sites, names, per_site=per_site
        )
    )
    volume_rank = rng.permutation(n_sites)
    homes = rng.permutation(len(HOME_LANGUAGES))
    companies = rng.permutation(len(COMPANY_WORDS))
    profiles = []
    for index in range(n_sites):
        site_rng = stream(seed, "profile", index)
        quantile = (volume_rank[index] + site_rng.random()) / n_sites
        # bigger deployments tend to ship bigger log samples, but not strictly
        deployment_q = float(np.clip(quantile + site_rng.normal(0, 0.1), 0.0, 1.0))
        home = HOME_LANGUAGES[homes[index % len(HOME_LANGUAGES)]]
        company = COMPANY_WORDS[companies[index % len(COMPANY_WORDS)]] + (
            "" if index < len(COMPANY_WORDS) else str(index)
        )
        internal = str(
            site_rng.choice(
                (f"corp.{company}.com", f"{company}.local", f"ad.{company}.net", f"{company}.lan")
            )
        )
        profiles.append(
            SiteProfile(
                site_id=f"site-{index:02d}",
                index=index,
                families=family_sets[index],
                dga_unique_per_day=_dga_rates(
                    site_rng, default_sets[index], family_sets[index], seed=seed, index=index
                ),
                lines_per_day=int(_log_uniform(site_rng, *LINES_PER_DAY_RANGE, quantile)),
                tail_names_per_day=_tail_names(seed, index, quantile),
                benign_mix=_benign_mix(site_rng, spread=spread),
                languages=_languages(site_rng, home),
                internal_domain=internal,
                subnet=(10, int(site_rng.integers(1, 255))),
                tz_offset_hours=TZ_OFFSET_HOURS[home],
                miss_rate=round(float(site_rng.uniform(0.05, 0.30)), 4),
                error_rate=round(_log_uniform(site_rng, 0.001, 0.01), 5),
                feed_extra_ratio=round(float(site_rng.uniform(0.3, 1.5)), 3),
                allowlist_size=int(site_rng.integers(40, 250)),
                # From a small enterprise SOC (1e6 queries/day) to an ISP (2e9).
                benign_events_per_day=float(
                    f"{_log_uniform(site_rng, 1e6, 2e9, deployment_q):.4g}"
                ),
                base_rate=float(f"{_log_uniform(site_rng, 1e-5, 1e-3):.3g}"),
                analyst_count=int(site_rng.integers(2, 13)),
                minutes_per_alert=float(site_rng.integers(10, 31)),
                # Most data holders share volumes with the federation; some only rates.
                share_level="rates" if index % 3 == 2 else "rates+volumes",
            )
        )
    return profiles
