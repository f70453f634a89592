"""``include("orga_ai.integrations.django.urls")``: the client-secrets route at ``ORGA_PROXY["path"]`` (the async
view when Django serves ASGI, the sync one under WSGI), and its events beacon at ``{path}/events`` when
``ORGA_PROXY["events"]`` is true."""

from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, path
from django.urls.resolvers import RoutePattern

from . import chosen_events_view, chosen_view, events_enabled, route_path, view_setting, watch_handler


class _ServedPattern(URLPattern):  # type: ignore[misc]  # django has no type stubs here
    """A route whose view is chosen on each resolve (:func:`~orga_ai.integrations.django.chosen_view`), not when
    the URLs are loaded: whoever loads them first (daphne's runserver runs the system checks before serving ASGI;
    a sync middleware such as LocaleMiddleware loads them in a worker thread), the request gets the server's view."""

    def __init__(self, route: str, choose: Callable[[], Any], name: str) -> None:
        self._choose = choose
        super().__init__(RoutePattern(route, name=name, is_endpoint=True), choose(), name=name)

    @property
    def callback(self) -> Any:
        return self._choose()

    @callback.setter
    def callback(self, view: Any) -> None:  # URLPattern.__init__ sets it; the choice stays dynamic
        pass


def _route(route: str, choose: Callable[[], Any], name: str) -> URLPattern:
    if view_setting() is not None:
        return path(route, choose(), name=name)
    return _ServedPattern(route, choose, name)


watch_handler()
app_name = "orga_ai"
urlpatterns = [_route(route_path(), chosen_view, "client-secrets")]
if events_enabled():
    urlpatterns.append(_route(route_path().rstrip("/") + "/events", chosen_events_view, "session-events"))
