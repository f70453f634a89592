"""aiohttp.web: the client-secrets route on an ``aiohttp.web.Application``, on the async client.

Behind your app's own login, with the user id your login handler stored in aiohttp-session's session::

    from orga_ai.integrations.aiohttp import session_user, setup

    setup(app, authenticate=session_user("user_id"))

``authenticate=`` also takes any callable of the aiohttp request, sync or ``async def`` (``lambda r: r.get("user")``
for a user your middleware put on the request): return the user id (or an object with ``.id``), or None for 401.
The origins of aiohttp-cors (``aiohttp_cors.setup(app, defaults={...})``) are the route's too; do not ``cors.add``
the route, which answers CORS itself.

Why aiohttp.web before Litestar: more of our users run it. aiohttp is the SDK's own HTTP client, so its server comes
with no new dependency; and in PyPI's download ranking (late 2026) aiohttp-cors, a server-only add-on, stands near
1,040th and aiohttp-session near 8,000th, Litestar itself near 3,810th.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .._extras import require_extra

require_extra("orga_ai.integrations.aiohttp", "aiohttp")

from aiohttp import web

from ..proxy._mount import RouteMount, drain, gather
from ..proxy._request import ProxyRequest, ProxyResponse
from ._cors import aiohttp_cors
from ._hooks import native_hook

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI
    from ..proxy import ProxyCore, ProxyPolicy

__all__ = ["MOUNT_KEY", "session_user", "setup"]

MOUNT_KEY = web.AppKey("orga_ai_mount", RouteMount)
"""``app[MOUNT_KEY]``: the app's :class:`~orga_ai.proxy._mount.RouteMount` (``.core.kill_switch``)."""


def session_user(key: str = "user_id") -> Callable[[web.Request], Any]:
    """A ready ``authenticate=`` hook: the principal is ``session[key]`` of aiohttp-session's session (what your
    login handler stored), 401 when it is absent. Needs ``aiohttp_session.setup(app, storage)``."""
    if not isinstance(key, str) or not key:
        raise ValueError("session_user(key) takes the session key your login handler sets, such as 'user_id'")

    async def session_user(request: web.Request) -> Any:
        from aiohttp_session import get_session

        return (await get_session(request)).get(key)

    session_user.__qualname__ = f"session_user({key!r})"
    return session_user


def setup(
    app: web.Application,
    *,
    orga: AsyncOrgaAI | None = None,
    policy: ProxyPolicy | None = None,
    core: ProxyCore | None = None,
    orga_options: dict[str, Any] | None = None,
    **settings: Any,
) -> RouteMount:
    """Serve ``GET``/``POST``/``OPTIONS`` ``policy.path`` (and with ``events=True``, ``POST {path}/events``) on
    ``app``. ``policy`` or its settings as keywords, or a ready ``core``; ``orga`` by default an
    ``AsyncOrgaAI(**orga_options)`` made at start-up and closed at cleanup."""
    native_hook(settings, policy, "AiohttpHook", awaits=True)
    own = "setup(app, cors_origins=[...])"
    mount = app[MOUNT_KEY] = RouteMount(policy, core=core, orga=orga, orga_options=orga_options, own=own, **settings)

    async def client_secrets(request: web.Request) -> web.Response:
        # A POST's body is received only once its head passed the checks.
        read = functools.partial(drain, request.content.iter_chunked(4096), mount.core.max_body_bytes)
        answer = await mount.serve(_proxy_request(request), read_body=read if request.method == "POST" else None)
        return _to_aiohttp(answer)

    async def session_events(request: web.Request) -> web.Response:
        read = functools.partial(gather, request.content.iter_chunked(1024))
        return _to_aiohttp(await mount.serve_events(_proxy_request(request), read))

    for method in ("GET", "POST", "OPTIONS"):
        app.router.add_route(method, mount.path, client_secrets)
    if mount.beacon is not None:
        for method in ("POST", "OPTIONS"):
            app.router.add_route(method, mount.events_path, session_events)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with mount.running(aiohttp_cors, app):  # the app, aiohttp-cors included, is complete by now
            yield

    app.cleanup_ctx.append(lifetime)
    return mount


def _proxy_request(request: web.Request) -> ProxyRequest:
    return ProxyRequest.from_pairs(
        request.method, request.path, request.headers.items(), client_host=request.remote, native=request
    )


def _to_aiohttp(response: ProxyResponse) -> web.Response:
    out = web.Response(body=response.body, status=response.status, headers=response.headers)
    if response.status == 204:
        out.headers.pop("Content-Type", None)
    return out
