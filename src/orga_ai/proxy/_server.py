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
import dataclasses
import functools
import ipaddress
import logging
import os
import resource
import time
import weakref
from collections.abc import Mapping
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


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """What the HTTP layer enforces before the app runs (and, for a request's body, while it runs)."""

    head_timeout: float
    """Seconds to receive a request head (request line and headers); also the idle keep-alive limit."""
    max_header_bytes: int
    """Largest request head accepted; a larger one is answered 431 and the connection closed."""
    max_connections: int
    """Connections one worker holds at once; the next ones are answered 503 and closed."""
    request_timeout: float = 10.0
    """Seconds to receive a whole request, head and body, counted from the same start as ``head_timeout``."""
    write_timeout: float = 10.0
    """Seconds a connection may leave its answers unread (our write buffer full) before it is dropped."""
    max_client_connections: int = 64
    """Connections one client address (an IPv6 /64) holds in one worker; the next ones are answered 503."""
    exempt: tuple[str, ...] = ()
    """Addresses or networks (the trusted proxies) that ``max_client_connections`` does not apply to."""

    @classmethod
    def defaults(cls) -> ServerLimits:
        """The limits of ``orga-ai serve`` without options: the defaults of its settings."""
        return limits_from_settings({option.name: option.default for option in OPTIONS})


@functools.lru_cache(maxsize=8)
def _exempt_networks(exempt: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in exempt)


def _client_key(peer: Any, limits: ServerLimits) -> str | None:
    """Whose share of the connections a new one counts against: its address, an IPv6 address's /64 (one host
    holds a whole /64), or None for a trusted proxy (every client behind it shares its address) and for a peer
    without an IP address (a Unix socket)."""
    if not peer or not isinstance(peer, tuple):
        return None
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if limits.exempt and any(address in network for network in _exempt_networks(limits.exempt)):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


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
_CLIENT_OVER_CAPACITY = _canned(b"503 Service Unavailable", "Too many connections from this address.")
_REQUEST_TIMEOUT = _canned(b"408 Request Timeout", "The request was not received in time.")
_CAP_WARNING_INTERVAL = 60.0

