"""A real Django project (tests/integrations/django_project): django.contrib.auth, a migration-less SQLite database
with real users, Django's own login view over HTTP, and the route behind it, served by runserver (WSGI, the sync
view) and by uvicorn (ASGI, the async view on AsyncOrgaAI)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import upstream_calls
from tests.support import free_port, serving_process

from .cors_checks import check_cors_cooperates

PROJECT = Path(__file__).resolve().parent / "django_project"
ROOT = Path(__file__).resolve().parents[2]
ROUTE = "/api/orga-client-secrets"


def _env(emulator: RunningEmulator | None, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORGA_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env["TEST_DB_PATH"] = str(db)
    if emulator is not None:
        env |= {"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": emulator.base_url, "ORGA_MAX_RETRIES": "0"}
    return env | extra


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """The project served by ``command`` on ``port``, once it answers HTTP; stopped afterwards."""
    with serving_process(command, env, f"http://127.0.0.1:{port}", [], cwd=PROJECT) as url:
        yield url


@pytest.fixture
def database(tmp_path: Path, emulator: RunningEmulator) -> Path:
    db = tmp_path / "db.sqlite3"
    env = _env(emulator, db)
    done = manage(env, "migrate", "--run-syncdb", "--verbosity", "0")
    assert done.returncode == 0, done.stderr
    made = manage(env, "shell", "-c", (PROJECT / "project" / "users.py").read_text())
    assert made.returncode == 0, made.stderr
    return db


SERVERS = {
    "wsgi-runserver": lambda port: [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
    "asgi-uvicorn": lambda port: [
        sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port), "--lifespan", "off",
    ],
}


def log_in(client: httpx.Client, url: str, name: str) -> None:
    page = client.get(url + "/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    done = client.post(
        url + "/login/",
        data={"username": name, "password": f"{name}-password", "csrfmiddlewaretoken": token.group(1)},
    )
    assert done.status_code == 302, done.text
    assert "sessionid" in client.cookies


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_django_login_session_reaches_the_route(
    server: str, database: Path, emulator: RunningEmulator, tmp_path: Path
) -> None:
    port = free_port()
    with running(SERVERS[server](port), _env(emulator, database), port) as url:
        expected = "_async_client_secrets" if server.startswith("asgi") else "_client_secrets"
        assert httpx.get(url + "/which-view/").text == expected
        anonymous = httpx.get(url + ROUTE)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"]["code"] == "unauthenticated"
        assert upstream_calls(emulator) == []

        with httpx.Client() as alice:
            log_in(alice, url, "alice")
            first = alice.get(url + ROUTE)
            assert first.status_code == 200, first.text
            assert {"ephemeralToken", "iceServers", "expiresAt"} <= set(first.json())
            # Rate limits key on the Django user: alice's second call in the minute is refused...
            assert alice.get(url + ROUTE).status_code == 429
            with httpx.Client() as bob:
                log_in(bob, url, "bob")
                # ...and bob, a second user, has his own allowance.
                assert bob.get(url + ROUTE).status_code == 200
            csrf = alice.cookies["csrftoken"]
            out = alice.post(url + "/logout/", headers={"X-CSRFToken": csrf, "Referer": url + "/"})
            assert out.status_code in (200, 302), out.text
            after = alice.get(url + ROUTE)
            assert after.status_code == 401
        assert len(upstream_calls(emulator)) == 4  # two sessions, a token and ICE servers each


def test_django_check_names_a_missing_api_key_and_a_missing_middleware(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    result = manage(_env(None, db, TEST_NO_AUTH_MIDDLEWARE="1"), "check")
    assert result.returncode != 0
    assert "orga_ai.E001" in result.stderr and "ORGA_API_KEY" in result.stderr
    assert "orga_ai.E003" in result.stderr and "AuthenticationMiddleware" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("proxy", "words"),
    [
        ({"rate_limit": "0/minute"}, "rate"),
        ({"authenticate": "project.nowhere.hook"}, "project.nowhere.hook"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_django_check_refuses_unusable_settings(
    proxy: dict[str, Any], words: str, tmp_path: Path, emulator: RunningEmulator
) -> None:
    result = manage(_env(emulator, tmp_path / "db.sqlite3", TEST_ORGA_PROXY=json.dumps(proxy)), "check")
    assert result.returncode != 0
    assert "orga_ai.E002" in result.stderr and words in result.stderr, result.stderr


def test_an_asgi_server_refuses_to_start_without_an_api_key(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "project.asgi:application", "--port", str(port), "--lifespan", "off"],
        cwd=PROJECT,
        env=_env(None, tmp_path / "db.sqlite3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "ORGA_API_KEY" in result.stderr


def test_django_cors_headers_allowlist_is_the_routes(database: Path, emulator: RunningEmulator) -> None:
    port = free_port()
    env = _env(emulator, database, TEST_CORS="1")
    with running(SERVERS["asgi-uvicorn"](port), env, port) as url, httpx.Client() as alice:
        log_in(alice, url, "alice")
        check_cors_cooperates(alice, url, emulator, setting="CORS_ALLOWED_ORIGINS")


def test_django_cors_allow_all_is_refused_at_start_up(tmp_path: Path, emulator: RunningEmulator) -> None:
    result = manage(_env(emulator, tmp_path / "db.sqlite3", TEST_CORS="all"), "check")
    assert result.returncode != 0
    assert "orga_ai.E002" in result.stderr and "CORS_ALLOW_ALL_ORIGINS" in result.stderr, result.stderr


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_without_the_app_a_missing_key_is_the_routes_json_not_an_html_500(
    server: str, database: Path, emulator: RunningEmulator
) -> None:
    port = free_port()
    env = {k: v for k, v in _env(emulator, database, TEST_NO_ORGA_APP="1").items() if not k.startswith("ORGA_")}
    with running(SERVERS[server](port), env, port) as url, httpx.Client() as alice:
        log_in(alice, url, "alice")
        response = alice.get(url + ROUTE)
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "proxy_misconfigured"


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_django_events_beacon_behind_the_login(server: str, database: Path, emulator: RunningEmulator) -> None:
    port = free_port()
    env = _env(emulator, database, TEST_ORGA_PROXY=json.dumps({"events": True}))
    event = {"request_id": "minted-7", "conversation_id": "conv_7", "state": "connected"}
    with running(SERVERS[server](port), env, port) as url:
        anonymous = httpx.post(url + ROUTE + "/events", json=event)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
        with httpx.Client() as alice:
            log_in(alice, url, "alice")
            sent = alice.post(url + ROUTE + "/events", json=event, headers={"X-Request-ID": "beacon-7"})
            assert sent.status_code == 204 and sent.content == b"", sent.text
            assert sent.headers["x-request-id"] == "beacon-7"
            big = alice.post(url + ROUTE + "/events", content=b"{" + b" " * 4096 + b"}")
            assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
            # Beacons have their own window: alice's one minting of the minute is still there.
            assert alice.get(url + ROUTE).status_code == 200
    assert upstream_calls(emulator) != []


@pytest.mark.parametrize("server", [*sorted(SERVERS), "asgi-daphne-runserver"])
def test_the_include_picks_the_view_of_the_server_whatever_loads_the_urls_first(
    server: str, database: Path, emulator: RunningEmulator
) -> None:
    """Whatever loads the URLs first, the route is served by the view of the server: Django's LocaleMiddleware, a sync
    middleware, loads them in a worker thread (outside the event loop under ASGI) before any view is resolved; and
    daphne's runserver loads them in its system checks, before serving ASGI."""
    port = free_port()
    env = _env(emulator, database, TEST_LOCALE="1", TEST_ORGA_PROXY=json.dumps({"events": True}))
    if server == "asgi-daphne-runserver":
        pytest.importorskip("daphne")
        command, env = SERVERS["wsgi-runserver"](port), env | {"TEST_DAPHNE": "1"}
    else:
        command = SERVERS[server](port)
    with running(command, env, port) as url, httpx.Client() as alice:
        expected = "_async_client_secrets" if server.startswith("asgi") else "_client_secrets"
        assert httpx.get(url + "/which-view/").text == expected
        assert httpx.get(url + ROUTE).json()["error"]["code"] == "unauthenticated"
        log_in(alice, url, "alice")
        assert alice.get(url + ROUTE).status_code == 200
        assert alice.get(url + ROUTE).status_code == 429
        beacon = httpx.get(url + "/which-view/", params={"path": ROUTE + "/events"}).text
        assert beacon == ("_async_events" if server.startswith("asgi") else "_events")
        event = {"request_id": "minted-1", "conversation_id": "conv_1", "state": "ended"}
        assert alice.post(url + ROUTE + "/events", json=event).status_code == 204
