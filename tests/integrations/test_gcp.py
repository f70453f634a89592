"""Cloud Functions: the real ``functions-framework`` process serving examples/gcp/main.py, called over HTTP, in front
of the emulator."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from orga_ai.testing import RunningEmulator
from tests.integrations.conftest import FUNCTION_SECRET, scan_answer
from tests.reliability.support import Canary
from tests.support import free_port, serving_process

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {FUNCTION_SECRET}"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.update(extra)
    return env


def functions_framework(env: dict[str, str], output: list[str]) -> contextlib.AbstractContextManager[str]:
    """``functions-framework --target client_secrets --source examples/gcp/main.py --port N``; yields its URL."""
    pytest.importorskip("functions_framework")
    binary = shutil.which("functions-framework", path=str(Path(sys.executable).parent)) or "functions-framework"
    port = free_port()
    argv = [binary, "--target", "client_secrets", "--source", str(ROOT / "examples/gcp/main.py"), "--port", str(port)]
    argv += ["--host", "127.0.0.1"]
    return serving_process(argv, env, f"http://127.0.0.1:{port}", output)


def test_functions_framework_serves_the_route(emulator: RunningEmulator) -> None:
    canary = Canary()
    canary.add(emulator.api_key, "api key")
    canary.add(FUNCTION_SECRET, "shared secret")
    origin = "https://app.example.com"
    env = _env(
        ORGA_API_KEY=emulator.api_key,
        ORGA_BASE_URL=emulator.base_url,
        ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET,
        ORGA_PROXY_RATE_LIMIT="none",
        ORGA_PROXY_CORS_ORIGIN=origin,
        ORGA_DEBUG="1",  # the SDK's trace and the route's access log on stderr: scanned below
    )
    output: list[str] = []
    with functions_framework(env, output) as url, httpx.Client(timeout=15) as client:
        for method in ("GET", "POST"):
            ok = client.request(method, url + "/", headers={**AUTH, "X-Request-ID": "gcf-test-1"})
            scan_answer(canary, ok.text)
            canary.scan(str(ok.headers), "headers")
            assert ok.status_code == 200, ok.text
            assert {"ephemeralToken", "iceServers"} <= set(ok.json())
            assert ok.headers["cache-control"] == "no-store"
            assert ok.headers["x-request-id"] == "gcf-test-1"
        refused = client.get(url + "/")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        preflight = client.options(
            url + "/",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        too_big = client.post(url + "/", headers=AUTH, content=b"x" * 5000)
        assert too_big.status_code == 413
        emulator.arm("client-secrets", status=401)
        upstream = client.get(url + "/", headers=AUTH)
        assert (upstream.status_code, upstream.json()["error"]["code"]) == (502, "upstream_auth_failed")
        scan_answer(canary, upstream.text)
    # Three successful mints (GET, POST, then none for the refusals): one client, reused.
    assert len([r for r in emulator.requests() if "client-secrets" in r["path"]]) == 3
    assert "orga_proxy_request" in output[0] and "token: HTTP 200" in output[0]
    canary.scan(output[0], "functions-framework log")
    assert not canary.hits, [(hit.label, hit.source) for hit in canary.hits]


def test_functions_framework_refuses_memory_limits_at_start(emulator: RunningEmulator) -> None:
    env = _env(ORGA_API_KEY=emulator.api_key, ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET)
    output: list[str] = []
    with pytest.raises(RuntimeError, match="functions-framework exited") as failure, functions_framework(env, output):
        pass
    assert "in-process (memory://) rate limits mean nothing across function instances" in str(failure.value)
    assert emulator.api_key not in str(failure.value)
