"""The sync client's default transport: the standard library's ``http.client`` with a small keep-alive pool.

Chosen by measurement (benchmarks/sync_transport.py; docs/benchmarks.md): against httpx and urllib3 it has the
lowest per-exchange cost, the cheapest import and the smallest resident memory, which decide a function's cold start
and footprint. What a library would otherwise give us is kept here, small and explicit:

* **A whole-attempt deadline.** Every socket operation (connect, TLS handshake, each send and each receive, the
  status line and headers included) is given only the time left until the attempt's deadline, kept in a context
  variable per thread. A server trickling one byte at a time cannot stretch an attempt past its timeout.
* **TLS verification** with the system trust store (``ssl.create_default_context``: certificates and host names
  checked; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured), built once per client and only for https.
* **Proxies from the environment** (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``, read by the standard library's
  own functions): https goes through a CONNECT tunnel, so TLS stays end to end and the deadline covers the tunnel.
* **Keep-alive**: idle connections are pooled per origin (at most ``max_idle`` each, for ``keepalive`` seconds), a
  connection the server has closed meanwhile is dropped before reuse, and one that was not read to its end is never
  reused. Thread safe: a connection belongs to one attempt at a time. After a fork the child opens its own.
* **No redirect is ever followed**: http.client does not follow them; a 3xx is an answer like any other.

Nothing here opens a socket before the first request, and ``import orga_ai`` does not import this module.
:class:`StdlibTransport` is the :class:`~orga_ai._transports.base.SyncTransport` over :class:`SyncPool`.
"""

from __future__ import annotations

import contextvars
import http.client
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from http.client import HTTPException
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .._protocol import FailureKind, Request, Response, TransportFailure
from .._proxy_env import proxy_from_environment
from .base import describe, replayable

__all__ = [
    "ConnectPhaseError",
    "ConnectTimeout",
    "HTTPException",
    "StdlibTransport",
    "SyncPool",
    "reset_deadline",
    "set_deadline",
]

_attempt_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orga_ai_attempt_deadline", default=None
)


class ConnectTimeout(TimeoutError):
    """No connection (TCP, proxy tunnel or TLS) in time: the request never left."""


def time_left(timeout: float | None, expired: type[Exception] = TimeoutError) -> float | None:
    """The smaller of ``timeout`` and the time left until this attempt's deadline; raises ``expired`` at zero."""
    deadline = _attempt_deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt ran out of time")
    return left if timeout is None else min(timeout, left)


def set_deadline(deadline: float) -> contextvars.Token[float | None]:
    """Bound every socket operation of this thread's next exchange by ``deadline`` (``time.monotonic`` seconds)."""
    return _attempt_deadline.set(deadline)


def reset_deadline(token: contextvars.Token[float | None]) -> None:
    _attempt_deadline.reset(token)


class _BoundOps:
    """Mixed into a socket class: every send and receive gets at most the time left until the attempt's deadline."""

    settimeout: Any

    def _bound(self) -> None:
        left = time_left(None)
        if left is not None:  # no deadline set: the connection's own timeout (given at connect) stays
            self.settimeout(left)

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self._bound()
        return super().recv_into(*args, **kwargs)  # type: ignore[misc, no-any-return]

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        self._bound()
        return super().recv(*args, **kwargs)  # type: ignore[misc, no-any-return]

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        self._bound()
        super().sendall(*args, **kwargs)  # type: ignore[misc]

    def send(self, *args: Any, **kwargs: Any) -> int:
        self._bound()
        return super().send(*args, **kwargs)  # type: ignore[misc, no-any-return]


class _DeadlineSocket(_BoundOps, socket.socket):
    """A TCP socket bound by the attempt's deadline (http.client reads through ``makefile``, i.e. ``recv_into``)."""

    __slots__ = ()


class _DeadlineSSLSocket(_BoundOps, ssl.SSLSocket):
    """The same for TLS: the handshake, and every read and write of the encrypted stream."""

    def do_handshake(self, block: bool = False) -> None:
        left = time_left(None, ConnectTimeout)
        if left is not None:
            self.settimeout(left)
        super().do_handshake(block)


