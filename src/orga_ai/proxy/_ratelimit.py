"""Rate limits per principal plus an optional global ceiling: moving windows, in process or in Redis.

The moving-window strategy is used everywhere: with limit N per window W, a request passes when fewer than N requests
of the same key passed in the last W seconds (exactly N pass, whatever the concurrency). Storage is ``memory://``
(one process) or Redis shared by several replicas: ``redis://`` / ``rediss://`` (one server), ``redis+sentinel://``
(a primary watched by Sentinel) or ``redis+cluster://`` (a Redis Cluster); see :func:`storage_config`.

* Redis: the ``limits`` library, one atomic Lua script per hit, so replicas sharing one Redis enforce one
  limit together. Each hit costs two round trips per configured limit (the atomic hit, then the window's stats for
  the headers).
* ``memory://``: :class:`_MemoryWindows`, a dict of per-key arrays of timestamps, here: the same decisions and
  numbers as ``limits``' moving window in one step under a lock, with no task and no thread. Measured with limits
  5.8 (20,000 hits over 500 keys, window stats included): ~2-5 µs per hit here against ~8-12 µs for ``limits``'
  memory storages, and ~0.26 KB per tracked caller against ~1 KB; at most ``max_callers`` are tracked. Idle keys
  are swept lazily, at most once per window length.

Redis down: **fail closed**. A storage error or a storage call slower than ``storage_timeout`` raises
:class:`RateLimiterUnavailable`, which the route answers with 503 ``rate_limiter_unavailable`` and ``Retry-After``.
Minting without limits would turn a Redis outage into an open faucet; the socket timeouts keep every request
bounded (default 0.5 s to connect and to read).
"""

from __future__ import annotations

import bisect
import importlib.metadata
import logging
import math
import re
import sys
import threading
import time
import urllib.parse
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "DEFAULT_STORAGE_TIMEOUT",
    "RateLimitDecision",
    "RateLimiter",
    "RateLimiterUnavailable",
    "StorageConfig",
    "parse_rate",
    "storage_config",
]

logger = logging.getLogger("orga_ai.proxy")

DEFAULT_STORAGE_TIMEOUT = 0.5
"""Seconds allowed to connect to, and to hear back from, the rate-limit storage."""


class RateLimiterUnavailable(Exception):
    """The rate-limit storage could not be asked in time; the request is refused (fail closed)."""


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome of one hit: whether it passed, and the numbers for the ``RateLimit-*`` headers.

    ``scope`` is ``"principal"`` or ``"global"``: the limit these numbers describe (the one that refused, or the
    per-principal one when the request passed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    scope: str

    def headers(self) -> dict[str, str]:
        """``RateLimit-Limit/Remaining/Reset`` (IETF draft, seconds), plus ``Retry-After`` when refused."""
        reset = max(0, math.ceil(self.reset_after))
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, reset))
        return out


def parse_rate(value: str) -> Any:
    """Parse ``"10/minute"``, ``"100 per hour"``, ... into a ``limits`` item; ValueError when unreadable."""
    from limits import parse

    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"cannot read the rate limit {value!r}; write it like '10/minute' or '100/hour'") from None


# An explicit zero period ("10/0minute"): limits.parse quietly reads it as a period of 1.
_ZERO_PERIOD = re.compile(r"\s*[0-9]+\s*(?:/|\s*per\s*)\s*0+\s*[a-z]", re.IGNORECASE)


