"""The ``memory://`` rate limit's moving windows, in process memory (the Redis path is ``limits``'): measured faster
and smaller than ``limits``' memory storages for the same decisions (figures in :mod:`._ratelimit`)."""

from __future__ import annotations

import bisect
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEFAULT_MAX_CALLERS", "MemoryWindows"]


DEFAULT_MAX_CALLERS = 100_000
"""Callers (principal keys) one ``memory://`` limit tracks per process; beyond it the one idle longest is forgotten."""


class MemoryWindows:
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