def _connect(address: tuple[str, int], timeout: float | None = None, source_address: Any = None) -> socket.socket:
    """``socket.create_connection`` on a deadline-bound socket (http.client's hook for opening its connection).

    Name resolution is the one step a socket timeout cannot bound; each address tried gets the time left.
    """
    host, port = address
    last: OSError | None = None
    # An ASCII name goes as bytes: a str would be IDNA-encoded, which imports that codec (~2 ms) on every cold start.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM):
        sock = _DeadlineSocket(family, kind, proto)
        try:
            sock.settimeout(time_left(timeout, ConnectTimeout))
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeout(str(exc) or "connect timed out") from None
        except OSError as exc:
            sock.close()
            last = exc
    raise last if last is not None else OSError(f"no address found for {host}")


class SyncPool:
    """Keep-alive connections per origin, shared by the threads of one :class:`~orga_ai.OrgaAI`."""

    def __init__(self, *, max_idle: int, keepalive: float) -> None:
        self._max_idle = max_idle
        self._keepalive = keepalive
        self._idle: dict[tuple[str, str, int], list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._ssl: ssl.SSLContext | None = None
        self._pid = os.getpid()

    def _ssl_context(self) -> ssl.SSLContext:
        context = self._ssl
        if context is None:
            context = ssl.create_default_context()  # verifies certificates and host names; system trust store
            context.sslsocket_class = _DeadlineSSLSocket
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return context

    # -- connections ------------------------------------------------------------------------------------------------

    def _take(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        if self._pid != os.getpid():
            self._after_fork()
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, conn = idle.pop()
            sock = conn.sock
            # Readable while idle means the server closed it (or sent something unasked): never reuse that one.
            if now - since < self._keepalive and sock is not None and not _readable(sock):
                return conn
            conn.close()

    def _after_fork(self) -> None:
        """In a child process: the idle connections are the parent's too (one socket, two processes interleaving
        requests and answers), so this process closes its copies (which leaves the parent's open) and opens its own.
        The lock is replaced: a thread of the parent may have held it at the fork."""
        self._lock = threading.Lock()
        idle, self._idle = self._idle, {}
        self._pid = os.getpid()
        for conns in idle.values():
            for _, conn in conns:
                conn.close()

    def _give_back(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append((time.monotonic(), conn))
                    return
        conn.close()

    def _open(self, scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        """A new connection to the origin, or to the proxy the environment names (absolute-form requests to a plain
        http proxy are marked by its ``orga_proxy_headers``)."""
        proxy = proxy_from_environment(scheme, host)
        conn: http.client.HTTPConnection
        if proxy is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl_context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn._create_connection = _connect  # type: ignore[attr-defined]  # http.client's documented-in-code hook
            return conn
        auth: dict[str, str] = {}
        authorization = proxy.authorization()
        if authorization is not None:
            auth["Proxy-Authorization"] = authorization
        if scheme == "https":
            conn = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=timeout, context=self._ssl_context())
            conn.set_tunnel(host, port, headers=auth)
            conn._create_connection = _connect  # type: ignore[attr-defined]
            return conn
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
        conn._create_connection = _connect  # type: ignore[attr-defined]
        conn.orga_proxy_headers = auth  # type: ignore[attr-defined]
        return conn

    # -- one exchange -----------------------------------------------------------------------------------------------

    def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        timeout: float,
        cap: int,
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request and read its answer: (status, lower-case headers, body, truncated).

        Raises :class:`ConnectPhaseError` when connecting failed (nothing reached the server); ``TimeoutError``,
        ``http.client.HTTPException`` or ``OSError`` after that (ambiguous: the request may have arrived).
        """
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        parts = urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        conn = self._take(key)
        if conn is not None:
            try:
                return self._attempt(conn, key, parts, method, url, headers, content, cap)
            except _Dropped as exc:
                if not replayable(method, headers):
                    raise exc.cause from None
                # The server closed the idle connection as this request reached it, and answered nothing: what
                # every client does, once, on a fresh connection (bounded by the same deadline).
        try:
            conn = self._open(scheme, host, port, timeout)
        except Exception as exc:
            raise ConnectPhaseError(exc) from exc
        try:
            conn.connect()
        except Exception as exc:
            conn.close()
            raise ConnectPhaseError(exc) from exc
        except BaseException:
            conn.close()
            raise
        return self._attempt(conn, key, parts, method, url, headers, content, cap, fresh=True)

    def _attempt(
        self,
        conn: http.client.HTTPConnection,
        key: tuple[str, str, int],
        parts: SplitResult,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        cap: int,
        *,
        fresh: bool = False,
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """One request on ``conn``, which goes back to the pool only if its answer was read to the end.

        On a reused connection, a failure before any answer arrived is raised as :class:`_Dropped`."""
        absolute = hasattr(conn, "orga_proxy_headers")
        reusable = False
        response: http.client.HTTPResponse | None = None
        try:
            target = url if absolute else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            send_headers = dict(headers)
            if absolute:
                send_headers.update(conn.orga_proxy_headers)  # type: ignore[attr-defined]
            try:
                conn.request(method, target, body=content if content or method != "GET" else None, headers=send_headers)
                response = conn.getresponse()
            except ConnectionError as exc:  # RemoteDisconnected, reset, broken pipe: no status line came back
                if fresh:
                    raise
                raise _Dropped(exc) from None
            text = response.getheader("content-length", "")
            # ASCII digits only: str.isdigit() is true of "²" too, which int() refuses (a ValueError, untyped).
            declared = int(text) if text.isascii() and text.isdigit() else None
            truncated = False
            body = bytearray()
            if declared is not None and declared > cap:
                truncated = True
            else:
                while True:
                    try:
                        chunk = response.read(65536)  # read, not read1: it marks the response done at its end
                    except ValueError as exc:
                        # A negative chunk size reaches a file read as a ValueError: bad framing, told as such.
                        raise MalformedAnswer(f"the answer's framing is broken ({exc})") from None
                    if not chunk:
                        break
                    body += chunk
                    if len(body) > cap:
                        truncated = True
                        break
                    time_left(None)  # between chunks too, for a fast stream of small chunks
                if declared is not None and len(body) < declared:
                    # read(amt) reports a connection closed early as a short body; the partial body stays out of
                    # the exception (it may hold a token).
                    raise http.client.IncompleteRead(b"", declared - len(body))
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            reusable = not truncated and response.isclosed() and not response.will_close
            return response.status, answer_headers, bytes(body), truncated
        finally:
            if reusable:
                self._give_back(key, conn)
            else:
                conn.close()
                if response is not None:
                    # On `Connection: close` http.client hands the socket to the response: close it now, not when
                    # the response is collected (an exception's traceback, kept by a caller, would keep it open).
                    response.close()

    def close(self) -> None:
        """Close every idle connection; one in use is closed when its exchange ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, conn in conns:
                conn.close()


class MalformedAnswer(HTTPException):
    """An answer whose HTTP framing http.client reports with a ValueError instead of one of its own errors."""


class _Dropped(Exception):
    """A reused connection failed before any answer arrived: the server had closed it as the request came."""

    def __init__(self, cause: ConnectionError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read (the server closed it, or sent what nobody asked for).

    poll(), not select(): select() cannot watch a descriptor numbered 1,024 or more, as a busy process has.
    """
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # Windows: no poll(), and no such limit on select()


class ConnectPhaseError(Exception):
    """Wraps what failed while connecting (TCP, proxy tunnel, TLS): the request never left."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class StdlibTransport:
    """:class:`SyncPool` behind the :class:`~orga_ai._transports.base.SyncTransport` interface."""

    def __init__(self, *, max_idle: int, keepalive: float, max_response_bytes: int) -> None:
        self._pool = SyncPool(max_idle=max_idle, keepalive=keepalive)
        self._cap = max_response_bytes

    def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        # Every socket operation of this attempt (connect, TLS, each send and receive) gets at most the time left
        # until the deadline, which the driver took before it built this transport (and imported http.client), so
        # that cost is part of the attempt's time.
        started = deadline - request.timeout
        token = set_deadline(deadline)
        try:
            status, headers, body, truncated = self._pool.exchange(
                request.method, request.url, request.headers, request.content, request.timeout, self._cap
            )
            return Response(status, headers, body, time.monotonic() - started, truncated)
        except ConnectPhaseError as exc:
            cause = exc.cause
            kind = FailureKind.CONNECT_TIMEOUT if isinstance(cause, TimeoutError) else FailureKind.CONNECT
            return TransportFailure(kind, describe(cause), cause, time.monotonic() - started)
        except TimeoutError as exc:
            return TransportFailure(FailureKind.READ_TIMEOUT, describe(exc), exc, time.monotonic() - started)
        except (HTTPException, OSError) as exc:
            return TransportFailure(FailureKind.BROKEN, describe(exc), exc, time.monotonic() - started)
        finally:
            reset_deadline(token)

    def close(self) -> None:
        """Close every idle connection; one in use is closed when its exchange ends."""
        self._pool.close()
