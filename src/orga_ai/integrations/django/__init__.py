"""Django: the client-secrets route as a view (sync for WSGI, async for ASGI), and a URL include.

In ``settings.py``::

    INSTALLED_APPS = [..., "orga_ai.integrations.django"]   # start-up checks (manage.py check: orga_ai.E001...)
    ORGA_PROXY = {
        "authenticate": "orga_ai.integrations.django.authenticated_user",  # Django's own login; or a dotted path
        "rate_limit": "10/minute",
    }

In ``urls.py``::

    urlpatterns = [path("", include("orga_ai.integrations.django.urls"))]

``ORGA_PROXY`` takes the settings of :class:`orga_ai.proxy.ProxyPolicy` by their names (``path`` may omit
its leading slash; default ``api/orga-client-secrets``), plus ``orga_options`` (for ``OrgaAI(...)``) and ``view``
(``"sync"`` or ``"async"``; by
default the URL include serves the async view, on ``AsyncOrgaAI``, when Django serves ASGI, and the sync one, on
``OrgaAI``, under WSGI) and ``events`` (``True``: the URL include also serves ``POST {path}/events``, the beacon of
docs/operations.md, with the route's authentication, its own rate limit and a 1 KiB cap). Authenticators receive a
:class:`~orga_ai.proxy.ProxyRequest` whose ``native`` is the
``HttpRequest`` after the middleware ran (``request.user``, ``request.session``); on the async view they run through
``sync_to_async``, so they may use the ORM. The view is CSRF-exempt: it changes nothing on the server, and the core
refuses any cross-site ``Origin`` that is not allowed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, cast

from ..._extras import require_extra

require_extra("orga_ai.integrations.django", "django")

from ..._exceptions import OrgaAIConfigurationError
from ...proxy._auth import Principal
from ...proxy._core import DEFAULT_PATH, ProxyCore
from ...proxy._errors import error_for, json_error
from ...proxy._events import read_capped
from ...proxy._mount import RouteMount
from ...proxy._policy import ProxyPolicy
from ...proxy._request import ProxyRequest, ProxyResponse, new_request_id
from .._cors import django_cors
from .._hooks import not_logged_in

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

__all__ = [
    "async_client_secrets_view",
    "async_events_view",
    "authenticated_user",
    "client_secrets_view",
    "events_view",
    "get_core",
    "reset",
    "route_path",
]

AUTHENTICATED_USER = "orga_ai.integrations.django.authenticated_user"


def authenticated_user(request: ProxyRequest, /) -> Principal:
    """``ORGA_PROXY["authenticate"]`` for an app behind Django's own login: the principal is ``str(request.user.pk)``
    of the signed-in user (any auth backend: session, token, remote user); 401 for an anonymous one. Needs
    ``django.contrib.auth`` and its ``AuthenticationMiddleware`` (``manage.py check`` says so: orga_ai.E003)."""
    user = getattr(request.native, "user", None)
    if user is None:
        raise TypeError(
            "authenticated_user needs request.user: add django.contrib.auth.middleware.AuthenticationMiddleware "
            "to MIDDLEWARE"
        )
    if not user.is_authenticated:
        raise not_logged_in("anonymous Django user")
    return Principal(str(user.pk), kind="user")

logger = logging.getLogger("orga_ai.proxy")
_lock = threading.Lock()
_state: dict[str, Any] = {}


def _settings() -> dict[str, Any]:
    from django.conf import settings

    return dict(getattr(settings, "ORGA_PROXY", {}))


def route_path() -> str:
    """The route's path for ``urls.py``: ``ORGA_PROXY["path"]`` without its leading slash."""
    return str(_settings().get("path", DEFAULT_PATH)).lstrip("/")


def _build() -> RouteMount:
    from django.utils.module_loading import import_string

    config = _settings()
    config.pop("view", None)  # the adapter's own; path and events are the policy's
    config["path"] = "/" + route_path()  # urls.py takes it without its leading slash
    orga_options = config.pop("orga_options", None)
    authenticate = config.get("authenticate")
    if isinstance(authenticate, str):
        try:
            config["authenticate"] = import_string(authenticate)
        except ImportError as exc:
            raise ValueError(f'ORGA_PROXY["authenticate"] = {authenticate!r} cannot be imported: {exc}') from None
    policy = ProxyPolicy.from_mapping(config, where="settings.ORGA_PROXY")
    mount = RouteMount(policy, orga_options=orga_options, own='ORGA_PROXY["cors_origins"]')
    mount.adopt_cors(django_cors, "/" + route_path())
    mount.start(client=False)  # the client is made on first use: a missing key is answered in the route's JSON
    return mount


def events_enabled() -> bool:
    """Whether ``ORGA_PROXY["events"]`` asks for the beacon."""
    return bool(_settings().get("events", False))


def _mount() -> RouteMount:
    with _lock:
        if "mount" not in _state:
            _state["mount"] = _build()
        mount: RouteMount = _state["mount"]
        return mount


def get_core() -> ProxyCore:
    """The process's proxy policy, built from ``settings.ORGA_PROXY`` on first use (``.kill_switch`` is live)."""
    return _mount().core


def reset() -> None:
    """Close the SDK client and forget the policy (tests, or after changing ``settings.ORGA_PROXY``)."""
    with _lock:
        mount: RouteMount | None = _state.pop("mount", None)
    if mount is not None:
        mount.close()  # an AsyncOrgaAI belongs to its event loop; the SDK closes it at exit


def _to_django(response: ProxyResponse) -> HttpResponse:
    from django.http import HttpResponse

    out = HttpResponse(response.body, status=response.status)
    if response.status == 204:
        del out["Content-Type"]
    for name, value in response.headers.items():
        out[name] = value
    return out


