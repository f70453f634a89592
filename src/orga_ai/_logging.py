"""The ``orga_ai`` logger and the ``debug=True`` switch."""

from __future__ import annotations

import logging
import sys

__all__ = ["enable_debug_logging", "logger"]

logger = logging.getLogger("orga_ai")
_HANDLER_NAME = "orga_ai.debug"


def enable_debug_logging() -> None:
    """Send the ``orga_ai`` trace to stderr at DEBUG level (idempotent). The trace never holds keys or tokens."""
    logger.setLevel(logging.DEBUG)
    if any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s orga_ai %(levelname)s %(message)s"))
    logger.addHandler(handler)
