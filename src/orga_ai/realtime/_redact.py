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
        cleaned = text
        for secret in secrets:
            if secret in cleaned:
                cleaned = cleaned.replace(secret, "[redacted]")
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


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
