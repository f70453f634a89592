"""The ``orga_ai`` logger, the ``debug=True`` switch, and the request id of the request being served."""

from __future__ import annotations

import contextvars
import logging
import sys

__all__ = ["RequestIdFilter", "current_request_id", "enable_debug_logging", "logger"]

logger = logging.getLogger("orga_ai")
_HANDLER_NAME = "orga_ai.debug"

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("orga_ai_request_id", default=None)
"""The ``X-Request-ID`` of the request the proxy is serving in this context (set by the proxy core for the whole of
one request: asyncio tasks and ``asyncio.to_thread`` inherit it, each sync request thread has its own), else None.
:class:`orga_ai.telemetry.JSONFormatter` and :class:`RequestIdFilter` put it on every line written meanwhile."""


class RequestIdFilter(logging.Filter):
    """Give every record a ``request_id`` attribute, for text formats such as
    ``"%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"``: the id of the request being served when
    the line was written, ``-`` outside one. A record that already has one (``extra={"request_id": ...}``) keeps it.

    Put it on a handler (``handler.addFilter(RequestIdFilter())``), so that it sees the records of every logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get() or "-"
        return True


def enable_debug_logging() -> None:
    """Send the ``orga_ai`` trace to stderr at DEBUG level (idempotent). The trace never holds keys or tokens."""
    logger.setLevel(logging.DEBUG)
    if any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s orga_ai %(levelname)s [%(request_id)s] %(message)s"))
    logger.addHandler(handler)