def _checked(value: str | None, name: str) -> Any:
    """A parsed limit, or None for None; every spelling that would silently mean "off" or "nobody" is refused."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value.strip().lower() in {"none", "off", "0", "false"}:
        raise ValueError(f"{name}={value!r} is not a limit: write one like '10/minute', or pass None to turn it off")
    item = parse_rate(value)
    if item.amount < 1 or _ZERO_PERIOD.match(value):
        raise ValueError(f"{name}={value!r} would refuse every request: the count and the period must be at least 1")
    return item


def _redis_options(timeout: float, *, cluster: bool = False) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py retries failed commands by default; each retry would add another socket timeout to the request.
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if not cluster:  # the cluster clients refuse these two (they manage node health themselves)
        options["retry_on_timeout"] = False
        options["health_check_interval"] = 0
    return options


_PLAIN_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})
_HA_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"})
# Query parameters the HA schemes take (``limits`` would ignore a query there); the plain schemes hand theirs to
# redis-py's URL parser, which knows the ssl_* ones itself.
_TLS_PARAMETERS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"})
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How to reach the rate-limit storage: the URI ``limits`` is given and the options for its Redis clients.

    ``repr`` shows neither the password nor the URI (which may hold one).
    """

    scheme: str
    uri: str = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel_options: dict[str, Any] = field(default_factory=dict, repr=False)
    timeout: float = DEFAULT_STORAGE_TIMEOUT

    @property
    def distributed(self) -> bool:
        return self.scheme != "memory"

    @property
    def mode(self) -> str:
        """``memory``, ``redis``, ``sentinel`` or ``cluster``."""
        if self.scheme == "memory":
            return "memory"
        return self.scheme.partition("+")[2] if self.scheme in _HA_SCHEMES else "redis"


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ValueError(f"cannot read the Redis password file {path!r}: {exc.strerror}") from None
    password = text.strip("\r\n")
    if not password:
        raise ValueError(f"the Redis password file {path!r} is empty")
    return password


