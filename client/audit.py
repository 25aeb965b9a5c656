"""Privacy guard on every reply a site sends: no domain from its logs leaves; audit on request."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context, Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.common.serde import recorddict_to_proto

# Domain-like runs in the wire bytes: lowercase LDH labels joined by dots (what names look
# like after normalisation). Random bytes of a masked vector rarely form such runs.
_NAME_RUN = re.compile(rb"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")


class LeakError(RuntimeError):
    """A reply carried a domain name from the site's own logs; it was not sent."""


def reply_bytes(message: Message) -> bytes:
    """What the reply puts on the wire: its content as flwr serialises it."""
    return recorddict_to_proto(message.content).SerializeToString()


def leaked_names(payload: bytes, names: frozenset[str]) -> set[str]:
    """The site's names (full or registered) that occur in `payload`, found in one pass."""
    found: set[str] = set()
    for match in _NAME_RUN.finditer(payload):
        text = match.group().decode("ascii")
        labels = text.split(".")
        # Every suffix of a dotted run: "x.evil.com" hides "evil.com" too.
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
        payload = reply_bytes(reply)
        leaked = leaked_names(payload, site_names(context))
        if leaked:
            sample = ", ".join(sorted(leaked)[:3])
            raise LeakError(
                f"reply withheld: it contains {len(leaked)} domain name(s) from this "
                f"site's logs (e.g. {sample})"
            )
        directory = audit_dir(context)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            stage = msg.content.config_records.get(RECORD_KEY_CONFIGS, {}).get(Key.STAGE, "")
            name = f"{msg.metadata.message_type}-{msg.metadata.group_id}-{stage or 'reply'}"
            index = len(list(directory.glob(f"{name}*.bin")))
            (directory / f"{name}-{index}.bin").write_bytes(payload)
        return reply

    return reply_guard
