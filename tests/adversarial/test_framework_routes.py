"""The route mounted in real framework apps (FastAPI/Starlette, Flask, Django), served over HTTP: what an attacker's
web page gets out of the app's own CORS set-up, and what a login hook's odd user ids do to the rate limit.

CORS: the route adopts the app's CORS allowlist (orga_ai/integrations/_cors.py). An app whose CORS does not allow
credentials has not agreed to cookie-carrying cross-origin calls, so the route must not answer one with
``Access-Control-Allow-Credentials: true`` and a token; and a catch-all origin regex (``https://.*``) is a wildcard by
another name: the route refuses to start (or refuses with a 403) naming the setting, and ``https://evil.example``
never gets a token.

``Access-Control-Allow-Origin`` carries the allowlist's entry in canonical form, never the request's own spelling.
The canonical form is the origin as browsers serialize it (RFC 6454: lower-case scheme and host, no trailing slash),
which is how the route stores its allowlist: an entry configured as ``https://App.Example`` is sent back as
``https://app.example``. (Sent back with its capitals, a browser would refuse it: the Fetch standard compares this
header with the page's origin byte for byte.)
"""

from __future__ import annotations  # FastAPI resolves the test apps' annotations from this module

import contextlib
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from orga_ai.proxy import ProxyRequest
from orga_ai.testing import RunningEmulator
from tests.integrations.conftest import _reload_urls, configure_django, serve_wsgi
from tests.proxy.conftest import upstream_calls
from tests.support import serve

ROUTE = "/api/orga-client-secrets"
ALLOWED = "https://app.example"
EVIL = "https://evil.example"
CATCH_ALL = ("https://.*", ".+")
CREDENTIALED = {"origins": [ALLOWED], "supports_credentials": True}
"""flask-cors allowing credentials for the app's origin: what a cookie-session app sets (the route adopts it)."""
SESSIONS: dict[str, str] = {}
"""The apps' own cookie sessions: token -> user id."""


def _options(emulator: RunningEmulator) -> dict[str, Any]:
    return {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}


def _session(user: str) -> dict[str, str]:
    token = secrets.token_urlsafe(16)
    SESSIONS[token] = user
    return {"app_session": token}


def _cross_origin(url: str, origin: str, cookies: dict[str, str]) -> httpx.Response:
    with httpx.Client(cookies=cookies, timeout=15) as client:
        return client.get(url + ROUTE, headers={"Origin": origin})


# -- FastAPI / Starlette ----------------------------------------------------------------------------------------------


def _cookie_user(request: Request) -> str:
    user = SESSIONS.get(request.cookies.get("app_session", ""))
    if user is None:
        raise HTTPException(401, "log in first")
    return user


@contextlib.contextmanager
def fastapi_route(emulator: RunningEmulator, cors: dict[str, Any] | None, **route: Any) -> Iterator[str]:
    from fastapi.middleware.cors import CORSMiddleware

    from orga_ai.integrations.fastapi import create_router

    app = FastAPI()
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
    app.include_router(create_router(principal=Depends(_cookie_user), orga_options=_options(emulator), **route))
    with serve(app) as url:
        yield url


def test_starlette_cors_without_credentials_gives_no_credentialed_token(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The app does not start: its lifespan names the setting (no page gets a credentialed token from it).
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(RuntimeError, match="did not start"),
        fastapi_route(emulator, {"allow_origins": [ALLOWED]}),
    ):
        pass
    assert "CORSMiddleware(allow_credentials=False) does not allow credentials" in caplog.text
    assert upstream_calls(emulator) == []


@pytest.mark.parametrize("regex", CATCH_ALL)
def test_starlette_catch_all_origin_regex_is_refused_naming_it(
    regex: str, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    cors = {"allow_origins": [ALLOWED], "allow_origin_regex": regex, "allow_credentials": True}
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(RuntimeError, match="did not start"),
        fastapi_route(emulator, cors),
    ):
        pass
    assert "allow_origin_regex" in caplog.text and "lets every origin in" in caplog.text
    assert upstream_calls(emulator) == []


