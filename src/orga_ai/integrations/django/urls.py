"""``include("orga_ai.integrations.django.urls")``: the client-secrets route at ``ORGA_PROXY["path"]`` (the async
view when Django serves ASGI, the sync one under WSGI)."""

from django.urls import path

from . import chosen_view, route_path

app_name = "orga_ai"
urlpatterns = [path(route_path(), chosen_view(), name="client-secrets")]
