"""Analysts' verdicts: the site's own append-only, timestamped record of what they judged.

One JSON object per line in ``SITE/work/verdicts.jsonl``; it never leaves the site::

    {"time": "2026-12-03T08:00:00.123456Z", "analyst": "alice", "subject": "host",
     "target": "10.0.0.5", "verdict": "malicious", "names": ["qxkz.example", ...],
     "why": "beaconing to generated names"}

``subject`` is ``domain`` (``target`` is the name, ``names`` is ``[target]``) or ``host``
(``target`` is the client address; ``names`` are that host's alerting names as the analyst
saw them, and the verdict applies to those names). ``verdict`` is ``malicious``, ``benign`` or
``unsure``. Later lines win: an analyst who changes their mind appends a new verdict.

Appends take an exclusive lock, start on a fresh line even after a torn write, and are
fsync'd before :func:`append_verdict` returns: a verdict acknowledged to the analyst survives a
crash of the process or the machine. Reading never trusts the file: each bad line goes to the
quarantine with its line number, and memory is bounded by the line cap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from client.domains import normalise_domain
from client.quarantine import Quarantine
from client.triage import iso

VERDICTS_FILE = Path("work") / "verdicts.jsonl"
VERDICTS = ("malicious", "benign", "unsure")
SUBJECTS = ("domain", "host")
MAX_NAMES = 1000  # names one verdict may cover (a host group is cut to this on the page)
MAX_TEXT = 2000  # characters of `why`
MAX_ANALYST = 64
MAX_TARGET = 255
# A verdict line is a few KB at most (1,000 names of <= 253 characters: ~260 KB); longer is damage.
MAX_LINE_BYTES = 1 << 19


class VerdictError(ValueError):
    """A verdict that cannot be recorded; the message names the field and the fix."""


@dataclass(frozen=True)
class Verdict:
    """One analyst judgement, validated."""

    time: str
    analyst: str
    subject: str
    target: str
    verdict: str
    names: tuple[str, ...]
    why: str = ""

    def record(self) -> dict:
        return {
            "time": self.time,
            "analyst": self.analyst,
            "subject": self.subject,
            "target": self.target,
            "verdict": self.verdict,
            "names": list(self.names),
            "why": self.why,
        }


def now_iso() -> str:
    """Now, UTC, in the form `fedsec score` writes its first/last seen times."""
    return iso(time.time())


def _text(value: object, field_name: str, limit: int, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise VerdictError(f"field {field_name}: must be text, got {type(value).__name__}")
    text = value.strip()
    if required and not text:
        raise VerdictError(f"field {field_name}: empty (fix: give a value)")
    if len(text) > limit:
        raise VerdictError(f"field {field_name}: longer than {limit} characters (fix: shorten)")
    if any(ord(char) < 0x20 and char not in "\t\n" for char in text):
        raise VerdictError(f"field {field_name}: control characters (fix: plain text only)")
    return text


def _names(values: object, *, subject: str, target: str) -> tuple[str, ...]:
    if subject == "domain":
        values = [target] if values in (None, [], ()) else values
    if not isinstance(values, list | tuple) or not values:
        raise VerdictError("field names: must be a non-empty list of domain names")
    if len(values) > MAX_NAMES:
        raise VerdictError(f"field names: more than {MAX_NAMES} names (fix: judge fewer at once)")
    names: list[str] = []
    for value in values:
        name, reason = normalise_domain(value if isinstance(value, str) else None)
        if name is None:
            raise VerdictError(f"field names: {value!r} is not a domain name ({reason})")
        names.append(name)
    if subject == "domain" and names != [target]:
        raise VerdictError("field names: a domain verdict covers exactly its target name")
    return tuple(dict.fromkeys(names))


def make_verdict(
    *,
    analyst: object,
    subject: object,
    target: object,
    verdict: object,
    names: object = None,
    why: object = None,
    time: str | None = None,
) -> Verdict:
    """A validated verdict (time: now, UTC); VerdictError names the bad field."""
    if subject not in SUBJECTS:
        raise VerdictError(f"field subject: {subject!r} is not one of {', '.join(SUBJECTS)}")
    if verdict not in VERDICTS:
        raise VerdictError(f"field verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    target_text = _text(target, "target", MAX_TARGET, required=True)
    if subject == "domain":
        normal, reason = normalise_domain(target_text)
        if normal is None:
            raise VerdictError(f"field target: {target_text!r} is not a domain name ({reason})")
        target_text = normal
    if time is None:
        time = now_iso()
    else:
        try:
            dt.datetime.fromisoformat(time)
        except (TypeError, ValueError):
            raise VerdictError(f"field time: {time!r} is not an ISO 8601 time") from None
    return Verdict(
        time=time,
        analyst=_text(analyst, "analyst", MAX_ANALYST, required=True),
        subject=str(subject),
        target=target_text,
        verdict=str(verdict),
        names=_names(names, subject=str(subject), target=target_text),
        why=_text(why, "why", MAX_TEXT, required=False),
    )


def verdicts_path(site_dir: Path) -> Path:
    return Path(site_dir) / VERDICTS_FILE


def append_verdict(path: Path, verdict: Verdict) -> None:
    """Append one verdict line, durably (locked, on a fresh line, fsync'd before returning)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(verdict.record(), ensure_ascii=False, separators=(",", ":")) + "\n"
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            line = "\n" + line  # a torn last line (crash mid-write) stays its own bad line
        payload = line.encode("utf-8")
        written = 0
        while written < len(payload):
            written += os.write(descriptor, payload[written:])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)  # closing releases the lock
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # A new file's directory entry must reach the disk too, or a crash can lose the file. Some
    # filesystems cannot open or fsync a folder (EINVAL); the line itself is on disk by then.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@dataclass
