"""``POST {path}/events``: the optional beacon that joins a session's start to its call in the logs.

The route never sees Orga's ``conversation_id``: the browser gets it from ``/v1/realtime/calls`` after it used the
session config. A page that wants the two joined posts ``{"request_id", "conversation_id", "state"}`` here (the
``request_id`` is the ``X-Request-ID`` of the response that minted its session), and the proxy writes one line on
the ``orga_ai.proxy.events`` logger. Off by default; when on it is authenticated exactly like the route (same
authenticator, same CORS allowlist), rate-limited per principal on its own window (so beacons never spend the minting
budget) and capped at :data:`MAX_EVENT_BYTES`. It answers 204 and stores nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from .._logging import current_request_id
from ._auth import AuthenticationError, PrincipalTypeError, to_principal
from ._core import ProxyCore, _principal_fingerprint, principal_key
from ._errors import ProxyError, error_for, json_error
from ._ratelimit import RateLimiter, RateLimiterUnavailable
from ._request import _REQUEST_ID, ProxyRequest, ProxyResponse, security_headers

__all__ = ["DEFAULT_EVENTS_RATE", "MAX_EVENT_BYTES", "EventBeacon", "read_capped"]

MAX_EVENT_BYTES = 1024
"""The largest beacon body accepted (413 above)."""
DEFAULT_EVENTS_RATE = "60/minute"
"""Beacons per principal per window."""

_STATE = re.compile(r"[a-z][a-z_]{0,31}")

events_logger = logging.getLogger("orga_ai.proxy.events")


def _field(data: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProxyError(400, "bad_request", f"'{name}' is missing or malformed.")
    return value


class EventBeacon:
    """The beacon's policy, on top of a route's :class:`ProxyCore` (its authenticator, CORS and storage); every
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
        offload: Callable[[Callable[[ProxyRequest], Any], ProxyRequest], Awaitable[Any]] | None = None,
    ) -> ProxyResponse:
        """Serve one beacon; ``body`` is None when it passed :data:`MAX_EVENT_BYTES` (the caller stopped reading), or
        an async callable that receives it (None past the cap), called only once the caller is authenticated.
        ``offload`` runs the authenticator off the event loop, as in :meth:`ProxyCore.handle`."""
        core = self.core
        request = core.prepare(request)
        logging_as = current_request_id.set(request.request_id)  # the limiter's storage errors carry the beacon's id
        try:
            flow = self._flow(request, body)
            step, argument = _advance(flow, None, None)
            value: Any
            while step != "done":
                try:
                    if step == "limit":
                        value = await self.rate_limiter.hit(argument)
                    elif step == "body":
                        value = await body() if callable(body) else body
                    else:
                        value = await core.authenticate_async(argument, offload)
                except Exception as exc:  # noqa: BLE001 - handed to the flow, which maps it or raises it
                    step, argument = _advance(flow, None, exc)
                else:
                    step, argument = _advance(flow, value, None)
            response: ProxyResponse = argument
            return response
        finally:
            current_request_id.reset(logging_as)

    def handle_sync(self, request: ProxyRequest, body: bytes | bytearray | None) -> ProxyResponse:
        """:meth:`handle` from sync code (Flask, Django under WSGI)."""
        core = self.core
        request = core.prepare(request)
        logging_as = current_request_id.set(request.request_id)
        try:
            flow = self._flow(request, body)
            step, argument = _advance(flow, None, None)
            value: Any
            while step != "done":
                try:
                    if step == "body":
                        value = body
                    elif step == "limit":
                        value = self.rate_limiter.hit_sync(argument)
                    else:
                        value = core.authenticate(argument)
                except Exception as exc:  # noqa: BLE001 - handed to the flow, which maps it or raises it
                    step, argument = _advance(flow, None, exc)
                else:
                    step, argument = _advance(flow, value, None)
            response: ProxyResponse = argument
            return response
        finally:
            current_request_id.reset(logging_as)

    def _flow(self, request: ProxyRequest, given: object) -> Generator[tuple[str, Any], Any, ProxyResponse]:
        """The beacon without I/O: yields ``("authenticate", request)``, ``("body", None)`` (once authenticated) and
        ``("limit", key)`` to its driver."""
        core = self.core
        request_id = request.request_id or ""
        cors: dict[str, str] = {}
        try:
            cors = core._origin_check(request)
            if request.method == "OPTIONS":
                return self._finish(core._preflight(request, cors), request_id, {})
            if given is None:
                raise ProxyError(413, "body_too_large", "Request body too large.")
            found = yield "authenticate", request
            principal = to_principal(found, source=core._auth_name)
            body = yield "body", None
            if body is None:
                raise ProxyError(413, "body_too_large", "Request body too large.")
            decision = yield "limit", principal_key(principal)
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
                "request_id": _field(data, "request_id", _REQUEST_ID),
                "conversation_id": _field(data, "conversation_id", _REQUEST_ID),  # the same grammar
                "state": _field(data, "state", _STATE),
                "principal": _principal_fingerprint(principal.id),
                "beacon_request_id": request_id,
            }
        except (ProxyError, AuthenticationError, RateLimiterUnavailable, PrincipalTypeError) as exc:
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

    def close(self) -> None:
        """:meth:`aclose`, from sync code."""
        self.rate_limiter.close()


def _advance(
    flow: Generator[tuple[str, Any], Any, ProxyResponse], value: Any, error: Exception | None
) -> tuple[str, Any]:
    """One step of a beacon's flow: its next request to the driver, or ``("done", response)``."""
    try:
        return flow.send(value) if error is None else flow.throw(error)
    except StopIteration as stop:
        return "done", stop.value


def read_capped(read: Callable[[int], bytes]) -> bytes | None:
    """A beacon body from a sync stream's ``read(n)``: None once it passes :data:`MAX_EVENT_BYTES` (the rest is
    left unread; the server discards it)."""
    body = b""
    while chunk := read(MAX_EVENT_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            return None
    return body
