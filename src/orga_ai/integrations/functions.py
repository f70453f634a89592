"""The client-secrets route as a plain WSGI or ASGI callable, for function hosts that load an ``app`` from a file:
Vercel (``api/orga-client-secrets.py``), Netlify-style and container function platforms, or any WSGI/ASGI server.

    # api/orga-client-secrets.py
    from orga_ai.integrations.functions import asgi_app

    app = asgi_app(platform_forwarded=True)  # the policy from ORGA_PROXY_*, the key from ORGA_API_KEY

Both run the same policy as every other entry point (``ProxyCore.handle_sync`` on the sync client, created on the
first request and reused by the instance's later ones) and import neither Starlette nor an async HTTP library;
the ASGI callable runs each request in a worker thread. ``memory://`` rate limits are refused (see
:func:`orga_ai.integrations._function.function_core`). Needs ``orga-ai[functions]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ..proxy._core import DEFAULT_PATH
from ..proxy._errors import body_too_large, error_response
from ..proxy._request import ProxyRequest, ProxyResponse, new_request_id
from ._function import FunctionConfigurationError, FunctionRoute, core_from_env, function_core, platform_peer

if TYPE_CHECKING:
    from .._client import OrgaAI
    from ..proxy._core import ProxyCore

__all__ = ["ASGIFunction", "FunctionConfigurationError", "WSGIFunction", "asgi_app", "wsgi_app"]


class _FunctionApp:
    """What the WSGI and the ASGI callables share: the route, the path served, and how the caller's address is read."""

    def __init__(self, route: FunctionRoute, path: str | None, platform_forwarded: bool) -> None:
        self.route = route
        self.path = path
        self.platform_forwarded = platform_forwarded

    @property
    def core(self) -> ProxyCore:
        return self.route.core

    def _refusal(self, path: str, body_size: int) -> ProxyResponse | None:
        if self.path is not None and path != self.path:
            return error_response("not_found", new_request_id())
        if body_size > self.route.core.max_body_bytes:
            return body_too_large()
        return None

    def _request(self, method: str, path: str, pairs: list[tuple[str, str]], peer: str | None) -> ProxyRequest:
        if self.platform_forwarded:
            peer, pairs = platform_peer(pairs, peer)
        return ProxyRequest.from_pairs(method, path, pairs, client_host=peer)

    def close(self) -> None:
        """Close the SDK client and the rate-limit storage's connections."""
        self.route.close()


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class WSGIFunction(_FunctionApp):
    """A WSGI application serving the route (see :func:`wsgi_app`)."""

    def __call__(self, environ: Mapping[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO") or "/")
        pairs = [
            (key[5:].replace("_", "-").lower(), str(value)) for key, value in environ.items() if key[:5] == "HTTP_"
        ]
        for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
            if environ.get(key):
                pairs.append((name, str(environ[key])))
        size = 0
        if method == "POST" and not environ.get("CONTENT_LENGTH"):
            # No declared length (chunked): read at most one byte past the cap; a declared one is the core's check.
            stream = environ.get("wsgi.input")
            limit = self.route.core.max_body_bytes + 1
            while stream is not None and size < limit and (chunk := stream.read(min(4096, limit - size))):
                size += len(chunk)
        response = self._refusal(path, size) or self.route.serve(
            self._request(method, path, pairs, environ.get("REMOTE_ADDR"))
        )
        start_response(_status_line(response.status), list(response.headers.items()))
        return [response.body]

    def __repr__(self) -> str:
        return f"WSGIFunction({self.route.core!r}, path={self.path!r})"


class ASGIFunction(_FunctionApp):
    """An ASGI application serving the route (see :func:`asgi_app`); lifespan events are answered, and shutdown
    closes the client."""

    async def __call__(self, scope: Mapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        import asyncio

        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await asyncio.to_thread(self.close)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = str(scope["method"]).upper()
        path = str(scope.get("path") or "/")
        pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers", ())]
        size, limit, more = 0, self.route.core.max_body_bytes + 1, True
        while more and size < limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
        client = scope.get("client")
        peer = str(client[0]) if client else None
        response = self._refusal(path, size)
        if response is None:
            response = await asyncio.to_thread(self.route.serve, self._request(method, path, pairs, peer))
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def __repr__(self) -> str:
        return f"ASGIFunction({self.route.core!r}, path={self.path!r})"


def _route(
    orga: OrgaAI | None, orga_options: Mapping[str, Any] | None, core: ProxyCore | None, policy: dict[str, Any]
) -> FunctionRoute:
    if core is None and not policy:
        core = core_from_env("functions")
    route = FunctionRoute(function_core(core, extra="functions", **policy), orga=orga, orga_options=orga_options)
    route.core.announce()
    return route


def wsgi_app(
    *,
    path: str | None = DEFAULT_PATH,
    platform_forwarded: bool = False,
    orga: OrgaAI | None = None,
    orga_options: Mapping[str, Any] | None = None,
    core: ProxyCore | None = None,
    **policy: Any,
) -> WSGIFunction:
    """The route as a WSGI application.

    Args:
        path: the path served (others get 404); None serves every path (a host that routes one path to the file).
        platform_forwarded: the host's front end appends the caller's address to ``X-Forwarded-For`` (Vercel,
            Google's front end): take that hop as the caller's address. Leave it off when clients reach the server
            directly, or they could choose their own address.
        orga / orga_options: the sync client, or the arguments of the one made on the first request.
        core / policy: the route's policy, as for :class:`~orga_ai.proxy.ProxyCore`; with neither, the
            ``ORGA_PROXY_*`` variables. ``memory://`` rate limits are refused: use ``storage_uri="redis://..."``
            or ``rate_limit=None``.

    Raises:
        FunctionConfigurationError: the configuration cannot work (no key, memory:// limits, no authentication).
    """
    return WSGIFunction(_route(orga, orga_options, core, policy), path, platform_forwarded)


def asgi_app(
    *,
    path: str | None = DEFAULT_PATH,
    platform_forwarded: bool = False,
    orga: OrgaAI | None = None,
    orga_options: Mapping[str, Any] | None = None,
    core: ProxyCore | None = None,
    **policy: Any,
) -> ASGIFunction:
    """The route as an ASGI application; arguments as for :func:`wsgi_app`."""
    return ASGIFunction(_route(orga, orga_options, core, policy), path, platform_forwarded)
