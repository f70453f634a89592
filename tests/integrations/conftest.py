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
from tests.reliability.support import Canary
from tests.support import free_port, serve_aiohttp


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


def _aiohttp(emulator: RunningEmulator, stack: contextlib.ExitStack, policy: dict[str, Any]) -> Mounted:
    from aiohttp import web

    from orga_ai.integrations.aiohttp import setup

    app = web.Application()
    options = {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}
    mount = setup(app, orga_options=options, **policy)
    return Mounted("aiohttp", stack.enter_context(serve_aiohttp(app)), mount.core)


def configure_django() -> None:
    """Django's settings for the integration tests, once per process (whichever test needs them first)."""
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


def _django(emulator: RunningEmulator, stack: contextlib.ExitStack, policy: dict[str, Any]) -> Mounted:
    from django.conf import settings

    configure_django()
    from django.core.handlers.wsgi import WSGIHandler

    from orga_ai.integrations import django as orga_django

    settings.ORGA_PROXY = {
        "orga_options": {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0},
        **policy,
    }
    orga_django.reset()
    stack.callback(orga_django.reset)
    _reload_urls()  # the URL include reads ORGA_PROXY (its "events" key) when it is loaded
    stack.callback(_reload_urls)
    url = stack.enter_context(serve_wsgi(WSGIHandler()))
    return Mounted("django", url, orga_django.get_core())


def _reload_urls() -> None:
    import importlib

    from django.urls import clear_url_caches

    from orga_ai.integrations.django import urls

    importlib.reload(urls)
    clear_url_caches()


FRAMEWORKS = {"fastapi": _fastapi, "flask": _flask, "aiohttp": _aiohttp, "django": _django}


@pytest.fixture(params=sorted(FRAMEWORKS))
def mount(request: pytest.FixtureRequest, emulator: RunningEmulator) -> Iterator[MountFactory]:
    """``mount(**policy)``: the proxy mounted in one framework (each test runs once per framework)."""
    build = FRAMEWORKS[request.param]
    with contextlib.ExitStack() as stack:

        def factory(**policy: Any) -> Mounted:
            policy.setdefault("authenticate", jwt_auth())
            return build(emulator, stack, policy)

        yield factory


# -- the function entry points (AWS Lambda, Cloud Functions, the ASGI/WSGI function files) ---------------------------

FUNCTION_SECRET = "function-shared-secret-Vq8Lm2Xz-4455667788"
"""The shared secret callers of the function tests present (a canary: it must never be logged or echoed)."""


@pytest.fixture
def leak_canary(emulator: RunningEmulator) -> Iterator[Canary]:
    """The reliability suite's canary over one function test: the API key and the callers' secret are registered
    up front, tokens and TURN credentials as the test receives them (:func:`scan_answer`); every log record of the
    test (orga_ai at DEBUG, tracebacks included) is scanned at the end, and the test fails on any hit."""
    import logging

    canary = Canary()
    canary.add(emulator.api_key, "api key")
    canary.add(FUNCTION_SECRET, "shared secret")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    orga_logger = logging.getLogger("orga_ai")
    saved_level = orga_logger.level
    orga_logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield canary
    finally:
        root.removeHandler(handler)
        orga_logger.setLevel(saved_level)
    for text in records:
        canary.scan(text, "log")
    assert not canary.hits, [(hit.label, hit.source) for hit in canary.hits]


def scan_answer(canary: Canary, text: str, source: str = "response") -> None:
    """Scan one answer (an event response, an HTTP body and headers) for the known secrets, then register the
    token and TURN credentials it hands out, so that any later log line repeating them is caught."""
    import json

    canary.scan(text, source)
    assert not canary.hits, [(hit.label, hit.source) for hit in canary.hits]
    try:
        payload = json.loads(text)
    except ValueError:
        return
    body = payload.get("body") if isinstance(payload, dict) and "statusCode" in payload else payload
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return
    if isinstance(body, dict):
        canary.add_session_config(body)
