"""Flask: the client-secrets route as a ``Blueprint``, on the synchronous client.

Behind your app's own login (the user id your login view put in Flask's signed session)::

    from orga_ai.integrations.flask import create_blueprint, session_user

    app.register_blueprint(create_blueprint(authenticate=session_user("user_id")))

``authenticate=`` also takes any callable of the Flask request, called inside the request context (so ``session``,
``g`` and flask-login's ``current_user`` work): return the user id (or an object with ``.id``), or None for 401.
Orga's own authenticators (``JWTAuth``, ``SharedSecretAuth``, ...) work as everywhere else.

Rate limits use the ``limits`` sync storage (``memory://`` per process, or ``redis://`` shared by every worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._extras import require_extra

# Flask only: orga_ai.integrations.gcp shares this module's helpers and runs without prometheus_client.
require_extra("orga_ai.integrations.flask", "flask", "flask")

from flask import Blueprint, Response, request

from ..proxy._auth import Principal
from ..proxy._clients import SyncClientHolder
from ..proxy._core import ProxyCore
from ..proxy._errors import json_error
from ..proxy._events import EventBeacon, read_capped
from ..proxy._policy import ProxyPolicy
from ..proxy._request import ProxyRequest, ProxyResponse, new_request_id
from ._cors import adopt, flask_cors
from ._hooks import BUILT_IN, as_principal

_adopt_lock = threading.Lock()

if TYPE_CHECKING:
    from .._client import OrgaAI

__all__ = ["OrgaBlueprint", "create_blueprint", "session_user"]


class _FlaskHook:
    """Adapts a callable of the Flask request to the proxy's authenticator protocol."""

    may_block = False

    def __init__(self, hook: Callable[[Any], Any]) -> None:
        self.hook = hook

    def __call__(self, proxy_request: ProxyRequest, /) -> Principal:
        return as_principal(self.hook(proxy_request.native), source=repr(self.hook))

    def __repr__(self) -> str:
        return f"FlaskHook({self.hook!r})"


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


def _to_flask(response: ProxyResponse) -> Response:
    out = Response(response.body, status=response.status, headers=list(response.headers.items()))
    if response.status == 204:
        out.headers.pop("Content-Type", None)
    return out


def _body_within(limit: int) -> bool:
    # A declared length is checked by the core; this catches a chunked body the server would otherwise buffer.
    if request.content_length is not None:
        return True
    seen = 0
    while chunk := request.stream.read(4096):
        seen += len(chunk)
        if seen > limit:
            return False
    return True


class OrgaBlueprint(Blueprint):
    """A ``Blueprint`` serving the proxy route; ``core`` is the policy, ``close()`` releases the SDK client."""

    core: ProxyCore
    clients: SyncClientHolder
    beacon: EventBeacon | None = None

    def close(self) -> None:
        """Close the SDK client (if this blueprint created it) and the rate-limit storage's connections."""
        self.clients.close()
        self.core.rate_limiter.close()
        if self.beacon is not None:
            self.beacon.close()


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
            made on first use.
        policy: the route's settings (:class:`~orga_ai.proxy.ProxyPolicy`), or give them as keywords
            (``authenticate=``, ``rate_limit=``, ``cors_origins=``, ``path=`` (relative to the blueprint's
            ``url_prefix``), ``events=`` (also serve ``POST {path}/events``, docs/operations.md), ...).
            ``authenticate`` may be a callable of the Flask request (see :func:`session_user`), called inside the
            request context.
        core: a ready :class:`~orga_ai.proxy.ProxyCore` instead of a policy.
    """
    require_extra("orga_ai.integrations.flask", "flask")  # the route's metrics: prometheus_client
    authenticate = settings.get("authenticate", policy.authenticate if policy is not None else None)
    if authenticate is not None and not isinstance(authenticate, BUILT_IN):
        if not callable(authenticate):
            raise TypeError(f"authenticate= must be callable, not {type(authenticate).__name__}")
        settings["authenticate"] = _FlaskHook(authenticate)
    if core is None:
        core = ProxyCore(policy, **settings)
        core.cors_setting = "create_blueprint(cors_origins=[...])"
        route = core.policy
    else:
        route = core.policy.replace(**settings) if settings else core.policy
    path, events = route.path, route.events
    policy_core = core
    explicit_cors = bool(policy_core.cors_origins)
    blueprint = OrgaBlueprint(name, __name__)
    blueprint.core = policy_core
    blueprint.clients = SyncClientHolder(policy_core.metrics, orga, options=orga_options)
    if orga is None:
        blueprint.clients.get()  # no API key (or an unusable ORGA_* setting): refuse now, naming it
    policy_core.announce()
    adopted = threading.Event()

    def adopt_app_cors(app: Any, full_path: str) -> None:
        # flask-cors may be set up before or after the blueprint is registered: look at registration, and once more
        # at the first request, when the app is complete.
        own = "create_blueprint(cors_origins=[...])"
        adopt(policy_core, flask_cors(app, full_path, own=own, explicit=explicit_cors))

    def on_register(state: Any) -> None:
        adopt_app_cors(state.app, (state.url_prefix or "") + path)

    blueprint.record_once(on_register)

    def client_secrets() -> Response:
        if not adopted.is_set():
            from flask import current_app

            with _adopt_lock:
                if not adopted.is_set():
                    adopt_app_cors(current_app, request.path)
                    adopted.set()
        if request.method == "POST" and not _body_within(policy_core.max_body_bytes):
            return _to_flask(json_error(413, "body_too_large", "Request body too large.", new_request_id()))
        return _to_flask(policy_core.handle_sync(_proxy_request(), blueprint.clients.get()))

    blueprint.add_url_rule(path, "client_secrets", client_secrets, methods=["GET", "POST", "OPTIONS"])
    if events:
        beacon = blueprint.beacon = EventBeacon(policy_core)

        def session_events() -> Response:
            body = read_capped(request.stream.read) if request.method == "POST" else b""
            return _to_flask(beacon.handle_sync(_proxy_request(), body))

        events_path = path.rstrip("/") + "/events"
        blueprint.add_url_rule(events_path, "session_events", session_events, methods=["POST", "OPTIONS"])
    return blueprint


def _proxy_request() -> ProxyRequest:
    return ProxyRequest.from_pairs(
        request.method,
        request.path,
        request.headers.items(),
        cookies=request.cookies,
        client_host=request.remote_addr,
        native=request._get_current_object(),  # type: ignore[attr-defined]
    )
