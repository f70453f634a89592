"""The runnable examples in examples/, each started as its framework's own server in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import upstream_calls
from tests.support import free_port, serving_process

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
APP_SECRET = "example-app-secret-" + "0123456789abcdef" * 3
ROUTE = "/api/orga-client-secrets"


def app_jwt(sub: str = "user-1") -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": sub, "aud": "my-app", "iss": "https://my-app.example/", "iat": now, "exp": now + 60}
    return {"Authorization": "Bearer " + jwt.encode(claims, APP_SECRET, algorithm="HS256")}


@contextlib.contextmanager
def run_example(emulator: RunningEmulator, argv: list[str], port: int) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env.update(
        {
            "ORGA_API_KEY": emulator.api_key,
            "ORGA_BASE_URL": emulator.base_url,
            "APP_JWT_SECRET": APP_SECRET,
            "PYTHONPATH": str(ROOT),
        }
    )
    output: list[str] = []
    with serving_process(argv, env, f"http://127.0.0.1:{port}", output, cwd=ROOT) as url:
        yield url
    assert emulator.api_key not in output[0] and APP_SECRET not in output[0]


def _commands(port: int) -> dict[str, list[str]]:
    return {
        "fastapi": [str(BIN / "uvicorn"), "examples.fastapi_app:app", "--port", str(port), "--no-access-log"],
        "flask": [str(BIN / "flask"), "--app", "examples/flask_app", "run", "--port", str(port)],
        "django": [sys.executable, "examples/django_app.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
    }


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
def test_example_serves_the_route(emulator: RunningEmulator, framework: str) -> None:
    port = free_port()
    with run_example(emulator, _commands(port)[framework], port) as url:
        response = httpx.get(url + ROUTE, headers=app_jwt())
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["ephemeralToken"]
        assert httpx.get(url + ROUTE).status_code == 401
        if framework == "fastapi":
            assert httpx.get(url + "/me", headers=app_jwt("alice")).json() == {"id": "alice", "kind": "user"}
            assert httpx.get(url + "/me").status_code == 401
    assert len(upstream_calls(emulator)) == 2


def test_standalone_example_script_refuses_without_configuration() -> None:
    result = subprocess.run(
        ["sh", str(ROOT / "examples" / "serve.sh")],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode != 0
    assert "ORGA_API_KEY" in result.stderr
