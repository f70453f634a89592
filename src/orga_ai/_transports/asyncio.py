"""The async client's default transport: asyncio's own sockets, httptools' parser and a small keep-alive pool.

Hand-written because it measured cheapest (benchmarks/async_transport.py; docs/benchmarks.md): per exchange it costs a
fraction of aiohttp's CPU, and ``import`` of it builds no TLS context for a plain-http origin. ``httptools`` (a small
C binding of llhttp, the parser Node uses) parses the answers; without it the client falls back to aiohttp. What a
library would otherwise give us is kept here, small and explicit:

* **A whole-attempt deadline.** One timer per attempt bounds everything: waiting for a free connection, connecting,
  the proxy tunnel, the TLS handshake, sending and reading the whole answer. Until the request is written, running out
  is a connect timeout (nothing reached the server); after, a read timeout.
* **TLS verification** with the system trust store (``ssl.create_default_context``), built once, only for https.
* **Proxies from the environment** (``_proxy_env``: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``), decided once per
  loop: https goes through a CONNECT tunnel (TLS end to end with the origin), the proxy's credentials go to the proxy
  only.
* **Keep-alive**: idle connections are kept per origin (at most ``limit`` connections open in all, idle ones for
  ``keepalive`` seconds); a connection goes back only when its answer was read to the end and the server did not ask
  to close; one the server closed meanwhile is dropped before reuse. A reused connection that breaks before any byte
  of an answer is replayed once on a fresh one, for a request that cannot do anything twice (a GET, or one with an
  ``Idempotency-Key``).
* **Size caps**: the answer's head at 64 KiB, its body at the client's cap (a declared length past it is not read).
* **No redirect is ever followed**: a 3xx is an answer like any other.
* **One loop at a time, and a clean close**, as the aiohttp transport: a call from a second loop while the first runs
  is refused; a guard parked on the loop closes the connections when ``asyncio.run()`` ends it, a finalizer when the
  client is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

from .._exceptions import OrgaAIError
from .._protocol import FailureKind, Request, Response, TransportFailure
from .._proxy_env import ProxyConfigurationError, ProxyTarget, proxy_from_environment
from .base import MAX_HEADERS, describe, replayable, start_guard

if TYPE_CHECKING:
    import ssl

__all__ = ["AsyncioTransport"]

_MAX_HEAD = 64 * 1024
_Key = tuple[str, str, int]


class _ConnectFailed(Exception):
    """Connecting failed (TCP, proxy tunnel, TLS): the request never left."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Dropped(Exception):
    """A reused connection failed before any byte of an answer: the server had closed it as the request came."""


class ProxyTunnelError(OSError):
    """The proxy refused the CONNECT tunnel (its status line is the message)."""


class MalformedAnswer(OSError):
    """An answer that is not HTTP/1.1 as it must be: bad framing, or a head past 64 KiB."""


