"""``include("orga_ai.integrations.django.urls")``: the client-secrets route at ``ORGA_PROXY["path"]`` (the async
view when Django serves ASGI, the sync one under WSGI), and its events beacon at ``{path}/events`` when
``ORGA_PROXY["events"]`` is true."""

from django.urls import path

from . import chosen_events_view, chosen_view, events_enabled, route_path

app_name = "orga_ai"
urlpatterns = [path(route_path(), chosen_view(), name="client-secrets")]
if events_enabled():
    urlpatterns.append(path(route_path().rstrip("/") + "/events", chosen_events_view(), name="session-events"))
