"""Keeps the secrets of live calls out of aiortc's and aioice's logs.

aioice logs every STUN/TURN message at DEBUG, and a TURN message carries the TURN username (the credential itself
never goes on the wire, but a username and its realm are half of what a relay accepts). While a call runs, its
ephemeral token, TURN usernames and credentials are registered here; a filter on those libraries' loggers replaces
them in every record before any handler sees it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable

__all__ = ["register", "unregister"]

# Every logger aiortc 1.9-1.16 and aioice 0.9-0.13 create (module loggers; records reach handlers through these).
_LOGGERS = (
    "aioice.ice",
    "aioice.turn",
    "aioice.mdns",
    "aiortc.rtcdatachannel",
    "aiortc.rtcdtlstransport",
    "aiortc.rtcicetransport",
    "aiortc.rtcpeerconnection",
    "aiortc.rtcrtpreceiver",
    "aiortc.rtcrtpsender",
    "aiortc.rtcrtptransceiver",
    "aiortc.rtcsctptransport",
)
_lock = threading.Lock()
_active: Counter[str] = Counter()
_installed = False


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        secrets = list(_active)
        if not secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is dropped rather than risk a leak
            return False
        cleaned = _scrub(text, secrets)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        if record.exc_info or record.exc_text or record.stack_info:
            # A traceback's text can quote a secret too: render it now, scrubbed, and drop what would re-render it.
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = _scrub(record.exc_text, secrets) if record.exc_text else record.exc_text
            record.stack_info = _scrub(record.stack_info, secrets) if record.stack_info else record.stack_info
        return True


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


_FILTER = _RedactSecrets()


def register(secrets: Iterable[str]) -> list[str]:
    """Redact ``secrets`` from the WebRTC libraries' logs until :func:`unregister`; returns what to unregister."""
    global _installed
    kept = [s for s in secrets if s and len(s) >= 4]
    with _lock:
        if not _installed:
            for name in _LOGGERS:
                logging.getLogger(name).addFilter(_FILTER)
            _installed = True
        _active.update(kept)
    return kept


def unregister(secrets: Iterable[str]) -> None:
    with _lock:
        _active.subtract(secrets)
        for secret in [s for s, n in _active.items() if n <= 0]:
            del _active[secret]
