"""Flask: the client-secrets route as a ``Blueprint``, on the synchronous client.

Behind your app's own login (the user id your login view put in Flask's signed session)::

    from orga_ai.integrations.flask import create_blueprint, session_user

    app.register_blueprint(create_blueprint(authenticate=session_user("user_id")))

``authenticate=`` also takes any callable of the Flask request, called inside the request context (so ``session``,
``g`` and flask-login's ``current_user`` work): return the user id (or an object with ``.id``), or None for 401.
Orga's own authenticators (``JWTAuth``, ``SharedSecretAuth``, ...) work as everywhere else. flask-cors's allowlist
for the route's path is the route's too. Rate limits use the ``limits`` sync storage (``memory://`` per process, or
``redis://`` shared by every worker).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._extras import require_extra

# Flask only: orga_ai.integrations.gcp shares this module's helpers and runs without prometheus_client.
require_extra("orga_ai.integrations.flask", "flask", "flask")

from flask import Blueprint, Response, request

from ..proxy._clients import SyncClientHolder
from ..proxy._events import EventBeacon
from ..proxy._mount import RouteMount
from ..proxy._request import ProxyRequest, ProxyResponse
from ._cors import flask_cors
from ._hooks import native_hook

if TYPE_CHECKING:
    from .._client import OrgaAI
    from ..proxy import ProxyCore, ProxyPolicy

__all__ = ["OrgaBlueprint", "create_blueprint", "session_user"]


class _SessionUser:
    def __init__(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("session_user(key) takes the session key your login view sets, such as 'user_id'")
        self.key = key

    def __call__(self, flask_request: Any, /) -> Any:
        from flask import session

        return session.get(self.key)

    def __repr__(self) -> str:
        return f"session_user({self.key!r})"


def session_user(key: str = "user_id") -> Callable[[Any], Any]:
    """A ready ``authenticate=`` hook: the principal is ``session[key]`` of Flask's signed session cookie (what your
    login view stored), 401 when it is absent. Needs the app's ``SECRET_KEY``, as Flask's session always does."""
    return _SessionUser(key)


class OrgaBlueprint(Blueprint):
    """A ``Blueprint`` serving the proxy route; ``core`` is the policy, ``close()`` releases the SDK client."""

    mount: RouteMount
    core: ProxyCore
    clients: SyncClientHolder
    beacon: EventBeacon | None = None

    def close(self) -> None:
        """Close the SDK client (if this blueprint created it) and the rate-limit storage's connections."""
        self.mount.close()


def create_blueprint(
    *,
    orga: OrgaAI | None = None,
    policy: ProxyPolicy | None = None,
    name: str = "orga_ai_proxy",
    core: ProxyCore | None = None,
    orga_options: dict[str, Any] | None = None,
    **settings: Any,
) -> OrgaBlueprint:
    """A blueprint serving ``GET``/``POST``/``OPTIONS`` ``path`` with the proxy policy.

    Args:
        orga: the SDK client; by default one ``OrgaAI(**orga_options)`` (``ORGA_API_KEY`` from the environment) is
            made at once (a missing key stops the start-up).
        policy: the route's settings (:class:`~orga_ai.proxy.ProxyPolicy`), or give them as keywords
            (``authenticate=``, ``rate_limit=``, ``cors_origins=``, ``path=`` (relative to the blueprint's
            ``url_prefix``), ``events=`` (also serve ``POST {path}/events``, docs/operations.md), ...).
            ``authenticate`` may be a callable of the Flask request (see :func:`session_user`).
        core: a ready :class:`~orga_ai.proxy.ProxyCore` instead of a policy.
    """
    require_extra("orga_ai.integrations.flask", "flask")  # the route's metrics: prometheus_client
    native_hook(settings, policy, "FlaskHook")
    own = "create_blueprint(cors_origins=[...])"
    mount = RouteMount(policy, core=core, orga=orga, orga_options=orga_options, own=own, **settings)
    blueprint = OrgaBlueprint(name, __name__)
    blueprint.mount, blueprint.core, blueprint.beacon = mount, mount.core, mount.beacon
    blueprint.clients = mount.sync_clients
    mount.start(sync=True)

    # flask-cors may be set up before or after the blueprint is registered: its allowlist is read at registration,
    # and once more at the first request, when the app is complete.
    blueprint.record_once(lambda state: mount.adopt_cors(flask_cors, state.app, (state.url_prefix or "") + mount.path))

    def client_secrets() -> Response:
        from flask import current_app

        mount.adopt_cors_once(flask_cors, current_app, request.path)
        return _to_flask(mount.serve_sync(_proxy_request(), read=request.stream.read))

    blueprint.add_url_rule(mount.path, "client_secrets", client_secrets, methods=["GET", "POST", "OPTIONS"])
    if mount.beacon is not None:

        def session_events() -> Response:
            return _to_flask(mount.serve_events_sync(_proxy_request(), request.stream.read))

        blueprint.add_url_rule(mount.events_path, "session_events", session_events, methods=["POST", "OPTIONS"])
    return blueprint


def _to_flask(response: ProxyResponse) -> Response:
    out = Response(response.body, status=response.status, headers=list(response.headers.items()))
    if response.status == 204:
        out.headers.pop("Content-Type", None)
    return out


def _proxy_request(incoming: Any = None) -> ProxyRequest:
    incoming = incoming if incoming is not None else request._get_current_object()  # type: ignore[attr-defined]
    return ProxyRequest.from_pairs(
        incoming.method,
        incoming.path,
        incoming.headers.items(),
        cookies=incoming.cookies,
        client_host=incoming.remote_addr,
        native=incoming,
    )

