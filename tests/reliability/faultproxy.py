"""A small TCP fault proxy for what HTTP status codes cannot express.

It sits between an HTTP client and an upstream (the emulator, or the proxy under test) and, per request, either
forwards the bytes or breaks the exchange in one of these ways:

    pass              forward both ways untouched
    refuse            the port is closed: every connect attempt gets ECONNREFUSED (the request never left)
    blackhole         accept and read the request, never answer, never forward it
    reset_after_send  forward the request, wait until the upstream answered, then RST the client (SO_LINGER 0):
                      the upstream did the work (a token may be minted) and the client cannot know
    trickle           forward the request, then relay the answer one byte every ``trickle_interval`` seconds
                      (the status line and the headers too)

The mode is switchable at runtime from any thread (``set("blackhole", path="ice-config")``); with ``path`` only the
requests whose path contains it are faulted, the others pass. It is HTTP/1.1-aware only as far as it must be: it
splits the client's byte stream into requests (Content-Length bodies; our clients never pipeline) so that a fault
applies to one request of a keep-alive connection, and it relays the answers as raw bytes.

Every request it sees is logged (method, path, Idempotency-Key, a fingerprint of the bearer, the mode applied), so
a test can count attempts the upstream never saw (blackhole). ``on_secret`` receives the ephemeral tokens and TURN
credentials that pass through in answers: the canary harness feeds on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from orga_ai._secret import fingerprint

__all__ = ["MODES", "FaultProxy", "Mode", "SeenRequest"]

Mode = Literal["pass", "refuse", "blackhole", "reset_after_send", "trickle"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "blackhole", "reset_after_send", "trickle")

_MAX_HEAD = 64 * 1024
_SECRET_FIELDS = re.compile(rb'"(ephemeral_token|ephemeralToken|credential|username)"\s*:\s*"([^"\\]{8,})"')


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the fault proxy read from a client."""

    method: str
    path: str
    idempotency_key: str | None
    bearer: str | None
    """``fp:...`` fingerprint of the bearer credentials, never the value."""
    mode: Mode
    at: float


@dataclass(slots=True, eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    mode: Mode = "pass"
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 with an event loop of its own, in a daemon thread.

    Use it as a context manager; ``url`` is what a client's ``base_url`` takes.
    """

    def __init__(
        self,
        upstream: str,
        *,
        trickle_interval: float = 0.2,
        on_secret: Callable[[str, str], None] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.trickle_interval = trickle_interval
        self.on_secret = on_secret
        self._mode: Mode = "pass"
        self._path: str | None = None
        self._seen: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0
        self.resets = 0

    # -- life cycle -------------------------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control (any thread) -----------------------------------------------------------------------------------------

    def set(self, mode: Mode, *, path: str | None = None) -> None:
        """Fault the next requests (those whose path contains ``path``, or all) with ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._call(self._switch(mode, path))

    @property
    def mode(self) -> Mode:
        return self._mode

    def seen(self) -> list[SeenRequest]:
        """Requests read from clients so far, oldest first."""
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def open_connections(self) -> int:
        return self._call(self._count())

    # -- internals ----------------------------------------------------------------------------------------------------

    def _call(self, coro: object) -> int:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        result: int = future.result(timeout=10)
        return result

    async def _count(self) -> int:
        return len(self._conns)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return 0

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _switch(self, mode: Mode, path: str | None) -> int:
        previous, self._mode, self._path = self._mode, mode, path
        if mode == "refuse" and previous != "refuse":
            await self._stop_listening()
            # Kept-alive connections would let a request through a "closed port": break them too.
            for conn in list(self._conns):
                conn.writer.transport.abort()
        elif mode != "refuse" and previous == "refuse":
            await self._listen()
        return 0

    async def _shutdown(self) -> int:
        await self._stop_listening()
        for conn in list(self._conns):
            conn.answered.set()
            conn.writer.transport.abort()
        # No cancel(): an aborted transport ends every handler on its own (and asyncio's stream callback logs a
        # cancelled handler as an error).
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        return 0

    def _mode_for(self, path: str) -> Mode:
        if self._path is not None and self._path not in path:
            return "pass"
        return self._mode

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        conn = _Conn(writer)
        self._conns.add(conn)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                method, path, headers = _parse_head(head)
                length = headers.get("content-length", "0")
                body = await reader.readexactly(int(length)) if length.isdigit() and int(length) else b""
                mode = self._mode_for(path)
                auth = headers.get("authorization", "")
                bearer = auth.partition(" ")[2].strip() or None
                with self._lock:
                    self._seen.append(
                        SeenRequest(method, path, headers.get("idempotency-key"),
                                    fingerprint(bearer) if bearer else None, mode, time.monotonic())
                    )
                if mode == "blackhole":
                    # Swallow whatever else comes until the client gives up.
                    while await reader.read(65536):
                        pass
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                    pump = asyncio.create_task(self._pump(upstream[0], conn))
                conn.mode = mode
                conn.answered.clear()
                upstream[1].write(head + body)
                await upstream[1].drain()
                if mode == "reset_after_send":
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(conn.answered.wait(), timeout=30)
                    _reset(writer)
                    self.resets += 1
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            self._conns.discard(conn)
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if upstream is not None:
                upstream[1].transport.abort()
            if conn.mode == "reset_after_send":
                writer.transport.abort()
            else:
                writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _pump(self, upstream: asyncio.StreamReader, conn: _Conn) -> None:
        """Relay the upstream's answers to the client, as the mode of the request they answer says."""
        writer = conn.writer
        carry = b""
        try:
            while chunk := await upstream.read(65536):
                if self.on_secret is not None:
                    window = carry + chunk
                    for name, value in _SECRET_FIELDS.findall(window):
                        self.on_secret(name.decode(), value.decode("utf-8", "replace"))
                    carry = window[-2048:]
                if conn.mode == "reset_after_send":
                    conn.answered.set()  # swallowed: the client only gets the RST
                    continue
                if conn.mode == "trickle":
                    for i in range(len(chunk)):
                        writer.write(chunk[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(self.trickle_interval)
                else:
                    writer.write(chunk)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # The upstream closed (or we were cancelled): the client's connection has nothing more to say.
            if not writer.is_closing():
                writer.close()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.rpartition(" ")[0] or rest
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends a RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
