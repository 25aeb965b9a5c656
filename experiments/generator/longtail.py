"""The long tail of real DNS: many small sites, each queried once or twice a day.

A resolver's distinct names per day are dominated by registered domains it sees only that
day: shops, blogs, clubs, local businesses, personal pages, foreign sites a link led to.
Their names are dictionary words and compounds, invented brand names, acronyms, names of
people and places, numbers, hyphens, in every language, under .com above all and under each
country's own TLD at home. These are the names a DGA detector meets most often and the
ones that decide its false-positive rate at a low FPR, so each site-day gets tens of
thousands of them, each queried as one or a few log lines.

Scalar draws use `random.Random` seeded from the site's numpy stream: deterministic for a
seed, and fast enough for a hundred thousand names a site-day.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Container
from itertools import accumulate

import numpy as np

from experiments.generator import lexicon
from experiments.generator.world import suffix_rules

VOWELS = "aeiou"
HOST_PREFIXES = (
    "mail",
    "shop",
    "blog",
    "m",
    "webmail",
    "autodiscover",
    "cdn",
    "static",
    "api",
    "app",
    "portal",
    "login",
    "support",
    "images",
    "store",
    "news",
    "forum",
    "en",
)
YEARS_AND_NUMBERS = (
    "1",
    "2",
    "3",
    "4",
    "7",
    "9",
    "10",
    "11",
    "12",
    "21",
    "24",
    "99",
    "100",
    "123",
    "247",
    "360",
    "365",
    "911",
    "1000",
    "2000",
    "2020",
    "2023",
    "2024",
    "2025",
    "2026",
)


class _Weighted:
    """Draw one option by weight with one uniform draw (bisect on the cumulative weights)."""

    def __init__(self, pairs: tuple[tuple[str, float], ...]) -> None:
        self.options = [option for option, _ in pairs]
        self.cumulative = list(accumulate(weight for _, weight in pairs))

    def draw(self, r: random.Random) -> str:
        return self.options[
            min(bisect(self.cumulative, r.random() * self.cumulative[-1]), len(self.options) - 1)
        ]


_TLDS = {language: _Weighted(mix) for language, mix in lexicon.LANG_TLD_MIX.items()}
_INITIALS = _Weighted(tuple(lexicon.INITIAL_WEIGHTS.items()))
_BUSINESS = lexicon.EN_BUSINESS
_EN = lexicon.EN_WORDS_LARGE


def _words_for(language: str) -> tuple[str, ...]:
    return lexicon.LANG_WORDS_LARGE.get(language, _EN)  # "en" and "world": English words


def _word(r: random.Random, language: str) -> str:
    # Sites in every language borrow English words (shop, online, city, ...).
    if language not in ("en", "world") and r.random() < 0.3:
        return r.choice(_EN)
    return r.choice(_words_for(language))


def _acronym(r: random.Random, low: int = 2, high: int = 5) -> str:
    return "".join(_INITIALS.draw(r) for _ in range(r.randint(low, high)))


def _brand(r: random.Random, language: str) -> str:
    """Invented, pronounceable brand names: built from pieces, or a word made brand-like."""
    roll = r.random()
    if roll < 0.4:
        parts = [r.choice(lexicon.BRAND_HEADS)]
        if r.random() < 0.55:
            parts.append(r.choice(lexicon.BRAND_MIDDLES))
        parts.append(r.choice(lexicon.BRAND_TAILS))
        return "".join(parts)
    if roll < 0.7:
        return _word(r, language) + r.choice(lexicon.BRAND_AFFIXES)
    if roll < 0.9:
        return r.choice(lexicon.BRAND_PREFIXES) + _word(r, language)
    word = _word(r, language)  # a word with a letter swapped or doubled: lyft, flickr, digg
    if len(word) > 4 and word[-2] in VOWELS:
        return word[:-2] + word[-1]
    return word + word[-1] if r.random() < 0.5 else word + r.choice("yzox")


def _clipped(r: random.Random, language: str) -> str:
    word = _word(r, language)
    if r.random() < 0.5 and len(word) > 5:
        return word[0] + "".join(c for c in word[1:] if c not in VOWELS)  # vowel-dropped
    return word[: max(3, len(word) - r.randint(1, 3))] + _word(r, language)[:4]


def _number(r: random.Random) -> str:
    if r.random() < 0.6:
        return r.choice(YEARS_AND_NUMBERS)
    return str(r.randint(0, 10 ** r.randint(1, 4)))


def _phrase(r: random.Random, language: str) -> str:
    """Three or four words the way people name sites: with articles, joiners, a closing noun."""
    roll = r.random()
    if roll < 0.35:
        head = r.choice(lexicon.PHRASE_HEADS)
        middle = r.choice(lexicon.EN_ADJECTIVES) if r.random() < 0.4 else ""
        return head + middle + _word(r, language) + r.choice(lexicon.PHRASE_ENDS)
    if roll < 0.55:
        return _word(r, language) + r.choice(lexicon.PHRASE_JOINERS) + _word(r, language)
    if roll < 0.75:
        return (
            r.choice(lexicon.EN_VERBS) + r.choice(("my", "your", "the", "a", "our")) + r.choice(_EN)
        )
    words = [_word(r, language) for _ in range(3 if r.random() < 0.7 else 4)]
    return "".join(words)


def _infra(r: random.Random, language: str) -> str:
    """A company's own infrastructure domain: short brand or acronym plus cdn, api, img, ..."""
    base = _acronym(r, 2, 4) if r.random() < 0.6 else _brand(r, language)[:8]
    return (
        base + r.choice(lexicon.INFRA_SUFFIXES) + (str(r.randint(1, 9)) if r.random() < 0.1 else "")
    )


