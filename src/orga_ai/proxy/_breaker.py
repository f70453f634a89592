"""A circuit breaker around the upstream calls, so a failing Orga Cloud costs callers milliseconds, not seconds.

Closed: calls pass; ``failure_threshold`` consecutive upstream failures (5xx, timeouts, connection errors, broken
answers: never a caller's error, never Orga refusing our key or rate-limiting us) open it. Open: calls are refused at
once with a ``Retry-After`` of the remaining cool-down, and make no upstream request. After ``cooldown`` seconds one
caller is let through as a half-open probe; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe (the sync adapters call it from worker threads); the lock never spans I/O.

    Args:
        failure_threshold: consecutive upstream failures that open the breaker (0 disables it).
        cooldown: seconds the breaker stays open before a half-open probe.
        clock: a monotonic clock, replaceable in tests.
        on_change: called with the new state on every transition (metrics, logs).
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 0 or cooldown <= 0:
            raise ValueError("failure_threshold must be >= 0 and cooldown > 0")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down has passed reads ``half_open``."""
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.cooldown:
                return "half_open"
            return self._state

    def _set(self, state: BreakerState) -> None:
        if state != self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)

    def acquire(self) -> tuple[bool, float]:
        """Ask to make one upstream call: ``(True, 0)`` to go ahead, ``(False, retry_after_seconds)`` to refuse.

        A granted call must end in exactly one of :meth:`record_success`, :meth:`record_failure` or
        :meth:`release`.
        """
        if self.failure_threshold == 0:
            return True, 0.0
        with self._lock:
            if self._state == "closed":
                return True, 0.0
            waited = self._clock() - self._opened_at
            if self._state == "open" and waited < self.cooldown:
                return False, self.cooldown - waited
            if self._probing:
                return False, 1.0
            self._probing = True
            self._set("half_open")
            return True, 0.0

    def record_success(self) -> None:
        """The call reached Orga and got an answer that is not Orga's failure: close the breaker."""
        with self._lock:
            self._failures = 0
            self._probing = False
            self._set("closed")

    def record_failure(self) -> None:
        """The call failed upstream (5xx, timeout, connection, broken answer)."""
        with self._lock:
            self._failures += 1
            probe_failed = self._state == "half_open"
            self._probing = False
            if self.failure_threshold and (probe_failed or self._failures >= self.failure_threshold):
                self._opened_at = self._clock()
                self._set("open")

    def release(self) -> None:
        """The call ended without telling anything about Orga (the caller went away): free the probe slot."""
        with self._lock:
            if self._probing:
                self._probing = False
                # Let the next caller probe at once rather than waiting another cool-down.
                self._opened_at = self._clock() - self.cooldown
                self._state = "open"

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, threshold={self.failure_threshold}, cooldown={self.cooldown})"