def storage_config(uri: str, *, timeout: float = DEFAULT_STORAGE_TIMEOUT) -> StorageConfig:
    """Read a rate-limit storage URI; ValueError (naming the problem, never the password) when it is unusable.

    Accepted forms:

    * ``memory://``: this process only.
    * ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS), ``redis+unix:///path.sock``: one Redis server.
    * ``redis+sentinel://[:password@]h1:p1,h2:p2,h3:p3/<service>``: the primary that the Sentinels name for
      ``service``, found again after a failover. Reads and writes both go to the primary (a replica's copy of a
      window may lag). The password, if any, is used for the Sentinels as well as the Redis servers.
    * ``redis+cluster://[:password@]h1:p1,h2:p2``: a Redis Cluster, found from any of the listed nodes.

    ``rediss+sentinel://`` and ``rediss+cluster://`` are the same over TLS; their query may carry ``ssl_ca_certs``,
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` and ``ssl_check_hostname``. Every Redis form also takes
    ``?password_file=/path`` (a file holding only the password, e.g. a mounted secret) instead of a password
    in the URI, and ``?timeout=<seconds>`` instead of the ``timeout`` argument: it bounds connecting to, and each
    answer from, every server involved (raise it above the default 0.5 s only for a distant or busy Redis: a request
    waits up to about four times this long before it is refused).
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ValueError("rate-limit storage must be a URI such as memory:// or redis://host:6379/0")
    scheme = uri.partition("://")[0].lower()
    if scheme == "memory":
        return StorageConfig("memory", "memory://", timeout=timeout)
    if scheme not in _PLAIN_SCHEMES | _HA_SCHEMES:
        raise ValueError(
            f"rate-limit storage must be memory://, redis://, rediss://, redis+unix://, redis+sentinel:// or "
            f"redis+cluster://, not {scheme}://"
        )
    parts = urllib.parse.urlsplit(uri)
    try:
        port_ok = scheme not in {"redis", "rediss"} or parts.port is None or parts.port >= 0
    except ValueError:  # its text would show what stands where the port should: part of a password, say
        port_ok = False
    if not port_ok or (scheme != "redis+unix" and "@" in f"{parts.path}{parts.query}{parts.fragment}"):
        # A "/", "?" or "#" in an unescaped password ends the URI's authority early.
        raise ValueError(
            "the rate-limit storage URI cannot be read: write it as redis://user:password@host:port/db, with any of "
            "/ ? # @ : in the user or password percent-encoded"
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    password_file = [value for key, value in query if key == "password_file"]
    timeouts = [value for key, value in query if key == "timeout"]
    query = [(key, value) for key, value in query if key not in {"password_file", "timeout"}]
    if timeouts:
        try:
            timeout = float(timeouts[-1])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 30:
            raise ValueError(f"timeout={timeouts[-1]!r} in the rate-limit storage URI: give seconds, 0 < s <= 30")
    options: dict[str, Any] = {}
    if password_file:
        if parts.password:
            raise ValueError("give the Redis password in the URI or in password_file, not both")
        options["password"] = _read_password(password_file[-1])
    cluster = scheme.endswith("+cluster")
    options.update(_redis_options(timeout, cluster=cluster))
    if scheme in _PLAIN_SCHEMES:
        rest = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        return StorageConfig(scheme, rest, options, timeout=timeout)
    tls: dict[str, Any] = {"ssl": True} if scheme.startswith("rediss") else {}
    for key, value in query:
        if key not in _TLS_PARAMETERS:
            raise ValueError(f"unknown parameter {key!r} in the rate-limit storage URI")
        if not tls:
            raise ValueError(f"{key} needs TLS: write {scheme.replace('redis', 'rediss', 1)}://")
        tls[key] = value.strip().lower() in _TRUE if key == "ssl_check_hostname" else value
    options.update(tls)
    try:
        hosts = [host for host in parts.netloc.rpartition("@")[2].split(",") if host.strip()]
        if not hosts or any(urllib.parse.urlsplit("//" + host).port is None for host in hosts):
            raise ValueError
    except ValueError:
        raise ValueError(f"{scheme}:// needs host:port pairs separated by commas") from None
    service = parts.path.strip("/")
    if scheme.endswith("+sentinel") and not service:
        raise ValueError(f"{scheme}:// needs the service name as its path: {scheme}://h1:p1,h2:p2/<service>")
    # limits reads the hosts, the service and the userinfo from this URI; TLS and timeouts travel as options.
    bare = urllib.parse.urlunsplit(("redis+" + scheme.partition("+")[2], parts.netloc, parts.path, "", ""))
    sentinel_options: dict[str, Any] = {}
    if not cluster:
        sentinel_options = {key: options[key] for key in ("socket_timeout", "socket_connect_timeout", "retry")}
        sentinel_options.update(tls)
    return StorageConfig(scheme, bare, options, sentinel_options, timeout=timeout)


def _timeout(delay: float) -> Any:
    # asyncio is imported here, not at the top: the sync path (functions, Flask) never needs it.
    import asyncio
    import contextlib

    if sys.version_info >= (3, 11):
        return asyncio.timeout(delay)
    # 3.10 has no asyncio.timeout: run the body as is and let the Redis socket timeouts bound it.
    return contextlib.nullcontext()  # pragma: no cover - Python 3.10


DEFAULT_MAX_CALLERS = 100_000
"""Callers (principal keys) one ``memory://`` limit tracks per process; beyond it the one idle longest is forgotten."""


