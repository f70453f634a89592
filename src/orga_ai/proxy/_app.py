"""``create_app``: the standalone proxy as a Starlette (ASGI) application."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ._clients import AsyncClientHolder, preload_transport
from ._core import (
    BodyReader,
    ProxyCore,
)
from ._errors import error_response, json_error
from ._killswitch import KillSwitch
from ._metrics import CONTENT_TYPE
from ._middleware import BodyTooLarge, ProxyHeadersMiddleware
from ._openapi import openapi_document
from ._policy import ProxyPolicy
from ._request import LazyCookies, ProxyRequest, ProxyResponse, new_request_id

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from .._client import AsyncOrgaAI
    from ._events import EventBeacon
    from ._mount import RouteMount

__all__ = ["create_app", "serve_events", "serve_route", "to_proxy_request", "to_starlette_response"]

logger = logging.getLogger("orga_ai.proxy")


def _flush_access_log() -> None:
    # A buffered access handler (orga-ai serve's) must write its last lines before uvicorn re-raises SIGTERM.
    current: logging.Logger | None = logging.getLogger("orga_ai.proxy.access")
    while current is not None:
        for handler in current.handlers:
            handler.flush()
        current = current.parent if current.propagate else None


def to_proxy_request(request: Request) -> ProxyRequest:
    """A Starlette (or FastAPI) request as the core's :class:`ProxyRequest`."""
    return _from_scope(request.scope, request, native=request)


def _from_scope(
    scope: MutableMapping[str, Any], request: Request | None = None, *, native: Any = None
) -> ProxyRequest:
    # Read straight from the ASGI scope: request.url assembles and re-parses a whole URL and request.cookies parses
    # the Cookie header, on every request; here the cookies are parsed only if an authenticator reads them.
    from starlette.requests import cookie_parser

    headers: dict[str, str] = {}
    cookie: str | None = None
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in headers:
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
            if name == "cookie":
                cookie = value  # Starlette reads the first Cookie header only
    path = scope["path"]
    if "?" in path or "#" in path or "\\" in path:
        from starlette.requests import Request

        path = (request or Request(scope)).url.path  # what Starlette reports (it escapes these three)
    client = scope.get("client")
    state = scope.get("state") or {}
    return ProxyRequest(
        scope["method"].upper(),
        path,
        headers,
        LazyCookies(cookie or "", cookie_parser),
        client[0] if client else None,
        None,
        state.get("request_id"),
        native,
    )


def _raw_headers(response: ProxyResponse) -> list[tuple[bytes, bytes]]:
    # What starlette.responses.Response(body, status_code, headers) sends: the headers, plus Content-Length.
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
    status = response.status
    if not (status < 200 or status in (204, 304)) and all(k != b"content-length" for k, _ in raw):
        raw.append((b"content-length", str(len(response.body)).encode("latin-1")))
    return raw


class _DirectRoute:
    """Pure ASGI: send the route's GET/POST/OPTIONS straight to its endpoint, past Starlette's exception
    middleware, router and Request/Response objects (about 100 µs of CPU per request on the route); every other
    request (other paths, other methods, a mounted app's root_path) goes through Starlette as before. An exception
    still reaches Starlette's ServerErrorMiddleware, outside this layer, and its 500 handler."""

    def __init__(self, app: Callable[..., Any], path: str, endpoint: Callable[..., Any]) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint
        # Starlette would report such a path escaped: leave those to it.
        self.enabled = not any(c in path for c in "?#\\")

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if (
            self.enabled
            and scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] in ("GET", "POST", "OPTIONS")
            and not scope.get("root_path")
        ):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def to_starlette_response(response: ProxyResponse) -> Response:
    """The core's :class:`ProxyResponse` as a Starlette response."""
    from starlette.responses import Response

    return Response(response.body, status_code=response.status, headers=response.headers)


async def drain_body(receive: Callable[[], Awaitable[MutableMapping[str, Any]]], limit: int) -> bool | None:
    """Receive (and drop) a request body: True once whole, False as soon as it passes ``limit`` bytes, None when the
    client hung up before sending it all (nobody is left to answer; not an error of ours, so no traceback in the
    log). The route uses no body, but an unread chunked body would otherwise bypass the size cap. Called only once
    the request's head has passed its checks (:class:`~orga_ai.proxy._core.BodyReader`)."""
    seen = 0
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                logger.debug("orga proxy: client went away after %d of its body bytes", seen)
                return None
            seen += len(message.get("body", b""))
            if seen > limit:
                return False
            if not message.get("more_body", False):
                return True
    except BodyTooLarge:  # ProxyHeadersMiddleware counts the same bytes against the same cap
        return False


