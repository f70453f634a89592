"""Moved to ``_transports/stdlib.py``; the names other modules import from here are re-exported."""

from ._transports.stdlib import (
    ConnectPhaseError,
    ConnectTimeout,
    HTTPException,
    SyncPool,
    reset_deadline,
    set_deadline,
    time_left,
)

__all__ = [
    "ConnectPhaseError",
    "ConnectTimeout",
    "HTTPException",
    "SyncPool",
    "reset_deadline",
    "set_deadline",
    "time_left",
]
