"""Serving the emulator with uvicorn, in the foreground (the CLI) or in a background thread (``orga_ai.testing``)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn

from .._config import is_loopback_host
from ._app import EmulatedDrop

__all__ = ["base_url", "bind", "make_server", "quiet_drops"]


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0 picks a free one) for uvicorn to serve on.

    Binding before uvicorn starts is what lets the caller know the port without racing another process for it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _QuietDrops(logging.Filter):
    """Turns uvicorn's traceback for a ``drop`` fault into one line: the break was asked for, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EmulatedDrop):
            record.msg, record.args, record.exc_info, record.exc_text = "emulator: drop fault applied", (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_FILTER = _QuietDrops()


def quiet_drops() -> None:
    """Install the drop-fault filter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def make_server(app: Any, *, log_level: str = "warning", configure_logging: bool = False) -> uvicorn.Server:
    """A uvicorn server for ``app``. ``configure_logging=False`` leaves the process's logging setup alone (tests)."""
    kwargs: dict[str, Any] = {}
    if not configure_logging:
        kwargs["log_config"] = None
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=configure_logging,
        lifespan="on",
        ws="none",
        date_header=False,  # the app stamps the Date of the emulator's clock itself
        # A stalled request must not hold the shutdown for its whole stall: cancel what is left after 2 s.
        timeout_graceful_shutdown=2,
        **kwargs,
    )
    quiet_drops()
    return uvicorn.Server(config)


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback host unless asked: the admin API has no authentication."""
    if not allow_remote and not is_loopback_host(host):
        raise ValueError(
            f"refusing to bind {host!r}: the emulator's /_emulator/ admin API is unauthenticated, so it serves "
            "loopback only; pass --allow-remote if you really mean it"
        )
