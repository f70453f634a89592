"""``POST {path}/events``: the optional beacon that joins a session's start to its call in the logs.

The route never sees Orga's ``conversation_id``: the browser gets it from ``/v1/realtime/calls`` after it used the
session config. A page that wants the two joined posts ``{"request_id", "conversation_id", "state"}`` here (the
``request_id`` is the ``X-Request-ID`` of the response that minted its session), and the proxy writes one line on
the ``orga_ai.proxy.events`` logger. Off by default; when on it is authenticated exactly like the route (same
authenticator, same CORS allowlist), rate-limited per principal on its own window (so beacons never spend the minting
budget) and capped at :data:`MAX_EVENT_BYTES`. It answers 204 and stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from ._auth import AuthenticationError, Principal
from ._core import (
    ProxyCore,
    ProxyError,
    ProxyRequest,
    ProxyResponse,
    _principal_fingerprint,
    error_for,
    json_error,
    principal_key,
    security_headers,
)
from ._ratelimit import RateLimiter, RateLimiterUnavailable

__all__ = ["DEFAULT_EVENTS_RATE", "MAX_EVENT_BYTES", "EventBeacon"]

MAX_EVENT_BYTES = 1024
"""The largest beacon body accepted (413 above)."""
DEFAULT_EVENTS_RATE = "60/minute"
"""Beacons per principal per window."""

# The grammar of the route's request ids (X-Request-ID), which conversation ids also fit.
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_STATE = re.compile(r"^[a-z][a-z_]{0,31}$")

events_logger = logging.getLogger("orga_ai.proxy.events")


def _field(data: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not pattern.match(value):
        raise ProxyError(400, "bad_request", f"'{name}' is missing or malformed.")
    return value


class EventBeacon:
    """The beacon's policy, on top of a route's :class:`ProxyCore` (its authenticator, CORS and storage)."""

    def __init__(self, core: ProxyCore, *, rate_limit: str = DEFAULT_EVENTS_RATE) -> None:
        self.core = core
        limiter = core.rate_limiter
        self.rate_limiter = RateLimiter(
            rate_limit,
            storage_uri=limiter.storage_uri,
            key_prefix=f"{limiter.key_prefix}-events",
        )

    async def handle(self, request: ProxyRequest, body: bytes | bytearray | None) -> ProxyResponse:
        """Serve one beacon; ``body`` is None when it passed :data:`MAX_EVENT_BYTES` (the caller stopped reading)."""
        core = self.core
        request = core.prepare(request)
        request_id = request.request_id or ""
        cors: dict[str, str] = {}
        try:
            cors = core._origin_check(request)
            if request.method == "OPTIONS":
                return self._finish(core._preflight(request, cors), request_id, {})
            if body is None:
                raise ProxyError(413, "body_too_large", "Request body too large.")
            if getattr(core.authenticate, "may_block", False):
                found = await asyncio.to_thread(core.authenticate, request)
            else:
                found = core.authenticate(request)
            principal = found if isinstance(found, Principal) else Principal(str(found))
            decision = await self.rate_limiter.hit(principal_key(principal))
            if decision is not None and not decision.allowed:
                raise ProxyError(429, "rate_limited", "Too many events; slow down.", headers=decision.headers())
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                data = None
            if not isinstance(data, dict):
                raise ProxyError(400, "bad_request", "The body must be a JSON object.")
            line = {
                "event": "orga_session_event",
                "request_id": _field(data, "request_id", _ID),
                "conversation_id": _field(data, "conversation_id", _ID),
                "state": _field(data, "state", _STATE),
                "principal": _principal_fingerprint(principal.id),
                "beacon_request_id": request_id,
            }
        except (ProxyError, AuthenticationError, RateLimiterUnavailable) as exc:
            problem = error_for(exc)
            return self._finish(
                json_error(problem.status, problem.code, problem.message, request_id, problem.headers), request_id, cors
            )
        events_logger.info(json.dumps(line, separators=(",", ":")), extra={"orga": line})
        return self._finish(ProxyResponse(204, {}, b""), request_id, cors)

    @staticmethod
    def _finish(response: ProxyResponse, request_id: str, cors: dict[str, str]) -> ProxyResponse:
        response.headers = {**security_headers(), "X-Request-ID": request_id, **cors, **response.headers}
        return response

    async def aclose(self) -> None:
        """Release the limiter's storage connections."""
        await self.rate_limiter.aclose()
