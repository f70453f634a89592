"""What the reliability suite measures with: the canary registry and scanner, the scenario table, small helpers.

Not fixtures (those live in conftest.py): plain objects the fixtures and the tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# -- the known fake secrets of the canary run -------------------------------------------------------------------

CANARY_API_KEY = "sk_orga_ai_canary_Q7vX9LmPz4RtW8sYb3NcKd2H"
CANARY_TURN_SECRET = "canary-turn-static-auth-secret-Zr8Uq3Wm"
CANARY_JWT_SECRET = "canary-orga-jwt-hs256-secret-Hn5Vb2Xc-0123456789abcdef"
CANARY_SHARED_SECRET = "canary-proxy-shared-secret-Jm4Tw9Qe-5566778899"
CANARY_APP_JWT_SECRET = "canary-app-jwt-secret-Pk7Ld3Sx-0123456789abcdef0123"

LOGGERS = ("", "orga_ai", "httpx", "httpcore", "aiohttp")
"""The root logger and the loggers set to DEBUG for the whole run."""

_PREFIX = 12
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-+/=:.]{12,}")


def _needles(value: str) -> list[str]:
    """The whole value and its first 12 characters.

    Two shapes have a public head shared by every value, so the 12 characters scanned start after it: a JWT's first
    12 characters are its header (``eyJhbGciOiJI`` is ``{"alg":"HS256"``), so its signature's are scanned; a TURN
    username starts with a unix time (``1767225600:``), so the 12 characters of its id after the colon are.
    """
    parts = value.split(".")
    if len(parts) == 3 and value.startswith("eyJ") and len(parts[2]) >= _PREFIX:
        return [value, parts[2][:_PREFIX]]
    stamp, colon, rest = value.partition(":")
    if colon and stamp.isdigit() and len(rest) >= _PREFIX:
        return [value, rest[:_PREFIX]]
    return [value, value[:_PREFIX]] if len(value) > _PREFIX else [value]


@dataclass(slots=True)
class Hit:
    label: str
    source: str
    needle_kind: str  # "whole" or "prefix"


class Canary:
    """Known secrets, and a scanner that looks for each of them (whole, and its first 12 characters) in text.

    Scanning is proportional to the text, not to the number of secrets: every run of token characters at least
    12 long is cut into 12-character windows that are looked up in a set of prefixes, and a window that matches is
    then checked for the whole value.
    """

    def __init__(self) -> None:
        # 12-char needle -> (label, length of the whole value, offset of the needle in it, hash of the whole value):
        # thousands of tokens are registered under load, and holding them whole would weigh on the RSS figures.
        self._prefixes: dict[str, tuple[str, int, int, int]] = {}
        self._short: dict[str, str] = {}  # values of 12 characters or fewer -> label
        self._lock = threading.Lock()
        self.scanned_chars = 0
        self.scanned_texts = 0
        self.hits: list[Hit] = []
        self.by_test: dict[str, int] = {}
        self.sources: dict[str, int] = {}

    def add(self, value: str | None, label: str) -> None:
        if not value:
            return
        with self._lock:
            needles = _needles(value)
            if len(needles) == 1:
                self._short[value] = label
                return
            self._prefixes.setdefault(needles[1], (label, len(value), value.index(needles[1]), hash(value)))

    def add_session_config(self, payload: Any, label: str = "token") -> None:
        """Register the token and TURN credentials of a SessionConfig or of a proxy answer's JSON."""
        token = getattr(payload, "ephemeral_token", None)
        servers: Iterable[Any] = getattr(payload, "ice_servers", ()) or ()
        if isinstance(payload, dict):
            token = payload.get("ephemeralToken")
            servers = payload.get("iceServers") or ()
        self.add(token if isinstance(token, str) else None, label)
        for server in servers:
            get = server.get if isinstance(server, dict) else (lambda name, s=server: getattr(s, name, None))
            self.add(get("credential"), "turn credential")
            username = get("username")
            self.add(username if isinstance(username, str) else None, "turn username")

    def on_secret(self, name: str, value: str) -> None:
        """Sink for FaultProxy.on_secret: a token or TURN credential seen on the wire."""
        labels = {"username": "turn username", "credential": "turn credential"}
        self.add(value, labels.get(name, "token"))

    @property
    def size(self) -> int:
        return len(self._prefixes) + len(self._short)

    def find(self, text: str) -> list[tuple[str, str]]:
        """(label, "whole"|"prefix") for every secret found in ``text``."""
        found: list[tuple[str, str]] = []
        prefixes, short = self._prefixes, self._short
        for match in _TOKEN_RUN.finditer(text):
            run = match.group()
            for i in range(len(run) - _PREFIX + 1):
                entry = prefixes.get(run[i : i + _PREFIX])
                if entry is not None:
                    label, length, offset, digest = entry
                    start = match.start() + i - offset
                    whole = start >= 0 and hash(text[start : start + length]) == digest
                    found.append((label, "whole" if whole else "prefix"))
        if short:
            for value, label in list(short.items()):
                if value in text:
                    found.append((label, "whole"))
        return found

    def scan(self, text: str, source: str, test: str | None = None) -> int:
        if not text:
            return 0
        self.scanned_chars += len(text)
        self.scanned_texts += 1
        self.sources[source] = self.sources.get(source, 0) + 1
        found = self.find(text)
        for label, kind in found:
            self.hits.append(Hit(label, source, kind))
        if test is not None and found:
            self.by_test[test] = self.by_test.get(test, 0) + len(found)
        return len(found)


class CanaryLogHandler(logging.Handler):
    """Formats every record (message, and traceback when there is one) and hands them to ``sink`` in batches.

    Batches keep memory flat under load: a run of 10,000 requests logs hundreds of thousands of records.
    """

    def __init__(self, sink: Callable[[list[str]], None], batch: int = 2000) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self._sink = sink
        self._batch = batch
        self._buffer: list[str] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            self._buffer.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot format is not ours to fail on
            self.handleError(record)
            return
        self.records += 1
        if len(self._buffer) >= self._batch:
            self._flush_locked()

    def _flush_locked(self) -> None:
        buffer, self._buffer = self._buffer, []
        self._sink(buffer)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_locked()


# -- the scenario table ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    scenario: str
    requests: int
    outcome: str
    worst_s: float | None
    deadline_s: float | None
    upstream: str
    test: str = ""
    secrets: int | None = None
    ok: bool = True
    note: str = ""

    def latency_cell(self) -> str:
        if self.worst_s is None:
            return "n/a"
        worst = f"{self.worst_s * 1000:.0f} ms"
        if self.deadline_s is None:
            return worst
        return f"{worst} / {self.deadline_s * 1000:.0f} ms"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    current_test: str = ""

    def add(
        self,
        scenario: str,
        *,
        requests: int,
        outcome: str,
        worst_s: float | None,
        deadline_s: float | None,
        upstream: str | int,
        note: str = "",
    ) -> Row:
        row = Row(scenario, requests, outcome, worst_s, deadline_s, str(upstream), self.current_test, note=note)
        self.rows.append(row)
        return row

    def markdown(self, canary: Canary) -> str:
        head = ["scenario", "requests", "outcome", "worst latency / deadline", "upstream attempts", "secrets found"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            secrets = "?" if r.secrets is None else str(r.secrets)
            lines.append(
                f"| {r.scenario} | {r.requests} | {r.outcome} | {r.latency_cell()} | {r.upstream} | {secrets} |"
            )
        lines.append("")
        lines.append(
            f"Canary scan: {canary.scanned_texts} texts, {canary.scanned_chars:,} characters "
            f"(logs at DEBUG, stderr, exception texts, error bodies, metrics) against {canary.size} known secrets: "
            f"**{len(canary.hits)} hits**."
        )
        return "\n".join(lines)


# -- helpers ----------------------------------------------------------------------------------------------------------


async def resolve(value: T | Awaitable[T]) -> T:
    """Await what the async client returns; pass through what the sync one returns."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(slots=True)
class Timed:
    elapsed: float
    result: Any = None
    error: BaseException | None = None

    @property
    def outcome(self) -> str:
        if self.error is None:
            return "ok"
        return type(self.error).__name__


def _failed(started: float, exc: Exception, canary: Canary | None, source: str) -> Timed:
    elapsed = time.monotonic() - started
    if canary is not None:
        canary.scan("".join(traceback.format_exception(exc)) + repr(exc), source)
    return Timed(elapsed, error=exc)


async def timed(call: Callable[[], Any], canary: Canary | None = None, source: str = "exception") -> Timed:
    """Run one client call (sync or async), catching any exception; its texts go to the canary scanner."""
    started = time.monotonic()
    try:
        result = await resolve(call())
    except Exception as exc:  # noqa: BLE001 - the outcome is what we measure
        return _failed(started, exc, canary, source)
    return Timed(time.monotonic() - started, result=result)


def timed_sync(call: Callable[[], Any], canary: Canary | None = None, source: str = "exception") -> Timed:
    """:func:`timed` for a blocking call, in the calling thread (no event loop)."""
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - the outcome is what we measure
        return _failed(started, exc, canary, source)
    return Timed(time.monotonic() - started, result=result)


def open_fds() -> int:
    """Every open file descriptor of this process (files, pipes, both ends of in-process loopback connections)."""
    return len(os.listdir("/proc/self/fd"))


_LISTEN = "0A"


def _socket_inodes() -> dict[int, int]:
    """Socket inode -> file descriptor, for this process's open sockets."""
    inodes: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (listdir's own fd, or another thread's)
            continue
        if target.startswith("socket:["):
            inodes[int(target[8:-1])] = int(name)
    return inodes


def _tcp_table() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every TCP socket of the host (IPv4 and IPv6)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                rows.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state, inode))
    return rows


