"""FastAPI: the client-secrets route as an ``APIRouter``, and the same authentication as a dependency.

Behind the app's login, any dependency returning the user (a ``str`` id, an object with ``.id``, or raising
``HTTPException(401)``): ``app.include_router(create_router(principal=Depends(current_user)))``; or with a JWT:
``create_router(authenticate=JWTAuth(...))``. The app's ``CORSMiddleware`` allowlist is the route's too.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._extras import require_extra

require_extra("orga_ai.integrations.fastapi", "fastapi")

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute

from ..proxy._app import serve_events, serve_route, to_proxy_request
from ..proxy._auth import AuthenticationError, Principal
from ..proxy._errors import error_for
from ..proxy._mount import RouteMount
from ..proxy._openapi import EVENT_SUMMARY, event_request_body, event_responses, route_responses
from ..proxy._request import ProxyRequest
from ._cors import starlette_cors
from ._hooks import as_principal, not_logged_in

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI
    from ..proxy import ProxyCore, ProxyPolicy

__all__ = ["OrgaProxy", "create_router"]

_ROUTE = "Returns a single-use Orga AI session config (`ephemeralToken`, `iceServers`) for the signed-in caller."
_EVENTS = "Logs which Orga conversation a minted session became (`request_id`, `conversation_id`, `state`); 204."


class OrgaProxy:
    """The route in a FastAPI app: ``router`` to include; ``core`` is the policy (``core.kill_switch``). Takes a
    ``policy`` (or its settings as keywords: ``authenticate=``, ``events=``, ...) or a ready ``core``; ``orga`` (by
    default an ``AsyncOrgaAI(**orga_options)``, closed at shutdown); ``include_in_schema``; and ``principal`` instead
    of ``authenticate``: rate limits, the deny-list and logs then key on the app's signed-in user."""

    def __init__(
        self, *, orga: AsyncOrgaAI | None = None, policy: ProxyPolicy | None = None, core: ProxyCore | None = None,
        orga_options: dict[str, Any] | None = None, include_in_schema: bool = True, principal: Any = None,
        **settings: Any,
    ) -> None:
        if principal is not None:
            if settings.get("authenticate") or (policy and policy.authenticate) or core is not None:
                raise ValueError("give principal=Depends(...) or authenticate=..., not both")
            if not hasattr(principal, "dependency"):
                raise TypeError("principal= takes a FastAPI dependency: principal=Depends(get_current_user)")
            settings["authenticate"] = _FromDependency()
        own = "create_router(cors_origins=[...])"
        self.mount = RouteMount(policy, core=core, orga=orga, orga_options=orga_options, own=own, **settings)
        self.core, self.clients, self.beacon = self.mount.core, self.mount.clients, self.mount.beacon
        self.router = APIRouter(lifespan=self.lifespan, route_class=_DependencyRefusalRoute)  # the app's routes: as-is
        add: Any = self.router.add_api_route
        listed = {"response_class": Response, "include_in_schema": include_in_schema}
        for method in ("GET", "POST"):  # one operation id per method
            add(self.mount.path, _behind(self.endpoint, principal), methods=[method], **listed, description=_ROUTE,
                operation_id=f"orga_client_secrets_{method.lower()}", summary="Start an Orga AI session",
                responses=route_responses())
        hidden = {"methods": ["OPTIONS"], "response_class": Response, "include_in_schema": False}  # no credentials
        add(self.mount.path, self.endpoint, **hidden)
        if self.beacon is not None:  # its body is read raw, capped: the schema is described, not declared
            add(self.mount.events_path, _behind(self.events_endpoint, principal), methods=["POST"], **listed,
                status_code=204, operation_id="orga_session_events_post", summary=EVENT_SUMMARY, description=_EVENTS,
                responses=event_responses(), openapi_extra={"requestBody": event_request_body()})
            add(self.mount.events_path, self.events_endpoint, **hidden)

    async def endpoint(self, request: Request) -> Response:
        """The route."""
        return await serve_route(self.mount, request)

    async def events_endpoint(self, request: Request) -> Response:
        """The beacon."""
        return await serve_events(self.mount, request)

    async def principal(self, request: Request) -> Principal:
        """A dependency for your own routes: the caller as the route's authenticator sees it (401/403 otherwise)."""
        try:
            return await self.mount.principal(to_proxy_request(request))
        except AuthenticationError as exc:
            problem = error_for(exc)
            raise HTTPException(problem.status, problem.message, headers=problem.headers) from None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Adopt the app's ``CORSMiddleware`` (configured by now) and announce; close it all at shutdown."""
        async with self.mount.running(starlette_cors, app):
            yield


def _behind(handler: Callable[[Request], Coroutine[Any, Any, Response]], principal: Any) -> Any:
    """``handler`` behind the app's dependency; the core takes its answer after the origin check."""
    if principal is None:
        return handler

    async def endpoint(request: Request, user: Any = principal) -> Response:
        request.state.orga_principal = user
        return await handler(request)

    return endpoint


class _FromDependency:
    """The authenticator of ``principal=Depends(...)``: what the app's dependency resolved for this request."""

    may_block = False

    def __call__(self, request: ProxyRequest, /) -> Principal:
        found = request.native.state.orga_principal
        if isinstance(found, AuthenticationError):  # the dependency refused (see _DependencyRefusalRoute)
            raise found
        return as_principal(found, source="the principal dependency")


class _DependencyRefusalRoute(APIRoute):
    """A route whose ``HTTPException(401/403)`` from the ``principal`` dependency becomes the route's own refusal
    (envelope, ``WWW-Authenticate``, request id, no-store, CORS, log line); other statuses stay FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler, endpoint = super().get_route_handler(), self.endpoint
        takes_user = "user" in inspect.signature(endpoint).parameters  # the principal=Depends(...) endpoints

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                if exc.status_code not in (401, 403) or not takes_user:
                    raise
                # The core answers it like any refusal: a fixed sentence to the caller, the app's detail to the log.
                detail = f"the principal dependency raised HTTPException({exc.status_code}): {exc.detail!s:.200}"
                refusal = not_logged_in(detail) if exc.status_code == 401 else AuthenticationError(
                    "This user may not start a session.", status=403, code="forbidden", detail=detail
                )
                response: Response = await endpoint(request, refusal)
                return response

        return refusing


def create_router(**kwargs: Any) -> APIRouter:
    """``OrgaProxy(**kwargs).router``: the five-line integration."""
    return OrgaProxy(**kwargs).router