def test_access_control_allow_origin_is_the_allowlist_entry_not_the_request_spelling(
    emulator: RunningEmulator,
) -> None:
    with fastapi_route(emulator, None, cors_origins=["https://App.Example"], rate_limit=None) as url:
        cookies = _session("alice")
        spellings = {origin: _cross_origin(url, origin, cookies) for origin in (ALLOWED, "HTTPS://APP.EXAMPLE")}
    for origin, answer in spellings.items():
        assert answer.status_code == 200, (origin, answer.text[:200])
        assert answer.headers["access-control-allow-origin"] == ALLOWED, origin


# -- Flask (flask-cors) -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def flask_route(
    emulator: RunningEmulator, cors: dict[str, Any], authenticate: Callable[[Any], Any] | None = None, **route: Any
) -> Iterator[str]:
    """A Flask app whose flask-cors is set up before the route is registered (so adoption happens at start-up)."""
    from flask import Flask
    from flask_cors import CORS

    from orga_ai.integrations.flask import create_blueprint

    def cookie_user(flask_request: Any) -> Any:
        return SESSIONS.get(flask_request.cookies.get("app_session", ""))

    app = Flask(__name__)
    CORS(app, **cors)
    blueprint = create_blueprint(authenticate=authenticate or cookie_user, orga_options=_options(emulator), **route)
    try:
        app.register_blueprint(blueprint)
        with serve_wsgi(app) as url:
            yield url
    finally:
        blueprint.close()


def test_flask_cors_without_credentials_gives_no_credentialed_token(emulator: RunningEmulator) -> None:
    refused = r"supports_credentials=False\) \(flask-cors\) does not allow credentials"
    with pytest.raises(ValueError, match=refused), flask_route(emulator, {"origins": [ALLOWED]}):
        pass


@pytest.mark.parametrize("regex", CATCH_ALL)
def test_flask_catch_all_origin_regex_is_refused_naming_it(regex: str, emulator: RunningEmulator) -> None:
    cors = {"origins": [ALLOWED, re.compile(regex)], "supports_credentials": True}
    refused = r"flask-cors\): .* matches any origin, so it lets every origin in"
    with pytest.raises(ValueError, match=refused), flask_route(emulator, cors):
        pass
    assert upstream_calls(emulator) == []


# -- Django (django-cors-headers) -------------------------------------------------------------------------------------


def django_cookie_user(request: ProxyRequest, /) -> Any:
    from orga_ai.integrations._hooks import as_principal

    return as_principal(SESSIONS.get(request.cookies.get("app_session", "")), source="django_cookie_user")


@contextlib.contextmanager
def django_route(emulator: RunningEmulator, **cors: Any) -> Iterator[tuple[str | None, str]]:
    """The Django route behind django-cors-headers: (its URL, "") once its policy is built, or (None, why) when
    building it was refused."""
    configure_django()
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    from orga_ai.integrations import django as orga_django

    overrides = override_settings(
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF="orga_ai.integrations.django.urls",
        MIDDLEWARE=["corsheaders.middleware.CorsMiddleware"],
        ORGA_PROXY={"authenticate": django_cookie_user, "orga_options": _options(emulator)},
        **cors,
    )
    with overrides, contextlib.ExitStack() as stack:
        orga_django.reset()
        stack.callback(orga_django.reset)
        _reload_urls()
        stack.callback(_reload_urls)
        try:
            orga_django.get_core()  # what the app's start-up checks build
        except ValueError as exc:
            yield None, str(exc)
            return
        yield stack.enter_context(serve_wsgi(WSGIHandler())), ""


def test_django_cors_without_credentials_gives_no_credentialed_token(emulator: RunningEmulator) -> None:
    with django_route(emulator, CORS_ALLOWED_ORIGINS=[ALLOWED]) as (url, refusal):
        assert url is None, "the route was built on a CORS allowlist without credentials"
    assert "CORS_ALLOW_CREDENTIALS = False (django-cors-headers) does not allow credentials" in refusal


