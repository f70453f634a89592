"""``include("orga_ai.integrations.django.urls")``: the client-secrets route at ``ORGA_PROXY["path"]``."""

from django.urls import path

from . import client_secrets_view, route_path

app_name = "orga_ai"
urlpatterns = [path(route_path(), client_secrets_view, name="client-secrets")]