def _chinese(r: random.Random) -> str:
    """Pinyin words, or pinyin initials (often with a lucky or local number)."""
    roll = r.random()
    syllables = lexicon.LANG_WORDS_LARGE["zh"]
    if roll < 0.45:
        return "".join(r.choice(syllables) for _ in range(r.randint(2, 4)))
    initials = "".join(_PINYIN_INITIALS.draw(r) for _ in range(r.randint(2, 7)))
    if roll < 0.7:
        return initials
    number = r.choice(lexicon.CHINESE_NUMBERS)
    return number + initials if r.random() < 0.5 else initials + number


def _japanese(r: random.Random) -> str:
    """Romaji: words or a run of kana syllables, sometimes hyphenated."""
    if r.random() < 0.5:
        parts = [r.choice(lexicon.LANG_WORDS_LARGE["ja"]) for _ in range(r.randint(1, 2))]
    else:
        parts = ["".join(r.choice(lexicon.KANA_SYLLABLES) for _ in range(r.randint(2, 5)))]
        if r.random() < 0.4:
            parts.append(r.choice(lexicon.LANG_WORDS_LARGE["ja"] + lexicon.EN_TECH))
    return ("-" if r.random() < 0.25 else "").join(parts)


def _syllabic(r: random.Random, language: str) -> str:
    """Languages written as syllables in domains (Vietnamese, Korean): a run of them."""
    return "".join(r.choice(lexicon.LANG_WORDS_LARGE[language]) for _ in range(r.randint(2, 4)))


def _number_word(r: random.Random, language: str) -> str:
    word, number = _word(r, language), _number(r)
    return word + number if r.random() < 0.7 else number + word


def _numeric(r: random.Random, language: str) -> str:
    return str(r.randint(1, 99999)) if r.random() < 0.5 else _acronym(r, 1, 3) + _number(r)


def _place(r: random.Random, language: str) -> str:
    place = r.choice(lexicon.PLACES)
    return place + ("-" if r.random() < 0.25 else "") + r.choice(_BUSINESS + _EN)


def _verb_phrase(r: random.Random, language: str) -> str:
    verb = r.choice(lexicon.EN_VERBS)
    if r.random() < 0.6:
        return verb + _word(r, language)
    return r.choice(("the", "my", "i", "we", "go")) + verb + r.choice(_EN)


SHAPES = (
    (8.0, lambda r, lang: _word(r, lang)),
    (16.0, lambda r, lang: _word(r, lang) + _word(r, lang)),
    (10.0, _phrase),
    (7.0, lambda r, lang: "-".join(_word(r, lang) for _ in range(2 if r.random() < 0.85 else 3))),
    (11.0, _brand),
    (6.0, lambda r, lang: _acronym(r)),
    (
        4.0,
        lambda r, lang: _acronym(r, 2, 4) + ("" if r.random() < 0.7 else "-") + _word(r, lang),
    ),
    (3.0, _infra),
    (6.0, lambda r, lang: _person(r)),
    (4.0, _place),
    (6.0, _number_word),
    (2.0, _numeric),
    (3.0, _clipped),
    (6.0, lambda r, lang: _word(r, lang) + r.choice(_BUSINESS)),
    (4.0, _verb_phrase),
)
_SHAPE_CDF = list(accumulate(weight for weight, _ in SHAPES))
_PINYIN_INITIALS = _Weighted(tuple(lexicon.PINYIN_INITIAL_WEIGHTS.items()))
# Share of a language's names in its own script habits (the rest use the general shapes).
_NATIVE = {"zh": (0.55, _chinese), "ja": (0.5, _japanese)}
_NATIVE.update({lang: (0.5, lambda r, lang=lang: _syllabic(r, lang)) for lang in ("vi", "ko")})


