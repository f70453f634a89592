"""The mutable state of one emulator: clock offset, quota windows, consumed tokens, counters and the request log.

Every method takes the lock and never awaits, so the state is safe whether the app runs in uvicorn's thread, in a
test's event loop through ``httpx.ASGITransport``, or both, and the admin helpers of ``orga_ai.testing`` see a
consistent snapshot.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ._faults import FaultQueue

__all__ = ["EmulatorState"]

QUOTA_WINDOW = 60.0


class EmulatorState:
    """Everything ``POST /_emulator/reset`` puts back to its initial value."""

    def __init__(self, clock: Callable[[], float], max_logged_requests: int) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._max_logged = max_logged_requests
        self.faults = FaultQueue()
        self.generation = 0
        """Bumped by every reset: a request that began before a reset (a stalled one, say) is not logged after it."""
        self._in_flight = 0  # API requests begun and not yet logged; a reset does not change what is running
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._offset = 0.0
        self._quota: dict[str, deque[float]] = {}
        self._consumed: dict[str, int] = {}  # jti -> exp, pruned once the token has expired anyway
        self._counters: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._paths: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._requests: deque[dict[str, Any]] = deque(maxlen=self._max_logged)
        self.faults.clear()

    def reset(self) -> None:
        """Back to a fresh emulator: faults, counters, request log, quota, consumed tokens and clock offset."""
        with self._lock:
            self.generation += 1
            self._reset_locked()

    # -- clock ---------------------------------------------------------------------------------------------------------

    def now(self) -> float:
        """Emulator time, in unix seconds: the injected clock plus every ``advance``."""
        with self._lock:
            return self._clock() + self._offset

    def advance(self, seconds: float) -> float:
        """Move emulator time forward; returns the total offset."""
        with self._lock:
            self._offset += seconds
            return self._offset

    # -- usage ---------------------------------------------------------------------------------------------------------

    def take_quota(self, key_id: str, limit: int) -> float | None:
        """Count one token for ``key_id``; None if allowed, else the seconds until the window frees a slot."""
        if limit <= 0:
            return None
        with self._lock:
            now = self._clock() + self._offset
            window = self._quota.setdefault(key_id, deque())
            while window and window[0] <= now - QUOTA_WINDOW:
                window.popleft()
            if len(window) >= limit:
                return max(window[0] + QUOTA_WINDOW - now, 0.0)
            window.append(now)
            return None

    def is_consumed(self, jti: str) -> bool:
        """Whether the token ``jti`` has opened a call already."""
        with self._lock:
            return jti in self._consumed

    def consume(self, jti: str, exp: int) -> bool:
        """Mark the token used; False if it already was. Check and mark are one step, so two racing calls can't win."""
        with self._lock:
            now = self._clock() + self._offset
            for old in [j for j, e in self._consumed.items() if e <= now]:
                del self._consumed[old]
            if jti in self._consumed:
                return False
            self._consumed[jti] = exp
            return True

    # -- observability -------------------------------------------------------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
        """Bump a named counter (``tokens_issued``, ``ice_configs_served``, ``calls``, ``faults_applied``)."""
        with self._lock:
            self._counters[name] += amount

    def reject(self, reason: str) -> None:
        """Count one refused request, by reason (``invalid_api_key``, ``token_expired``, ``quota``...)."""
        with self._lock:
            self._rejected[reason] += 1

    def begin(self) -> None:
        """An API request began: it is in flight until :meth:`record` (or :meth:`end`) is called for it."""
        with self._lock:
            self._in_flight += 1

    def end(self) -> None:
        """An API request begun with :meth:`begin` is over (logged or dropped)."""
        with self._lock:
            self._in_flight -= 1

    def record(self, entry: dict[str, Any], generation: int | None = None) -> None:
        """Log one API request (method, path, status, ...) and count its path and status.

        ``generation`` is :attr:`generation` when the request began; a request older than the last reset is dropped,
        so a test never sees the tail of the previous test's stalled requests.
        """
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._requests.append(entry)
            self._paths[entry["path"]] += 1
            status = entry.get("status")
            self._statuses["none" if status is None else str(status)] += 1

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        with self._lock:
            return [dict(entry) for entry in self._requests]

    def clear_requests(self) -> None:
        """Empty the request log (counters stay)."""
        with self._lock:
            self._requests.clear()

    def stats(self) -> dict[str, Any]:
        """Counters as JSON: tokens_issued, ice_configs_served, calls, faults_applied, statuses, paths, rejected, and
        in_flight (API requests begun and not yet logged: what a test waits for before reading the log)."""
        with self._lock:
            out: dict[str, Any] = {
                name: self._counters[name]
                for name in ("tokens_issued", "ice_configs_served", "calls", "faults_applied")
            }
            out["statuses"] = dict(sorted(self._statuses.items()))
            out["paths"] = dict(sorted(self._paths.items()))
            out["rejected"] = dict(sorted(self._rejected.items()))
            out["in_flight"] = self._in_flight
            out["clock_offset"] = self._offset
            out["now"] = self._clock() + self._offset
            return out
