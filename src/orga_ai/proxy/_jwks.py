"""The identity provider's signing keys, fetched on our terms: whatever a caller sends, JWKS traffic stays bounded.

A token names its key by ``kid``. An unknown ``kid`` is either a key the provider just rotated in or a forgery, and an
attacker can send a new one on every request: a cache that refetches on each miss turns every unauthenticated request
into a request to the provider and makes legitimate callers queue behind them. PyJWT's own ``PyJWKClient`` now has
a lock, a ``cooldown_duration`` between refetches for unknown kids, and refuses redirects (checked
with PyJWT 2.15). It still lacks what this class adds: a deadline for the whole fetch (its timeout bounds each socket
operation), a size cap, a cooldown after a *failed* fetch (its cooldown counts successful fetches only, so while the
provider is down every unknown kid refetches, holding its lock) and keeping the previous keys when a refresh fails.
So, whatever the PyJWT version:

* **single flight**: one fetch at a time per JWKS; concurrent misses wait for it instead of starting their own;
* **minimum interval**: after a fetch (successful or not), the next one waits ``min_refresh_interval`` seconds; a miss
  meanwhile is answered from what is known (an unknown ``kid`` is refused at once);
* **timeout**: one fetch takes at most ``timeout`` seconds, whole: connecting, TLS, the answer's head and body. It runs
  on the sync client's transport (its per-attempt deadline, TLS verification, proxies from the environment), so a
  provider trickling its answer one byte at a time cannot stretch it (PyJWT's fetch bounds each socket operation
  only). Redirects are not followed, and a key set over 1 MiB is refused;
* the keys are refetched every ``lifespan`` seconds when used, and a failed refresh keeps the previous keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._sync_http import SyncPool

__all__ = ["JWKSKeys", "UnknownKey"]

_MAX_BYTES = 1 << 20


class UnknownKey(Exception):
    """The token's ``kid`` is not among the provider's keys (as last fetched)."""


class JWKSKeys:
    """The signing keys of one JWKS URL, with bounded fetching (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        lifespan: float = 300.0,
        min_refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.lifespan = lifespan
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at = -float("inf")  # last fetch, successful or not
        self._lock = threading.Lock()  # held for the whole fetch: the single flight
        self._pool: SyncPool | None = None
        self.fetches = 0

    def key(self, kid: str | None) -> Any:
        """The verification key for ``kid``. Raises :class:`UnknownKey`, or PyJWT's ``PyJWKClientConnectionError``
        when the provider cannot be reached and nothing usable is known."""
        now = self._clock()
        found = self._lookup(kid)
        if found is not None and not self._stale(now):
            return found
        with self._lock:
            # Whoever held the lock may have fetched what we need.
            found = self._lookup(kid)
            now = self._clock()
            if found is not None and not self._stale(now):
                return found
            if now - self._attempted_at >= self.min_refresh_interval:
                self._attempted_at = now
                self._fetch(keep_going=found is not None or bool(self._keys))
                found = self._lookup(kid)
        if found is None:
            raise UnknownKey("no key with this kid")
        return found

    def _stale(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self.lifespan

    def _lookup(self, kid: str | None) -> Any:
        if kid is None:
            # A token without a kid is accepted only against a JWKS of exactly one key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _fetch(self, *, keep_going: bool) -> None:
        import jwt

        self.fetches += 1
        try:
            data = self._download()
            keys = jwt.PyJWKSet.from_dict(data).keys
        except (jwt.PyJWTError, ValueError) as exc:  # unreachable, timed out, not JSON, not a key set
            if keep_going:
                return  # keep the previous keys; retried after min_refresh_interval
            if isinstance(exc, jwt.PyJWKClientConnectionError):
                raise
            raise jwt.PyJWKClientConnectionError(f"the JWKS is unusable: {type(exc).__name__}") from None
        self._keys = {k.key_id: k.key for k in keys if k.key_id is not None}
        if len(keys) == 1 and keys[0].key_id is None:
            self._keys[""] = keys[0].key
        self._fetched_at = self._clock()

    def _download(self) -> Any:
        """The key set's JSON, fetched within ``timeout`` seconds in all (PyJWT's parsing takes it from here)."""
        import json

        import jwt

        from .. import _sync_http
        from .._config import USER_AGENT

        if self._pool is None:
            self._pool = _sync_http.SyncPool(max_idle=0, keepalive=0.0)  # a fetch every few minutes: no keep-alive
        token = _sync_http.set_deadline(time.monotonic() + self.timeout)
        try:
            status, _, body, truncated = self._pool.exchange(
                "GET", self.url, {"Accept": "application/json", "User-Agent": USER_AGENT}, b"", self.timeout, _MAX_BYTES
            )
        except _sync_http.ConnectPhaseError as exc:
            raise jwt.PyJWKClientConnectionError(f"the JWKS is unreachable: {type(exc.cause).__name__}") from None
        except TimeoutError:
            raise jwt.PyJWKClientConnectionError(f"the JWKS took longer than {self.timeout:g} s") from None
        except (_sync_http.HTTPException, OSError, ValueError) as exc:
            raise jwt.PyJWKClientConnectionError(f"the JWKS fetch failed: {type(exc).__name__}") from None
        finally:
            _sync_http.reset_deadline(token)
        if status != 200:
            raise jwt.PyJWKClientConnectionError(f"the JWKS answered HTTP {status}")
        if truncated:
            raise jwt.PyJWKClientConnectionError("the JWKS is larger than 1 MiB")
        return json.loads(body)
