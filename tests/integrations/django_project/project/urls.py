from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, resolve


def which_view(request: HttpRequest) -> HttpResponse:
    """Which of the two views the include chose for ``?path=`` (the route by default): the tests assert async under
    ASGI, sync under WSGI."""
    return HttpResponse(resolve(request.GET.get("path", "/api/orga-client-secrets")).func.__name__)


urlpatterns = [
    path("login/", auth_views.LoginView.as_view()),
    path("logout/", auth_views.LogoutView.as_view()),
    path("which-view/", which_view),
    path("", include("orga_ai.integrations.django.urls")),
]