def label(r: random.Random, language: str) -> str:
    """One registered label (the part left of the public suffix) in a real-world shape."""
    native = _NATIVE.get(language)
    if native is not None and r.random() < native[0]:
        text = native[1](r)
    else:
        pick = min(bisect(_SHAPE_CDF, r.random() * _SHAPE_CDF[-1]), len(SHAPES) - 1)
        text = SHAPES[pick][1](r, language)
    return text[:63].strip("-") or "x"


def _person(r: random.Random) -> str:
    first, last = r.choice(lexicon.FIRST_NAMES), r.choice(lexicon.SURNAMES)
    roll = r.random()
    if roll < 0.35:
        return first + last
    if roll < 0.5:
        return f"{first}-{last}"
    if roll < 0.75:
        return last + r.choice(_BUSINESS)
    if roll < 0.9:
        return first + r.choice(_EN)
    return first[0] + last


def domain(r: random.Random, language: str) -> str:
    """A registered domain: a label and the TLD mix of the language's sites."""
    return f"{label(r, language)}.{_TLDS[language].draw(r)}"


def _language_mix(languages: dict[str, float], foreign_share: float) -> _Weighted:
    """The site's own languages, plus the global web (every resolver sees foreign sites)."""
    total_global = sum(lexicon.GLOBAL_LANGUAGES.values())
    weights: dict[str, float] = {
        language: (1 - foreign_share) * weight for language, weight in languages.items()
    }
    for language, weight in lexicon.GLOBAL_LANGUAGES.items():
        weights[language] = weights.get(language, 0.0) + foreign_share * weight / total_global
    return _Weighted(tuple(sorted(weights.items())))


def _is_suffix(registered: str) -> bool:
    """Whether label.tld is not a plain registered domain under the full public suffix list:
    a suffix itself (blog + spot + .com), under a wildcard TLD rule, or the parent of one
    (`*.sapporo.jp`)."""
    rules = suffix_rules()
    return (
        registered in rules
        or "*." + registered in rules
        or "*." + registered.split(".", 1)[1] in rules
    )


def query_names(r: random.Random, registered: str) -> list[str]:
    """How a visit shows in DNS: the bare domain (typed, linked, redirected from, or looked up
    by a mail server), www, and now and then another host; often two of them."""
    names = []
    if r.random() < 0.7:
        names.append(registered)
    if r.random() < 0.5:
        names.append("www." + registered)
    if not names:
        names.append(registered if r.random() < 0.5 else "www." + registered)
    if r.random() < 0.1:
        names.append(f"{r.choice(HOST_PREFIXES)}.{registered}")
    return names


def tail_names(
    rng: np.random.Generator,
    count: int,
    *,
    languages: dict[str, float],
    excluded: Container[str],
    foreign_share: float = 0.3,
) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """`count` distinct names under registered domains new to this call (one to three names
    each), none under an `excluded` registered domain; returns the names, their registered
    domains, their response kinds and how often each is queried that day (mostly once)."""
    r = random.Random(int(rng.integers(0, 2**63 - 1)))
    mix = _language_mix(languages, foreign_share)
    names: list[str] = []
    registered_domains: list[str] = []
    kinds: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(names) < count and attempts < 3 * count + 100:
        attempts += 1
        registered = domain(r, mix.draw(r))
        if registered in seen or registered in excluded or _is_suffix(registered):
            continue
        seen.add(registered)
        kind = "nx" if r.random() < 0.04 else "web"  # a few are dead: expired, typo, unregistered
        for name in query_names(r, registered)[: count - len(names)]:
            names.append(name)
            registered_domains.append(registered)
            kinds.append(kind)
    draws = rng.random(len(names))
    counts = np.where(draws < 0.72, 1, np.where(draws < 0.9, 2, np.where(draws < 0.96, 3, 5)))
    return names, registered_domains, kinds, counts.astype(np.int64)


def tail_domains(rng: np.random.Generator, count: int, *, languages: dict[str, float]) -> list:
    """`count` registered domains (repeats possible) in the site's languages: for small sites a
    site visits every day (the stable long tail)."""
    r = random.Random(int(rng.integers(0, 2**63 - 1)))
    mix = _language_mix(languages, 0.2)
    return [domain(r, mix.draw(r)) for _ in range(count)]