class _MemoryWindows:
    """Moving windows in process memory: per key, the monotonic times of the hits inside the last window.

    A key holds at most ``amount`` timestamps, and a key idle for a whole window is dropped by
    the sweep that runs at most once per window length. At most ``max_keys`` keys are tracked: a new key beyond that
    forgets the key idle longest (its window starts over; a global ceiling still holds), so memory stays bounded
    whatever the number of callers (about 0.3 KB a key). Safe across threads (one lock, never held across I/O).
    """

    __slots__ = ("_amount", "_clock", "_expiry", "_lock", "_max_keys", "_next_sweep", "_windows", "evicted")

    def __init__(
        self,
        amount: int,
        expiry: float,
        lock: threading.Lock,
        clock: Callable[[], float],
        max_keys: int = DEFAULT_MAX_CALLERS,
    ) -> None:
        self._amount = amount
        self._expiry = expiry
        self._lock = lock
        self._clock = clock
        self._max_keys = max_keys
        self._windows: OrderedDict[str, array[float]] = OrderedDict()  # least recently hit first
        self._next_sweep = clock() + expiry
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, key: str) -> tuple[bool, int, float]:
        """Count one hit of ``key`` if the window has room: (allowed, remaining, seconds until the oldest expires).

        The same numbers ``limits``' ``hit`` then ``get_window_stats`` give on its moving window.
        """
        amount, expiry = self._amount, self._expiry
        with self._lock:
            now = self._clock()
            if now >= self._next_sweep:
                self._sweep(now)
            windows = self._windows
            window = windows.get(key)
            if window is None:
                if len(windows) >= self._max_keys:
                    windows.popitem(last=False)
                    self.evicted += 1
                window = windows[key] = array("d")  # 8 bytes a hit: a deque costs ~0.7 KB per key before any
            else:
                windows.move_to_end(key)
                _trim(window, now - expiry)
            allowed = len(window) < amount
            if allowed:
                window.append(now)
            oldest = window[0] if window else now
            return allowed, amount - len(window), oldest + expiry - now

    def peek(self, key: str) -> tuple[bool, int, float]:
        """:meth:`hit`'s answer without counting a hit or tracking ``key``: whether the window has room now."""
        with self._lock:
            now = self._clock()
            window = self._windows.get(key)
            if window is None:
                return True, self._amount, self._expiry
            _trim(window, now - self._expiry)
            oldest = window[0] if window else now
            return len(window) < self._amount, self._amount - len(window), oldest + self._expiry - now

    def _sweep(self, now: float) -> None:
        floor = now - self._expiry
        stale = [key for key, window in self._windows.items() if not window or window[-1] <= floor]
        for key in stale:
            del self._windows[key]
        self._next_sweep = now + self._expiry


def _trim(window: array[float], floor: float) -> None:
    """Drop the hits of ``window`` (oldest first) at or before ``floor``."""
    if window and window[0] <= floor:
        expired = bisect.bisect_right(window, floor)
        del window[:expired]


