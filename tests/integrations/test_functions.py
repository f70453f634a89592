"""The ASGI/WSGI function files (examples/vercel*/api/orga-client-secrets.py), each run as is under a real server
(uvicorn, werkzeug) in a subprocess and called over HTTP, in front of the emulator; and the callables in process for
what only the policy sees (the caller's address)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orga_ai.integrations.functions import FunctionConfigurationError, asgi_app, wsgi_app
from orga_ai.proxy import ProxyRequest
from orga_ai.testing import RunningEmulator
from tests.integrations.conftest import FUNCTION_SECRET, scan_answer, serve_wsgi
from tests.proxy.conftest import serve
from tests.reliability.support import Canary
from tests.support import free_port, serving_process

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "/api/orga-client-secrets"
AUTH = {"Authorization": f"Bearer {FUNCTION_SECRET}"}
ORIGIN = "https://app.example.com"

# Serves the file given as argv[1] (loaded by path, as a function host does) with werkzeug on port argv[2].
WSGI_LAUNCHER = """
import importlib.util, sys
from werkzeug.serving import run_simple
spec = importlib.util.spec_from_file_location("function_file", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run_simple("127.0.0.1", int(sys.argv[2]), module.app, threaded=True)
"""


def _argv(kind: str, port: int) -> list[str]:
    if kind == "asgi":
        app_dir = ROOT / "examples/vercel/api"
        app = "orga-client-secrets:app"
        serving = ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"]
        return [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), app, *serving]
    path = ROOT / "examples/vercel-wsgi/api/orga-client-secrets.py"
    return [sys.executable, "-c", WSGI_LAUNCHER, str(path), str(port)]


def function_file(kind: str, env: dict[str, str], output: list[str]) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    return serving_process(_argv(kind, port), env, f"http://127.0.0.1:{port}", output)


def _env(emulator: RunningEmulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.update(ORGA_API_KEY=emulator.api_key, ORGA_BASE_URL=emulator.base_url, ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET)
    env.update(extra)
    return env


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_the_function_file_serves_the_route(kind: str, emulator: RunningEmulator) -> None:
    canary = Canary()
    canary.add(emulator.api_key, "api key")
    canary.add(FUNCTION_SECRET, "shared secret")
    # ORGA_DEBUG: the SDK's trace and the route's access log on stderr, scanned below.
    env = _env(emulator, ORGA_PROXY_RATE_LIMIT="none", ORGA_PROXY_CORS_ORIGIN=ORIGIN, ORGA_DEBUG="1")
    output: list[str] = []
    with function_file(kind, env, output) as url, httpx.Client(timeout=15) as client:
        for method in ("GET", "POST"):
            ok = client.request(method, url + ROUTE, headers={**AUTH, "Origin": ORIGIN})
            scan_answer(canary, ok.text)
            canary.scan(str(ok.headers), "headers")
            assert ok.status_code == 200, ok.text
            assert {"ephemeralToken", "iceServers"} <= set(ok.json())
            assert ok.headers["cache-control"] == "no-store"
            assert ok.headers["access-control-allow-origin"] == ORIGIN
        assert client.get(url + "/elsewhere", headers=AUTH).status_code == 404
        refused = client.get(url + ROUTE)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "unauthenticated")
        preflight = client.options(
            url + ROUTE,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-headers"] == "authorization"

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"x" * 1000

        too_big = client.post(url + ROUTE, headers=AUTH, content=chunks())  # chunked: no declared length
        assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "body_too_large")
        declared = client.post(url + ROUTE, headers=AUTH, content=b"x" * 5000)
        assert declared.status_code == 413
    assert len([r for r in emulator.requests() if "client-secrets" in r["path"]]) == 2
    assert "orga_proxy_request" in output[0] and "token: HTTP 200" in output[0]
    canary.scan(output[0], "server log")
    assert not canary.hits, [(hit.label, hit.source) for hit in canary.hits]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_the_function_file_refuses_memory_limits(kind: str, emulator: RunningEmulator) -> None:
    output: list[str] = []
    with pytest.raises(RuntimeError, match="exited") as failure, function_file(kind, _env(emulator), output):
        pass
    assert "in-process (memory://) rate limits mean nothing across function instances" in str(failure.value)
    assert emulator.api_key not in str(failure.value) and FUNCTION_SECRET not in str(failure.value)


def _recording(emulator: RunningEmulator, kind: str, seen: list[ProxyRequest], **options: Any) -> Any:
    def authenticate(request: ProxyRequest) -> str:
        seen.append(request)
        return "user-1"

    orga_options = {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}
    make = asgi_app if kind == "asgi" else wsgi_app
    return make(orga_options=orga_options, authenticate=authenticate, rate_limit=None, **options)


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_the_callers_address(kind: str, emulator: RunningEmulator, leak_canary: Canary) -> None:
    seen: list[ProxyRequest] = []
    spoof = {"X-Forwarded-For": "203.0.113.9, 198.51.100.4"}
    direct = _recording(emulator, kind, seen)
    behind_platform = _recording(emulator, kind, seen, platform_forwarded=True)
    any_path = _recording(emulator, kind, seen, path=None)
    start = serve if kind == "asgi" else serve_wsgi
    try:
        for app in (direct, behind_platform):
            with start(app) as url:
                response = httpx.get(url + ROUTE, headers=spoof, timeout=15)
                scan_answer(leak_canary, response.text)
                assert response.status_code == 200, response.text
        with start(any_path) as url:
            assert httpx.get(url + "/api/anything", timeout=15).status_code == 200
    finally:
        for app in (direct, behind_platform, any_path):
            app.close()
    # Reached directly, the peer is the caller and what it wrote in X-Forwarded-For is not believed; behind the
    # platform's front end, the hop the front end appended is.
    assert [request.client_ip for request in seen] == ["127.0.0.1", "198.51.100.4", "127.0.0.1"]


def test_a_policy_in_code_or_in_the_environment(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FunctionConfigurationError, match="no authentication configured"):
        wsgi_app(orga_options={"api_key": emulator.api_key})
    monkeypatch.setenv("ORGA_PROXY_SHARED_SECRET", FUNCTION_SECRET)
    monkeypatch.setenv("ORGA_PROXY_REDIS_URL", "redis://127.0.0.1:1/0")
    app = wsgi_app(orga_options={"api_key": emulator.api_key})
    assert app.core.rate_limiter.distributed
    # A refused origin is told which setting allows it: the variable, for a policy from the environment.
    from wsgiref.util import setup_testing_defaults

    environ = {
        "PATH_INFO": ROUTE,
        "HTTP_ORIGIN": "https://elsewhere.example",
        "HTTP_AUTHORIZATION": AUTH["Authorization"],
    }
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    app.close()
    assert statuses == ["403 Forbidden"]
    assert "ORGA_PROXY_CORS_ORIGIN" in body.decode()
