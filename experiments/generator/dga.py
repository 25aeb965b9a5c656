"""DGA families: one generator per algorithm class, each with its own lengths and TLDs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from experiments.generator import data, lexicon
from experiments.generator.streams import stream

LETTERS = b"abcdefghijklmnopqrstuvwxyz"

# (rng, count, day) -> registered domains (second-level label + TLD), possibly with repeats
Algorithm = Callable[[np.random.Generator, int, dt.date], list[str]]


@dataclass(frozen=True)
class Family:
    """One DGA family: its class, algorithm and how its bots query."""

    name: str
    algorithm_class: str
    algorithm: Algorithm
    epoch_days: int  # 1: new names every day; 0: one fixed pool (counter-seeded)
    www_probability: float


def _random_labels(rng: np.random.Generator, alphabet: bytes, lengths: np.ndarray) -> list[str]:
    symbols = np.frombuffer(alphabet, dtype=np.uint8)
    rows = symbols[rng.integers(0, len(symbols), size=(len(lengths), int(lengths.max())))]
    return [rows[i, :length].tobytes().decode() for i, length in enumerate(lengths)]


def _pick(
    rng: np.random.Generator,
    options: tuple[str, ...],
    count: int,
    weights: tuple[float, ...] | None = None,
) -> list[str]:
    probabilities = None if weights is None else np.asarray(weights) / np.sum(weights)
    return [options[i] for i in rng.choice(len(options), size=count, p=probabilities)]


# TLDs DGA operators favour: the old generic ones, cheap or free registries, and new gTLDs
# sold for cents. Weights are relative; every family draws from its own subset.
CLASSIC_TLDS = (("com", 8), ("net", 4), ("org", 3), ("info", 3), ("biz", 3), ("ru", 2))
CHEAP_TLDS = (
    ("su", 1),
    ("cc", 1),
    ("pw", 1),
    ("ws", 1),
    ("in", 1),
    ("cn", 1),
    ("eu", 1),
    ("me", 1),
    ("tv", 0.5),
    ("co", 0.5),
    ("tk", 0.5),
    ("kz", 0.5),
    ("tw", 0.5),
    ("la", 0.3),
    ("cx", 0.3),
    ("nu", 0.3),
    ("name", 0.5),
    ("mobi", 0.3),
    ("us", 0.5),
)
NEW_GTLDS = (
    ("top", 1),
    ("xyz", 1),
    ("online", 0.6),
    ("site", 0.6),
    ("club", 0.5),
    ("icu", 0.4),
    ("live", 0.4),
    ("life", 0.4),
    ("shop", 0.3),
    ("store", 0.3),
    ("fun", 0.3),
    ("space", 0.3),
    ("website", 0.2),
    ("tech", 0.2),
    ("click", 0.3),
    ("work", 0.2),
    ("win", 0.2),
    ("bid", 0.2),
    ("loan", 0.1),
    ("download", 0.1),
)
# Blockchain and alternative roots some malware resolves through its own resolvers.
ALT_ROOT_TLDS = (("coin", 0.3), ("emc", 0.3), ("lib", 0.3))
# Country TLDs (and their commercial second levels): malware TLD lists reach far beyond the
# generic ones, into whichever registries are cheap, lax or simply in the list the author
# copied. Every family gets a few of these, fixed for the family (see _family_tlds).
_COUNTRY_TLD_TEXT = """
        de uk co.uk fr it nl pl es com.br com.ar com.mx jp cn in ru su ua com.ua kz by tr
        com.tr ir vn kr tw hk com.au ca us eu ch at be se no fi dk cz sk hu ro bg gr pt lt lv
        ee am ge az uz md ms mn pk bd lk my sg ph id th nz za ng ke eg ma cl pe co ve ec bz ag
        vc sc mu cm so to fm nu ws la cx tk ml ga cf gq pm yt re wf tf ki ac io sh im gg je li
        lu is mk rs ba hr si al me tv cc
        """
COUNTRY_TLDS = tuple((tld, 1.0) for tld in _COUNTRY_TLD_TEXT.split())


def _tld_picker(*groups: tuple[tuple[str, float], ...], scale: tuple[float, ...] = ()):
    """Options and probabilities from weighted TLD groups (each group scaled by `scale`)."""
    weights: dict[str, float] = {}
    for index, group in enumerate(groups):
        factor = scale[index] if index < len(scale) else 1.0
        for tld, weight in group:
            weights[tld] = weights.get(tld, 0.0) + weight * factor
    options = tuple(weights)
    return options, tuple(weights[tld] for tld in options)


def _family_tlds(name: str, picker, *, share: float, extra: int):
    """The family's TLD list: its main TLDs plus `extra` drawn once from every TLD a DGA might
    use (country, cheap, new generic), which together get `share` of the names. Fixed for the
    family whatever the run seed, as the list compiled into the malware is."""
    universe = _tld_picker(COUNTRY_TLDS, CHEAP_TLDS, NEW_GTLDS)[0]
    chosen = stream(0, "dga-tlds", name).choice(len(universe), size=extra, replace=False)
    options, weights = picker
    main_total = float(np.sum(weights))
    extra_weight = main_total * share / (1.0 - share) / extra
    combined = dict(zip(options, weights, strict=True))
    for index in np.sort(chosen):
        tld = universe[index]
        combined[tld] = combined.get(tld, 0.0) + extra_weight
    return tuple(combined), tuple(combined.values())


def _tlds(rng: np.random.Generator, count: int, picker) -> list[str]:
    options, weights = picker
    return _pick(rng, options, count, weights)


def _parents(rng: np.random.Generator, count: int) -> list[str]:
    """Dynamic-DNS parents: the bot asks for a random host under a free dynamic-DNS zone."""
    return _pick(rng, lexicon.DYNAMIC_DNS_PARENTS, count)


def _with_variants(
    rng: np.random.Generator, count: int, variants: tuple[tuple[float, Callable], ...]
) -> list[str]:
    """A family's pool mixes its versions (real families run several at once)."""
    weights = np.array([weight for weight, _ in variants], dtype=float)
    which = rng.choice(len(variants), size=count, p=weights / weights.sum())
    names: list[str] = [""] * count
    for index, (_, make) in enumerate(variants):
        where = np.flatnonzero(which == index)
        for position, name in zip(where, make(len(where)), strict=True):
            names[position] = name
    return names