def _proxy_request(request: HttpRequest) -> ProxyRequest:
    return ProxyRequest.from_pairs(
        request.method or "GET",
        request.path,
        list(request.headers.items()),
        cookies=dict(request.COOKIES),
        client_host=request.META.get("REMOTE_ADDR"),
        native=request,
    )


def _misconfigured(exc: OrgaAIConfigurationError) -> HttpResponse:
    # Without the app in INSTALLED_APPS nothing checked the settings at start-up: answer in the route's JSON, not
    # with Django's HTML 500, and say in the log which setting is missing.
    problem = error_for(exc)
    request_id = new_request_id()
    logger.error("orga proxy: %s (request_id=%s); add 'orga_ai.integrations.django' to INSTALLED_APPS to catch "
                 "this at start-up", exc, request_id)
    return _to_django(json_error(problem.status, problem.code, problem.message, request_id))


def _client_secrets(request: HttpRequest) -> HttpResponse:
    mount = _mount()
    try:
        return _to_django(mount.serve_sync(_proxy_request(request)))
    except OrgaAIConfigurationError as exc:
        return _misconfigured(exc)


async def _offload(authenticate: Any, request: ProxyRequest) -> Any:
    from asgiref.sync import sync_to_async

    # thread_sensitive: the ORM calls of a hook (request.user) run where Django's sync code runs.
    return await sync_to_async(authenticate, thread_sensitive=True)(request)


async def _async_client_secrets(request: HttpRequest) -> HttpResponse:
    from asgiref.sync import sync_to_async

    mount = await sync_to_async(_mount, thread_sensitive=True)()
    try:
        return _to_django(await mount.serve(_proxy_request(request), offload=_offload))
    except OrgaAIConfigurationError as exc:
        return _misconfigured(exc)


def _events(request: HttpRequest) -> HttpResponse:
    return _to_django(_mount().serve_events_sync(_proxy_request(request), request.read))


async def _async_events(request: HttpRequest) -> HttpResponse:
    from asgiref.sync import sync_to_async

    mount = await sync_to_async(_mount, thread_sensitive=True)()
    body = read_capped(request.read) if request.method == "POST" else b""  # Django has the body buffered by now
    return _to_django(await mount.serve_events(_proxy_request(request), body, offload=_offload))


def _make_view(view: Any) -> Any:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.views.decorators.csrf import csrf_exempt

    wrapped = csrf_exempt(view)
    if iscoroutinefunction(view) and not iscoroutinefunction(wrapped):
        # Django before 5.0 wraps an async view in a sync function that returns the coroutine: Django must await it.
        markcoroutinefunction(wrapped)
    return wrapped


client_secrets_view = _make_view(_client_secrets)
"""The sync view (WSGI, on ``OrgaAI``): ``path("api/orga-client-secrets", client_secrets_view)``."""

async_client_secrets_view = _make_view(_async_client_secrets)
"""The async view (ASGI, on ``AsyncOrgaAI``); the URL include picks it by itself when Django serves ASGI."""

events_view = _make_view(_events)
"""The beacon's sync view: ``path("api/orga-client-secrets/events", events_view)`` (the URL include mounts it when
``ORGA_PROXY["events"]`` is true)."""

async_events_view = _make_view(_async_events)
"""The beacon's async view (ASGI)."""


def view_setting() -> str | None:
    """``ORGA_PROXY["view"]``: ``"sync"``, ``"async"``, or None to let the URL include follow the server."""
    wanted = _settings().get("view")
    if wanted not in (None, "sync", "async"):
        raise ValueError(f'ORGA_PROXY["view"] must be "sync" or "async", not {wanted!r}')
    return cast("str | None", wanted)


_handler_kind: str | None = None  # "asgi" or "wsgi": the Django handler that started this process's first request


def _note_handler(sender: Any, **kwargs: Any) -> None:
    """``request_started`` receiver, once per process: Django's ASGI handler sends the signal with ``scope``, the
    WSGI one with ``environ``. It then disconnects: a process does not change servers, and no request pays for it."""
    global _handler_kind
    from django.core.signals import request_started

    _handler_kind = "asgi" if "scope" in kwargs else "wsgi"
    request_started.disconnect(dispatch_uid=_NOTE_HANDLER)


_NOTE_HANDLER = "orga_ai.integrations.django.note_handler"


def watch_handler() -> None:
    """Learn which handler serves this process from its first request (see :func:`serves_asgi`)."""
    from django.core.signals import request_started

    if _handler_kind is None:
        request_started.connect(_note_handler, dispatch_uid=_NOTE_HANDLER)


def serves_asgi() -> bool:
    """Whether Django serves this process through its ASGI handler: known from the first request's
    ``request_started``; before that, whether the caller runs inside an event loop (Django's ASGI handler resolves
    URLs in its loop, the WSGI one never in one)."""
    if _handler_kind is not None:
        return _handler_kind == "asgi"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def chosen_view() -> Any:
    """The route's view for the current server: ``ORGA_PROXY["view"]`` when set, else the async one when Django
    serves ASGI (:func:`serves_asgi`) and the sync one otherwise. The URL include asks on every resolve, so it does
    not matter what loaded the URLs first (daphne's runserver checks, a sync middleware in a worker thread)."""
    wanted = view_setting()
    if wanted is None:
        wanted = "async" if serves_asgi() else "sync"
    return async_client_secrets_view if wanted == "async" else client_secrets_view


def chosen_events_view() -> Any:
    """The beacon's view matching :func:`chosen_view` (sync or async)."""
    return async_events_view if chosen_view() is async_client_secrets_view else events_view
