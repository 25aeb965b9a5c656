"""Domain names: normalise to lowercase ASCII (punycode), reject invalid ones, registered domain."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import idna
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from publicsuffixlist import PublicSuffixList

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
REASON_PREFIX = "invalid-domain:"  # callers quarantine as REASON_PREFIX + reason

# One label: letters, digits, '_' and '-', no '-' at either edge. Interior hyphens stay legal
# ('xn--', 'r3---sn-abc.googlevideo.com'); '_' is in real DNS ('_dmarc', '_sip._tcp', hostnames).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME_PATTERN = rf"^{_LABEL}(?:\.{_LABEL})*$"  # RE2 (Arrow): '$' is the end of text
_NUMERIC_TLD_PATTERN = r"(?:^|\.)[0-9]+$"
# Python: used with fullmatch, since re's '$' also matches before a final newline
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NUMERIC_TLD = re.compile(r"(?:^|\.)[0-9]+\Z")
_BAD_CHAR = re.compile(r"[^a-z0-9_.-]")


def _diagnose(name: str) -> str:
    """The reason an ASCII lowercase name (trailing dot already stripped) is invalid."""
    if not name:
        return "empty"
    if len(name) > MAX_NAME_LENGTH:
        return "name-too-long"
    labels = name.split(".")
    if "" in labels:
        return "empty-label"
    if any(len(label) > MAX_LABEL_LENGTH for label in labels):
        return "label-too-long"
    if _BAD_CHAR.search(name):
        return "bad-char"
    if any(label[0] == "-" or label[-1] == "-" for label in labels):
        return "hyphen"
    if labels[-1].isdigit():
        return "numeric-tld"
    return "invalid"  # unreachable while _NAME and the checks above agree


def _to_ascii(raw: str) -> tuple[str | None, str | None]:
    """UTS46 mapping (case fold, full-width dots) then punycode for each non-ASCII label."""
    try:
        mapped = idna.uts46_remap(raw, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        ]
    except (idna.IDNAError, UnicodeError):
        return None, "idna"
    return ".".join(labels), None


def normalise_domain(raw: str | None) -> tuple[str | None, str | None]:
    """Return ``(name, None)`` for a valid domain or ``(None, reason)`` otherwise.

    The name is lowercase ASCII without the trailing dot; Unicode labels become
    punycode (IDNA 2008 with UTS46 mapping); ASCII input, including ``xn--``
    labels, never goes through IDNA. The reason is a short slug (quarantine it as
    ``REASON_PREFIX + reason``): empty, name-too-long, empty-label, label-too-long,
    bad-char, hyphen, numeric-tld, idna.

    >>> normalise_domain("WWW.Example.COM.")
    ('www.example.com', None)
    >>> normalise_domain("bücher.de")
    ('xn--bcher-kva.de', None)
    >>> normalise_domain("a..b")
    (None, 'empty-label')
    """
    if not raw:
        return None, "empty"
    if raw.isascii():
        name = raw.lower()
    else:
        converted, reason = _to_ascii(raw)
        if converted is None:
            return None, reason
        name = converted
    if name.endswith("."):
        name = name[:-1]
    if len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) and not _NUMERIC_TLD.search(name):
        return name, None
    return None, _diagnose(name)


def normalise_domain_array(raw: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Vectorised :func:`normalise_domain` over an Arrow string array.

    Returns ``(names, reasons)``, two string arrays of the input length: exactly one of
    the two is null in each row. Names that are already lowercase-able ASCII and valid
    are checked by RE2 inside Arrow; only the rest run through Python.
    """
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks() if raw.num_chunks else pa.array([], pa.string())
    if not pa.types.is_string(raw.type):
        raw = raw.cast(pa.string())
    lowered = pc.ascii_lower(raw)
    trailing_dot = pc.ends_with(lowered, ".")
    stripped = pc.if_else(trailing_dot, pc.utf8_slice_codeunits(lowered, 0, -1), lowered)
    fast = pc.and_kleene(
        pc.and_kleene(
            pc.less_equal(pc.binary_length(stripped), MAX_NAME_LENGTH),
            pc.match_substring_regex(stripped, _NAME_PATTERN),
        ),
        pc.invert(pc.match_substring_regex(stripped, _NUMERIC_TLD_PATTERN)),
    )
    slow_mask = pc.invert(pc.fill_null(fast, False))
    names = pc.if_else(slow_mask, pa.scalar(None, pa.string()), stripped)
    reasons = pa.nulls(len(raw), pa.string())
    slow_rows = np.flatnonzero(slow_mask.to_numpy(zero_copy_only=False))
    if slow_rows.size == 0:
        return names, reasons
    slow_values = raw.take(pa.array(slow_rows)).to_pylist()
    results = {value: normalise_domain(value) for value in set(slow_values)}  # IDNs repeat
    slow_names, slow_reasons = zip(*(results[value] for value in slow_values), strict=True)
    names = pc.replace_with_mask(names, slow_mask, pa.array(slow_names, pa.string()))
    reasons = pc.replace_with_mask(reasons, slow_mask, pa.array(slow_reasons, pa.string()))
    return names, reasons


def normalise_domains(raw: Sequence[str | None]) -> tuple[list[str | None], list[str | None]]:
    """Bulk :func:`normalise_domain`: ``(names, reasons)`` as lists of the input length."""
    if len(raw) == 0:
        return [], []
    array = raw if isinstance(raw, pa.Array) else pa.array(raw, pa.string())
    names, reasons = normalise_domain_array(array)
    return names.to_pylist(), reasons.to_pylist()


@functools.cache
def _public_suffix_list() -> PublicSuffixList:
    # source=None reads the snapshot bundled with the package: no network at run time.
    # ICANN section only: private suffixes (cloudfront.net, github.io, ...) would make every
    # customer subdomain its own registered domain; grouping by provider is what we want.
    return PublicSuffixList(only_icann=True)


# Names repeat within a site's logs (popular names, every day): the cache holds the hot set.
# It is shared by every site a process serves, so its size is the process's, not the site's
# (~200 bytes an entry: 2^17 entries is ~26 MiB; at 2^20 a simulation actor grew by ~2 MiB
# per site it served until the cache filled).
@functools.lru_cache(maxsize=1 << 17)
def registered_domain(name: str) -> str:
    """eTLD+1 of a normalised name under the ICANN section of the Public Suffix List.

    A name that is itself a public suffix (or a bare TLD) is returned unchanged; an
    unknown TLD counts as a one-label suffix (the PSL default rule ``*``).

    >>> registered_domain("a.b.example.co.uk")
    'example.co.uk'
    >>> registered_domain("d123.cloudfront.net")
    'cloudfront.net'
    """
    return _public_suffix_list().privatesuffix(name) or name
