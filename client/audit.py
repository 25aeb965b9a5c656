"""Privacy guard on every reply a site sends: no name the site read leaves; audit on request.

The guard decodes the reply's records and looks at every value that can carry text: record
and key names, strings, bytes (SecAgg+'s keys, shares and masked vectors) and the raw bytes
of every array. It matches on those decoded values, so no wire framing can split or pad a
name, and it also tries dotted runs' suffixes ("x.evil.com" hides "evil.com") and slug forms
("victim_laptop_corp_example_com"). A reply that names the site's traffic is not sent; the
error the coordinator sees says only that a reply was withheld (client/errors.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.common.serde import recorddict_to_proto

log = logging.getLogger("fedsec.client")

_NAME_RUN = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")
_LABEL = re.compile(r"[a-z0-9-]+")
MIN_BINARY_NAME_CHARS = 7
"""The shortest name sought in binary values. A SecAgg+ masked vector is uniform random bytes
(int64 words with 4 random bytes each), where a 4-character name such as `t.co` turns up by
chance: about 1.9e-9 per word, so ~1e-4 per 46,753-value update and a site that knows one,
enough to withhold an honest reply now and then and drop the site from a round. From 7
characters a chance match is below 1e-14 per byte position, even in fully random bytes. Text
values (keys, strings) are still searched for every name."""
MAX_SLUG_LABELS = 12  # a slugged name longer than this still shows as a dotted run elsewhere
_NUMERIC_KINDS = frozenset("biufc")  # numpy dtype kinds an array may carry: numbers only
# What survives in an audit file name from the coordinator's values (see audit_stem).
_SAFE = re.compile(r"[^A-Za-z0-9_.-]|\.\.")
MAX_AUDIT_STEM = 120


class LeakError(RuntimeError):
    """A reply carried a name the site read; it was not sent (the names stay in the log)."""


def reply_bytes(message: Message) -> bytes:
    """What the reply puts on the wire: its content as flwr serialises it."""
    return recorddict_to_proto(message.content).SerializeToString()


def reply_texts(content: RecordDict) -> tuple[list[str], list[bytes]]:
    """(every text of a reply: record names, keys, strings; every binary value: bytes and the
    raw data of every array), decoded from the records rather than read off the wire.

    Raises LeakError for an array whose dtype is not numeric: model updates never need one.
    """
    texts: list[str] = []
    binary: list[bytes] = []
    for record_name, record in content.items():
        texts.append(record_name)
        if isinstance(record, ArrayRecord):
            for key, array in record.items():
                texts.append(key)
                data = array.numpy()
                if data.dtype.kind not in _NUMERIC_KINDS:
                    raise LeakError(
                        f"reply withheld: array {record_name}/{key} holds {data.dtype} "
                        "values, not numbers"
                    )
                binary.append(np.ascontiguousarray(data).tobytes())
            continue
        if not isinstance(record, ConfigRecord | MetricRecord):
            texts.append(repr(record))
            continue
        for key, value in record.items():
            texts.append(key)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    texts.append(item)
                elif isinstance(item, bytes):
                    binary.append(item)
    return texts, binary


def leaked_names(
    texts: Iterable[str] | str | bytes, names: frozenset[str], *, binary: Iterable[bytes] = ()
) -> set[str]:
    """The site's names in `texts` (as a dotted run, a suffix of one, or slugged) and in
    `binary` values (as a dotted run or its suffix, of at least MIN_BINARY_NAME_CHARS: slug
    forms and short names would match random bytes)."""
    if isinstance(texts, bytes):
        texts, binary = [], [texts, *binary]
    elif isinstance(texts, str):
        texts = [texts]
    found: set[str] = set()
    for data in binary:
        for run in _name_runs(data):
            found |= {name for name in _dotted(run, names) if len(name) >= MIN_BINARY_NAME_CHARS}
    for text in texts:
        lowered = text.lower()
        found |= _dotted(lowered, names)
        labels = _LABEL.findall(lowered)
        for start in range(len(labels) - 1):
            for stop in range(start + 2, min(len(labels), start + MAX_SLUG_LABELS) + 1):
                candidate = ".".join(labels[start:stop])
                if candidate in names:
                    found.add(candidate)
    return found


# Bytes that can be part of a name once lowered (latin-1: one byte, one character).
_NAME_BYTE = np.zeros(256, dtype=bool)
_NAME_BYTE[list(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")] = True


def _name_runs(data: bytes) -> list[str]:
    """The maximal runs of name bytes at least MIN_BINARY_NAME_CHARS long, lowered: the only
    places a name that long can be in `data`. A model update is ~190 KB of random-looking
    bytes with a dozen such runs, so the name regex reads those instead of the whole vector
    (the matches are the same: no match spans a byte that cannot be in a name)."""
    width = MIN_BINARY_NAME_CHARS
    if len(data) < width:
        return []
    inside = _NAME_BYTE[np.frombuffer(data, dtype=np.uint8)]
    starts = inside[: len(data) - width + 1].copy()  # windows of `width` name bytes, by start
    for offset in range(1, width):
        starts &= inside[offset : len(data) - width + 1 + offset]
    hits = np.flatnonzero(starts)
    if hits.size == 0:
        return []
    # Consecutive window starts belong to one run: it spans its first start to last start + width.
    breaks = np.flatnonzero(np.diff(hits) > 1)
    firsts = hits[np.concatenate(([0], breaks + 1))]
    lasts = hits[np.concatenate((breaks, [hits.size - 1]))]
    return [
        data[first : last + width].decode("latin-1").lower()
        for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True)
    ]


def _dotted(text: str, names: frozenset[str]) -> set[str]:
    found = set()
    for match in _NAME_RUN.finditer(text):
        labels = match.group().split(".")
        for start in range(len(labels) - 1):
            candidate = ".".join(labels[start:])
            if candidate in names:
                found.add(candidate)
    return found


def make_reply_guard(
    *,
    site_names: Callable[[Context], frozenset[str]],
    audit_dir: Callable[[Context], Path | None],
) -> Callable[[Message, Context, Callable[[Message, Context], Message]], Message]:
    """A ClientApp mod: run the handler, then refuse a reply that names the site's traffic."""

    def reply_guard(msg: Message, context: Context, call_next) -> Message:
        reply = call_next(msg, context)
        if not reply.has_content():
            return reply
        texts, binary = reply_texts(reply.content)
        leaked = leaked_names(texts, site_names(context), binary=binary)
        if leaked:
            log.error(
                "reply withheld: it named %d of this site's names: %s",
                len(leaked),
                ", ".join(sorted(leaked)[:20]),
            )
            raise LeakError(f"reply withheld: it contains {len(leaked)} name(s) this site read")
        directory = audit_dir(context)
        if directory is not None:
            stage = msg.content.config_records.get(RECORD_KEY_CONFIGS, {}).get(Key.STAGE, "")
            stem = audit_stem(msg.metadata.message_type, msg.metadata.group_id, stage)
            write_audit_copy(directory, stem, reply_bytes(reply))
        return reply

    return reply_guard


def audit_stem(message_type: object, group_id: object, stage: object) -> str:
    """A file-name stem from values the coordinator chooses: one safe token, never a path.

    Only letters, digits, `_`, `.` and `-` survive, `..` becomes `_`, and the stem starts with
    the message type's token and a `-`, so it can be neither `.`, `..` nor absolute.
    """
    return _SAFE.sub("_", f"{message_type}-{group_id}-{stage or 'reply'}")[:MAX_AUDIT_STEM]


def write_audit_copy(directory: Path, stem: str, data: bytes) -> Path:
    """Write `data` as DIRECTORY/STEM-N.bin with the first free N; never replaces a file."""
    if _SAFE.search(stem) or not stem or len(stem) > MAX_AUDIT_STEM:
        raise ValueError(f"audit file stem {stem[:40]!r} is not a safe token (use audit_stem)")
    directory.mkdir(parents=True, exist_ok=True)
    index = len(list(directory.glob(f"{stem}-*.bin")))
    while True:
        path = directory / f"{stem}-{index}.bin"
        try:
            with path.open("xb") as stream:  # exclusive: an earlier copy is never overwritten
                stream.write(data)
            return path
        except FileExistsError:
            index += 1
