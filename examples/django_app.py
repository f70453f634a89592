"""The proxy route in a Django project, as one runnable file (a real project splits it into settings.py and
urls.py; the two lines that matter are ``ORGA_PROXY`` and the ``include``).

    export ORGA_API_KEY=sk_orga_ai_...  APP_JWT_SECRET=<the key your app signs its JWTs with>
    python examples/django_app.py runserver 8000
"""

import os
import sys

from django.conf import settings

from orga_ai.proxy import JWTAuth

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", os.urandom(32).hex()),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        # settings.py: the proxy policy (``authenticate`` may also be a dotted path to your callable)
        ORGA_PROXY={
            "authenticate": JWTAuth(
                secret=os.environ["APP_JWT_SECRET"], audience="my-app", issuer="https://my-app.example/"
            ),
            "rate_limit": "10/minute",
        },
    )

from django.urls import include, path

# urls.py: the route
urlpatterns = [path("", include("orga_ai.integrations.django.urls"))]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