@dataclass(frozen=True)
class FdCensus:
    """This process's file descriptors, split by who is responsible for closing them.

    The emulator, the fault proxy and the proxies under test run in threads of the test process, so ``/proc/self/fd``
    holds both ends of every loopback connection. A client closes its end at ``close()``; the server's end (then in
    CLOSE_WAIT) is closed later, on the server's own thread. Counting both made the leak tests flaky; a census
    counts what the client owns.
    """

    own: int
    """Every descriptor except the server-side ends of connections to this process's own listeners."""
    clients_to: dict[int, int]
    """Listener port -> client-side sockets of this process still connected to it."""


def fd_census(server_ports: Iterable[int] = ()) -> FdCensus:
    """Count this process's descriptors, leaving out the accepted ends of its own servers.

    ``server_ports`` adds ports of in-process servers that may have stopped listening already (their accepted ends
    are still theirs to close); every port this process listens on is included anyway.
    """
    inodes = _socket_inodes()
    table = [row for row in _tcp_table() if row[3] in inodes]
    ports = {local for local, _, state, _ in table if state == _LISTEN} | set(server_ports)
    accepted = {inode for local, _, state, inode in table if state != _LISTEN and local in ports}
    clients: dict[int, int] = {}
    for local, remote, state, _ in table:
        if state != _LISTEN and remote in ports and local not in ports:
            clients[remote] = clients.get(remote, 0) + 1
    return FdCensus(own=len(os.listdir("/proc/self/fd")) - len(accepted), clients_to=clients)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "artifacts"
    path.mkdir(exist_ok=True)
    return path


# -- the proxy under test -------------------------------------------------------------------------------------------

APP_AUDIENCE = "orga-reliability"
APP_ISSUER = "https://id.reliability.test/"
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
}


def app_jwt(sub: str = "user-1", *, secret: str = CANARY_APP_JWT_SECRET, alg: str = "HS256", **claims: Any) -> str:
    """A JWT as the app in front of the proxy would issue it (valid by default; override any claim)."""
    import jwt

    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "aud": APP_AUDIENCE, "iss": APP_ISSUER, "iat": now, "exp": now + 300}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=alg)


def security_header_problems(headers: Any) -> list[str]:
    """What is missing from a proxy response's mandatory headers (an empty list when all is well)."""

    def get(name: str) -> str:
        value = headers.get(name)
        if isinstance(value, list):  # schemathesis: every header as a list of values
            value = ", ".join(value)
        return str(value or "")

    problems = [f"{k}: {get(k)!r}" for k, v in SECURITY_HEADERS.items() if get(k) != v]
    if not get("content-type").startswith("application/json"):
        problems.append(f"content-type: {get('content-type')!r}")
    return problems


