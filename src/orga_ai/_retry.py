"""The retry policy as small pure functions, plus a process-wide retry budget.

The policy (docs/retries.md tells it in prose):

* 400, 401, 403, 404, 422 and every other 4xx but 408 and 429: never retried.
* Token step (POST mints a token, so it is not idempotent):
  - the request never left (connection refused, DNS, connect timeout), or Orga refused it before doing anything
    (408, 429, 503): retried up to ``max_retries`` times;
  - an ambiguous failure (500, 502, 504, read timeout, connection reset after sending): retried at most once,
    because a token may have been minted and lost; all attempts of one call carry the same ``Idempotency-Key``.
* ICE step (GET, idempotent): every transient failure is retried up to ``max_retries`` times with the same token;
  a failed ICE fetch never mints a second token.
* Backoff: full jitter, ``uniform(0, min(cap, base * 2**attempt))``; a ``Retry-After`` (seconds or HTTP date) is
  honoured instead when it is no longer than ``max_retry_after``; no sleep ever crosses the caller's deadline.
* A :class:`RetryBudget` shared by the client's calls caps retries to a share of successes, so a full outage does
  not multiply traffic.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
import threading

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "RetryBudget",
    "Retryability",
    "backoff",
    "backoff_enabled",
    "classify_status",
    "parse_retry_after",
    "set_backoff_enabled",
    "should_retry",
]

DEFAULT_BACKOFF_BASE = 0.25
DEFAULT_BACKOFF_CAP = 4.0
_MAX_RETRY_AFTER_SECONDS = 86_400.0 * 365

_backoff_on = True


def set_backoff_enabled(enabled: bool) -> None:
    """Turn jittered backoff sleeps on or off process-wide (tests turn it off; ``Retry-After`` is still honoured)."""
    global _backoff_on
    _backoff_on = enabled


def backoff_enabled() -> bool:
    return _backoff_on


class Retryability(enum.Enum):
    """How a failed attempt may be retried."""

    NEVER = "never"
    """The request was wrong or refused for good (4xx)."""
    SAFE = "safe"
    """Nothing happened upstream (never left, or refused before acting): retry freely."""
    AMBIGUOUS = "ambiguous"
    """Something may have happened upstream: a non-idempotent request is retried at most once."""


def classify_status(status: int) -> Retryability:
    """Classify an HTTP error status."""
    if status in (408, 429, 503):
        return Retryability.SAFE
    if status in (500, 502, 504):
        return Retryability.AMBIGUOUS
    return Retryability.NEVER


def should_retry(
    *,
    retryability: Retryability,
    idempotent: bool,
    attempt: int,
    max_retries: int,
    ambiguous_retries: int,
) -> bool:
    """Whether attempt number ``attempt`` (0-based) may be followed by another one.

    ``ambiguous_retries`` counts the retries already made after ambiguous failures in this call.
    """
    if retryability is Retryability.NEVER or attempt >= max_retries:
        return False
    if retryability is Retryability.AMBIGUOUS and not idempotent:
        return ambiguous_retries < 1
    return True


def backoff(
    attempt: int,
    *,
    base: float = DEFAULT_BACKOFF_BASE,
    cap: float = DEFAULT_BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """Seconds to sleep before retry ``attempt + 1``: full jitter over a capped exponential."""
    if not _backoff_on:
        return 0.0
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date. None when absent or unreadable.

    Negative values and dates in the past give 0; absurdly large values are clamped to a year so callers can
    compare them with their cap without overflow.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    else:
        if not math.isfinite(seconds):
            return None if math.isnan(seconds) else (0.0 if seconds < 0 else _MAX_RETRY_AFTER_SECONDS)
        return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)
    from email.utils import parsedate_to_datetime  # costs ~10 ms to import; rarely needed

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return min(max((when - now).total_seconds(), 0.0), _MAX_RETRY_AFTER_SECONDS)


class RetryBudget:
    """A token bucket of retries: each retry spends one token, each success earns ``ratio`` of one.

    With the defaults a client may retry about one request in ten once the initial ``capacity`` is spent, so a full
    Orga outage costs at most ~1.1 upstream requests per call after the first few. Safe across threads and tasks
    (the lock is held for a few arithmetic operations, never across I/O).
    """

    def __init__(self, *, capacity: float = 10.0, ratio: float = 0.1) -> None:
        if capacity < 0 or ratio < 0:
            raise ValueError("capacity and ratio must be >= 0")
        self.capacity = float(capacity)
        self.ratio = float(ratio)
        self._tokens = float(capacity)
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        return self._tokens

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is empty."""
        with self._lock:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + self.ratio)
