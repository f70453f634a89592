"""Plain-socket attacks on an HTTP/1.1 server on loopback, and the probes that measure their effect.

Every function here is bounded in count, bytes and time, and refuses any target or source address outside
127.0.0.0/8. The attacker binds its sockets to a source address of its own (``ATTACKER``, 127.0.0.2) before
connecting, so a server can tell it apart from the legitimate probes, which come from ``PROBE`` (127.0.0.1).

Nothing here runs a thread: an attack opens its sockets and returns them (:class:`Held`); the caller probes the
server, then asks :meth:`Held.wait_closed` how many of them the server closed, and how soon. A socket is seen closed
by the server from its TCP state (``TCP_INFO``), not by reading, so an attacker that "never reads" still never reads.

Used by ``tests/adversarial`` (against ``orga-ai serve``) and ``benchmarks/http_layers.py`` (against other HTTP
layers).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import selectors
import socket
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ATTACKER",
    "PROBE",
    "Answer",
    "Flood",
    "Held",
    "TrickleResult",
    "check_loopback",
    "chunked_trickle",
    "connect",
    "connection_flood",
    "exchange",
    "get",
    "head_only_post",
    "open_held",
    "peer_closed",
    "pipelined",
    "slow_bodies",
    "slow_heads",
    "unread_pipeline",
]

ATTACKER = "127.0.0.2"
"""The attacker's source address."""
PROBE = "127.0.0.1"
"""The legitimate caller's source address."""

MAX_SOCKETS = 10_000
"""No attack opens more sockets than this at once."""
MAX_SECONDS = 120.0
"""No attack, probe or wait lasts longer than this."""
MAX_BYTES_PER_SOCKET = 64 * 1024 * 1024
"""No attack sends more than this on one socket."""

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Linux: let connect() pick the source port, so 127.0.0.2's sockets share the ephemeral range by destination.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_TCP_ESTABLISHED = 1
_TCP_SYN_SENT = 2


def check_loopback(*addresses: str) -> None:
    """ValueError unless every address is an IPv4 address in 127.0.0.0/8."""
    for address in addresses:
        if ipaddress.ip_address(address) not in _LOOPBACK:
            raise ValueError(f"{address} is not a loopback address: these attacks only target 127.0.0.0/8")


def _bounded(seconds: float) -> float:
    return max(0.0, min(float(seconds), MAX_SECONDS))


def _count(count: int) -> int:
    if not 0 <= count <= MAX_SOCKETS:
        raise ValueError(f"count must be between 0 and {MAX_SOCKETS}")
    return count


