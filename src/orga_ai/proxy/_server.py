"""The HTTP server under ``orga-ai serve``: granian, with its limits set before any of our code sees a request.

Why granian and not uvicorn (measured on loopback, docs/security.md): uvicorn+httptools has no time limit on receiving
a request head and no limit on its size, so half-sent heads hold sockets forever (slowloris) and a 64 MB header is
buffered, parsed and answered 200. granian closes a connection whose head is not complete within
``header_read_timeout`` (the same timer bounds an idle keep-alive connection waiting for its next request), answers
431 to a head larger than its HTTP/1 buffer without buffering more, and holds at most ``backpressure`` connections per
worker (the next ones wait in the listen backlog). On the route it matches uvicorn's req/s at 16 and 64 connections;
at one connection each request's hop between granian's I/O thread and the event loop costs ~0.13 ms of CPU more
(docs/security.md).

Every worker is a process that rebuilds the app from the ``ORGA_PROXY_*`` environment (:func:`worker_app`), for one
worker as for many, so both paths are the same code.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._settings import ServeSettingsError, to_environ

__all__ = ["WORKER_APP", "ServerLimits", "limits_from_settings", "serve_forever"]

logger = logging.getLogger("orga_ai.proxy")

WORKER_APP = "orga_ai.proxy._cli:app_from_env"
"""The factory each worker process imports: it rebuilds the app from ``ORGA_PROXY_*``."""

_FD_MARGIN = 256
"""Descriptors kept free beside the client connections: listening socket, log files, upstream and Redis sockets."""


@dataclass(frozen=True)
class ServerLimits:
    """What the HTTP layer enforces before the app runs."""

    head_timeout: float
    """Seconds to receive a request head (request line and headers); also the idle keep-alive limit."""
    max_header_bytes: int
    """Largest request head accepted; a larger one is answered 431 and the connection closed."""
    max_connections: int
    """Connections one worker holds at once; the next ones wait in the listen backlog."""


# granian's own lines (start, workers, shutdown) on stderr beside ours, in the same shape.
_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"generic": {"format": "%(asctime)s %(levelname)s granian %(message)s"}},
    "handlers": {"console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


# --log-format json: granian's lines as JSON objects too (orga_ai.telemetry.JSONFormatter).
_JSON_LOG_CONFIG: dict[str, Any] = {
    **_LOG_CONFIG,
    "formatters": {"generic": {"()": "orga_ai._jsonlog.JSONFormatter"}},
}


def limits_from_settings(settings: Mapping[str, Any]) -> ServerLimits:
    """Validate the server limits of the settings; ServeSettingsError says which one is out of range."""
    head_timeout = float(settings["head_timeout"])
    if not 0.001 <= head_timeout <= 60:  # granian's range: 1 ms to 60 s
        raise ServeSettingsError("--head-timeout must be between 0.001 and 60 seconds")
    max_header_bytes = int(settings["max_header_bytes"])
    if not 8192 <= max_header_bytes <= 1024 * 1024:  # granian's HTTP/1 buffer is at least 8 KiB
        raise ServeSettingsError("--max-header-bytes must be between 8192 and 1048576")
    max_connections = int(settings["max_connections"])
    if max_connections < 1:
        raise ServeSettingsError("--max-connections must be at least 1")
    return ServerLimits(head_timeout, max_header_bytes, max_connections)


def _fit_descriptor_limit(max_connections: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (inherited by the workers) so ``max_connections`` fit; when the hard
    limit is too low, lower ``max_connections`` instead, with a warning. A worker out of descriptors would reset
    new connections, /healthz's included."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - _FD_MARGIN)
        logger.warning(
            "orga proxy: --max-connections %d does not fit the open-file limit %d; using %d (raise `ulimit -n`)",
            max_connections,
            soft,
            fitted,
        )
        return fitted
    return max_connections


def serve_forever(settings: Mapping[str, Any], graceful_timeout: float) -> None:
    """Serve the app the settings describe until SIGINT/SIGTERM, then drain for up to ``graceful_timeout`` seconds.

    The settings must have been validated (the caller built the app once); workers rebuild it from the environment.
    """
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    limits = limits_from_settings(settings)
    max_connections = _fit_descriptor_limit(limits.max_connections)
    workers = int(settings["workers"])
    # One random fingerprint key per run, shared by the workers, unless configured: their logs then agree.
    settings = {**settings, "fingerprint_key": settings["fingerprint_key"] or os.urandom(24).hex()}
    os.environ.update(to_environ(settings))
    server = Server(
        WORKER_APP,
        address=settings["host"],
        port=settings["port"],
        interface=Interfaces.ASGI,  # with lifespan: the app opens and closes its clients there
        factory=True,
        workers=workers,
        http=HTTPModes.http1,  # no cleartext HTTP/2: its header limits are separate, and nothing here needs it
        websockets=False,
        loop=Loops.auto,  # uvloop when installed
        # One Rust I/O thread beside the worker's one Python thread (granian picks a multi-threaded runtime for ASGI
        # otherwise): measured 7 % less server CPU per request on the route (benchmarks/ab_serve.py, docs/security.md).
        runtime_mode=RuntimeModes.st,
        backlog=max(1024, min(4096, max_connections)),
        backpressure=max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(limits.head_timeout * 1000)),
            keep_alive=True,
            max_buffer_size=limits.max_header_bytes,
        ),
        log_enabled=True,
        log_level=LogLevels(str(settings["log_level"]).lower()),
        log_dictconfig=_JSON_LOG_CONFIG if settings.get("log_format") == "json" else _LOG_CONFIG,
        log_access=False,  # the proxy writes its own structured access line
        workers_kill_timeout=max(1, round(graceful_timeout)),
    )
    server.serve()