async def read_event_body(receive: Callable[[], Awaitable[MutableMapping[str, Any]]]) -> bytearray | None:
    """A beacon's body, or None once it passed ``MAX_EVENT_BYTES`` or the client went away (nothing more is read)."""
    from ._events import MAX_EVENT_BYTES

    body = bytearray()
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            body += message.get("body", b"")
            if len(body) > MAX_EVENT_BYTES:
                return None
            if not message.get("more_body", False):
                return body
    except BodyTooLarge:
        return None


def asgi_body(method: str, receive: Callable[[], Awaitable[MutableMapping[str, Any]]], limit: int) -> BodyReader | None:
    """A POST's :data:`~orga_ai.proxy._core.BodyReader` on an ASGI ``receive`` (see :func:`drain_body`)."""
    return functools.partial(drain_body, receive, limit) if method == "POST" else None


async def serve_route(mount: RouteMount, request: Request) -> Response:
    """The route as a Starlette (or FastAPI) endpoint on ``mount``."""
    read_body = asgi_body(request.method, request.receive, mount.core.max_body_bytes)
    return to_starlette_response(await mount.serve(to_proxy_request(request), read_body=read_body))


async def serve_events(mount: RouteMount, request: Request) -> Response:
    """The beacon as a Starlette (or FastAPI) endpoint on ``mount``."""
    read = functools.partial(read_event_body, request.receive)
    return to_starlette_response(await mount.serve_events(to_proxy_request(request), read))


def _request_id(request: Request) -> str:
    state = request.scope.get("state") or {}
    return str(state.get("request_id") or new_request_id())


