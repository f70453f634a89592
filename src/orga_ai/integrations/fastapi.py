"""FastAPI: the client-secrets route as an ``APIRouter``, and the same authentication as a dependency.

Behind your app's own login, with any dependency that returns the current user (a ``str`` id, an object with
``.id``, or raises ``HTTPException(401)``)::

    app.include_router(create_router(principal=Depends(get_current_user)))

or with your app's JWT::

    app.include_router(create_router(authenticate=JWTAuth(secret=SECRET, audience="my-app", issuer=ISSUER)))

The router carries its own lifespan (FastAPI merges it into the app's), which closes the SDK client at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._extras import require_extra

require_extra("orga_ai.integrations.fastapi", "fastapi")

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute

from ..proxy._app import drain_body, read_event_body, to_proxy_request, to_starlette_response
from ..proxy._auth import AuthenticationError, Principal, to_principal
from ..proxy._clients import AsyncClientHolder
from ..proxy._core import ProxyCore
from ..proxy._errors import error_for
from ..proxy._events import EventBeacon
from ..proxy._openapi import EVENT_SUMMARY, event_request_body, event_responses, route_responses
from ..proxy._policy import ProxyPolicy
from ..proxy._request import ProxyRequest
from ._cors import adopt, starlette_cors
from ._hooks import as_principal, not_logged_in

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI

__all__ = ["OrgaProxy", "create_router"]


class OrgaProxy:
    """The proxy policy mounted in a FastAPI app.

    Args:
        orga: the SDK client; by default one ``AsyncOrgaAI(**orga_options)`` is made on first use and closed at
            shutdown (``prefetch`` is passed on when the SDK supports it).
        path: where the route is served.
        core: a ready :class:`~orga_ai.proxy.ProxyCore`; otherwise ``policy`` (``authenticate=``, ``rate_limit=``,
            ``cors_origins=``, ...) builds one.
        include_in_schema: list the route in the app's OpenAPI document.
        principal: a FastAPI dependency that returns the signed-in user (``principal=Depends(get_current_user)``):
            a ``str`` id, an object with ``.id``, or it raises ``HTTPException(401)``. Instead of ``authenticate``;
            rate limits, the deny-list and logs then key on that user.
        events: also serve ``POST {path}/events``, the beacon that logs ``{request_id, conversation_id, state}``
            (authenticated like the route, rate-limited on its own window, 1 KiB at most; docs/operations.md).

    Attributes:
        router: the ``APIRouter`` to ``include_router``.
        core: the policy (``core.kill_switch`` stops minting live).
    """

    def __init__(
        self,
        *,
        orga: AsyncOrgaAI | None = None,
        policy: ProxyPolicy | None = None,
        core: ProxyCore | None = None,
        orga_options: dict[str, Any] | None = None,
        include_in_schema: bool = True,
        principal: Any = None,
        **settings: Any,
    ) -> None:
        if principal is not None:
            given = settings.get("authenticate") or (policy is not None and policy.authenticate is not None)
            if given or core is not None:
                raise ValueError("give principal=Depends(...) or authenticate=..., not both")
            if not hasattr(principal, "dependency"):
                raise TypeError("principal= takes a FastAPI dependency: principal=Depends(get_current_user)")
            settings["authenticate"] = _FromDependency()
        if core is None:
            core = ProxyCore(policy, **settings)
            core.cors_setting = "create_router(cors_origins=[...])"
            route = core.policy
        else:
            route = core.policy.replace(**settings) if settings else core.policy
        path, events = route.path, route.events
        self.core = core
        self.clients = AsyncClientHolder(self.core.metrics, orga, options=orga_options, prefetch=route.prefetch)
        # The route class only changes this router's routes: the app's own routes and exception handlers are untouched.
        self.router = APIRouter(lifespan=self.lifespan, route_class=_DependencyRefusalRoute)
        endpoint: Any = self.endpoint
        if principal is not None:
            # The app's dependency runs first (FastAPI solves it); the core then takes its answer as the principal,
            # in its usual place in the order (after the origin check, before the deny-list and the rate limit).
            # When it refuses (HTTPException 401/403), _DependencyRefusalRoute calls this with user=None and the
            # refusal in request.state, and the core answers it like any refusal of the route.
            endpoint = _with_principal(self.endpoint, principal)

        # One operation per method (one id each), and the preflight outside the schema and the dependency: a
        # browser's OPTIONS carries no credentials.
        for method in ("GET", "POST"):
            self.router.add_api_route(
                path,
                endpoint,
                methods=[method],
                response_class=Response,
                include_in_schema=include_in_schema,
                operation_id=f"orga_client_secrets_{method.lower()}",
                summary="Start an Orga AI session",
                description=_DESCRIPTION,
                responses=route_responses(),
            )
        self.router.add_api_route(
            path, self.endpoint, methods=["OPTIONS"], response_class=Response, include_in_schema=False
        )
        self.beacon: EventBeacon | None = None
        if events:
            self.beacon = EventBeacon(self.core)
            beacon_endpoint: Any = self.events_endpoint
            if principal is not None:
                beacon_endpoint = _with_principal(self.events_endpoint, principal)
            events_path = path.rstrip("/") + "/events"
            # The body is read raw (1 KiB cap, before any parsing): its schema is described, not declared.
            self.router.add_api_route(
                events_path,
                beacon_endpoint,
                methods=["POST"],
                response_class=Response,
                status_code=204,
                include_in_schema=include_in_schema,
                operation_id="orga_session_events_post",
                summary=EVENT_SUMMARY,
                description=_EVENTS_DESCRIPTION,
                responses=event_responses(),
                openapi_extra={"requestBody": event_request_body()},
            )
            self.router.add_api_route(
                events_path, self.events_endpoint, methods=["OPTIONS"], response_class=Response, include_in_schema=False
            )

    async def endpoint(self, request: Request) -> Response:
        """The route: translate, hand to the core, translate back."""
        # A POST's body is received only once its head passed the checks (judged before any body byte is waited for).
        read_body = None
        if request.method == "POST":
            read_body = functools.partial(drain_body, request.receive, self.core.max_body_bytes)
        response = await self.core.handle(to_proxy_request(request), self.clients.get(), read_body=read_body)
        return to_starlette_response(response)

    async def events_endpoint(self, request: Request) -> Response:
        """``POST {path}/events``: the beacon (see :class:`~orga_ai.proxy._events.EventBeacon`)."""
        assert self.beacon is not None
        read = functools.partial(read_event_body, request.receive)
        return to_starlette_response(await self.beacon.handle(to_proxy_request(request), read))

    async def principal(self, request: Request) -> Principal:
        """A dependency: the caller as the proxy's authenticator sees it (401/403 otherwise), for your own routes."""
        prepared = self.core.prepare(to_proxy_request(request))
        try:
            if getattr(self.core.authenticate, "may_block", False):
                found = await asyncio.to_thread(self.core.authenticate, prepared)
            else:
                found = self.core.authenticate(prepared)
        except AuthenticationError as exc:
            problem = error_for(exc)
            raise HTTPException(problem.status, problem.message, headers=problem.headers) from None
        return to_principal(found, source=self.core.auth_name)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Announce the policy at start-up; close the SDK client and the rate-limit storage at shutdown."""
        # The app's CORSMiddleware is configured by now: its allowlist is the route's too (no listing twice).
        explicit = bool(self.core.cors_origins)
        adopt(self.core, starlette_cors(app, own="create_router(cors_origins=[...])", explicit=explicit))
        self.core.announce()
        self.clients.get()
        try:
            yield
        finally:
            await self.clients.aclose()
            await self.core.rate_limiter.aclose()
            if self.beacon is not None:
                await self.beacon.aclose()


_DESCRIPTION = (
    "Returns a single-use Orga AI session config (`ephemeralToken`, `iceServers`, `expiresAt`) for the signed-in "
    "caller; give it to the Orga client SDK to start a voice/video session. Never cached. Refusals use the "
    "`{\"error\": {\"code\", \"message\", \"requestId\"}}` envelope; 429 and 503 carry `Retry-After`."
)


_EVENTS_DESCRIPTION = (
    "Tells the server which Orga conversation a minted session became (`request_id` from the route's "
    "`X-Request-ID`, `conversation_id`, `state`), for its logs. Authenticated like the route, rate-limited on its "
    "own window, 1 KiB at most; answers 204. Refusals use the `{\"error\": {\"code\", \"message\", "
    "\"requestId\"}}` envelope."
)


def _with_principal(handler: Callable[[Request], Coroutine[Any, Any, Response]], principal: Any) -> Any:
    """``handler`` behind the app's dependency: FastAPI solves ``principal`` first, and its answer is left in
    ``request.state`` for :class:`_FromDependency`."""

    async def endpoint(request: Request, user: Any = principal) -> Response:
        request.state.orga_principal = user
        return await handler(request)

    return endpoint


class _FromDependency:
    """The authenticator of ``principal=Depends(...)``: the user the app's dependency resolved for this request."""

    may_block = False

    def __call__(self, request: ProxyRequest, /) -> Principal:
        state = getattr(request.native, "state", None)
        refusal = getattr(state, "orga_refusal", None)
        if refusal is not None:
            raise refusal
        return as_principal(getattr(state, "orga_principal", None), source="the principal dependency")

    def __repr__(self) -> str:
        return "FastAPIDependency()"


