"""``orga-ai serve``: settings from flags and ORGA_PROXY_*, refusal without auth, SIGTERM drain, and three replicas
sharing one real redis-server."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orga_ai.cli import main
from orga_ai.proxy._settings import OPTIONS, markdown_table, resolve, to_environ
from orga_ai.testing import RunningEmulator
from tests.support import free_port, require_binary, wait_in_flight

from .conftest import upstream_calls
from .test_route import ROUTE, assert_error

ORGA_AI = str(Path(sys.executable).with_name("orga-ai"))
SECRET = "replica-shared-secret-0123456789"


# -- settings --------------------------------------------------------------------------------------------------------


def test_flag_beats_environment_and_environment_beats_default() -> None:
    env = {
        "ORGA_PROXY_PORT": "9000",
        "ORGA_PROXY_RATE_LIMIT": "5/second",
        "ORGA_PROXY_CORS_ORIGIN": "https://a.x,https://b.x",
    }
    settings = resolve({"port": 9100}, env)
    assert settings["port"] == 9100
    assert settings["rate_limit"] == "5/second"
    assert settings["cors_origin"] == ["https://a.x", "https://b.x"]
    assert settings["deadline"] == 8.0
    assert resolve({}, {"ORGA_PROXY_RATE_LIMIT": "none"})["rate_limit"] is None
    assert resolve(None, to_environ(settings)) == settings


def test_every_option_is_in_the_docs_table() -> None:
    table = markdown_table()
    docs = (Path(__file__).parents[2] / "docs" / "proxy.md").read_text()
    for option in OPTIONS:
        assert option.env in table
        assert option.env in docs, f"{option.env} is missing from docs/proxy.md"


def test_serve_refuses_to_start_without_authentication(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "no authentication configured" in err
    assert "--shared-secret" in err and "ORGA_PROXY_JWKS_URL" in err and "--allow-anonymous" in err


def test_serve_refuses_to_start_without_an_api_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--shared-secret", SECRET]) == 2
    assert "ORGA_API_KEY" in capsys.readouterr().err


def test_serve_refuses_a_wildcard_origin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_PROXY_SHARED_SECRET", SECRET)
    assert main(["serve", "--cors-origin", "*"]) == 2
    assert "not allowed" in capsys.readouterr().err


# -- start-up --------------------------------------------------------------------------------------------------------

# Libraries a shared-secret, memory://-limited configuration without OpenTelemetry never uses: not Redis's, JWTs',
# OpenTelemetry's, limits' (the rates are read without it) nor aiohttp (the async client runs on asyncio + httptools).
NOT_IN_THIS_CONFIGURATION = ("redis", "jwt", "cryptography", "opentelemetry", "httpx", "limits", "aiohttp")
TRANSPORT = "orga_ai._transports.asyncio"

_STARTUP_SCRIPT = """
import asyncio, json, sys

from orga_ai.proxy._cli import app_from_env

def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & set(WATCHED))

app = app_from_env()  # what each worker of orga-ai serve runs
after_build = loaded()

async def lifespan():
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent, seen = [], {}

    async def receive():
        if sent and sent[-1]["type"] == "lifespan.startup.complete" and "started" not in seen:
            seen["started"] = loaded()
            seen["transport"] = TRANSPORT in sys.modules
        return next(events)

    async def send(message):
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return [m["type"] for m in sent], seen

messages, seen = asyncio.run(lifespan())
report = {"build": after_build, "startup": seen["started"], "transport": seen["transport"], "messages": messages}
print(json.dumps(report))
"""


def test_the_served_app_loads_its_http_client_at_start_up_and_nothing_its_configuration_does_not_use() -> None:
    """In a fresh interpreter, a worker's app for a shared-secret, memory://-limited configuration: building it
    loads none of the libraries of Redis, JWTs, OpenTelemetry, limits or aiohttp; its start-up (the ASGI lifespan,
    before any request) loads the async client's transport, so the first caller does not wait for that import, and
    still none of them."""
    watched = (*NOT_IN_THIS_CONFIGURATION, "uvicorn")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORGA_", "OTEL_"))}
    env.update(
        ORGA_API_KEY="sk_orga_ai_startup_test_0000000000000000",
        ORGA_BASE_URL="http://127.0.0.1:9",  # never called: start-up opens no socket
        ORGA_PROXY_SHARED_SECRET=SECRET,
    )
    script = f"WATCHED = {watched!r}\nTRANSPORT = {TRANSPORT!r}\n" + _STARTUP_SCRIPT
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["messages"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert report["build"] == []
    assert report["startup"] == []
    assert report["transport"] is True


# orga-ai serve in this interpreter; a thread notes what is loaded once the port accepts a connection (nothing has
# been asked yet) and again once the route has answered its first caller, then stops the server as SIGTERM would.
_SERVE_SCRIPT = """
import http.client, json, os, signal, socket, sys, threading, time

from orga_ai.cli import main

def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & set(WATCHED))

report = {}

