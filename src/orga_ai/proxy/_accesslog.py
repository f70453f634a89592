"""The route's access line: one JSON object per request on ``orga_ai.proxy.access`` (principals as keyed
fingerprints, upstream request ids, the outcome code, never a secret).

``orga-ai serve`` in text mode puts a batching handler alone on this logger (``_cli._BufferedStreamHandler``, one
``write(2)`` per batch instead of per request); when that handler is the logger's only, plain one, the line goes
straight into its batch without a ``logging.LogRecord`` (~4 % of the route's CPU, measured with callgrind).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ._errors import redact
from ._fingerprint import principal_fingerprint
from ._request import json_bytes

if TYPE_CHECKING:
    from ._flow import Exchange

__all__ = ["access_logger", "write_access_line"]

access_logger = logging.getLogger("orga_ai.proxy.access")


def write_access_line(ex: Exchange, status: int, outcome: str) -> None:
    """Log one served request (nothing when the logger is off at INFO)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    principal = ex.principal
    line: dict[str, Any] = {
        "event": "orga_proxy_request",
        "request_id": ex.request_id,
        "method": ex.request.method,
        "path": ex.request.path,
        "status": status,
        "outcome": outcome,
        "latency_ms": round((time.monotonic() - ex.started) * 1000, 1),
        "principal": principal_fingerprint(principal.id) if principal else None,
        "principal_kind": principal.kind if principal else None,
    }
    if ex.upstream_seconds is not None:
        line["upstream_ms"] = round(ex.upstream_seconds * 1000, 1)
        line["upstream_request_ids"] = [rid for rid in ex.upstream_ids if rid]
    if ex.token_fp:
        line["token_fingerprint"] = ex.token_fp
    if ex.detail:
        line["detail"] = redact(ex.detail)
    text = json_bytes(line).decode()
    handlers = access_logger.handlers
    if len(handlers) == 1 and not access_logger.filters and not access_logger.propagate:
        handler = handlers[0]
        emit_line = getattr(handler, "emit_line", None)
        plain = handler.formatter is None and not handler.filters and handler.level <= logging.INFO
        if emit_line is not None and plain:
            emit_line(text)
            return
    # makeRecord + handle is logger.info without findCaller's walk up the stack: the line says where it is from.
    record = access_logger.makeRecord(
        access_logger.name, logging.INFO, __file__, 0, text, (), None, "write_access_line",
        {"orga": line},  # the fields themselves, for a structured formatter (serve --log-format json)
    )
    access_logger.handle(record)