_client_counts: weakref.WeakKeyDictionary[ServerState, dict[str, int]] = weakref.WeakKeyDictionary()
"""Open connections per client key, one table per server (``orga-ai dev`` runs several in one process)."""


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
      ``head_timeout`` seconds to send a whole request line and headers, however slowly it trickles them.
    - Request timer: a body still arriving ``request_timeout`` seconds after that same start is answered 408 (if no
      answer has begun) and its connection closed; the app's ``receive()`` then reports the disconnect.
    - Head size: while a head is incomplete, at most the bytes still allowed are fed to the parser; one more and the
      answer is 431 and the connection closes, so the parser never holds more than ``max_header_bytes``.
    - One request at a time: once a request is whole, nothing more is parsed until its response is written. Bytes
      that arrive meanwhile are held unparsed and reading stops. Requests pipelined within one read beyond the one
      waiting its turn are not kept: the connection closes after the answers already owed (RFC 9112 9.3.2: the
      client retries the rest). An answer the client leaves unread (the write buffer stays full) for
      ``write_timeout`` seconds drops the connection.
    - A response sent before its request's body arrived (a refusal judged from the head) closes the connection
      instead of reading the body to its end.
    - Connections: beyond ``max_connections`` open in this worker, or ``max_client_connections`` from one address
      (an IPv6 /64; the trusted proxies exempt), a new connection is answered 503 and closed at once, so no one
      client can take the descriptors ``/healthz`` and other callers need.

    uvicorn's protocol parses a whole read at once and queues every pipelined request it finds, with no timer on a
    body: the reasons for this class (docs/security.md). Its private names are checked by
    ``tests/proxy/test_server_contract.py`` against the pinned uvicorn releases.
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
        self._limits = limits
        self._max_head = limits.max_header_bytes
        self._head_bytes: int | None = 0  # bytes of the current head fed to the parser; None inside a body
        self._in_body = False  # the newest request's head is parsed, its body is still arriving
        self._clock = 0.0  # when the newest request's time began (the connection opened or the last answer ended)
        self._request_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._held = bytearray()  # bytes received while a whole request waits for its answer
        self._overflow = False  # more was pipelined than one request ahead: close once the owed answers are out
        self._client: str | None = None

    # -- connections -------------------------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._clock = self.loop.time()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self._limits
        refusal = None
        if len(self.connections) > limits.max_connections:
            refusal = _OVER_CAPACITY
            self._warn_capped(f"{limits.max_connections} connections open, the --max-connections cap")
        else:
            client = _client_key(transport.get_extra_info("peername"), limits)
            if client is not None:
                counts = _client_counts.setdefault(self.server_state, {})
                held = counts.get(client, 0)
                if held >= limits.max_client_connections:
                    refusal = _CLIENT_OVER_CAPACITY
                    self._warn_capped(
                        f"{held} connections from one address, the --max-client-connections cap"
                    )
                else:
                    counts[client] = held + 1
                    self._client = client
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        self._arm_head_timer()

    @staticmethod
    def _warn_capped(what: str) -> None:
        now = time.monotonic()
        if now - LimitedHttpToolsProtocol._last_cap_warning >= _CAP_WARNING_INTERVAL:
            LimitedHttpToolsProtocol._last_cap_warning = now
            logger.warning("orga proxy: %s; new connections are answered 503", what)

    def connection_lost(self, exc: Exception | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            counts = _client_counts.get(self.server_state)
            if counts is not None:
                left = counts.get(client, 1) - 1
                if left > 0:
                    counts[client] = left
                else:
                    counts.pop(client, None)
        for timer in (self._request_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._request_timer = self._write_timer = None
        self._held = bytearray()
        super().connection_lost(exc)

    # -- reading ---------------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received stops the keep-alive timer at the first byte and parses the whole read; here the
        # head timer runs until the head is complete, and nothing is parsed while a whole request awaits its answer.
        if self._overflow:
            return  # the connection closes once the answers it is owed are out
        if self._held or (not self._in_body and self.cycle is not None and not self.cycle.response_complete):
            self._held += data
            self.flow.pause_reading()
            return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        head = self._head_bytes
        if head is None:
            if len(data) <= self._max_head:
                self._feed(data)
            else:
                self._feed_in_pieces(data)
        elif head + len(data) <= self._max_head:  # the common case: a whole head in one read
            self._head_bytes = head + len(data)
            self._feed(data)
        else:
            self._feed_in_pieces(data)
        if self._in_body and self._request_timer is None and not self.transport.is_closing():
            wait = self._clock + self._limits.request_timeout - self.loop.time()
            self._request_timer = self.loop.call_later(max(0.0, wait), self._request_timed_out)

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
            # No WebSocket or h2c here (ws="none"): the request is served as plain HTTP; whatever follows its head
            # is not parsed. One debug line, not uvicorn's warnings (one of them advises installing a library).
            self.logger.debug("Upgrade request served without upgrading.")
            return False
        return not self.transport.is_closing()

    def _refuse_head(self) -> None:
        self._unset_keepalive_if_required()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_HEAD_TOO_LARGE)
        # else a pipelined head outgrew the cap while a response is being written: no answer can be interleaved
        self.transport.close()

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_started:
                self.transport.write(_REQUEST_TIMEOUT)
            cycle.disconnected = True  # as connection_lost will say: the app's send() stops, its receive() returns
            cycle.message_event.set()
        self.transport.close()

    # -- parser callbacks ------------------------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self._overflow:
            return
        self._head_bytes = None
        self._unset_keepalive_if_required()
        if self.pipeline:  # one request already waits behind the one being answered: this one is not kept
            self._overflow = True
            self.flow.pause_reading()
            return
        self._in_body = True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._overflow:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._overflow:
            return
        self._head_bytes = 0
        self._in_body = False
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline and (self._in_body or self._overflow):
            # Answered before its body arrived (refused from its head: the body is not waited for), or the last
            # answer owed to a connection that pipelined more than one request ahead.
            self.transport.close()
        super().on_response_complete()  # counts the response; starts the request waiting its turn, or the timer
        if self._held and not self.transport.is_closing() and not self.pipeline:
            held, self._held = bytes(self._held), bytearray()
            self._clock = self.loop.time()
            self._parse(held)

    # -- writing ---------------------------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self._limits.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        self.transport.abort()  # the client reads none of its answers: nothing more will reach it


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
    request_timeout = float(settings["request_timeout"])
    if not 0.001 <= request_timeout <= 300:
        raise ServeSettingsError("--request-timeout must be between 0.001 and 300 seconds")
    write_timeout = float(settings["write_timeout"])
    if not 0.001 <= write_timeout <= 300:
        raise ServeSettingsError("--write-timeout must be between 0.001 and 300 seconds")
    max_client_connections = int(settings["max_client_connections"])
    if max_client_connections < 1:
        raise ServeSettingsError("--max-client-connections must be at least 1")
    exempt = tuple(settings.get("trusted_proxy") or ())
    try:
        _exempt_networks(exempt)
    except ValueError as exc:
        raise ServeSettingsError(f"--trusted-proxy: {exc}") from None
    return ServerLimits(
        head_timeout,
        max_header_bytes,
        max_connections,
        request_timeout=request_timeout,
        write_timeout=write_timeout,
        max_client_connections=max_client_connections,
        exempt=exempt,
    )


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
    limits = dataclasses.replace(limits, max_connections=_fit_descriptor_limit(limits.max_connections))
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