def watch():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            break
        except OSError:
            time.sleep(0.01)
    report["listening"] = loaded()
    report["transport"] = TRANSPORT in sys.modules
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    connection.request("GET", ROUTE, headers={"Authorization": "Bearer " + SECRET})
    report["status"] = connection.getresponse().status
    report["first_request"] = loaded()
    print(json.dumps(report), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.exit(main(["serve", "--host", "127.0.0.1", "--port", str(PORT)]))
"""


def test_serve_opens_its_port_and_answers_its_first_caller_without_the_libraries_it_does_not_use(
    emulator: RunningEmulator,
) -> None:
    """``orga-ai serve`` with a shared secret and memory:// limits: none of the libraries of Redis, JWTs,
    OpenTelemetry, limits or aiohttp is loaded when its port opens nor once it has answered its first caller (200);
    the async client's transport is loaded before the port opens."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORGA_", "OTEL_"))}
    env.update(ORGA_API_KEY=emulator.api_key, ORGA_BASE_URL=emulator.base_url, ORGA_PROXY_SHARED_SECRET=SECRET)
    script = (
        f"WATCHED = {NOT_IN_THIS_CONFIGURATION!r}\nTRANSPORT = {TRANSPORT!r}\nPORT = {port}\n"
        f"ROUTE = {ROUTE!r}\nSECRET = {SECRET!r}\n" + _SERVE_SCRIPT
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # uvicorn re-raises the SIGTERM once it has shut down
    assert result.returncode in (0, -signal.SIGTERM), result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, result.stderr
    assert report["listening"] == []
    assert report["transport"] is True
    assert report["first_request"] == []


# -- real processes --------------------------------------------------------------------------------------------------


class Replica:
    """One ``orga-ai serve`` process; its stderr is collected for the log scan."""

    def __init__(self, emulator: RunningEmulator, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
        full_env.update({"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": emulator.base_url, **(env or {})})
        self.process = subprocess.Popen(
            [ORGA_AI, "serve", "--port", str(self.port), *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("orga-ai serve exited:\n" + "".join(self.stderr))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("orga-ai serve did not start:\n" + "".join(self.stderr))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code


@contextlib.contextmanager
def replicas(
    emulator: RunningEmulator, count: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[list[Replica]]:
    started = [Replica(emulator, *args, env=env) for _ in range(count)]
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_env_configured_serve_drains_in_flight_requests_on_sigterm(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, env={"ORGA_PROXY_SHARED_SECRET": SECRET}) as (replica,):
        emulator.arm("client-secrets", count=1, latency_ms=1500)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.get, replica.url + ROUTE, headers={"Authorization": f"Bearer {SECRET}"}, timeout=10
            )
            wait_in_flight(emulator, 1)  # the route's token request is at the emulator, in its latency
            replica.process.send_signal(signal.SIGTERM)
            response = pending.result()
        assert response.status_code == 200, response.text
        assert response.json()["ephemeralToken"]
        # The server finishes the shutdown; the exit status is the signal (uvicorn re-raises it once done) or 0.
        assert replica.process.wait(timeout=10) in (0, -signal.SIGTERM)
    log = "".join(replica.stderr)
    assert '"outcome":"ok"' in log
    assert response.json()["ephemeralToken"] not in log and emulator.api_key not in log and SECRET not in log


def test_anonymous_mode_is_announced_loudly(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, "--allow-anonymous") as (replica,):
        assert httpx.get(replica.url + ROUTE).status_code == 200
    assert "ANONYMOUS ACCESS IS ON" in "".join(replica.stderr)


@pytest.mark.slow
def test_three_replicas_share_one_redis_limit_and_fail_closed_when_it_dies(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    redis_server = require_binary("redis-server")
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        limit = 7
        args = (
            "--shared-secret",
            SECRET,
            "--rate-limit",
            f"{limit}/minute",
            "--redis-url",
            # A generous timeout: on a loaded 2-core machine a first connection can take longer than the default.
            f"redis://127.0.0.1:{redis_port}/0?timeout=2",
        )
        with replicas(emulator, 3, *args) as running:
            urls = [replica.url + ROUTE for replica in running]
            auth = {"Authorization": f"Bearer {SECRET}"}
            with httpx.Client(timeout=10) as client, concurrent.futures.ThreadPoolExecutor(30) as pool:
                start = threading.Barrier(30)

                def hit(i: int) -> int:
                    start.wait()
                    return client.get(urls[i % 3], headers=auth).status_code

                codes = list(pool.map(hit, range(30)))
            assert codes.count(200) == limit, codes
            assert codes.count(429) == 30 - limit, codes
            assert len(upstream_calls(emulator)) == 2 * limit

            redis.terminate()
            redis.wait(timeout=10)
            for url in urls:
                started = time.monotonic()
                response = httpx.get(url, headers=auth, timeout=10)
                assert time.monotonic() - started < 1.5
                assert_error(response, 503, "rate_limiter_unavailable")
                assert httpx.get(url.replace(ROUTE, "/readyz"), timeout=10).status_code == 503
        for replica in running:
            log: Any = "".join(replica.stderr)
            assert emulator.api_key not in log and SECRET not in log
    finally:
        if redis.poll() is None:
            redis.kill()
        redis.wait()


def raw_get(port: int, host: str) -> tuple[int, bytes]:
    """GET the route with this exact ``Host`` line (httpx would normalise it); the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {ROUTE} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_anonymous_serve_answers_well_formed_loopback_hosts_only(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, "--allow-anonymous") as (replica,):
        for host in ("localhost", f"localhost:{replica.port}", f"[::1]:{replica.port}", "[::1]"):
            assert raw_get(replica.port, host)[0] == 200, host
        for host in (
            "[::1]evil.example",
            f"[::1]evil.example:{replica.port}",
            "[::1",
            "localhost:notaport",
            "localhost:0",
            "localhost:65536",
            "localhost:",
            "::1",
        ):
            status, body = raw_get(replica.port, host)
            assert (status, json.loads(body)["error"]["code"]) == (400, "host_not_allowed"), host
