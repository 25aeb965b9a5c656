"""One line per refusing site at the coordinator, not flwr's traceback of it.

When a ClientApp raises in flwr 1.42's Simulation Engine, flwr logs the Ray backend's notice,
the exception (Ray's text carries the remote traceback) and `traceback.format_exc()`: three
ERROR records and dozens of lines per site per message, every round. A fedsec site's
exception is always a `SiteError` (client/errors.py), whose fixed code and sentence the
strategy already logs in one line and records in results.json; this filter drops flwr's
records of it. Any other exception (a bug, a broken install) keeps its traceback.
"""

from __future__ import annotations

import logging

SITE_ERROR_MARK = "fedsec-E"
RAY_NOTICE = "An exception was raised when processing a message by"
"""flwr's raybackend.py logs this first, then re-raises: vce_api.py logs the exception itself."""


class SiteRefusalFilter(logging.Filter):
    """Drops flwr's records of an exception that is a fedsec `SiteError` (and Ray's notice that
    precedes every ClientApp exception: the records that follow it say what it was)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        message = record.getMessage()
        return SITE_ERROR_MARK not in message and not message.startswith(RAY_NOTICE)


_FILTER = SiteRefusalFilter()


def quiet_site_refusals(logger_name: str = "flwr") -> None:
    """Install the filter on flwr's logger (idempotent); the ServerApp does at import."""
    logger = logging.getLogger(logger_name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