class RateLimiter:
    """Per-principal limit plus optional global ceiling, usable from async code (``hit``) and sync code
    (``hit_sync``); each side builds its own ``limits`` storage on first use.

    Args:
        per_principal: e.g. ``"10/minute"``; None disables the per-principal limit.
        global_limit: e.g. ``"600/minute"`` across every caller; None disables it.
        storage_uri: ``memory://``, ``redis://host:port/db`` (``rediss://`` for TLS), ``redis+sentinel://...`` or
            ``redis+cluster://...``: every accepted form is listed in :func:`storage_config`.
        key_prefix: namespace of the keys in the storage (share it between replicas of one deployment).
        storage_timeout: seconds to connect to and read from Redis before failing closed.
        clock: the monotonic clock of the ``memory://`` windows (tests pass one they move by hand).
        max_callers: callers a ``memory://`` limit tracks at most; beyond, the one idle longest is forgotten (its
            window starts over) so memory stays bounded (docs/security.md).
    """

    def __init__(
        self,
        per_principal: str | None = "10/minute",
        global_limit: str | None = None,
        *,
        storage_uri: str = "memory://",
        key_prefix: str = "orga-proxy",
        storage_timeout: float = DEFAULT_STORAGE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = DEFAULT_MAX_CALLERS,
    ) -> None:
        self._storage = storage_config(storage_uri, timeout=storage_timeout)
        self._per = _checked(per_principal, "rate_limit")
        self._global = _checked(global_limit, "global_rate_limit")
        self.storage_uri = storage_uri
        self.problem: str | None = None
        """Why the storage last failed (its place and the reason, never a password), or None once it answered."""
        self.distributed = self._storage.distributed
        self.key_prefix = key_prefix
        self.storage_timeout = self._storage.timeout
        self._async_storage: Any = None
        self._async_limiter: Any = None
        self._sync_storage: Any = None
        self._sync_limiter: Any = None
        self._cluster_ready = False
        self._cluster_lock: asyncio.Lock | None = None
        # memory:// only: (limit item, windows, scope) for the principal limit then the global one, shared by the
        # async and the sync side.
        self._memory: tuple[tuple[Any, _MemoryWindows, str], ...] = ()
        if not self.distributed:
            lock = threading.Lock()
            self._memory = tuple(
                (item, _MemoryWindows(int(item.amount), float(item.get_expiry()), lock, clock, max_callers), scope)
                for item, scope in ((self._per, "principal"), (self._global, "global"))
                if item is not None
            )

    @property
    def enabled(self) -> bool:
        return self._per is not None or self._global is not None

    @property
    def where(self) -> str:
        """The storage's scheme and hosts (or socket path), never its password: for log lines and ``/readyz``."""
        parts = urllib.parse.urlsplit(self.storage_uri)
        place = parts.path if self._storage.scheme == "redis+unix" else parts.netloc.rpartition("@")[2]
        return f"{self._storage.scheme}://{place}"

    def _unavailable(self, exc: BaseException) -> RateLimiterUnavailable:
        """The refusal for a storage failure, naming the storage and the reason (its password masked if it shows);
        also kept as :attr:`problem` until the storage answers again."""
        cause = getattr(exc, "storage_error", None) or exc  # limits wraps the Redis client's error
        text = " ".join(str(cause).split())[:200]
        for secret in (self._storage.options.get("password"), urllib.parse.urlsplit(self.storage_uri).password):
            if secret:
                text = text.replace(str(secret), "***")
        reason = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        self.problem = f"{self.where}: {reason}"
        return RateLimiterUnavailable(self.problem)

    def check_sync(self) -> str | None:
        """PING the storage now: None when it answers (or there is none to ask), else why not, in one line naming
        the storage (never its password). For the start-up check."""
        if not self.enabled or not self.distributed:
            return None
        try:
            self._sync()
            _client(self._sync_storage, "storage").ping()
        except Exception as exc:  # noqa: BLE001 - every failure is the reason the storage is not usable
            return str(self._unavailable(exc))
        self.problem = None
        return None

    def describe(self) -> str:
        """The limits in words, for the start-up log (the storage URI is reduced to its scheme: it may hold a
        password)."""
        per = str(self._per) if self._per else "none"
        ceiling = str(self._global) if self._global else "none"
        return f"per principal {per}, global {ceiling}, storage {self._storage.scheme}://"

    # -- storage ---------------------------------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        config = self._storage
        options: dict[str, Any] = {"wrap_exceptions": True, "key_prefix": self.key_prefix, **config.options}
        if config.mode == "sentinel":
            # Both the hit and the window's stats from the primary: a replica's copy may lag behind the hit.
            options["use_replicas"] = False
            options["sentinel_kwargs"] = dict(config.sentinel_options)
        return options

    def _async(self) -> Any:
        if self._async_limiter is None:
            from limits.aio.strategies import MovingWindowRateLimiter
            from limits.storage import storage_from_string

            self._async_storage = storage_from_string(
                "async+" + self._storage.uri, implementation="redispy", **self._options()
            )
            self._async_limiter = MovingWindowRateLimiter(self._async_storage)
        return self._async_limiter

    def _sync(self) -> Any:
        if self._sync_limiter is None:
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter

            self._sync_storage = storage_from_string(self._storage.uri, **self._options())
            self._sync_limiter = MovingWindowRateLimiter(self._sync_storage)
        return self._sync_limiter

    # -- decisions (shared) ----------------------------------------------------------------------------------------

    def _items(self, principal_key: str) -> list[tuple[Any, tuple[str, ...], str]]:
        items: list[tuple[Any, tuple[str, ...], str]] = []
        if self._per is not None:
            items.append((self._per, ("principal", principal_key), "principal"))
        if self._global is not None:
            items.append((self._global, ("global",), "global"))
        return items

    @staticmethod
    def _decision(item: Any, allowed: bool, stats: Any, scope: str) -> RateLimitDecision:
        reset_time, remaining = cast("tuple[float, int]", tuple(stats))
        return RateLimitDecision(allowed, int(item.amount), int(remaining), reset_time - time.time(), scope)

    # -- async -----------------------------------------------------------------------------------------------------

    async def hit(self, principal_key: str) -> RateLimitDecision | None:
        """Count one request of ``principal_key``; None when no limit is configured.

        Raises:
            RateLimiterUnavailable: the storage failed or did not answer within ``storage_timeout`` (fail closed).
        """
        if not self.enabled:
            return None
        if not self.distributed:
            return self._hit_memory(principal_key)
        import asyncio

        try:
            # The socket timeouts bound each Redis command; this bounds the whole sequence as a backstop.
            async with _timeout(self.storage_timeout * 4 + 0.1):
                return await self._hit_async(principal_key)
        except RateLimiterUnavailable as exc:  # this limits keeps a client elsewhere (_client)
            raise self._unavailable(exc) from None
        except (asyncio.TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from None
        except Exception as exc:
            if _is_storage_error(exc):
                raise self._unavailable(exc) from None
            raise

    def _hit_memory(self, principal_key: str) -> RateLimitDecision:
        memory = self._memory
        if len(memory) == 2:
            # A full ceiling refuses before the caller's own window is touched: a refused request is tracked nowhere.
            item, windows, scope = memory[1]
            room, remaining, reset_after = windows.peek("")
            if not room:
                return RateLimitDecision(False, int(item.amount), remaining, reset_after, scope)
        first: RateLimitDecision | None = None
        for item, windows, scope in self._memory:
            allowed, remaining, reset_after = windows.hit(principal_key if scope == "principal" else "")
            decision = RateLimitDecision(allowed, int(item.amount), remaining, reset_after, scope)
            if not allowed:
                return decision
            first = first or decision
        assert first is not None
        return first

    async def _async_ready(self) -> Any:
        import asyncio

        limiter = self._async()
        if self._storage.mode == "cluster" and not self._cluster_ready:
            # redis-py's async cluster client, first used by many coroutines at once, initialises once per coroutine
            # and some of them fail on a half-built node table; one initialisation, before the rest, avoids it.
            if self._cluster_lock is None:
                self._cluster_lock = asyncio.Lock()
            async with self._cluster_lock:
                if not self._cluster_ready:
                    await _client(self._async_storage, "bridge", "storage").initialize()
                    self._cluster_ready = True
        return limiter

    async def _hit_async(self, principal_key: str) -> RateLimitDecision:
        limiter = await self._async_ready()
        first: RateLimitDecision | None = None
        for item, ids, scope in self._items(principal_key):
            allowed = await limiter.hit(item, *ids)
            decision = self._decision(item, allowed, await limiter.get_window_stats(item, *ids), scope)
            if not allowed:
                return decision
            first = first or decision
        assert first is not None
        return first

    async def check(self) -> bool:
        """Whether the storage answers (for ``/readyz``)."""
        import asyncio

        if not self.enabled or not self.distributed:
            return True
        try:
            limiter = await asyncio.wait_for(self._async_ready(), self.storage_timeout * 2)
            client = getattr(getattr(limiter.storage, "bridge", None), "storage", None)
            if client is None or not hasattr(client, "ping"):
                return bool(await asyncio.wait_for(limiter.storage.check(), self.storage_timeout * 2))
            await asyncio.wait_for(client.ping(), self.storage_timeout * 2)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; /readyz shows the reason
            self._unavailable(exc)
            return False
        self.problem = None
        return True

    async def aclose(self) -> None:
        """Release the async storage's connections."""
        storage, self._async_storage, self._async_limiter = self._async_storage, None, None
        self._cluster_ready = False
        if storage is None:
            return
        # limits' Redis storages start no task of their own (tests/proxy/test_limits_contract.py): clients only.
        bridge = ("bridge", "storage"), ("bridge", "storage_replica"), ("bridge", "sentinel")
        for client in self._clients(storage, *bridge):
            await client.aclose()

    # -- sync ------------------------------------------------------------------------------------------------------

    def hit_sync(self, principal_key: str) -> RateLimitDecision | None:
        """:meth:`hit` for synchronous code (Flask, Django-sync)."""
        if not self.enabled:
            return None
        if not self.distributed:
            return self._hit_memory(principal_key)
        try:
            limiter = self._sync()
            first: RateLimitDecision | None = None
            for item, ids, scope in self._items(principal_key):
                allowed = limiter.hit(item, *ids)
                decision = self._decision(item, allowed, limiter.get_window_stats(item, *ids), scope)
                if not allowed:
                    return decision
                first = first or decision
            return first
        except (TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from None
        except Exception as exc:
            if _is_storage_error(exc):
                raise self._unavailable(exc) from None
            raise

    def close(self) -> None:
        """Release the sync storage's connections."""
        storage, self._sync_storage, self._sync_limiter = self._sync_storage, None, None
        if storage is None or not self.distributed:
            return
        for client in self._clients(storage, ("storage",), ("storage_slave",), ("sentinel",)):
            client.close()

    def _clients(self, storage: Any, primary: tuple[str, ...], *sentinel_mode: tuple[str, ...]) -> list[Any]:
        """The Redis clients inside a ``limits`` storage, to close: the primary's, and with Sentinel the replica's
        and the sentinels' (``paths``, each a Sentinel, end with "sentinel"). One this limits keeps elsewhere is
        logged: its connections then stay open until the process exits."""
        found: list[Any] = []
        for path in (primary, *sentinel_mode) if self._storage.mode == "sentinel" else (primary,):
            try:
                client = _client(storage, *path)
                found += list(_client(client, "sentinels")) if path[-1] == "sentinel" else [client]
            except RateLimiterUnavailable as exc:
                logger.warning("orga proxy: %s; its connections stay open until exit", exc)
        return found


# The clients limits' Redis storages keep (limits 5.1 to 5.x: pyproject pins >=5.1,<6): the
# limiter closes them, PINGs them and initialises the async cluster client once before concurrent use. Each name is
# checked against the installed limits by tests/proxy/test_limits_contract.py.
def _client(storage: Any, *path: str) -> Any:
    """``storage.<path>``: a Redis client inside a ``limits`` storage. RateLimiterUnavailable (answered 503, fail
    closed) when this limits keeps it elsewhere, rather than an AttributeError answered 500."""
    found = storage
    for name in path:
        found = getattr(found, name, None)
        if found is None:
            raise RateLimiterUnavailable(
                f"limits {_limits_version()} keeps no {'.'.join(path)} on its {type(storage).__name__}; "
                "this orga-ai works with limits 5.1 to 5.x"
            )
    return found


def _limits_version() -> str:
    try:
        return importlib.metadata.version("limits")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - limits is part of the proxy extra
        return "(unknown version)"


def _is_storage_error(exc: BaseException) -> bool:
    from limits.errors import StorageError

    if isinstance(exc, StorageError):
        return True
    try:
        from redis.exceptions import RedisClusterException, RedisError
    except ImportError:  # pragma: no cover - redis is part of the proxy extra
        return False
    # The cluster client's own errors (no node reachable, slots uncovered) do not derive from RedisError.
    return isinstance(exc, (RedisError, RedisClusterException))
