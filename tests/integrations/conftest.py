"""Fixtures of the adapter tests: each framework served for real over HTTP, in front of the emulator."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from orga_ai.proxy import ProxyCore
from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import jwt_auth, serve
from tests.support import free_port


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve a WSGI app with werkzeug's threaded server in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="wsgi-under-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Mounted:
    """One framework app serving the proxy: its URL and the policy object behind it."""

    framework: str
    url: str
    core: ProxyCore


MountFactory = Callable[..., Mounted]


def _fastapi(emulator: RunningEmulator, stack: contextlib.ExitStack, policy: dict[str, Any]) -> Mounted:
    from fastapi import FastAPI

    from orga_ai.integrations.fastapi import OrgaProxy

    orga = OrgaProxy(
        orga_options={"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}, **policy
    )
    app = FastAPI()
    app.include_router(orga.router)
    return Mounted("fastapi", stack.enter_context(serve(app)), orga.core)


def _flask(emulator: RunningEmulator, stack: contextlib.ExitStack, policy: dict[str, Any]) -> Mounted:
    from flask import Flask

    from orga_ai.integrations.flask import create_blueprint

    blueprint = create_blueprint(
        orga_options={"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}, **policy
    )
    stack.callback(blueprint.close)
    app = Flask(__name__)
    app.register_blueprint(blueprint)
    return Mounted("flask", stack.enter_context(serve_wsgi(app)), blueprint.core)


def _django(emulator: RunningEmulator, stack: contextlib.ExitStack, policy: dict[str, Any]) -> Mounted:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="integration-tests-only-" + "k" * 40,
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF="orga_ai.integrations.django.urls",
            MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
            INSTALLED_APPS=[],
        )
        import django

        django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    from orga_ai.integrations import django as orga_django

    settings.ORGA_PROXY = {
        "orga_options": {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0},
        **policy,
    }
    orga_django.reset()
    stack.callback(orga_django.reset)
    url = stack.enter_context(serve_wsgi(WSGIHandler()))
    return Mounted("django", url, orga_django.get_core())


FRAMEWORKS = {"fastapi": _fastapi, "flask": _flask, "django": _django}


@pytest.fixture(params=sorted(FRAMEWORKS))
def mount(request: pytest.FixtureRequest, emulator: RunningEmulator) -> Iterator[MountFactory]:
    """``mount(**policy)``: the proxy mounted in one framework (each test runs once per framework)."""
    build = FRAMEWORKS[request.param]
    with contextlib.ExitStack() as stack:

        def factory(**policy: Any) -> Mounted:
            policy.setdefault("authenticate", jwt_auth())
            return build(emulator, stack, policy)

        yield factory
