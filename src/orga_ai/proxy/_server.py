"""The HTTP server under ``orga-ai serve`` (and ``orga-ai dev``): uvicorn with httptools, with its limits enforced
as bytes arrive, before any of our code sees a request.

uvicorn alone has no time limit on receiving a request head and no limit on its size: half-sent heads hold sockets
forever (slowloris) and a 64 MB header is buffered, parsed and answered 200. :class:`LimitedHttpToolsProtocol` adds
what is missing on uvicorn's own protocol class: a head timer (armed when the connection opens and when a response
ends, cancelled when a head is complete, so it also bounds an idle keep-alive connection), a cap on head bytes fed
to the parser (431, nothing more read), and a cap on the connections a worker holds (503 and close).

Why not granian, which has those limits in its HTTP layer (docs/security.md, "Why uvicorn"): each request crosses
from granian's Rust I/O thread to the Python event loop and back, ~0.13 ms more CPU per request, which cost 16 % of
the route's req/s at one connection (measured with ``make bench`` against the build before the hardening).

Every worker beyond the first is a process that rebuilds the app from the ``ORGA_PROXY_*`` environment
(``app_from_env``); one worker serves the app built in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ._settings import OPTIONS, ServeSettingsError, to_environ

__all__ = [
    "WORKER_APP",
    "LimitedConfig",
    "LimitedHttpToolsProtocol",
    "ServerLimits",
    "limits_from_settings",
    "serve_forever",
]

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
    """Connections one worker holds at once; the next ones are answered 503 and closed."""

    @classmethod
    def defaults(cls) -> ServerLimits:
        """The limits of ``orga-ai serve`` without options: the defaults of its settings."""
        return limits_from_settings({option.name: option.default for option in OPTIONS})


def _canned(status: bytes, reason: str) -> bytes:
    body = reason.encode("ascii")
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"cache-control: no-store\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )


_HEAD_TOO_LARGE = _canned(b"431 Request Header Fields Too Large", "Request header fields too large.")
_OVER_CAPACITY = _canned(b"503 Service Unavailable", "Too many connections.")
_CAP_WARNING_INTERVAL = 60.0


class LimitedConfig(uvicorn.Config):
    """uvicorn's configuration with the :class:`ServerLimits` its protocol enforces (picklable, for the workers)."""

    def __init__(self, app: Any, *, limits: ServerLimits, **kwargs: Any) -> None:
        kwargs.setdefault("http", LimitedHttpToolsProtocol)
        super().__init__(app, **kwargs)
        self.limits = limits


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ServerLimits` enforced as bytes arrive.

    - Head timer: uvicorn's keep-alive timer, armed when the connection opens (uvicorn arms it only after a response)
      and when a response ends, and cancelled once a head is complete rather than at its first byte: a client has
      ``head_timeout`` seconds to send a whole request line and headers, however slowly it trickles them. (A head
      pipelined behind a request in progress gets its seconds from the end of that request's response.)
    - Head size: while a head is incomplete, at most the bytes still allowed are fed to the parser; one more and the
      answer is 431 and the connection closes, so the parser never holds more than ``max_header_bytes``. (A pipelined
      head that starts inside the same read as the previous body is counted from that read's end: at most twice.)
    - Connections: beyond ``max_connections`` open in this worker, a new connection is answered 503 and closed at
      once, so a flood of idle sockets cannot take the descriptors ``/healthz`` needs.
    """

    _last_cap_warning = -_CAP_WARNING_INTERVAL

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "limits", None) or ServerLimits.defaults()
        self.timeout_keep_alive = limits.head_timeout  # type: ignore[assignment] # call_later takes a float
        self._max_head = limits.max_header_bytes
        self._max_connections = limits.max_connections
        self._head_bytes: int | None = 0  # bytes of the current head fed to the parser; None inside a body

    def _arm_head_timer(self) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            now = time.monotonic()
            if now - LimitedHttpToolsProtocol._last_cap_warning >= _CAP_WARNING_INTERVAL:
                LimitedHttpToolsProtocol._last_cap_warning = now
                logger.warning(
                    "orga proxy: %d connections open, the --max-connections cap; new ones are answered 503",
                    self._max_connections,
                )
            transport.write(_OVER_CAPACITY)
            transport.close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received stops the keep-alive timer at the first byte; here it runs until the head is
        # complete (on_headers_complete), and the parser gets no more head bytes than the cap allows.
        head = self._head_bytes
        if head is None:
            if len(data) <= self._max_head:
                self._feed(data)
                return
        elif head + len(data) <= self._max_head:  # the common case: a whole head in one read
            self._head_bytes = head + len(data)
            self._feed(data)
            return
        self._feed_in_pieces(data)

    def _feed_in_pieces(self, data: bytes) -> None:
        limit = self._max_head
        while data:
            if self._head_bytes is None:
                room = limit  # inside a body: pieces of at most the cap, so a head that follows is counted closely
            else:
                room = limit - self._head_bytes
                if room <= 0:
                    self._refuse_head()
                    return
            piece, data = data[:room], data[room:]
            if self._head_bytes is not None:
                self._head_bytes += len(piece)
            if not self._feed(piece):
                return

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False once the connection is closing (an unparsable request is answered 400)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return False
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket route here (ws="none")
            return False
        return not self.transport.is_closing()

    def _refuse_head(self) -> None:
        self._unset_keepalive_if_required()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_HEAD_TOO_LARGE)
        # else a pipelined head outgrew the cap while a response is being written: no answer can be interleaved
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._unset_keepalive_if_required()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        super().on_message_complete()


# uvicorn's own lines (start, workers, shutdown, protocol warnings) on stderr beside ours, in the same shape.
_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"generic": {"format": "%(asctime)s %(levelname)s uvicorn %(message)s"}},
    "handlers": {"console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


# --log-format json: uvicorn's lines as JSON objects too (orga_ai.telemetry.JSONFormatter).
_JSON_LOG_CONFIG: dict[str, Any] = {
    **_LOG_CONFIG,
    "formatters": {"generic": {"()": "orga_ai._jsonlog.JSONFormatter"}},
}


def limits_from_settings(settings: Mapping[str, Any]) -> ServerLimits:
    """Validate the server limits of the settings; ServeSettingsError says which one is out of range."""
    head_timeout = float(settings["head_timeout"])
    if not 0.001 <= head_timeout <= 60:
        raise ServeSettingsError("--head-timeout must be between 0.001 and 60 seconds")
    max_header_bytes = int(settings["max_header_bytes"])
    if not 8192 <= max_header_bytes <= 1024 * 1024:  # browsers' heads with cookies reach several KiB
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


def serve_forever(settings: Mapping[str, Any], graceful_timeout: float, app: Any = None) -> bool:
    """Serve until SIGINT/SIGTERM, then drain for up to ``graceful_timeout`` seconds; False if it never started
    (the port taken, say: uvicorn has logged why).

    The settings must have been validated. One worker serves ``app`` (built from the same settings) in this process;
    more workers are fresh processes that rebuild it from the environment.
    """
    from uvicorn.supervisors import Multiprocess

    limits = limits_from_settings(settings)
    limits = ServerLimits(limits.head_timeout, limits.max_header_bytes, _fit_descriptor_limit(limits.max_connections))
    workers = int(settings["workers"])
    if workers > 1 or app is None:
        # One random fingerprint key per run, shared by the workers, unless configured: their logs then agree.
        settings = {**settings, "fingerprint_key": settings["fingerprint_key"] or os.urandom(24).hex()}
        os.environ.update(to_environ(settings))
        app = WORKER_APP
    config = LimitedConfig(
        app,
        limits=limits,
        factory=isinstance(app, str),
        host=settings["host"],
        port=settings["port"],
        workers=workers,
        loop="uvloop",
        ws="none",  # no WebSocket route
        lifespan="on",  # the app opens and closes its clients there
        access_log=False,  # the proxy writes its own structured access line
        proxy_headers=False,  # X-Forwarded-For is honoured by the core, from --trusted-proxy only
        server_header=False,
        log_level=str(settings["log_level"]).lower(),
        log_config=_JSON_LOG_CONFIG if settings.get("log_format") == "json" else _LOG_CONFIG,
        backlog=max(1024, min(4096, limits.max_connections)),
        timeout_graceful_shutdown=max(1, round(graceful_timeout)),
    )
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return True
    server = uvicorn.Server(config)
    server.run()
    return server.started
