"""The warm pool: a few fresh, never-used session configs minted ahead, so a call can skip two round trips.

Rules it keeps:

* each config is handed out at most once (tokens are single use), oldest fresh one first;
* a config with less than ``min_ttl_share`` of its lifetime left (or older than ``max_age`` when its expiry is
  unknown) is discarded, never served;
* refills run in the background, at most ``refill_rate`` mints per second and ``concurrency`` at a time;
* any authentication or permission error empties the pool and stops refilling until a live call succeeds;
* a 429 from Orga pauses refilling for its ``Retry-After``; other failures back off exponentially;
* ``close()`` cancels the refill tasks and drops what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._exceptions import OrgaAIAuthenticationError, OrgaAIError, OrgaAIPermissionError, OrgaAIRateLimitError
from ._models import SessionConfig
from ._telemetry import record_pool_take

__all__ = ["PoolStats", "WarmPool"]

logger = logging.getLogger("orga_ai")

DEFAULT_MIN_TTL_SHARE = 0.5
DEFAULT_MAX_AGE = 60.0
DEFAULT_REFILL_RATE = 20.0
_MAX_FAILURE_BACKOFF = 30.0


@dataclass(slots=True)
class PoolStats:
    """Counters of a warm pool. ``refill_seconds`` is the total time spent minting, for mean refill latency."""

    size: int = 0
    capacity: int = 0
    hits: int = 0
    misses: int = 0
    discards: int = 0
    refills: int = 0
    refill_failures: int = 0
    refill_seconds: float = 0.0
    last_refill_seconds: float = 0.0
    paused: bool = False

    @property
    def mean_refill_seconds(self) -> float:
        return self.refill_seconds / self.refills if self.refills else 0.0


def is_fresh(
    config: SessionConfig, minted_at: dt.datetime, now: dt.datetime, *, min_ttl_share: float, max_age: float
) -> bool:
    """Whether a pooled config still has enough life left to be served."""
    if config.expires_at is None:
        return (now - minted_at).total_seconds() < max_age
    lifetime = (config.expires_at - minted_at).total_seconds()
    left = (config.expires_at - now).total_seconds()
    return lifetime > 0 and left > 0 and left >= min_ttl_share * lifetime


class WarmPool:
    """Up to ``size`` session configs minted ahead by ``mint``; see the module docstring for its rules."""

    def __init__(
        self,
        mint: Callable[[], Awaitable[SessionConfig]],
        *,
        size: int,
        min_ttl_share: float = DEFAULT_MIN_TTL_SHARE,
        max_age: float = DEFAULT_MAX_AGE,
        refill_rate: float = DEFAULT_REFILL_RATE,
        concurrency: int | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        if not 0 <= min_ttl_share < 1:
            raise ValueError("min_ttl_share must be in [0, 1)")
        if refill_rate <= 0 or max_age <= 0:
            raise ValueError("refill_rate and max_age must be > 0")
        self._mint = mint
        self._size = size
        self._min_ttl_share = min_ttl_share
        self._max_age = max_age
        self._interval = 1.0 / refill_rate
        self._concurrency = concurrency or min(size, 4)
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self._items: deque[tuple[SessionConfig, dt.datetime]] = deque()
        self._inflight = 0
        self._paused = False
        self._resume_at = 0.0
        self._next_mint_at = 0.0
        self._failures = 0
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.stats = PoolStats(capacity=size)

    # -- consumer side ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the refill tasks in the running loop (idempotent)."""
        if self._tasks or self._closed:
            return
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._refill(), name=f"orga_ai-pool-{i}") for i in range(self._concurrency)]

    def take(self) -> SessionConfig | None:
        """The oldest fresh config, removed from the pool; None on a miss. Stale configs met on the way are dropped."""
        self._sweep()
        if self._items:
            config, _ = self._items.popleft()
            self.stats.hits += 1
            record_pool_take(True)
            self._update_size()
            self._signal()
            return config
        self.stats.misses += 1
        record_pool_take(False)
        self._signal()
        return None

    def pause(self) -> None:
        """Empty the pool and stop refilling (called on an authentication error) until :meth:`resume`."""
        if not self._paused:
            logger.warning("orga_ai pool: authentication failed; emptying the pool and pausing refills")
        self._paused = True
        self.stats.paused = True
        self.stats.discards += len(self._items)
        self._items.clear()
        self._update_size()

    def resume(self) -> None:
        """Refill again (called after a live call succeeded)."""
        if self._paused:
            logger.info("orga_ai pool: a live call succeeded; refilling again")
        self._paused = False
        self.stats.paused = False
        self._signal()

    async def wait_filled(self, timeout: float) -> bool:
        """Wait until the pool is full (or paused), at most ``timeout`` seconds; True when it is full."""
        self.start()
        deadline = time.monotonic() + timeout
        # Polling: several tasks change this condition, and warm-up runs once per process.
        while len(self._items) < self._size and not self._paused and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return len(self._items) >= self._size

    async def close(self) -> None:
        """Stop refilling and drop every pooled config."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._items.clear()
        self._update_size()

    # -- refill side -----------------------------------------------------------------------------------------------

    def _signal(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _update_size(self) -> None:
        self.stats.size = len(self._items)

    def _sweep(self) -> None:
        now = self._now()
        kept = [
            item for item in self._items
            if is_fresh(item[0], item[1], now, min_ttl_share=self._min_ttl_share, max_age=self._max_age)
        ]
        dropped = len(self._items) - len(kept)
        if dropped:
            self.stats.discards += dropped
            self._items = deque(kept)
            self._update_size()

    def _seconds_until_stale(self) -> float | None:
        if not self._items:
            return None
        config, minted_at = self._items[0]
        if config.expires_at is None:
            stale_at = minted_at + dt.timedelta(seconds=self._max_age)
        else:
            lifetime = config.expires_at - minted_at
            stale_at = config.expires_at - lifetime * self._min_ttl_share
        return max((stale_at - self._now()).total_seconds(), 0.0)

    def _wants_more(self) -> bool:
        return not self._paused and len(self._items) + self._inflight < self._size

    async def _refill(self) -> None:
        assert self._wake is not None
        while not self._closed:
            self._sweep()
            delay = max(self._resume_at - time.monotonic(), 0.0)
            if not self._wants_more() or delay > 0:
                self._wake.clear()
                timeout = self._seconds_until_stale()
                if delay > 0:
                    timeout = delay if timeout is None else min(timeout, delay)
                # asyncio.TimeoutError: the builtin TimeoutError is the same class only from 3.11 on.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            # Spread mints out: at most one every `_interval` seconds across all workers.
            now = time.monotonic()
            start_at = max(self._next_mint_at, now)
            self._next_mint_at = start_at + self._interval
            self._inflight += 1
            try:
                if start_at > now:
                    await asyncio.sleep(start_at - now)
                await self._mint_one()
            finally:
                self._inflight -= 1

    async def _mint_one(self) -> None:
        started = time.perf_counter()
        try:
            config = await self._mint()
        except (OrgaAIAuthenticationError, OrgaAIPermissionError):
            self.stats.refill_failures += 1
            self.pause()
            return
        except OrgaAIRateLimitError as exc:
            self.stats.refill_failures += 1
            wait = exc.retry_after if exc.retry_after is not None else self._failure_backoff()
            self._resume_at = time.monotonic() + min(wait, _MAX_FAILURE_BACKOFF * 4)
            logger.info("orga_ai pool: rate limited by Orga; refills resume in %.1f s", wait)
            return
        except OrgaAIError as exc:
            self.stats.refill_failures += 1
            wait = self._failure_backoff()
            self._resume_at = time.monotonic() + wait
            logger.info("orga_ai pool: refill failed (%s); next try in %.1f s", type(exc).__name__, wait)
            return
        elapsed = time.perf_counter() - started
        self._failures = 0
        self.stats.refills += 1
        self.stats.refill_seconds += elapsed
        self.stats.last_refill_seconds = elapsed
        if self._paused or self._closed:
            self.stats.discards += 1
            return
        self._items.append((config, self._now()))
        self._update_size()

    def _failure_backoff(self) -> float:
        self._failures += 1
        return float(min(_MAX_FAILURE_BACKOFF, 0.5 * 2.0 ** min(self._failures - 1, 10)))
