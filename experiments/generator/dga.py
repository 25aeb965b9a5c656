"""DGA families: one generator per algorithm class, each with its own lengths and TLDs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from experiments.generator import data
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


def uniform_alpha(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    labels = _random_labels(rng, LETTERS, rng.integers(12, 25, size=count))
    tlds = _pick(
        rng, ("com", "net", "biz", "ru", "org", "info", "co.uk"), count, (5, 3, 2, 2, 1, 1, 1)
    )
    return [f"{label}.{tld}" for label, tld in zip(labels, tlds, strict=True)]


def md5_hex(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    keys = rng.integers(0, 2**62, size=count)
    lengths = rng.choice((16, 20, 24, 32, 32), size=count)
    prefixed = rng.random(count) < 0.3  # some variants prepend one letter to the digest
    tlds = _pick(rng, ("info", "org", "cc", "in", "net"), count, (4, 2, 2, 1, 1))
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


def cv_syllables(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    names = []
    tlds = _pick(rng, ("com", "net", "info", "top", "eu"), count, (4, 2, 2, 1, 1))
    for syllables, tld in zip(rng.integers(3, 7, size=count), tlds, strict=True):
        parts = [
            data.CONSONANTS[rng.integers(len(data.CONSONANTS))]
            + data.VOWELS[rng.integers(len(data.VOWELS))]
            for _ in range(syllables)
        ]
        if rng.random() < 0.4:  # closing consonant, as in gatyfus / lyvyxor
            parts.append(data.CONSONANTS[rng.integers(len(data.CONSONANTS))])
        names.append("".join(parts) + "." + tld)
    return names


def word_concat(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    words = data.EN_WORDS
    tlds = _pick(rng, ("net", "com", "ru"), count, (6, 3, 1))
    names = []
    for n_words, hyphen, tld in zip(
        rng.choice((2, 2, 2, 3), size=count),
        rng.random(count) < 0.1,
        tlds,
        strict=True,
    ):
        chosen = [words[i] for i in rng.integers(0, len(words), size=n_words)]
        names.append(("-" if hyphen else "").join(chosen) + "." + tld)
    return names


def word_digits(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    words = data.EN_WORDS + data.DE_WORDS
    tlds = _pick(rng, ("xyz", "top", "online", "site", "com"), count, (3, 3, 2, 2, 1))
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


def base32_alnum(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    tlds = _pick(rng, ("pw", "xyz", "top", "club", "biz"), count)
    names = []
    for tld, length in zip(tlds, rng.integers(16, 27, size=count), strict=True):
        digest = hashlib.sha1(rng.bytes(16)).digest()
        names.append(base64.b32encode(digest).decode().lower().rstrip("=")[:length] + "." + tld)
    return names


def short_many_tlds(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    lengths = rng.integers(5, 9, size=count)
    labels = _random_labels(rng, LETTERS, lengths)
    tlds = _pick(rng, data.DGA_TLDS_MANY, count)
    return [f"{label}.{tld}" for label, tld in zip(labels, tlds, strict=True)]


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
    for word in data.EN_WORDS + data.DE_WORDS + data.ES_WORDS:
        previous = 26
        for char in word:
            counts[previous, ord(char) - 97] += 8
            previous = ord(char) - 97
    return np.cumsum(counts / counts.sum(axis=1, keepdims=True), axis=1)


_BIGRAM_CDF = _bigram_table()


def letter_markov(rng: np.random.Generator, count: int, day: dt.date) -> list[str]:
    tlds = _pick(rng, ("com", "net", "org"), count, (6, 3, 1))
    names = []
    for tld, length in zip(tlds, rng.integers(7, 14, size=count), strict=True):
        previous, chars = 26, []
        for draw in rng.random(length):
            previous = int(np.searchsorted(_BIGRAM_CDF[previous], draw * _BIGRAM_CDF[previous, -1]))
            previous = min(previous, 25)
            chars.append(chr(97 + previous))
        names.append("".join(chars) + "." + tld)
    return names


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