class Verdicts:
    """Every valid verdict of a file in order, and what the latest one says per name."""

    entries: list[Verdict] = field(default_factory=list)
    lines_read: int = 0
    quarantined: int = 0

    def latest_by_name(self) -> dict[str, Verdict]:
        """name -> the latest verdict covering it (``unsure`` included: it withdraws a label)."""
        latest: dict[str, Verdict] = {}
        for entry in self.entries:
            for name in entry.names:
                latest[name] = entry
        return latest

    def labels(self) -> dict[str, str]:
        """name -> 'malicious' or 'benign' by its latest verdict (``unsure`` names left out)."""
        return {
            name: entry.verdict
            for name, entry in self.latest_by_name().items()
            if entry.verdict != "unsure"
        }

    def latest_by_target(self) -> dict[tuple[str, str], Verdict]:
        """(subject, target) -> its latest verdict: what the triage page shows as judged."""
        return {(entry.subject, entry.target): entry for entry in self.entries}

    def counts(self) -> Counter:
        """Latest label per name, counted: {'malicious': n, 'benign': m, 'unsure': k}."""
        return Counter(entry.verdict for entry in self.latest_by_name().values())


def read_verdicts(path: Path, *, quarantine: Quarantine | None = None) -> Verdicts:
    """Every verdict of ``path`` (none if it does not exist); bad lines are quarantined with
    their line number and reason, never fatal, never silently dropped."""
    result = Verdicts()
    path = Path(path)
    if not path.is_file():
        return result
    with path.open("rb") as stream:
        for number, raw in enumerate(_bounded_lines(stream), start=1):
            result.lines_read += 1
            if raw is None:
                _bad(quarantine, path, number, "verdict-line-too-long", "", result)
                continue
            if not raw.strip():
                continue
            try:
                document = json.loads(raw.decode("utf-8"))
                if not isinstance(document, dict):
                    raise VerdictError("not a JSON object")
                entry = make_verdict(
                    analyst=document.get("analyst"),
                    subject=document.get("subject"),
                    target=document.get("target"),
                    verdict=document.get("verdict"),
                    names=document.get("names"),
                    why=document.get("why"),
                    time=document.get("time") if isinstance(document.get("time"), str) else "?",
                )
            except (UnicodeDecodeError, json.JSONDecodeError, VerdictError, RecursionError) as err:
                reason = "verdict-" + (str(err).split(":")[0].replace(" ", "-") or "invalid")
                _bad(
                    quarantine,
                    path,
                    number,
                    reason[:80],
                    raw[:200].decode("utf-8", "replace"),
                    result,
                )
                continue
            result.entries.append(entry)
    return result


def _bad(
    quarantine: Quarantine | None, path: Path, number: int, reason: str, raw: str, result: Verdicts
) -> None:
    result.quarantined += 1
    if quarantine is not None:
        quarantine.add(source=path, line_number=number, reason=reason, raw=raw)


def _bounded_lines(stream) -> Iterable[bytes | None]:
    """Lines without their newline; None for a line longer than MAX_LINE_BYTES (skipped whole)."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of the overlong line
                line = stream.readline(MAX_LINE_BYTES)
            yield None
            continue
        yield line.rstrip(b"\r\n")


def local_allowlist(site_dir: Path, *, quarantine: Quarantine | None = None) -> frozenset[str]:
    """Names the site's analysts judged benign by their latest verdict: this site's own
    allowlist for alerts (`fedsec score` need not raise them again here, whatever the model
    says), on top of the hard negatives training sees every round. Never leaves the site."""
    labels = read_verdicts(verdicts_path(site_dir), quarantine=quarantine).labels()
    return frozenset(name for name, verdict in labels.items() if verdict == "benign")
