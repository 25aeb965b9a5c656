"""Domain names to fixed-length character ids for the character CNN."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_DOMAIN_CHARS = 64
PAD_ID = 0
UNKNOWN_ID = 1
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-._"
VOCAB_SIZE = len(ALPHABET) + 2  # + padding + unknown


def _build_lookup_table() -> np.ndarray:
    table = np.full(256, UNKNOWN_ID, dtype=np.int64)
    table[0] = PAD_ID  # NUL is the padding byte written by encode_domains
    for char_id, char in enumerate(ALPHABET, start=2):
        table[ord(char)] = char_id
        # DNS is case-insensitive (and resolvers randomise case), so fold it here.
        table[ord(char.upper())] = char_id
    return table


_LOOKUP = _build_lookup_table()


def normalise_domain(name: str) -> str:
    """Drop surrounding whitespace and the trailing root dot; case is folded at encoding."""
    return name.strip().rstrip(".")


def encode_domains(domains: Sequence[str], *, max_chars: int = MAX_DOMAIN_CHARS) -> np.ndarray:
    """Encode names as int64 character ids of shape [n, max_chars], left-padded with PAD_ID.

    Ids: 0 padding, 1 unknown, then a-z 0-9 '-' '.' '_' (upper case folded to lower).
    Any other character, including every non-ASCII one, becomes UNKNOWN_ID. Names
    longer than `max_chars` keep their RIGHT end: the TLD and registered domain carry
    most of the signal. Cost is a few C-level string calls per name, none per character.

    >>> encode_domains(["Ab.c."], max_chars=6).tolist()
    [[0, 0, 2, 3, 39, 4]]
    """
    if isinstance(domains, (str, bytes)):
        raise TypeError("encode_domains expects a sequence of names, not a single string")
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    # NUL padding maps to PAD_ID; errors="replace" turns each non-ASCII character into
    # one '?', so every padded name is exactly max_chars bytes.
    padded = [normalise_domain(name)[-max_chars:].rjust(max_chars, "\0") for name in domains]
    if not padded:
        return np.zeros((0, max_chars), dtype=np.int64)
    blob = "".join(padded).encode("ascii", errors="replace")
    byte_codes = np.frombuffer(blob, dtype=np.uint8).reshape(len(padded), max_chars)
    return _LOOKUP[byte_codes]