class _DependencyRefusalRoute(APIRoute):
    """A route of the router whose ``HTTPException(401/403)`` from the app's ``principal`` dependency becomes the
    route's own refusal: the error envelope, the ``WWW-Authenticate`` reason, the request id, no-store, CORS and
    the ``orga_ai.proxy.refused`` line, as for every other refusal. Other statuses keep FastAPI's handling."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        endpoint = self.endpoint
        takes_user = "user" in inspect.signature(endpoint).parameters  # the principal=Depends(...) endpoints

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                if exc.status_code not in (401, 403) or not takes_user:
                    raise
                request.state.orga_refusal = _refusal(exc)
                response: Response = await endpoint(request, None)
                return response

        return refusing


def _refusal(exc: HTTPException) -> AuthenticationError:
    """The proxy's refusal for the app's ``HTTPException``: its own fixed sentence to the caller (the app's detail,
    which may be any object, goes to the log line)."""
    detail = f"the principal dependency raised HTTPException({exc.status_code}): {exc.detail!s:.200}"
    if exc.status_code == 401:
        return not_logged_in(detail)
    return AuthenticationError("This user may not start a session.", status=403, code="forbidden", detail=detail)


def create_router(**kwargs: Any) -> APIRouter:
    """``OrgaProxy(**kwargs).router``: the five-line integration."""
    return OrgaProxy(**kwargs).router