_RANDALPHA_TLDS = _family_tlds(
    "randalpha",
    _tld_picker(CLASSIC_TLDS, CHEAP_TLDS, ALT_ROOT_TLDS, (("co.uk", 1),)),
    share=0.3,
    extra=30,
)


def uniform_alpha(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    def classic(n: int, low: int, high: int) -> list[str]:
        labels = _random_labels(rng, LETTERS, rng.integers(low, high, size=max(n, 1)))[:n]
        return [
            f"{label}.{tld}"
            for label, tld in zip(labels, _tlds(rng, n, _RANDALPHA_TLDS), strict=True)
        ]

    def dynamic(n: int) -> list[str]:
        labels = _random_labels(rng, LETTERS, rng.integers(8, 17, size=max(n, 1)))[:n]
        return [f"{label}.{parent}" for label, parent in zip(labels, _parents(rng, n), strict=True)]

    return _with_variants(
        rng,
        count,
        (
            (0.6, lambda n: classic(n, 12, 25)),
            (0.25, lambda n: classic(n, 7, 12)),
            (0.15, dynamic),
        ),
    )


_HEX_TLDS = _family_tlds(
    "hexhash",
    _tld_picker((("info", 4), ("org", 2), ("cc", 2), ("in", 1), ("net", 2), ("com", 3)), NEW_GTLDS),
    share=0.2,
    extra=15,
)


def md5_hex(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    keys = rng.integers(0, 2**62, size=count)
    lengths = rng.choice((8, 10, 12, 16, 16, 20, 24, 32, 32), size=count)
    prefixed = rng.random(count) < 0.3  # some variants prepend one letter to the digest
    tlds = _tlds(rng, count, _HEX_TLDS)
    names = []
    for key, length, letter, tld, initial in zip(
        keys,
        lengths,
        prefixed,
        tlds,
        rng.integers(0, 26, size=count),
        strict=True,
    ):
        hexed = hashlib.md5(int(key).to_bytes(8, "big")).hexdigest()[:length]
        names.append(f"{chr(97 + initial) if letter else ''}{hexed}.{tld}")
    return names


_CV_TLDS = _family_tlds(
    "cvsyll",
    _tld_picker(
        (("com", 4), ("net", 2), ("info", 2), ("top", 1), ("eu", 1), ("biz", 1), ("org", 1))
    ),
    share=0.25,
    extra=20,
)


def cv_syllables(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    names = []
    tlds = _tlds(rng, count, _CV_TLDS)
    dynamic = rng.random(count) < 0.15
    parents = _parents(rng, count)
    for syllables, tld, on_dynamic, parent in zip(
        rng.integers(3, 7, size=count), tlds, dynamic, parents, strict=True
    ):
        parts = [
            data.CONSONANTS[rng.integers(len(data.CONSONANTS))]
            + data.VOWELS[rng.integers(len(data.VOWELS))]
            for _ in range(syllables)
        ]
        if rng.random() < 0.4:  # closing consonant, as in gatyfus / lyvyxor
            parts.append(data.CONSONANTS[rng.integers(len(data.CONSONANTS))])
        names.append("".join(parts) + "." + (parent if on_dynamic else tld))
    return names


def _family_wordlist(name: str, size: int) -> tuple[str, ...]:
    """The word list compiled into the malware: fixed for the family, whatever the run seed."""
    words = tuple(sorted(set(lexicon.EN_NOUNS + lexicon.EN_VERBS + lexicon.EN_ADJECTIVES)))
    chosen = stream(0, "dga-wordlist", name).choice(len(words), size=size, replace=False)
    return tuple(words[i] for i in np.sort(chosen))


_WORDLIST = _family_wordlist("wordconcat", 600)
_WORD_TLDS = _family_tlds(
    "wordconcat",
    _tld_picker((("net", 6), ("com", 4), ("ru", 1), ("org", 1), ("info", 1), ("biz", 1))),
    share=0.2,
    extra=20,
)


_WORD_WIDE_TLDS = _family_tlds(
    "wordconcat-hyphen",
    _tld_picker(CLASSIC_TLDS, CHEAP_TLDS, NEW_GTLDS, scale=(1.0, 2.0, 1.0)),
    share=0.5,
    extra=40,
)


def word_concat(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    words = _WORDLIST

    def joined(n: int, n_words: tuple[int, ...], sep: str, picker) -> list[str]:
        names = []
        for size, tld in zip(rng.choice(n_words, size=n), _tlds(rng, n, picker), strict=True):
            chosen = [words[i] for i in rng.integers(0, len(words), size=size)]
            names.append(sep.join(chosen) + "." + tld)
        return names

    def fragments(n: int) -> list[str]:
        """Pieces of consecutive words cut to a length (text-seeded word DGAs)."""
        names = []
        for length, tld in zip(
            rng.integers(12, 24, size=n), _tlds(rng, n, _WORD_TLDS), strict=True
        ):
            text = ""
            while len(text) < length:
                word = words[rng.integers(len(words))]
                text += word[: max(2, int(rng.integers(2, len(word) + 1)))]
            names.append(text[:length] + "." + tld)
        return names

    return _with_variants(
        rng,
        count,
        (
            (0.55, lambda n: joined(n, (2,), "", _WORD_TLDS)),
            (0.12, lambda n: joined(n, (3,), "", _WORD_TLDS)),
            (0.18, lambda n: joined(n, (2,), "-", _WORD_WIDE_TLDS)),
            (0.15, fragments),
        ),
    )


_WORDDIGIT_TLDS = _family_tlds(
    "worddigit",
    _tld_picker(
        (("xyz", 3), ("top", 3), ("online", 2), ("site", 2), ("com", 2), ("net", 1), ("ru", 1))
    ),
    share=0.2,
    extra=15,
)


def word_digits(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    words = _family_wordlist("worddigit", 400) + data.DE_WORDS
    tlds = _tlds(rng, count, _WORDDIGIT_TLDS)
    names = []
    for tld, digits, before in zip(
        tlds, rng.integers(2, 5, size=count), rng.random(count) < 0.2, strict=True
    ):
        word = words[rng.integers(len(words))]
        number = "".join(str(d) for d in rng.integers(0, 10, size=digits))
        names.append((f"{number}{word}" if before else f"{word}{number}") + "." + tld)
    return names


def date_lcg(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    """The date alone seeds the algorithm (no key): every infected host agrees on the day's list."""
    tlds = ("com", "net", "org", "info", "biz", "cn", "ws", "cc")
    names = []
    for index in range(count):
        state = (
            (day.year * 10000 + day.month * 100 + day.day) * 2654435761 + index * 40503
        ) & 0x7FFFFFFF
        length = 8 + state % 4
        chars = []
        for _ in range(length):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            chars.append(chr(97 + (state >> 16) % 26))
        names.append("".join(chars) + "." + tlds[(state >> 8) % len(tlds)])
    return names


ALNUM = b"abcdefghijklmnopqrstuvwxyz0123456789"
_B32_TLDS = _tld_picker((("pw", 1), ("xyz", 1), ("top", 1), ("club", 1), ("biz", 1)))
_ALNUM_TLDS = _family_tlds(
    "b32alnum",
    _tld_picker(CLASSIC_TLDS, NEW_GTLDS, (("cn", 1), ("su", 0.5), ("me", 0.5))),
    share=0.2,
    extra=15,
)


def base32_alnum(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    def base32(n: int) -> list[str]:
        names = []
        for tld, length in zip(_tlds(rng, n, _B32_TLDS), rng.integers(16, 27, size=n), strict=True):
            digest = hashlib.sha1(rng.bytes(16)).digest()
            names.append(base64.b32encode(digest).decode().lower().rstrip("=")[:length] + "." + tld)
        return names

    def alnum(n: int, low: int, high: int, parents: bool) -> list[str]:
        labels = _random_labels(rng, ALNUM, rng.integers(low, high, size=max(n, 1)))[:n]
        suffixes = _parents(rng, n) if parents else _tlds(rng, n, _ALNUM_TLDS)
        return [f"{label}.{suffix}" for label, suffix in zip(labels, suffixes, strict=True)]

    return _with_variants(
        rng,
        count,
        (
            (0.4, base32),
            (0.4, lambda n: alnum(n, 10, 21, False)),
            (0.2, lambda n: alnum(n, 12, 19, True)),
        ),
    )


_SHORT_TLDS = _family_tlds(
    "shortmulti",
    _tld_picker(
        tuple((tld, 1.0) for tld in data.DGA_TLDS_MANY),
        CHEAP_TLDS,
        NEW_GTLDS,
        scale=(1.0, 1.0, 0.5),
    ),
    share=0.5,
    extra=60,
)


def short_many_tlds(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    lengths = rng.choice(np.arange(3, 9), size=count, p=(0.06, 0.1, 0.2, 0.24, 0.22, 0.18))
    labels = _random_labels(rng, LETTERS, lengths)
    with_digit = rng.random(count) < 0.1
    digits = rng.integers(0, 10, size=count)
    tlds = _tlds(rng, count, _SHORT_TLDS)
    return [
        f"{label}{digit if has_digit else ''}.{tld}"
        for label, has_digit, digit, tld in zip(labels, with_digit, digits, tlds, strict=True)
    ]


def seed_mutation(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    """A fixed seed name whose first four letters walk through a recurrence (banjori-like)."""
    words = data.EN_WORDS
    bases = [
        [ord(c) for c in "".join(words[i] for i in rng.integers(0, len(words), size=3)) + "ohax"]
        for _ in range(3)
    ]
    names = []
    for index in range(count):
        codes = bases[index % 3]
        codes[0] = 97 + (codes[0] + codes[3]) % 26
        codes[1] = 97 + (codes[0] + 2 * codes[1]) % 26
        codes[2] = 97 + (codes[0] + codes[2] - 1) % 26
        codes[3] = 97 + (codes[1] + codes[2] + codes[3]) % 26
        names.append("".join(map(chr, codes)) + ".com")
    return names


def _bigram_table() -> np.ndarray:
    """Cumulative letter-transition table; row 26 is the start state."""
    counts = np.ones((27, 26))  # add-one smoothing keeps every path possible
    for word in lexicon.EN_WORDS_LARGE + data.DE_WORDS + data.ES_WORDS:
        previous = 26
        for char in word:
            counts[previous, ord(char) - 97] += 8
            previous = ord(char) - 97
    return np.cumsum(counts / counts.sum(axis=1, keepdims=True), axis=1)


_BIGRAM_CDF = _bigram_table()
_AFFIX_HEADS = ("anti", "over", "under", "re", "pre", "un", "dis", "inter", "super", "multi", "non")
_AFFIX_TAILS = ("ly", "ify", "able", "ation", "ism", "ous", "ive", "ful", "ness", "ment", "ize")
_MARKOV_TLDS = _family_tlds(
    "markovgram",
    _tld_picker((("com", 6), ("net", 3), ("org", 1), ("info", 1), ("biz", 0.5), ("name", 0.5))),
    share=0.25,
    extra=20,
)


def _markov_word(rng: np.random.Generator, length: int) -> str:
    previous, chars = 26, []
    for draw in rng.random(length):
        previous = int(np.searchsorted(_BIGRAM_CDF[previous], draw * _BIGRAM_CDF[previous, -1]))
        previous = min(previous, 25)
        chars.append(chr(97 + previous))
    return "".join(chars)


def letter_markov(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    def plain(n: int) -> list[str]:
        return [
            _markov_word(rng, int(length)) + "." + tld
            for tld, length in zip(
                _tlds(rng, n, _MARKOV_TLDS), rng.integers(7, 14, size=n), strict=True
            )
        ]

    def affixed(n: int) -> list[str]:
        """Pseudo-words dressed in English affixes, sometimes two joined by a hyphen."""
        names = []
        for tld, pair in zip(_tlds(rng, n, _MARKOV_TLDS), rng.random(n) < 0.3, strict=True):
            words = [
                _AFFIX_HEADS[rng.integers(len(_AFFIX_HEADS))]
                + _markov_word(rng, int(rng.integers(3, 7)))
                + _AFFIX_TAILS[rng.integers(len(_AFFIX_TAILS))]
                for _ in range(2 if pair else 1)
            ]
            names.append("-".join(words) + "." + tld)
        return names

    return _with_variants(rng, count, ((0.75, plain), (0.25, affixed)))


FAMILIES: tuple[Family, ...] = (
    Family("randalpha", "uniform random characters", uniform_alpha, 1, 0.05),
    Family("hexhash", "hash/hex-based (md5-like hex)", md5_hex, 0, 0.0),
    Family("cvsyll", "pronounceable consonant-vowel", cv_syllables, 1, 0.1),
    Family("wordconcat", "word-list concatenation", word_concat, 1, 0.0),
    Family("worddigit", "dictionary word + digits", word_digits, 0, 0.15),
    Family("dateseed", "date-seeded (the date feeds the algorithm)", date_lcg, 1, 0.0),
    Family("b32alnum", "base32 / alphanumeric with digits", base32_alnum, 7, 0.0),
    Family("shortmulti", "short random with many TLDs", short_many_tlds, 1, 0.05),
    Family("seedmutate", "seed-name mutation (banjori-like)", seed_mutation, 0, 0.0),
    Family("markovgram", "letter-bigram pronounceable (English-like)", letter_markov, 1, 0.05),
)

FAMILY_BY_NAME = {family.name: family for family in FAMILIES}


def epoch_of(family: Family, day_index: int) -> int:
    """Which pool a day draws from: its own (daily), its week's, or the one fixed pool."""
    return 0 if family.epoch_days == 0 else day_index // family.epoch_days


def family_pool(family: Family, *, seed: int, epoch: int, day: dt.date, size: int) -> list[str]:
    """Distinct registered domains of one family for one epoch, in generation order."""
    rng = stream(seed, "dga-pool", family.name, epoch)
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < size and attempts < 5:
        for name in family.algorithm(rng, size, day):
            if len(seen) < size:
                seen.setdefault(name, None)
        attempts += 1
    return list(seen)
