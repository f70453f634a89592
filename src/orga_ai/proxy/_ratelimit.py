"""Rate limits per principal plus an optional global ceiling: moving windows, in process or in Redis.

The moving-window strategy is used everywhere: with limit N per window W, a request passes when fewer than N requests
of the same key passed in the last W seconds (exactly N pass, whatever the concurrency). Storage is ``memory://``
(one process) or Redis shared by several replicas: ``redis://`` / ``rediss://`` (one server), ``redis+sentinel://``
(a primary watched by Sentinel) or ``redis+cluster://`` (a Redis Cluster); see :func:`storage_config`.

* Redis: the ``limits`` library, one atomic Lua script per hit, so replicas sharing one Redis enforce one
  limit together. Each hit costs two round trips per configured limit (the atomic hit, then the window's stats for
  the headers).
* ``memory://``: :class:`MemoryWindows`, a dict of per-key arrays of timestamps, here: the same decisions and
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

import functools
import logging
import math
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._memory import DEFAULT_MAX_CALLERS, MemoryWindows
from ._policy import DEFAULT_RATE_LIMIT
from ._storage import DEFAULT_STORAGE_TIMEOUT, MEMORY_STORAGE, StorageConfig, storage_config

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "DEFAULT_STORAGE_TIMEOUT",
    "Rate",
    "RateLimitDecision",
    "RateLimiter",
    "RateLimiterUnavailable",
    "StorageConfig",
    "parse_rate",
    "storage_config",
]

logger = logging.getLogger("orga_ai.proxy")


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


# limits' notation of a rate (``limits.util.EXPR`` and ``SINGLE_EXPR``, limits 5.x), read here rather than by
# ``limits.parse``: importing limits imports every storage it has and their dependencies (some 30 ms of serve's
# start-up, measured with -X importtime), and memory://, the default, needs none of them. A Redis storage is given
# limits' own parse of the same text (Rate.item). tests/proxy/test_ratelimit_memory.py holds this reading to
# limits.parse's, refusals included.
_ONE_RATE = r"\s*([0-9]+)\s*(?:/|\s*per\s*)\s*([0-9]+)?\s*([a-z]+)\s*"


@functools.cache
def _rate_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    # Compiled on first use (~1.5 ms): a function entry point without a rate limit never reads one.
    return re.compile(rf"^{_ONE_RATE}(?::?[,;|]{_ONE_RATE})*$", re.IGNORECASE), re.compile(_ONE_RATE, re.IGNORECASE)

_GRANULARITY_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 60 * 60,
    "day": 60 * 60 * 24,
    "month": 60 * 60 * 24 * 30,
    "year": 60 * 60 * 24 * 30 * 12,
}


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit as ``limits`` reads it: ``amount`` per ``multiples`` ``granularity`` (``"second"``...``"year"``)."""

    amount: int
    multiples: int
    granularity: str
    text: str
    """What it was read from."""

    def get_expiry(self) -> int:
        """The window in seconds (the name of the ``limits`` item's method)."""
        return _GRANULARITY_SECONDS[self.granularity] * self.multiples

    def __str__(self) -> str:
        return f"{self.amount} per {self.multiples} {self.granularity}"

    def item(self) -> Any:
        """This rate as the ``limits`` item its Redis strategies take."""
        from limits import parse

        return parse(self.text)


def parse_rate(value: str) -> Rate:
    """Parse ``"10/minute"``, ``"100 per hour"``, ... as ``limits.parse`` does (with several, ``"5/second;100/hour"``,
    the first); ValueError when unreadable."""
    rates, one = _rate_patterns()
    match = one.match(value) if isinstance(value, str) and rates.match(value) else None
    granularity = match[3].lower() if match else ""
    granularity = granularity[:-1] if granularity.endswith("s") else granularity
    if match is None or granularity not in _GRANULARITY_SECONDS:
        raise ValueError(f"cannot read the rate limit {value!r}; write it like '10/minute' or '100/hour'")
    return Rate(int(match[1]), int(match[2] or 0) or 1, granularity, value)


# An explicit zero period ("10/0minute"): limits.parse quietly reads it as a period of 1.
_ZERO_PERIOD = re.compile(r"\s*[0-9]+\s*(?:/|\s*per\s*)\s*0+\s*[a-z]", re.IGNORECASE)


def _checked(value: str | None, name: str) -> Rate | None:
    """A parsed limit, or None for None; every spelling that would silently mean "off" or "nobody" is refused."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value.strip().lower() in {"none", "off", "0", "false"}:
        raise ValueError(f"{name}={value!r} is not a limit: write one like '10/minute', or pass None to turn it off")
    item = parse_rate(value)
    if item.amount < 1 or _ZERO_PERIOD.match(value):
        raise ValueError(f"{name}={value!r} would refuse every request: the count and the period must be at least 1")
    return item


def _timeout(delay: float) -> Any:
    # asyncio is imported here, not at the top: the sync path (functions, Flask) never needs it.
    import asyncio
    import contextlib

    if sys.version_info >= (3, 11):
        return asyncio.timeout(delay)
    # 3.10 has no asyncio.timeout: run the body as is and let the Redis socket timeouts bound it.
    return contextlib.nullcontext()  # pragma: no cover - Python 3.10


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
        per_principal: str | None = DEFAULT_RATE_LIMIT,
        global_limit: str | None = None,
        *,
        storage_uri: str = MEMORY_STORAGE,
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
        self._items_of_limits: tuple[Any, Any] | None = None
        self._cluster_ready = False
        self._cluster_lock: asyncio.Lock | None = None
        # memory:// only: (limit item, windows, scope) for the principal limit then the global one, shared by the
        # async and the sync side.
        self._memory: tuple[tuple[Rate, MemoryWindows, str], ...] = ()
        if not self.distributed:
            lock = threading.Lock()
            self._memory = tuple(
                (item, MemoryWindows(int(item.amount), float(item.get_expiry()), lock, clock, max_callers), scope)
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
        if self._items_of_limits is None:
            per_rate, global_rate = self._per, self._global
            self._items_of_limits = (per_rate and per_rate.item(), global_rate and global_rate.item())
        per, ceiling = self._items_of_limits
        items: list[tuple[Any, tuple[str, ...], str]] = []
        if per is not None:
            items.append((per, ("principal", principal_key), "principal"))
        if ceiling is not None:
            items.append((ceiling, ("global",), "global"))
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
    import importlib.metadata  # here: serve's start-up does not need it

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
