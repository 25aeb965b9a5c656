"""Errors leave a site as a fixed code and a generic sentence; their detail stays on site.

When a ClientApp raises, flwr sends `str(exception)` to the coordinator, outside any reply guard.
An exception's text can hold a log line, a client address, a name or an exact count, so the
outermost mod turns every exception into a `SiteError` whose text is one of
`common.protocol.SITE_ERRORS`, after writing the full detail to the site's own error log.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context, Message

from common.protocol import SITE_ERRORS

log = logging.getLogger("fedsec.client")

ERROR_LOG = "errors.log"


class SiteError(RuntimeError):
    """What a coordinator may learn of a site's failure: a fixed code and sentence, no detail."""

    def __init__(self, code: str) -> None:
        if code not in SITE_ERRORS:
            raise ValueError(f"unknown site error code {code!r}; known: {sorted(SITE_ERRORS)}")
        self.code = code
        super().__init__(f"fedsec-{code}: {SITE_ERRORS[code]} (details stay in the site's log)")


class InjectedFault(RuntimeError):
    """A failure the run config asked for (`fail-sites`), to study dropouts."""


def error_code(error: BaseException) -> str:
    """The fixed code of an exception, by its type (never by its text)."""
    from client.audit import LeakError
    from client.dqa import QualityGateError
    from client.readers import LogFormatError
    from common.config import ConfigError

    for kind, code in (
        (SiteError, ""),
        (InjectedFault, "E5"),
        (LeakError, "E4"),
        (QualityGateError, "E3"),
        (LogFormatError, "E2"),
        (ConfigError, "E1"),
    ):
        if isinstance(error, kind):
            return getattr(error, "code", code) or code
    return "E9"


def write_error_log(
    directory: Path | None, *, code: str, message: Message, error: BaseException
) -> Path | None:
    """Append the full detail (with traceback) to WORK/errors.log; None if it cannot be written."""
    if directory is None:
        return None
    path = directory / ERROR_LOG
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    detail = "".join(traceback.format_exception(error))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as stream:
            stream.write(
                f"--- {stamp} fedsec-{code} {message.metadata.message_type} "
                f"group {message.metadata.group_id}\n{detail}\n"
            )
    except OSError:
        return None
    return path


def make_error_guard(
    *,
    work_dir: Callable[[Context], Path | None],
) -> Callable[[Message, Context, Callable[[Message, Context], Message]], Message]:
    """The outermost ClientApp mod: any exception leaves as a `SiteError` and nothing else."""

    def error_guard(msg: Message, context: Context, call_next) -> Message:
        try:
            return call_next(msg, context)
        except Exception as error:  # noqa: BLE001 - every exception, whatever its type
            code = error_code(error)
            try:
                directory = work_dir(context)
            except Exception:  # noqa: BLE001 - no site folder: the console log must do
                directory = None
            where = write_error_log(directory, code=code, message=msg, error=error)
            log.error(
                "fedsec-%s: %s: %s (detail: %s)",
                code,
                type(error).__name__,
                error,
                where or "this log",
            )
            raise SiteError(code) from None

    return error_guard
