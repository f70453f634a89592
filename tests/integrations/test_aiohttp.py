"""The route in a real aiohttp.web app served over HTTP: the principal is the user id the app's login stored in
aiohttp-session's session (or the user its own middleware put on the request); rate limits key on that user; the
beacon is served beside it; and aiohttp-cors's origins decide who may call from a browser."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import upstream_calls
from tests.support import serve_aiohttp

from .cors_checks import ALLOWED, REFUSED, ROUTE, check_cors_cooperates

SETTING = "aiohttp_cors.setup(app, defaults={...})"

# aiohttp-session 2.12 keeps its storage under a str key of the request, which aiohttp 3.14 warns about; the warning
# is theirs, not the route's.
pytestmark = pytest.mark.filterwarnings(
    "ignore:It is recommended to use web.RequestKey:aiohttp.web_exceptions.NotAppKeyWarning"
)


def _options(emulator: RunningEmulator) -> dict[str, Any]:
    return {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}


def make_app(emulator: RunningEmulator, cors: dict[str, Any] | None = None, **route: Any) -> Any:
    """An aiohttp app with a session login (``POST /login``), aiohttp-cors allowing ``cors`` (ALLOWED with
    credentials by default) and the route."""
    import aiohttp_cors
    import aiohttp_session
    from aiohttp import web
    from aiohttp_session.cookie_storage import EncryptedCookieStorage
    from cryptography.fernet import Fernet

    from orga_ai.integrations.aiohttp import session_user, setup

    app = web.Application()
    aiohttp_session.setup(app, EncryptedCookieStorage(Fernet.generate_key().decode()))

    async def login(request: web.Request) -> web.Response:
        session = await aiohttp_session.new_session(request)
        session["user_id"] = (await request.post())["user"]  # what a real login handler does after the password
        return web.Response(text="ok")

    app.router.add_post("/login", login)
    route.setdefault("authenticate", session_user("user_id"))
    setup(app, orga_options=_options(emulator), rate_limit="1/minute", **route)
    if cors is None:
        cors = {ALLOWED: aiohttp_cors.ResourceOptions(allow_credentials=True, allow_headers="*")}
    aiohttp_cors.setup(app, defaults=cors)  # after the route: adopted at start-up, when the app is complete
    return app


@contextlib.contextmanager
def logged_in(url: str, user: str) -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        assert client.post(url + "/login", data={"user": user}).status_code == 200
        yield client


def test_the_apps_login_is_the_principal(emulator: RunningEmulator) -> None:
    with serve_aiohttp(make_app(emulator)) as url:
        anonymous = httpx.get(url + ROUTE)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
        assert upstream_calls(emulator) == []
        with logged_in(url, "alice") as alice, logged_in(url, "bob") as bob:
            assert alice.get(url + ROUTE).status_code == 200
            assert alice.post(url + ROUTE).status_code == 429  # alice's allowance is spent...
            assert bob.get(url + ROUTE).status_code == 200  # ...bob has his own
        assert len(upstream_calls(emulator)) == 4


def test_the_beacon_keys_on_the_apps_login(emulator: RunningEmulator) -> None:
    event = {"request_id": "minted-9", "conversation_id": "conv_9", "state": "ended"}
    with serve_aiohttp(make_app(emulator, events=True)) as url:
        assert httpx.post(url + ROUTE + "/events", json=event).status_code == 401
        with logged_in(url, "alice") as alice:
            logged = alice.post(url + ROUTE + "/events", json=event, headers={"Origin": ALLOWED})
            assert logged.status_code == 204 and logged.headers["access-control-allow-origin"] == ALLOWED
            assert alice.post(url + ROUTE + "/events", content=b"x" * 2048).status_code == 413
            refused = alice.post(url + ROUTE + "/events", json=event, headers={"Origin": REFUSED})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
            assert alice.get(url + ROUTE).status_code == 200  # the beacons spent none of alice's one minting


def test_aiohttp_cors_decides_origins(emulator: RunningEmulator) -> None:
    with serve_aiohttp(make_app(emulator)) as url, logged_in(url, "carol") as carol:
        check_cors_cooperates(carol, url, emulator, setting=SETTING)


def test_a_body_over_the_cap_is_refused_even_without_a_length(emulator: RunningEmulator) -> None:
    def chunks(size: int) -> Iterator[bytes]:
        yield b"x" * size  # a generator body: sent chunked, no Content-Length

    with serve_aiohttp(make_app(emulator)) as url, logged_in(url, "dana") as dana:
        too_large = dana.post(url + ROUTE, content=chunks(8192), headers={"X-Request-ID": "big-1"})
        assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "body_too_large"
        assert too_large.headers["x-request-id"] == "big-1"
        assert dana.post(url + ROUTE, content=chunks(100)).status_code == 200
    assert len(upstream_calls(emulator)) == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_user_the_apps_middleware_put_on_the_request(kind: str, emulator: RunningEmulator) -> None:
    from aiohttp import web

    # aiohttp 3.14 types request keys (and warns about a str key); the floor, 3.11, has only str keys.
    user: Any = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"

    @web.middleware
    async def who(request: web.Request, handler: Any) -> Any:
        request[user] = request.headers.get("X-Test-User")  # the app's own login, however it works
        return await handler(request)

    async def read_async(request: web.Request) -> Any:
        return request.get(user)

    hook = read_async if kind == "async" else (lambda request: request.get(user))
    app = make_app(emulator, authenticate=hook)
    app.middlewares.append(who)
    with serve_aiohttp(app) as url:
        assert httpx.get(url + ROUTE).status_code == 401
        assert httpx.get(url + ROUTE, headers={"X-Test-User": "erin"}).status_code == 200
        assert httpx.get(url + ROUTE, headers={"X-Test-User": "erin"}).status_code == 429


def _start(app: Any) -> None:
    with serve_aiohttp(app):
        pass


def test_a_wildcard_or_uncredentialed_aiohttp_cors_is_refused_at_start_up(emulator: RunningEmulator) -> None:
    import aiohttp_cors

    from orga_ai.integrations._cors import CorsInferenceError

    wildcard = {"*": aiohttp_cors.ResourceOptions(allow_credentials=True)}
    with pytest.raises(CorsInferenceError, match="lets every origin in"):
        _start(make_app(emulator, wildcard))
    closed = {ALLOWED: aiohttp_cors.ResourceOptions(allow_credentials=False)}
    with pytest.raises(CorsInferenceError, match="does not allow credentials"):
        _start(make_app(emulator, closed))
    # With its own list, the route ignores the app's wildcard and serves only its own origins.
    with serve_aiohttp(make_app(emulator, wildcard, cors_origins=[ALLOWED])) as url, logged_in(url, "fay") as fay:
        assert fay.get(url + ROUTE, headers={"Origin": ALLOWED}).status_code == 200
        refused = fay.get(url + ROUTE, headers={"Origin": REFUSED})
        assert refused.status_code == 403 and "setup(app, cors_origins=[...])" in refused.json()["error"]["message"]