def connect(host: str, port: int, *, source: str, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to ``host:port`` from ``source`` (both loopback), blocking with ``timeout``."""
    check_loopback(host, source)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.settimeout(_bounded(timeout))
        sock.bind((source, 0))
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def abort(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the attacker's sockets leave no TIME_WAIT behind."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def peer_closed(sock: socket.socket) -> bool:
    """Whether the server has closed (FIN or reset) this connection, without reading from it."""
    if sock.fileno() < 0:
        return True
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return True
    return info[0] not in (_TCP_ESTABLISHED, _TCP_SYN_SENT)


@dataclass
class Held:
    """Attacker sockets still held, each with the monotonic time its last bytes were sent."""

    sent_at: dict[socket.socket, float] = field(default_factory=dict)
    failed: int = 0
    """Connections that could not be made or written (refused, reset, timed out)."""
    bytes_sent: int = 0

    def __len__(self) -> int:
        return len(self.sent_at)

    def wait_closed(self, limit: float, *, poll: float = 0.05) -> dict[socket.socket, float]:
        """Wait at most ``limit`` seconds for the server to close each socket; socket -> seconds after its last
        bytes. Sockets the server never closed are absent."""
        closed: dict[socket.socket, float] = {}
        deadline = time.monotonic() + _bounded(limit)
        while True:
            now = time.monotonic()
            for sock, sent in self.sent_at.items():
                if sock not in closed and peer_closed(sock):
                    closed[sock] = now - sent
            if len(closed) == len(self.sent_at) or now >= deadline:
                return closed
            time.sleep(poll)

    def open_count(self) -> int:
        return sum(not peer_closed(sock) for sock in self.sent_at)

    def close(self) -> None:
        for sock in self.sent_at:
            abort(sock)
        self.sent_at.clear()

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_held(
    host: str,
    port: int,
    *,
    source: str = ATTACKER,
    count: int,
    payload: bytes = b"",
    within: float = 30.0,
    connect_timeout: float = 2.0,
) -> Held:
    """Open up to ``count`` connections from ``source``, each sending ``payload`` once, for at most ``within``
    seconds; the caller owns (and closes) the returned sockets."""
    held = Held()
    deadline = time.monotonic() + _bounded(within)
    for _ in range(_count(count)):
        if time.monotonic() >= deadline:
            break
        try:
            sock = connect(host, port, source=source, timeout=connect_timeout)
        except OSError:
            held.failed += 1
            continue
        try:
            if payload:
                sock.sendall(payload)
                held.bytes_sent += len(payload)
        except OSError:
            held.failed += 1
        held.sent_at[sock] = time.monotonic()
    return held


def slow_heads(host: str, port: int, *, source: str = ATTACKER, count: int, within: float = 30.0) -> Held:
    """Slowloris: ``count`` connections, each with half a request head and nothing more."""
    half = b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Slow: a"
    return open_held(host, port, source=source, count=count, payload=half, within=within)


def head_only_post(
    host: str, path: str, *, content_length: int = 4000, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """A complete ``POST`` head announcing ``content_length`` body bytes, without the body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines.append(f"Content-Length: {content_length}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def slow_bodies(
    host: str,
    port: int,
    *,
    source: str = ATTACKER,
    count: int,
    path: str = "/api/orga-client-secrets",
    content_length: int = 4000,
    headers: Iterable[tuple[str, str]] = (),
    within: float = 30.0,
) -> Held:
    """``count`` connections, each with a complete ``POST`` head announcing a body that never comes."""
    head = head_only_post(host, path, content_length=content_length, headers=headers)
    return open_held(host, port, source=source, count=count, payload=head, within=within)


@dataclass
class Flood:
    """As many idle connections from one source address as the server lets it hold, re-opened on demand."""

    host: str
    port: int
    source: str
    count: int
    held: Held = field(default_factory=Held)
    opened: int = 0
    """Connections made so far, re-openings included."""

    def refill(self, within: float = 10.0) -> int:
        """Drop the connections the server closed and open new ones up to ``count``; how many are open now."""
        for sock in [s for s in self.held.sent_at if peer_closed(s)]:
            abort(sock)
            del self.held.sent_at[sock]
        wanted = _count(self.count) - len(self.held)
        more = open_held(self.host, self.port, source=self.source, count=max(0, wanted), within=within)
        self.opened += len(more)
        self.held.failed += more.failed
        self.held.sent_at.update(more.sent_at)
        return self.held.open_count()

    def close(self) -> None:
        self.held.close()


@contextlib.contextmanager
def connection_flood(host: str, port: int, *, source: str = ATTACKER, count: int) -> Iterator[Flood]:
    """A :class:`Flood`, filled once, closed at the end."""
    flood = Flood(host, port, source, _count(count))
    try:
        flood.refill()
        yield flood
    finally:
        flood.close()


@dataclass
class TrickleResult:
    closed_after: float | None
    """Seconds from the head until the server closed the connection; None if it was still open at the end."""
    status: int | None
    """The status of the answer the server sent, if any (408, say)."""
    chunks_sent: int


def chunked_trickle(
    host: str,
    port: int,
    *,
    source: str = ATTACKER,
    path: str = "/api/orga-client-secrets",
    headers: Iterable[tuple[str, str]] = (),
    interval: float = 1.0,
    limit: float = 10.0,
) -> TrickleResult:
    """A ``Transfer-Encoding: chunked`` POST whose body comes one byte-chunk every ``interval`` seconds, for at most
    ``limit`` seconds, until the server answers or closes."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", "Transfer-Encoding: chunked"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock = connect(host, port, source=source)
    status: int | None = None
    chunks = 0
    try:
        sock.sendall(head)
        started = time.monotonic()
        deadline = started + _bounded(limit)
        received = b""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                sock.sendall(b"1\r\n{\r\n")
                chunks += 1
            step_end = min(deadline, time.monotonic() + interval)
            while time.monotonic() < step_end:
                if peer_closed(sock):
                    status = status or _status_of(received + _drain(sock))
                    return TrickleResult(time.monotonic() - started, status, chunks)
                sock.settimeout(max(0.01, min(0.05, step_end - time.monotonic())))
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                if data == b"":
                    return TrickleResult(time.monotonic() - started, status or _status_of(received), chunks)
                received += data
                status = status or _status_of(received)
        return TrickleResult(None, status, chunks)
    finally:
        abort(sock)


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    out = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")


def _status_of(data: bytes) -> int | None:
    found = _STATUS.match(data)
    return int(found.group(1)) if found else None


@dataclass
class Answer:
    """What a probe got back."""

    status: int | None
    """The status of the first response (a 100 Continue included), None when none came (EOF, reset, timeout)."""
    seconds: float
    """From the first byte sent to the end of that response (or to giving up)."""
    head: bytes = b""
    body: bytes = b""
    closed: bool = False
    """Whether the server closed the connection after it (looked for only with ``until_close``)."""
    error: str = ""

    @property
    def ms(self) -> float:
        return self.seconds * 1000


def _read_response(sock: socket.socket, deadline: float, buffer: bytes = b"") -> tuple[bytes, bytes, bytes] | None:
    """One response from ``sock``: (head, body, bytes left over), or None at EOF or the deadline."""
    data = buffer
    while b"\r\n\r\n" not in data:
        chunk = _recv_until(sock, deadline)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = _status_of(head) or 0
    length = 0
    if not (100 <= status < 200 or status in (204, 304)):
        found = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        length = int(found.group(1)) if found else 0
    while len(rest) < length:
        chunk = _recv_until(sock, deadline)
        if not chunk:
            return None
        rest += chunk
    return head, rest[:length], rest[length:]


def _recv_until(sock: socket.socket, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        return b""
    sock.settimeout(left)
    try:
        return sock.recv(65536)
    except (TimeoutError, OSError):
        return b""


def exchange(
    host: str,
    port: int,
    raw: bytes,
    *,
    source: str = PROBE,
    timeout: float = 5.0,
    until_close: float = 0.0,
) -> Answer:
    """Send ``raw`` on a new connection and read one response, within ``timeout`` seconds; with ``until_close``,
    then wait that many seconds more for the server to close the connection."""
    started = time.monotonic()
    deadline = started + _bounded(timeout)
    try:
        sock = connect(host, port, source=source, timeout=timeout)
    except OSError as exc:
        return Answer(None, time.monotonic() - started, error=type(exc).__name__)
    try:
        try:
            sock.sendall(raw)
        except OSError as exc:
            return Answer(None, time.monotonic() - started, error=type(exc).__name__)
        got = _read_response(sock, deadline)
        elapsed = time.monotonic() - started
        if got is None:
            return Answer(None, elapsed, closed=peer_closed(sock), error="no answer")
        head, body, _ = got
        answer = Answer(_status_of(head), elapsed, head, body)
        if until_close > 0:
            close_deadline = time.monotonic() + _bounded(until_close)
            while time.monotonic() < close_deadline and not peer_closed(sock):
                time.sleep(0.02)
            answer.closed = peer_closed(sock)
        return answer
    finally:
        abort(sock)


def get(
    host: str,
    port: int,
    path: str = "/healthz",
    *,
    source: str = PROBE,
    headers: Iterable[tuple[str, str]] = (),
    host_header: str | None = None,
    timeout: float = 5.0,
) -> Answer:
    """One ``GET`` on a new connection (``Connection: close``)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host_header or host}", "Connection: close"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return exchange(host, port, raw, source=source, timeout=timeout)


