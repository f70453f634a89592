"""Django: the client-secrets route as a view, and a URL include.

In ``settings.py``::

    ORGA_PROXY = {
        "authenticate": "myproject.auth.orga_authenticate",  # a dotted path, or the callable itself
        "rate_limit": "10/minute",
        "cors_origins": ["https://app.example.com"],
    }

In ``urls.py``::

    urlpatterns = [path("", include("orga_ai.integrations.django.urls"))]

``ORGA_PROXY`` takes the keyword arguments of :class:`orga_ai.proxy.ProxyCore` plus ``path`` (default
``api/orga-client-secrets``) and ``orga_options`` (for ``OrgaAI(...)``). The view is synchronous (it runs on WSGI,
and on ASGI in Django's thread pool); it is CSRF-exempt because callers authenticate with a bearer token or a JWT
cookie and the core refuses any cross-site ``Origin`` that is not allowlisted.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ...proxy._clients import SyncClientHolder
from ...proxy._core import DEFAULT_PATH, ProxyCore, ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

__all__ = ["client_secrets_view", "get_core", "reset", "route_path"]

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _settings() -> dict[str, Any]:
    from django.conf import settings

    return dict(getattr(settings, "ORGA_PROXY", {}))


def route_path() -> str:
    """The route's path for ``urls.py``: ``ORGA_PROXY["path"]`` without its leading slash."""
    return str(_settings().get("path", DEFAULT_PATH)).lstrip("/")


def _build() -> tuple[ProxyCore, SyncClientHolder]:
    from django.utils.module_loading import import_string

    config = _settings()
    config.pop("path", None)
    orga_options = config.pop("orga_options", None)
    authenticate = config.get("authenticate")
    if isinstance(authenticate, str):
        config["authenticate"] = import_string(authenticate)
    core = ProxyCore(**config)
    core.announce()
    return core, SyncClientHolder(core.metrics, options=orga_options)


def get_core() -> ProxyCore:
    """The process's proxy policy, built from ``settings.ORGA_PROXY`` on first use (``.kill_switch`` is live)."""
    with _lock:
        if "core" not in _state:
            _state["core"], _state["clients"] = _build()
        core: ProxyCore = _state["core"]
        return core


def _clients() -> SyncClientHolder:
    get_core()
    holder: SyncClientHolder = _state["clients"]
    return holder


def reset() -> None:
    """Close the SDK client and forget the policy (tests, or after changing ``settings.ORGA_PROXY``)."""
    with _lock:
        clients, core = _state.pop("clients", None), _state.pop("core", None)
    if clients is not None:
        clients.close()
    if core is not None:
        core.rate_limiter.close()


def _to_django(response: ProxyResponse) -> HttpResponse:
    from django.http import HttpResponse

    out = HttpResponse(response.body, status=response.status)
    if response.status == 204:
        del out["Content-Type"]
    for name, value in response.headers.items():
        out[name] = value
    return out


def _client_secrets(request: HttpRequest) -> HttpResponse:
    core = get_core()
    headers = [(name, value) for name, value in request.headers.items()]
    proxy_request = ProxyRequest.from_pairs(
        request.method or "GET",
        request.path,
        headers,
        cookies=dict(request.COOKIES),
        client_host=request.META.get("REMOTE_ADDR"),
    )
    return _to_django(core.handle_sync(proxy_request, _clients().get()))


def _make_view() -> Any:
    from django.views.decorators.csrf import csrf_exempt

    return csrf_exempt(_client_secrets)


client_secrets_view = _make_view()
"""The view: ``path("api/orga-client-secrets", client_secrets_view)``."""