async def _http_error(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    if code is None:
        response = json_error(exc.status_code, "http_error", "Request refused.", _request_id(request), exc.headers)
    else:
        response = error_response(code, _request_id(request), headers=exc.headers)
    return to_starlette_response(response)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("orga proxy: unhandled %s", type(exc).__name__, exc_info=exc)
    return to_starlette_response(error_response("internal_error", _request_id(request)))


class _Endpoints:
    """The standalone app's endpoints over one core, its SDK client and its beacon; ``create_app`` wires them."""

    def __init__(
        self, proxy: ProxyCore, clients: AsyncClientHolder, beacon: EventBeacon | None, path: str
    ) -> None:
        self.proxy = proxy
        self.clients = clients
        self.beacon = beacon
        self.path = path
        self._openapi: bytes | None = None

    def _body_reader(self, method: str, receive: Any) -> BodyReader | None:
        # A POST's body is received only after its head passed the checks (ProxyCore.handle's read_body).
        return asgi_body(method, receive, self.proxy.max_body_bytes)

    async def client_secrets(self, request: Request) -> Response:
        read_body = self._body_reader(request.method, request.receive)
        response = await self.proxy.handle(to_proxy_request(request), self.clients.get(), read_body=read_body)
        return to_starlette_response(response)

    async def client_secrets_asgi(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """:meth:`client_secrets` in pure ASGI (``_DirectRoute``'s fast path): the same response, byte for byte."""
        read_body = self._body_reader(scope["method"], receive)
        response = await self.proxy.handle(_from_scope(scope), self.clients.get(), read_body=read_body)
        await send({"type": "http.response.start", "status": response.status, "headers": _raw_headers(response)})
        await send({"type": "http.response.body", "body": response.body})

    async def events(self, request: Request) -> Response:
        assert self.beacon is not None
        read = functools.partial(read_event_body, request.receive)
        return to_starlette_response(await self.beacon.handle(to_proxy_request(request), read))

    async def healthz(self, request: Request) -> Response:
        return to_starlette_response(self.proxy.health())

    def _foreign_host(self, request: Request) -> Response | None:
        # /readyz, /metrics and /openapi.json answer only the allowed Host names, as the route does (DNS rebinding:
        # a page whose name resolves here must not read them). /healthz says nothing and answers any Host (probes).
        if self.proxy.host_allowed(request.headers.get("host", "")):
            return None
        return to_starlette_response(error_response("host_not_allowed", _request_id(request)))

    async def readyz(self, request: Request) -> Response:
        refused = self._foreign_host(request)
        return refused or to_starlette_response(self.proxy.readiness(await self.proxy.rate_limiter.check()))

    async def metrics(self, request: Request) -> Response:
        from starlette.responses import Response

        refused = self._foreign_host(request)
        return refused or Response(self.proxy.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi(self, request: Request) -> Response:
        from starlette.responses import Response

        refused = self._foreign_host(request)
        if refused is not None:
            return refused
        if self._openapi is None:
            import orjson

            self._openapi = orjson.dumps(openapi_document(self.path, events=self.beacon is not None))
        return Response(self._openapi, headers={"Content-Type": "application/json"})

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        proxy, clients = self.proxy, self.clients
        proxy.announce()
        clients.get()  # fail at start-up, not at the first caller, when the API key is missing
        preload_transport()
        # With a warm pool, the first callers are served from it: fill it before taking traffic, within bounds (an
        # Orga outage must not hold the start-up for long; the pool keeps refilling in the background).
        filled = await clients.warm_up(min(5.0, proxy.deadline))
        if filled is False:
            logger.warning("orga proxy: the warm pool was not full at start-up; it keeps refilling")
        try:
            yield
        finally:
            await clients.aclose()
            await proxy.rate_limiter.aclose()
            if self.beacon is not None:
                await self.beacon.aclose()
            _flush_access_log()


def create_app(
    policy: ProxyPolicy | None = None,
    *,
    orga: AsyncOrgaAI | None = None,
    orga_options: Mapping[str, Any] | None = None,
    core: ProxyCore | None = None,
    kill_switch: KillSwitch | None = None,
    metrics_enabled: bool = True,
    **settings: Any,
) -> Starlette:
    """Build the proxy: ``GET``/``POST`` ``policy.path`` mints one session config for an authenticated caller.

    Also served: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and ``/openapi.json``, and with
    ``policy.events`` the beacon ``POST {path}/events``. The app keeps its :class:`ProxyCore` at
    ``app.state.orga_proxy`` (its ``kill_switch`` stops minting live).

    Args:
        policy: the route's settings (:class:`~orga_ai.proxy.ProxyPolicy`); or give them as keywords,
            ``create_app(authenticate=JWTAuth(...), rate_limit="5/minute")``, which is
            ``create_app(ProxyPolicy(authenticate=..., rate_limit=...))``.
        orga: the SDK client to use; by default one ``AsyncOrgaAI(**orga_options)`` is created on first use (API
            key from ``ORGA_API_KEY``) and closed at shutdown. A client you pass stays yours to close.
        core: a ready :class:`ProxyCore` instead of a policy (its policy's ``path``, ``events`` and ``prefetch``
            apply; keywords among those override them).
        kill_switch: a ready deny-list (default: one watching ``policy.deny_file``).
        metrics_enabled: serve ``/metrics``.
    """
    from .._extras import require_extra

    require_extra("orga_ai.proxy.create_app", "proxy", "starlette", "prometheus_client", "orjson")
    import orjson  # noqa: F401 - loaded with the server: _request.json_bytes then encodes every answer with it
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Route

    if core is None:
        core = ProxyCore(policy, kill_switch=kill_switch, **settings)
        route = core.policy
    else:
        if policy is not None:
            raise ValueError("give create_app a policy or a ready core, not both")
        route = core.policy.replace(**settings) if settings else core.policy
    path, events, prefetch = route.path, route.events, route.prefetch
    proxy = core
    clients = AsyncClientHolder(proxy.metrics, orga, options=orga_options, prefetch=prefetch)
    beacon = None
    if events:
        from ._events import EventBeacon

        beacon = EventBeacon(proxy)
    endpoints = _Endpoints(proxy, clients, beacon, path)
    routes = [
        Route(path, endpoints.client_secrets, methods=["GET", "POST", "OPTIONS"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/openapi.json", endpoints.openapi, methods=["GET"]),
    ]
    if metrics_enabled:
        routes.append(Route("/metrics", endpoints.metrics, methods=["GET"]))
    if beacon is not None:
        routes.append(Route(path.rstrip("/") + "/events", endpoints.events, methods=["POST", "OPTIONS"]))
    app = Starlette(
        routes=routes,
        # The route's fast path sits outside ProxyHeadersMiddleware: its core gives every answer its request id,
        # security headers and body cap itself (ProxyCore.prepare, finish, drain_body), so the middleware would only
        # scan the request's headers and the response's a second time. Everything else goes through it.
        middleware=[
            Middleware(_DirectRoute, path=path, endpoint=endpoints.client_secrets_asgi),
            Middleware(ProxyHeadersMiddleware, max_bytes=proxy.max_body_bytes),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=endpoints.lifespan,
    )
    # A path with a trailing slash would get a 307 whose Location is built from the Host header: a 404 instead.
    app.router.redirect_slashes = False
    app.state.orga_proxy = proxy
    app.state.orga_clients = clients
    return app
