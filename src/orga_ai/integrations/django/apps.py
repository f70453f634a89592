"""The Django app of the integration: add ``"orga_ai.integrations.django"`` to ``INSTALLED_APPS`` and Django refuses
to start with an unusable ``ORGA_PROXY`` or without an API key, naming the setting.

``manage.py check`` (and ``runserver``, ``migrate``, ...) report the problems as system checks:

* ``orga_ai.E001``: no Orga API key (``ORGA_API_KEY`` or ``ORGA_PROXY["orga_options"]["api_key"]``).
* ``orga_ai.E002``: an ``ORGA_PROXY`` value the proxy cannot use (the message names the key and why).
* ``orga_ai.E003``: ``authenticated_user`` without ``django.contrib.auth``'s ``AuthenticationMiddleware``.

A server importing the WSGI/ASGI application (gunicorn, uvicorn, daphne) runs no system checks, so ``ready()`` raises
``ImproperlyConfigured`` with the same words there.
"""

from __future__ import annotations

import sys
from typing import Any

from django.apps import AppConfig
from django.core import checks

__all__ = ["OrgaAIConfig", "check_settings"]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The integration's system checks (ids ``orga_ai.E001``-``E003``)."""
    from django.conf import settings

    from ..._client import OrgaAI
    from ..._exceptions import OrgaAIConfigurationError
    from . import AUTHENTICATED_USER, _build, _settings, authenticated_user, view_setting

    found: list[checks.CheckMessage] = []
    config = _settings()
    try:
        client = OrgaAI(**dict(config.get("orga_options") or {}))
        client.close()
    except OrgaAIConfigurationError as exc:
        hint = "Set ORGA_API_KEY in the environment, or ORGA_PROXY['orga_options']['api_key']."
        found.append(checks.Error(f"Orga proxy: {exc}", hint=hint, id="orga_ai.E001"))
    except TypeError as exc:
        found.append(checks.Error(f'ORGA_PROXY["orga_options"] is not usable: {exc}', id="orga_ai.E002"))
    try:
        _build().close()
        view_setting()
    except (ValueError, TypeError) as exc:
        found.append(checks.Error(f"ORGA_PROXY is not usable: {exc}", id="orga_ai.E002"))
    authenticate = config.get("authenticate")
    if authenticate in (AUTHENTICATED_USER, authenticated_user):
        middleware = "django.contrib.auth.middleware.AuthenticationMiddleware"
        if middleware not in getattr(settings, "MIDDLEWARE", ()):
            found.append(
                checks.Error(
                    "ORGA_PROXY['authenticate'] is authenticated_user, which reads request.user, but MIDDLEWARE "
                    f"lacks {middleware}.",
                    hint=f"Add {middleware!r} (after SessionMiddleware) to MIDDLEWARE.",
                    id="orga_ai.E003",
                )
            )
    return found


def _is_management_command() -> bool:
    # manage.py / django-admin run the system checks themselves and print them with their ids.
    program = sys.argv[0] if sys.argv else ""
    return program.endswith(("manage.py", "django-admin", "django-admin.py")) or "django" in program.rsplit("/", 1)[-1]


class OrgaAIConfig(AppConfig):  # type: ignore[misc]  # django has no type stubs here
    """Registers the system checks; refuses to start a server with an unusable configuration."""

    name = "orga_ai.integrations.django"
    label = "orga_ai"
    verbose_name = "Orga AI proxy"

    def ready(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        checks.register(check_settings)
        from . import watch_handler

        watch_handler()  # before the first request: which handler serves it picks the URL include's views
        if _is_management_command():
            return
        problems = check_settings()
        if problems:
            raise ImproperlyConfigured(" ".join(f"[{p.id}] {p.msg}" for p in problems))
