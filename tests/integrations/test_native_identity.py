"""The route behind the app's own login, in real Flask and FastAPI apps served over HTTP: the principal comes from
Flask's signed session (or flask-login's current_user) and from a FastAPI dependency reading the app's own session
cookie; rate limits key on that user; and the app's own CORS package (flask-cors, CORSMiddleware) decides origins."""

from __future__ import annotations  # FastAPI resolves the test apps' annotations from this module

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request, Response

from orga_ai.proxy import ERROR_CODES
from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import upstream_calls
from tests.support import serve

from .conftest import serve_wsgi
from .cors_checks import ALLOWED, ROUTE, check_cors_cooperates


def _options(emulator: RunningEmulator) -> dict[str, Any]:
    return {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}


@contextlib.contextmanager
def flask_app(emulator: RunningEmulator, **route: Any) -> Iterator[str]:
    from flask import Flask, request, session
    from flask_cors import CORS

    from orga_ai.integrations.flask import create_blueprint, session_user

    app = Flask(__name__)
    app.secret_key = secrets.token_hex(32)

    @app.post("/login")
    def login() -> str:
        session["user_id"] = request.form["user"]  # what a real login view does after checking the password
        return "ok"

    route.setdefault("authenticate", session_user("user_id"))
    blueprint = create_blueprint(orga_options=_options(emulator), rate_limit="1/minute", **route)
    app.register_blueprint(blueprint)
    CORS(app, origins=[ALLOWED], supports_credentials=True)  # after the blueprint: adopted at the first request
    try:
        with serve_wsgi(app) as url:
            yield url
    finally:
        blueprint.close()


@contextlib.contextmanager
def fastapi_app(emulator: RunningEmulator, **route: Any) -> Iterator[str]:
    from fastapi.middleware.cors import CORSMiddleware

    from orga_ai.integrations.fastapi import create_router

    sessions: dict[str, str] = {}
    app = FastAPI()
    app.add_middleware(
        CORSMiddleware, allow_origins=[ALLOWED], allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
    )

    @app.post("/login")
    def login(response: Response, user: str) -> str:
        token = secrets.token_urlsafe(16)
        sessions[token] = user
        response.set_cookie("app_session", token, httponly=True)
        return "ok"

    def current_user(request: Request) -> str:
        user = sessions.get(request.cookies.get("app_session", ""))
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    app.include_router(
        create_router(
            principal=Depends(current_user), orga_options=_options(emulator), rate_limit="1/minute", **route
        )
    )
    with serve(app) as url:
        yield url


APPS = {"flask": flask_app, "fastapi": fastapi_app}


@contextlib.contextmanager
def logged_in(url: str, user: str) -> Iterator[httpx.Client]:
    """A client signed in through the app's own login route (the Flask apps read a form, FastAPI the query)."""
    with httpx.Client() as client:
        assert client.post(url + "/login", params={"user": user}, data={"user": user}).status_code == 200
        yield client


@pytest.mark.parametrize("framework", sorted(APPS))
def test_the_events_beacon_keys_on_the_apps_login(framework: str, emulator: RunningEmulator) -> None:
    event = {"request_id": "minted-3", "conversation_id": "conv_3", "state": "ended"}
    with APPS[framework](emulator, events=True) as url:
        assert httpx.post(url + ROUTE + "/events", json=event).status_code == 401
        with logged_in(url, "alice") as alice:
            assert alice.post(url + ROUTE + "/events", json=event).status_code == 204
            assert alice.post(url + ROUTE + "/events", content=b"x" * 2048).status_code == 413
            assert alice.get(url + ROUTE).status_code == 200  # the beacon spent none of alice's one minting


@pytest.mark.parametrize("framework", sorted(APPS))
def test_the_apps_login_is_the_principal(framework: str, emulator: RunningEmulator) -> None:
    with APPS[framework](emulator) as url:
        anonymous = httpx.get(url + ROUTE)
        assert anonymous.status_code == 401
        assert upstream_calls(emulator) == []
        with logged_in(url, "alice") as alice, logged_in(url, "bob") as bob:
            assert alice.get(url + ROUTE).status_code == 200
            assert alice.get(url + ROUTE).status_code == 429  # alice's allowance is spent...
            assert bob.get(url + ROUTE).status_code == 200  # ...bob has his own
        assert len(upstream_calls(emulator)) == 4


@pytest.mark.parametrize(
    ("framework", "setting"),
    [("flask", "CORS(app, origins=[...]) (flask-cors)"), ("fastapi", "CORSMiddleware(allow_origins=[...])")],
)
def test_the_apps_cors_package_decides_origins(framework: str, setting: str, emulator: RunningEmulator) -> None:
    with APPS[framework](emulator) as url, logged_in(url, "carol") as carol:
        check_cors_cooperates(carol, url, emulator, setting=setting)


