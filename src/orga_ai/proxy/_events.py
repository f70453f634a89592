"""``POST {path}/events``: the optional beacon that joins a session's start to its call in the logs.

The route never sees Orga's ``conversation_id``: the browser gets it from ``/v1/realtime/calls`` after it used the
session config. A page that wants the two joined posts ``{"request_id", "conversation_id", "state"}`` here (the
``request_id`` is the ``X-Request-ID`` of the response that minted its session), and the proxy writes one line on
the ``orga_ai.proxy.events`` logger. Off by default; when on it is authenticated exactly like the route (same
authenticator, same CORS allowlist), rate-limited per principal on its own window (so beacons never spend the minting
budget) and capped at :data:`MAX_EVENT_BYTES`. It answers 204 and stores nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from ._core import ProxyCore
from ._drivers import Offload, drive_async, drive_sync
from ._flow import beacon_flow
from ._ratelimit import RateLimiter
from ._request import ProxyRequest, ProxyResponse

__all__ = ["DEFAULT_EVENTS_RATE", "MAX_EVENT_BYTES", "EventBeacon", "read_capped"]

MAX_EVENT_BYTES = 1024
"""The largest beacon body accepted (413 above)."""
DEFAULT_EVENTS_RATE = "60/minute"
"""Beacons per principal per window."""

class EventBeacon:
    """The beacon's rate limit, on top of a route's :class:`ProxyCore` (its Host allowlist, CORS, authenticator,
    kill switch and storage): its flow is :func:`~orga_ai.proxy._flow.beacon_flow`, run by the route's drivers. Every
    adapter mounts it (``events=True``): :meth:`handle` from async code, :meth:`handle_sync` from a request thread."""

    def __init__(self, core: ProxyCore, *, rate_limit: str = DEFAULT_EVENTS_RATE) -> None:
        self.core = core
        limiter = core.rate_limiter
        self.rate_limiter = RateLimiter(
            rate_limit,
            storage_uri=limiter.storage_uri,
            key_prefix=f"{limiter.key_prefix}-events",
        )

    async def handle(
        self,
        request: ProxyRequest,
        body: bytes | bytearray | Callable[[], Awaitable[bytes | bytearray | None]] | None,
        *,
        offload: Offload | None = None,
    ) -> ProxyResponse:
        """Serve one beacon; ``body`` is None when it passed :data:`MAX_EVENT_BYTES` (the caller stopped reading), or
        an async callable that receives it (None past the cap), called only once the caller is authenticated.
        ``offload`` runs the authenticator off the event loop, as in :meth:`ProxyCore.handle`."""
        flow = functools.partial(beacon_flow, self)
        if callable(body):
            return await drive_async(self.core, request, flow, None, offload=offload, read_body=body)
        return await drive_async(self.core, request, flow, None, offload=offload, body=body)

    def handle_sync(self, request: ProxyRequest, body: bytes | bytearray | None) -> ProxyResponse:
        """:meth:`handle` from sync code (Flask, Django under WSGI)."""
        return drive_sync(self.core, request, functools.partial(beacon_flow, self), None, body=body)

    async def aclose(self) -> None:
        """Release the limiter's storage connections."""
        await self.rate_limiter.aclose()

    def close(self) -> None:
        """:meth:`aclose`, from sync code."""
        self.rate_limiter.close()


def read_capped(read: Callable[[int], bytes]) -> bytes | None:
    """A beacon body from a sync stream's ``read(n)``: None once it passes :data:`MAX_EVENT_BYTES` (the rest is
    left unread; the server discards it)."""
    body = b""
    while chunk := read(MAX_EVENT_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            return None
    return body