@pytest.mark.parametrize("regex", CATCH_ALL)
def test_django_catch_all_origin_regex_is_refused_naming_it(regex: str, emulator: RunningEmulator) -> None:
    cors = {"CORS_ALLOWED_ORIGINS": [ALLOWED], "CORS_ALLOWED_ORIGIN_REGEXES": [regex], "CORS_ALLOW_CREDENTIALS": True}
    with django_route(emulator, **cors) as (url, refusal):
        assert url is None, "the route was built on a catch-all origin pattern"
    assert "CORS_ALLOWED_ORIGIN_REGEXES" in refusal and "lets every origin in" in refusal
    assert upstream_calls(emulator) == []


# -- 7. principal ids -------------------------------------------------------------------------------------------------


class MethodId:
    """A user model whose ``id`` is a method (a typo'd property, say): ``.id`` is a fresh bound method each time."""

    def id(self) -> str:
        return "alice"


class ValueId:
    def __init__(self, value: Any) -> None:
        self.id = value


BAD_IDS: dict[str, Callable[[], Any]] = {
    "bound-method": MethodId,
    "float": lambda: ValueId(1.5),
    "object": lambda: ValueId(object()),
    "dict": lambda: ValueId({"user": "alice"}),
    "bytes": lambda: ValueId(b"alice"),
}
BLANK_IDS: dict[str, Callable[[], Any]] = {
    "spaces": lambda: "   ",
    "tab-newline": lambda: "\t\n",
    "blank-attribute": lambda: ValueId("  "),
}
GOOD_IDS: dict[str, Callable[[], Any]] = {
    "str": lambda: "alice",
    "int": lambda: ValueId(42),
    "uuid": lambda: ValueId(uuid.UUID("12345678-1234-5678-1234-567812345678")),
}


def _named_hook(name: str, make: Callable[[], Any]) -> Callable[[Any], Any]:
    def hook(flask_request: Any) -> Any:
        return make()

    hook.__name__ = hook.__qualname__ = f"login_hook_{name.replace('-', '_')}"
    return hook


def _four_requests(url: str) -> list[int]:
    return [httpx.get(url + ROUTE, timeout=15).status_code for _ in range(4)]


@pytest.mark.parametrize("kind", sorted(BAD_IDS))
def test_a_hook_returning_an_id_that_is_not_a_str_int_or_uuid_is_a_server_error_not_a_fresh_principal(
    kind: str, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    hook = _named_hook(kind, BAD_IDS[kind])
    with (
        caplog.at_level(logging.ERROR),
        flask_route(emulator, CREDENTIALED, hook, rate_limit="3/minute") as url,
    ):
        statuses = _four_requests(url)
    assert statuses == [500] * 4, statuses
    assert upstream_calls(emulator) == []
    naming = [
        record
        for record in caplog.records
        if record.exc_info and isinstance(record.exc_info[1], TypeError) and hook.__name__ in str(record.exc_info[1])
    ]
    assert naming, "no TypeError naming the hook in the log"
    assert len(naming) <= len(statuses), "more than one error line per request"


@pytest.mark.parametrize("kind", sorted(BLANK_IDS))
def test_a_blank_user_id_is_refused(kind: str, emulator: RunningEmulator) -> None:
    hook = _named_hook(kind, BLANK_IDS[kind])
    with flask_route(emulator, CREDENTIALED, hook, rate_limit="3/minute") as url:
        statuses = _four_requests(url)
    assert 200 not in statuses, statuses
    assert upstream_calls(emulator) == []


@pytest.mark.parametrize("kind", sorted(GOOD_IDS))
def test_a_stable_user_id_is_rate_limited_as_one_user(kind: str, emulator: RunningEmulator) -> None:
    hook = _named_hook(kind, GOOD_IDS[kind])
    with flask_route(emulator, CREDENTIALED, hook, rate_limit="3/minute") as url:
        statuses = _four_requests(url)
    assert statuses == [200, 200, 200, 429], statuses


def test_a_fastapi_dependency_returning_a_bound_method_id_mints_nothing(emulator: RunningEmulator) -> None:
    from orga_ai.integrations.fastapi import create_router

    def current_user() -> MethodId:
        return MethodId()

    app = FastAPI()
    app.include_router(
        create_router(principal=Depends(current_user), orga_options=_options(emulator), rate_limit="3/minute")
    )
    with serve(app) as url:
        statuses = _four_requests(url)
    assert 200 not in statuses and 429 not in statuses, statuses
    assert upstream_calls(emulator) == []
