"""One JSON object per log line, for log pipelines that index fields (``serve --log-format json``, and any app that
puts :class:`JSONFormatter` on its handlers).

Every line has ``timestamp`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``message``; ``trace_id`` and
``span_id`` (W3C hex) when an OpenTelemetry span is current; ``request_id`` on every line written while the proxy
serves a request (the SDK's retry warnings, the refusal line, storage errors: one id to grep), or the record's own
``extra={"request_id": ...}``; and the route's fields when the record carries them: the
access line's ``request_id``, ``outcome``, ``status``, ``principal`` (a fingerprint), ``upstream_request_ids``,
``token_fingerprint``, latencies. The records of the ``orga_ai`` loggers never hold a key, a token or a credential
(the code redacts before it logs), so the formatter adds none: it copies only the fields listed above and the
exception's traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from ._logging import current_request_id

__all__ = ["JSONFormatter"]

# Route fields the formatter copies from a record's ``orga`` attribute (the access line and the events beacon).
_FIELDS = (
    "event",
    "request_id",
    "method",
    "path",
    "status",
    "outcome",
    "latency_ms",
    "principal",
    "principal_kind",
    "upstream_ms",
    "upstream_request_ids",
    "token_fingerprint",
    "detail",
    "conversation_id",
    "state",
)


def _current_trace_ids() -> tuple[str, str] | None:
    from ._telemetry import _api

    api = _api()
    if api is None:
        return None
    context = api.trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class JSONFormatter(logging.Formatter):
    """Format each record as one line of JSON (see the module docstring for the fields).

    Use it on any handler::

        handler = logging.StreamHandler()
        handler.setFormatter(JSONFormatter())
        logging.getLogger("orga_ai").addHandler(handler)
    """

    def format(self, record: logging.LogRecord) -> str:
        fields: Any = getattr(record, "orga", None)
        message = record.getMessage()
        line: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if isinstance(fields, dict):
            # A structured line: its message is its JSON; say it in words and give the fields as fields.
            line["message"] = " ".join(
                str(fields[key]) for key in ("event", "method", "path", "status", "outcome") if key in fields
            )
            line.update({key: fields[key] for key in _FIELDS if fields.get(key) is not None})
        if "request_id" not in line:
            explicit = getattr(record, "request_id", None)  # extra={"request_id": ...}; "-" is RequestIdFilter's none
            request_id = explicit if explicit is not None and explicit != "-" else current_request_id.get()
            if request_id is not None:
                line["request_id"] = request_id
        ids = _current_trace_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)
