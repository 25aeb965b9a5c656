"""Benign web names: popular sites, long-tail sites in many languages, IDNs, short brands, ads."""

from __future__ import annotations

import numpy as np

from experiments.generator import data, longtail

# A benign name is (query, kind); the kind picks the response profile in traffic.py.
Named = list[tuple[str, str]]


def _choose_language(
    rng: np.random.Generator, languages: dict[str, float], count: int
) -> list[str]:
    names = sorted(languages)
    weights = np.array([languages[name] for name in names])
    return [names[i] for i in rng.choice(len(names), size=count, p=weights / weights.sum())]


def _hex(rng: np.random.Generator, length: int) -> str:
    return "".join("0123456789abcdef"[i] for i in rng.integers(0, 16, size=length))


def popular_names(rng: np.random.Generator, count: int, *, languages: dict[str, float]) -> Named:
    """Global and regional top sites, reordered by a site-specific jitter (rank sets the weight)."""
    scored: list[tuple[float, str]] = []
    for rank, domain in enumerate(data.GLOBAL_POPULAR):
        scored.append((1.0 / (rank + 3), domain))
    for language, weight in sorted(languages.items()):
        for rank, domain in enumerate(data.REGIONAL_POPULAR[language]):
            scored.append((1.5 * weight / (rank + 4), domain))
    jitter = rng.lognormal(0.0, 0.6, size=len(scored))
    hosts: list[tuple[float, str]] = []
    for (score, domain), noise in zip(scored, jitter, strict=True):
        n_hosts = 1 + int(rng.integers(1, 9) * min(1.0, score * 20))
        prefixes = rng.permutation(len(data.HOST_PREFIXES))[:n_hosts]
        hosts.append((score * noise * 1.5, domain))  # the apex is queried too
        for position, prefix in enumerate(prefixes):
            hosts.append((score * noise / (position + 1), f"{data.HOST_PREFIXES[prefix]}.{domain}"))
    hosts.sort(key=lambda item: (-item[0], item[1]))
    return [(host, "web") for _, host in hosts[:count]]


LONG_TAIL_HOSTS = ("mail.", "shop.", "m.", "blog.", "cdn.", "static.", "webmail.", "autodiscover.")


def long_tail_names(rng: np.random.Generator, count: int, *, languages: dict[str, float]) -> Named:
    """Small sites the site's users come back to, named the way the long tail is named
    (words, compounds, brands, acronyms, numbers; the languages' TLDs; see longtail.py)."""
    domains = longtail.tail_domains(rng, count, languages=languages)
    rolls = rng.random(count)
    hosts = rng.integers(0, len(LONG_TAIL_HOSTS), size=count)
    named: Named = []
    for domain, roll, host in zip(domains, rolls, hosts, strict=True):
        prefix = "www." if roll < 0.4 else "" if roll < 0.8 else LONG_TAIL_HOSTS[host]
        named.append((prefix + domain, "web"))
    return named


def idn_names(rng: np.random.Generator, count: int, *, languages: dict[str, float]) -> Named:
    """Punycode names made by encoding real Unicode words; a few are sent raw (UTF-8 bytes)."""
    usable = {
        lang: max(weight, 0.05) for lang, weight in languages.items() if lang in data.IDN_WORDS
    }
    named: Named = []
    for language in _choose_language(rng, usable, count):
        words, tlds = data.IDN_WORDS[language], data.IDN_TLDS[language]
        label = words[rng.integers(len(words))]
        roll = rng.random()
        if roll < 0.3:
            label += "-" + data.LANG_WORDS[language][rng.integers(len(data.LANG_WORDS[language]))]
        elif roll < 0.45:
            label += words[rng.integers(len(words))]
        unicode_name = (
            "www." if rng.random() < 0.4 else ""
        ) + f"{label}.{tlds[rng.integers(len(tlds))]}"
        if rng.random() < 0.04:  # a client that skipped IDNA: Zeek logs the raw bytes as \xNN
            named.append((unicode_name, "nx"))
            continue
        try:
            named.append((unicode_name.encode("idna").decode("ascii"), "web"))
        except UnicodeError:
            continue
    return named


def short_names(rng: np.random.Generator, count: int) -> Named:
    """Real short brands, plus short random-looking brand names that do resolve."""
    named: Named = [(name, "web") for name in data.SHORT_BRANDS]
    tlds = ("com", "io", "ai", "co", "me", "de", "app", "ly")
    while len(named) < count:
        length = int(rng.integers(2, 5))
        label = "".join(chr(97 + c) for c in rng.integers(0, 26, size=length))
        if rng.random() < 0.2:
            label += str(rng.integers(0, 10))
        prefix = "www." if rng.random() < 0.4 else "api." if rng.random() < 0.2 else ""
        named.append((f"{prefix}{label}.{tlds[rng.integers(len(tlds))]}", "web"))
    order = rng.permutation(len(named))
    return [named[i] for i in order[:count]]


def ad_names(rng: np.random.Generator, count: int) -> Named:
    """Ad and tracker hosts, including per-impression hashed hosts."""
    named: Named = [(host, "cname") for host in data.AD_HOSTS]
    templates = (
        lambda: f"{_hex(rng, 32)}.safeframe.googlesyndication.com",
        lambda: f"s{rng.integers(0, 10)}.adform.net",
        lambda: f"{_hex(rng, 8)}.ads.linkedin.com",
        lambda: f"cdn-{_hex(rng, 6)}.akamaized.net",
        lambda: (
            f"pixel{rng.integers(1, 40)}."
            f"{rng.choice(('rubiconproject', 'pubmatic', 'smartadserver'))}.com"
        ),
        lambda: f"tags.{rng.choice(data.EN_WORDS)}{rng.choice(data.EN_WORDS)}.com",
        lambda: f"{rng.choice(data.EN_WORDS)}.cdn.optimizely.com",
    )
    while len(named) < count:
        named.append((templates[rng.integers(len(templates))](), "cname"))
    order = rng.permutation(len(named))
    return [named[i] for i in order[:count]]