class _Connection(asyncio.Protocol):
    """One connection; it reads one answer at a time, for the attempt that holds it."""

    def __init__(self, pool: _Pool, key: _Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._counted = True
        self._parser: Any = None
        self._waiter: asyncio.Future[bool] | None = None
        self._tunnel: asyncio.Future[bytes] | None = None
        self._buffer = bytearray()
        self.headers: dict[str, str] = {}
        self._clear(0)

    # -- asyncio.Protocol --------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._buffer += data
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0 and not self._tunnel.done():
                self._tunnel.set_result(bytes(self._buffer[:end]))
            elif len(self._buffer) > _MAX_HEAD and not self._tunnel.done():
                self._tunnel.set_exception(MalformedAnswer("the proxy's answer head is too large"))
            return
        if self._parser is None:  # bytes nobody asked for, on an idle connection: never reuse it
            self.close()
            return
        self._got = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(MalformedAnswer(f"the answer's framing is broken ({type(exc).__name__})"))
            return
        if not self._in_body:
            self._head += len(data)
            if self._head > _MAX_HEAD:
                self._finish(MalformedAnswer("the answer's head is larger than 64 KiB"))

    def eof_received(self) -> bool | None:
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.release(self)
        if self._tunnel is not None and not self._tunnel.done():
            self._tunnel.set_exception(exc or ConnectionResetError("the proxy closed the connection"))
        if self._waiter is None or self._waiter.done():
            return
        if exc is None and self._eof_body:
            self._finish(False)  # a body delimited by the end of the connection: complete
        elif not self._got:
            self._finish(_Dropped())
        else:
            self._finish(exc or ConnectionResetError("the connection closed before the whole answer"))

    # -- httptools callbacks -------------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            return
        # Trailers come here too: the same limits as http.client's (100 lines) and the head's size.
        self._header_lines += 1
        self._header_bytes += len(name) + len(value)
        if self._header_lines > MAX_HEADERS or self._header_bytes > _MAX_HEAD:
            self._finish(MalformedAnswer("the answer has too many or too large headers"))
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self._in_body = True
        self.status = self._parser.get_status_code()
        declared = self.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._cap:
            self.truncated = True
            self._finish(False)
        elif not declared and "chunked" not in self.headers.get("transfer-encoding", "").lower():
            self._eof_body = self.status >= 200 and self.status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.body += body
        if len(self.body) > self._cap:
            self.truncated = True
            self._finish(False)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows on this parser
                self.status, self.headers, self._in_body, self._head = 0, {}, False, 0
                return
            self._finish(self._parser.should_keep_alive())

    # -- one exchange ------------------------------------------------------------------------------------------------

    def _reset(self, cap: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._clear(cap)

    def _clear(self, cap: int) -> None:
        """The state of one exchange, before its first byte."""
        self._cap = cap
        self._head = 0
        self._header_lines = 0
        self._header_bytes = 0
        self._got = False
        self._in_body = False
        self._eof_body = False
        self.status = 0
        self.headers = {}
        self.body = bytearray()
        self.truncated = False

    def _finish(self, outcome: bool | BaseException) -> None:
        """Settle the attempt: True (read to the end, reusable), False (done, not reusable), or an error."""
        waiter = self._waiter
        self._parser = None
        if waiter is not None and not waiter.done():
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        if outcome is not True:
            self.close()

    def start(self, head: bytes, cap: int) -> asyncio.Future[bool]:
        assert self.transport is not None
        self._reset(cap)
        self._waiter = waiter = self.pool.loop.create_future()
        self.transport.write(head)
        return waiter

    def close(self) -> None:
        self.closed = True
        self._parser = None
        if self.transport is not None:
            self.transport.close()
        else:
            self.pool.release(self)

    async def tunnel(self, host: str, port: int, authorization: str | None) -> None:
        """Ask the proxy for a CONNECT tunnel to ``host:port``; raises :class:`ProxyTunnelError` when it refuses."""
        assert self.transport is not None
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if authorization is not None:
            lines.append(f"Proxy-Authorization: {authorization}")
        self._tunnel = self.pool.loop.create_future()
        self._buffer.clear()
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            head = await self._tunnel
        finally:
            self._tunnel = None
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "200":
            raise ProxyTunnelError(f"the proxy refused the tunnel: {status_line[:80]!r}")
        if len(self._buffer) > len(head) + 4:  # the origin cannot speak before TLS starts
            raise MalformedAnswer("the proxy sent bytes after its answer to CONNECT")
        self._buffer.clear()


class _Pool:
    """The connections of one transport on one loop. The guard and the finalizer hold this, not the transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, keepalive: float) -> None:
        self.loop = loop
        self.limit = limit
        self.keepalive = keepalive
        self.idle: dict[_Key, collections.deque[_Connection]] = {}
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False

    def take(self, key: _Key) -> _Connection | None:
        idle = self.idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    def give_back(self, conn: _Connection) -> None:
        if self.closed or conn.closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.setdefault(conn.key, collections.deque()).append(conn)
        self._wake()

    async def slot(self, conn_deadline: float) -> None:
        """Wait (until ``conn_deadline``, loop time) for room under ``limit``; idle connections make room first."""
        while self.open >= self.limit:
            if self._close_one_idle():
                continue
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            handle = self.loop.call_at(conn_deadline, _expire, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
        self.open += 1

    def _close_one_idle(self) -> bool:
        for idle in self.idle.values():
            if idle:
                conn = idle.popleft()
                conn.close()
                return True
        return False

    def release(self, conn: _Connection) -> None:
        if conn._counted:
            conn._counted = False
            self.open -= 1
            self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the attempt ran out of time"))


class AsyncioTransport:
    """An :class:`~orga_ai._transports.base.AsyncTransport` on asyncio and httptools; see the module docstring."""

    def __init__(self, *, base_url: str, max_response_bytes: int, limit: int, keepalive: float) -> None:
        self._base_url = base_url
        self._cap = max_response_bytes
        self._limit = limit
        self._keepalive = keepalive
        self._pool: _Pool | None = None
        self._proxy: ProxyTarget | None = None
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections held by an attempt now (open, and not idle in the pool)."""
        pool = self._pool
        if pool is None:
            return 0
        # An idle connection the server closed meanwhile stays listed until reuse is tried; it counts as open no more.
        return pool.open - sum(1 for idle in pool.idle.values() for conn in idle if conn._counted)

    def prepare(self) -> None:
        self._bind()

    def _bind(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and pool.loop is loop:
            return pool
        if self._closed:
            raise OrgaAIError("this AsyncOrgaAI client is closed")
        if pool is not None and not pool.loop.is_closed():
            raise OrgaAIError(
                "this AsyncOrgaAI client is in use by another event loop; create one client per event loop"
            )
        parts = urlsplit(self._base_url)
        # An unusable proxy raises ProxyConfigurationError before anything is opened.
        self._proxy = proxy_from_environment(parts.scheme, parts.hostname or "")
        self._pool = pool = _Pool(loop, self._limit, self._keepalive)
        self._guard = start_guard(functools.partial(_close_pool, pool))
        weakref.finalize(self, _close_abandoned, pool)
        return pool

    def _ssl_context(self) -> ssl.SSLContext:
        context = self._ssl
        if context is None:
            import ssl

            context = ssl.create_default_context()  # verifies certificates and host names; system trust store
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return context

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        started = deadline - request.timeout
        try:
            pool = self._bind()
        except ProxyConfigurationError as exc:
            return TransportFailure(FailureKind.CONNECT, describe(exc), exc, time.monotonic() - started)
        loop = pool.loop
        at = loop.time() + (deadline - time.monotonic())
        parts = urlsplit(request.url)
        scheme = parts.scheme
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        may_replay = replayable(request.method, request.headers)
        try:
            head = _head(request, parts, self._proxy if scheme == "http" else None)
        except ValueError as exc:  # a header with a line break: nothing was sent (base.py: send never raises)
            return TransportFailure(FailureKind.CONNECT, describe(exc), exc, time.monotonic() - started)
        replayed = False
        while True:
            conn = None if replayed else pool.take(key)
            fresh = conn is None
            try:
                if conn is None:
                    conn = await self._connect(pool, key, at)
                waiter = conn.start(head, self._cap)
                handle = loop.call_at(at, _expire, waiter)
                try:
                    reusable = await waiter
                finally:
                    handle.cancel()
            except _ConnectFailed as exc:
                cause = exc.cause
                kind = FailureKind.CONNECT_TIMEOUT if isinstance(cause, TimeoutError) else FailureKind.CONNECT
                return TransportFailure(kind, describe(cause), cause, time.monotonic() - started)
            except _Dropped:
                if fresh or not may_replay:
                    error = ConnectionResetError("the server closed the connection without an answer")
                    return TransportFailure(FailureKind.BROKEN, describe(error), error, time.monotonic() - started)
                replayed = True  # once, on a fresh connection, within the same deadline
                continue
            except TimeoutError as exc:
                conn.close()  # type: ignore[union-attr]
                return TransportFailure(FailureKind.READ_TIMEOUT, describe(exc), exc, time.monotonic() - started)
            except OSError as exc:
                return TransportFailure(FailureKind.BROKEN, describe(exc), exc, time.monotonic() - started)
            except BaseException:  # cancelled: the answer will never be read, so the connection cannot be reused
                if conn is not None:
                    conn.close()
                raise
            body = bytes(conn.body)
            headers = conn.headers
            truncated = conn.truncated
            status = conn.status
            if reusable:
                pool.give_back(conn)
            encoding = headers.get("content-encoding", "").lower()
            if encoding in ("gzip", "deflate") and not truncated:
                try:
                    body, truncated = _decompress(body, encoding, self._cap)
                except ValueError as exc:
                    return TransportFailure(FailureKind.BROKEN, describe(exc), exc, time.monotonic() - started)
            return Response(status, headers, body, time.monotonic() - started, truncated)

    async def _connect(self, pool: _Pool, key: _Key, at: float) -> _Connection:
        """A new connection to ``key``'s origin (through the proxy, if any), ready for a request; bounded by ``at``.

        Raises :class:`_ConnectFailed`: nothing was sent to the origin."""
        loop = pool.loop
        scheme, host, port = key
        proxy = self._proxy
        try:
            await pool.slot(at)
        except TimeoutError as exc:
            raise _ConnectFailed(exc) from None
        conn = _Connection(pool, key)
        timer: asyncio.TimerHandle | None = None
        try:
            task = asyncio.ensure_future(self._open(conn, scheme, host, port, proxy))
            timer = loop.call_at(at, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                if loop.time() < at:
                    raise  # the caller was cancelled, not the deadline
                raise TimeoutError("connecting took longer than the timeout") from None
        except BaseException as exc:
            conn.close()
            pool.release(conn)  # a failed TLS handshake may never report the connection lost
            if isinstance(exc, Exception):
                raise _ConnectFailed(exc) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return conn

    async def _open(self, conn: _Connection, scheme: str, host: str, port: int, proxy: ProxyTarget | None) -> None:
        loop = conn.pool.loop
        context = self._ssl_context() if scheme == "https" else None
        if proxy is None:
            await loop.create_connection(
                lambda: conn, host, port, ssl=context, server_hostname=host if context is not None else None
            )
            return
        await loop.create_connection(lambda: conn, proxy.host, proxy.port)
        if context is None:
            return  # plain http: requests go to the proxy in absolute form
        await conn.tunnel(host, port, proxy.authorization())
        assert conn.transport is not None
        conn.transport = await loop.start_tls(conn.transport, conn, context, server_hostname=host)
        if conn.transport is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")

    async def aclose(self) -> None:
        """Close the idle connections (one in use closes when its attempt ends); no call is served afterwards."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await asyncio.sleep(0)  # the transports close their sockets on the next loop iteration


def _head(request: Request, parts: Any, proxy: ProxyTarget | None) -> bytes:
    """The request's bytes; with ``proxy`` (plain http through a proxy) in absolute form, with the proxy's
    credentials. Header values are checked for line breaks: no header can be smuggled."""
    absolute = proxy is not None
    target = request.url if absolute else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {host}"]
    headers: Mapping[str, str] = request.headers
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    if proxy is not None:
        authorization = proxy.authorization()
        if authorization is not None:
            lines.append(f"Proxy-Authorization: {authorization}")
    content = request.content
    if content or request.method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(content)}")
    text = "\r\n".join(lines)
    if "\n" in text.replace("\r\n", "") or "\r" in text.replace("\r\n", ""):
        raise ValueError("a header holds a line break")
    return text.encode("latin-1") + b"\r\n\r\n" + content


def _decompress(body: bytes, encoding: str, cap: int) -> tuple[bytes, bool]:
    """A gzip or deflate body, decoded to at most ``cap`` bytes (a compressed body cannot grow past it)."""
    import zlib

    wbits = 47 if encoding == "gzip" else 15  # 32 + 15: gzip or zlib header, detected
    decoder = zlib.decompressobj(wbits)
    try:
        data = decoder.decompress(body, cap + 1)
    except zlib.error as exc:
        raise ValueError(f"the {encoding} body cannot be decoded") from exc
    return (data[:cap], True) if len(data) > cap else (data, False)


async def _close_pool(pool: _Pool) -> None:
    pool.close()
    await asyncio.sleep(0)  # let the transports close their sockets while the loop still runs


def _close_abandoned(pool: _Pool) -> None:
    """Close the connections of a transport dropped (or still open at exit) without ``aclose()``."""
    if pool.closed:
        return
    with contextlib.suppress(Exception):  # best effort: never let clean-up raise from a finalizer
        if pool.loop.is_closed():
            pool.closed = True  # its transports cannot be closed without their loop
        elif pool.loop.is_running():
            pool.loop.call_soon_threadsafe(pool.close)
        else:
            pool.close()