def test_flask_login_current_user_works_in_a_hook(emulator: RunningEmulator) -> None:
    from flask import Flask, request
    from flask_login import LoginManager, UserMixin, current_user, login_user

    from orga_ai.integrations.flask import create_blueprint

    class User(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    app = Flask(__name__)
    app.secret_key = secrets.token_hex(32)
    manager = LoginManager(app)
    manager.user_loader(User)

    @app.post("/login")
    def login() -> str:
        login_user(User(request.form["user"]))
        return "ok"

    def hook(flask_request: Any) -> Any:
        assert flask_request is request._get_current_object()  # the Flask request itself, in its context
        return current_user if current_user.is_authenticated else None

    blueprint = create_blueprint(authenticate=hook, orga_options=_options(emulator))
    app.register_blueprint(blueprint)
    try:
        with serve_wsgi(app) as url:
            assert httpx.get(url + ROUTE).status_code == 401
            with logged_in(url, "dave") as dave:
                assert dave.get(url + ROUTE).status_code == 200
    finally:
        blueprint.close()


@pytest.mark.parametrize("status", [401, 403])
def test_a_fastapi_dependency_refusal_has_the_routes_shape(
    status: int, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """``HTTPException(401/403)`` from ``principal=Depends(...)`` answers like every other refusal of the route:
    the error envelope, the reason in ``WWW-Authenticate`` (401), the request id, no-store, CORS and the log line;
    the app's own routes keep FastAPI's answer."""
    from fastapi.middleware.cors import CORSMiddleware

    from orga_ai.integrations.fastapi import create_router

    def current_user() -> str:
        raise HTTPException(status, "no such session", headers={"WWW-Authenticate": "Cookie"})

    app = FastAPI()
    app.add_middleware(CORSMiddleware, allow_origins=[ALLOWED], allow_credentials=True)

    @app.get("/mine")
    def mine(user: str = Depends(current_user)) -> str:
        return user

    app.include_router(create_router(principal=Depends(current_user), events=True, orga_options=_options(emulator)))
    with caplog.at_level("INFO", logger="orga_ai.proxy.refused"), serve(app) as url:
        for method, path in (("GET", ROUTE), ("POST", ROUTE), ("POST", ROUTE + "/events")):
            sent = {"Origin": ALLOWED, "X-Request-ID": f"dep-{status}-{method}-{len(path)}"}
            refused = httpx.request(method, url + path, headers=sent, json={})
            assert refused.status_code == status, refused.text
            error = refused.json()["error"]
            assert error["code"] == ("unauthenticated" if status == 401 else "forbidden")
            assert error["code"] in ERROR_CODES  # documented, and in the app's OpenAPI error schema
            assert error["requestId"] == refused.headers["x-request-id"] == sent["X-Request-ID"]
            assert "no-store" in refused.headers["cache-control"]
            assert refused.headers["access-control-allow-origin"] == ALLOWED
            if status == 401:
                assert refused.headers["www-authenticate"].startswith("Bearer realm=")
                assert error["message"] in refused.headers["www-authenticate"]
            else:
                assert "www-authenticate" not in refused.headers
            if path.endswith("/events"):
                continue  # the beacon logs no refusals, whatever the authenticator
            logged = [r.getMessage() for r in caplog.records if r.name == "orga_ai.proxy.refused"]
            assert any(f"refused {status}" in line and sent["X-Request-ID"] in line for line in logged), logged
        own = httpx.get(url + "/mine")
        assert (own.status_code, own.json()) == (status, {"detail": "no such session"})
        assert own.headers.get("www-authenticate") == "Cookie"
    assert upstream_calls(emulator) == []


def _flask_app_with(emulator: RunningEmulator, set_up_cors: Any, **route: Any) -> tuple[Any, Any]:
    """A Flask app with a session login and the app's CORS set up by ``set_up_cors(app)`` before the blueprint."""
    from flask import Flask, request, session

    from orga_ai.integrations.flask import create_blueprint, session_user

    app = Flask(__name__)
    app.secret_key = secrets.token_hex(32)

    @app.post("/login")
    def login() -> str:
        session["user_id"] = request.form["user"]
        return "ok"

    set_up_cors(app)
    blueprint = create_blueprint(authenticate=session_user("user_id"), orga_options=_options(emulator), **route)
    return app, blueprint


def test_flask_cors_without_resources_for_the_route_starts(emulator: RunningEmulator) -> None:
    """``CORS(app, resources={})`` (flask-cors set up, covering no path) is read as covering nothing, not as a
    configuration the route cannot read."""
    from flask_cors import CORS

    app, blueprint = _flask_app_with(emulator, lambda app: CORS(app, resources={}))
    app.register_blueprint(blueprint)
    try:
        with serve_wsgi(app) as url, logged_in(url, "erin") as erin:
            assert erin.get(url + ROUTE).status_code == 200
            refused = erin.get(url + ROUTE, headers={"Origin": ALLOWED})
            assert refused.json()["error"]["code"] == "origin_not_allowed"
    finally:
        blueprint.close()


def _unreadable_flask_cors(app: Any) -> None:
    """What a flask-cors that kept its options elsewhere would register: an after-request function of its package
    holding no ``resources``."""

    def cors_after_request(response: Any) -> Any:
        return response

    cors_after_request.__module__ = "flask_cors.extension"
    app.after_request(cors_after_request)


def test_an_unreadable_flask_cors_names_the_setting_and_the_routes_own_list_serves(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib.metadata

    app, blueprint = _flask_app_with(emulator, _unreadable_flask_cors)
    with pytest.raises(ValueError, match=r"the route may serve in create_blueprint\(cors_origins=") as e:
        app.register_blueprint(blueprint)
    assert f"flask-cors {importlib.metadata.version('flask-cors')} " in str(e.value)
    blueprint.close()

    app, blueprint = _flask_app_with(emulator, _unreadable_flask_cors, cors_origins=[ALLOWED])
    with caplog.at_level("WARNING", logger="orga_ai.proxy"):
        app.register_blueprint(blueprint)  # following the message starts the app
    assert any("cannot read the origins of flask-cors" in r.getMessage() for r in caplog.records)
    try:
        with serve_wsgi(app) as url, logged_in(url, "frank") as frank:
            allowed = frank.get(url + ROUTE, headers={"Origin": ALLOWED})
            assert allowed.status_code == 200, allowed.text
            assert allowed.headers["access-control-allow-origin"] == ALLOWED
            assert frank.get(url + ROUTE, headers={"Origin": "https://elsewhere.example"}).status_code == 403
    finally:
        blueprint.close()