def unread_pipeline(
    host: str,
    port: int,
    *,
    source: str = ATTACKER,
    connections: int = 1,
    bytes_each: int = 2 * 1024 * 1024,
    within: float = 5.0,
    path: str = "/healthz",
) -> Held:
    """``connections`` connections, each writing up to ``bytes_each`` bytes of pipelined ``GET`` requests and never
    reading a response; the writing stops after ``within`` seconds (a server that stops reading stalls it)."""
    if not 0 <= bytes_each <= MAX_BYTES_PER_SOCKET:
        raise ValueError(f"bytes_each must be between 0 and {MAX_BYTES_PER_SOCKET}")
    one = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    block = one * max(1, 65536 // len(one))
    held = open_held(host, port, source=source, count=connections, within=within)
    left = {sock: bytes_each for sock in held.sent_at}
    deadline = time.monotonic() + _bounded(within)
    with selectors.DefaultSelector() as selector:
        for sock in left:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_WRITE)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, min(0.1, deadline - time.monotonic()))):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    sent = sock.send(block[: left[sock]])
                except BlockingIOError:
                    continue
                except OSError:
                    selector.unregister(sock)
                    continue
                held.bytes_sent += sent
                held.sent_at[sock] = time.monotonic()
                left[sock] -= sent
                if left[sock] <= 0:
                    selector.unregister(sock)
    return held


def pipelined(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    source: str = PROBE,
    batch: int = 100,
    timeout: float = 60.0,
) -> list[int | None]:
    """Send ``requests`` on keep-alive connections, ``batch`` at a time pipelined, reading every response; their
    statuses in order (None for those unanswered: the connection closed, or ``timeout`` passed)."""
    statuses: list[int | None] = []
    deadline = time.monotonic() + _bounded(timeout)
    sock: socket.socket | None = None
    pending = b""
    try:
        for start in range(0, len(requests), max(1, batch)):
            part = requests[start : start + batch]
            if sock is None:
                sock = connect(host, port, source=source)
                pending = b""
            try:
                sock.sendall(b"".join(part))
            except OSError:
                statuses.extend([None] * len(part))
                abort(sock)
                sock = None
                continue
            for index in range(len(part)):
                got = _read_response(sock, deadline, pending)
                if got is None:
                    statuses.extend([None] * (len(part) - index))
                    abort(sock)
                    sock = None
                    break
                head, _, pending = got
                statuses.append(_status_of(head))
                if re.search(rb"(?im)^connection:\s*close", head):
                    statuses.extend([None] * (len(part) - index - 1))
                    abort(sock)
                    sock = None
                    break
            if time.monotonic() >= deadline:
                statuses.extend([None] * (len(requests) - len(statuses)))
                break
    finally:
        if sock is not None:
            abort(sock)
    return statuses
