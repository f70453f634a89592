"""Circuit breaker, load shedding, Redis failure modes, and the no-secrets-in-logs scan."""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orga_ai.testing import RunningEmulator
from tests.support import wait_in_flight

from .conftest import ProxyFactory, bearer, make_jwt, upstream_calls
from .test_route import ROUTE, assert_error


def test_circuit_breaker_opens_fails_fast_and_recovers(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(breaker_threshold=2, breaker_cooldown=0.5)
    emulator.arm("client-secrets", count=2, status=500)
    for _ in range(2):
        assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 502, "upstream_error")
    emulator.clear_requests()

    started = time.monotonic()
    refused = client.get(ROUTE, headers=bearer(make_jwt()))
    assert time.monotonic() - started < 0.5
    assert_error(refused, 503, "upstream_unavailable")
    assert int(refused.headers["retry-after"]) >= 1
    assert upstream_calls(emulator) == []
    assert client.get("/readyz").status_code == 503

    time.sleep(0.6)  # the cool-down: the next caller is the half-open probe, and Orga is healthy again
    assert client.get(ROUTE, headers=bearer(make_jwt())).status_code == 200
    assert client.get(ROUTE, headers=bearer(make_jwt())).status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").text
    assert 'orga_proxy_circuit_transitions_total{state="open"} 1.0' in metrics
    assert 'orga_proxy_circuit_transitions_total{state="closed"} 1.0' in metrics
    assert "orga_proxy_circuit_rejected_total 1.0" in metrics


def test_failed_probe_reopens_the_breaker(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(breaker_threshold=1, breaker_cooldown=0.3)
    emulator.arm("client-secrets", count=2, status=503)
    assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 502, "upstream_error")
    time.sleep(0.35)
    assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 502, "upstream_error")  # the probe fails
    assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 503, "upstream_unavailable")


def test_caller_errors_and_key_refusals_do_not_open_the_breaker(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(breaker_threshold=1)
    for _ in range(3):
        assert client.get(ROUTE, headers=bearer("bad")).status_code == 401
    emulator.arm("client-secrets", count=2, status=429, retry_after="30")
    for _ in range(2):
        assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 503, "upstream_rate_limited")
    assert client.get(ROUTE, headers=bearer(make_jwt())).status_code == 200


def test_sdk_retries_are_counted_in_metrics(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(orga_options={"max_retries": 2})
    emulator.arm("ice-config", count=1, status=503)
    assert client.get(ROUTE, headers=bearer(make_jwt())).status_code == 200
    assert "orga_proxy_upstream_retries_total 1.0" in client.get("/metrics").text


def test_concurrency_cap_sheds_fast(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(max_concurrency=1, rate_limit=None)
    emulator.arm("client-secrets", count=1, latency_ms=1000)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.get, ROUTE, headers=bearer(make_jwt()))
        wait_in_flight(emulator, 1)  # the slow call holds the one upstream slot
        shed = client.get(ROUTE, headers=bearer(make_jwt()))
        assert_error(shed, 503, "overloaded")  # refused, not queued behind the slow one (that would be a 200)
        assert shed.headers["retry-after"] == "1"
        assert slow.result().status_code == 200
    assert client.get(ROUTE, headers=bearer(make_jwt())).status_code == 200
    assert "orga_proxy_shed_total 1.0" in client.get("/metrics").text


# -- Redis failure modes (fail closed) -------------------------------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung Redis."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


def test_hung_redis_fails_closed_within_the_socket_timeout(proxy: ProxyFactory, black_hole: int) -> None:
    client = proxy(storage_uri=f"redis://127.0.0.1:{black_hole}/0")
    for _ in range(2):
        started = time.monotonic()
        response = client.get(ROUTE, headers=bearer(make_jwt()))
        assert time.monotonic() - started < 1.5
        assert_error(response, 503, "rate_limiter_unavailable")
        assert response.headers["retry-after"]
    assert client.get("/readyz").status_code == 503


def test_unreachable_redis_fails_closed(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    from tests.support import free_port

    client = proxy(storage_uri=f"redis://127.0.0.1:{free_port()}/0")
    assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 503, "rate_limiter_unavailable")
    assert upstream_calls(emulator) == []


# -- the secrets scan ------------------------------------------------------------------------------------------------


def test_no_key_in_any_body_and_no_secret_in_any_log(
    proxy: ProxyFactory, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A full run through every outcome; then every response body is scanned for the API key, and every captured
    log line for the key, the minted tokens, the TURN credentials, the callers' JWTs and the shared secret."""
    from orga_ai.proxy import AnyOf, SharedSecretAuth

    from .conftest import jwt_auth

    caplog.set_level(logging.DEBUG)
    shared = "shared-secret-for-the-scan-0123456789"
    client = proxy(
        authenticate=AnyOf(SharedSecretAuth(shared), jwt_auth()),
        rate_limit="4/minute",
        breaker_threshold=3,
        orga_options={"debug": True, "max_retries": 1},
    )
    bad_key_client = proxy(orga_options={"api_key": "sk_orga_ai_not_the_right_key_0001"})
    bodies: list[str] = []
    tokens: list[str] = []
    turn: list[str] = []
    jwts = [make_jwt(f"user-{i}") for i in range(4)]

    def call(c: Any, headers: dict[str, str], **kw: Any) -> None:
        response = c.request(kw.pop("method", "GET"), kw.pop("path", ROUTE), headers=headers, **kw)
        bodies.append(response.text)
        if response.status_code == 200 and response.headers["content-type"].startswith("application/json"):
            data = response.json()
            if "ephemeralToken" in data:
                tokens.append(data["ephemeralToken"])
                turn.extend(s["credential"] for s in data["iceServers"] if "credential" in s)

    for token in jwts:
        call(client, bearer(token))
    call(client, bearer(shared))
    for _ in range(5):
        call(client, bearer(jwts[0]))  # rate limited
    emulator.arm("client-secrets", count=2, status=500)
    call(client, bearer(jwts[1]))
    emulator.arm("ice-config", count=2, status=401)
    call(client, bearer(jwts[2]))
    emulator.arm("client-secrets", count=1, body="non_json")
    call(client, bearer(jwts[3]))
    call(client, bearer(make_jwt(exp=1)))
    call(client, {"Authorization": "Bearer " + shared[:-1]})
    call(client, {}, method="PUT")
    call(client, {}, path="/metrics")
    call(bad_key_client, bearer(jwts[0]))

    assert len(tokens) >= 5 and turn
    logs = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    for body in bodies:
        assert emulator.api_key not in body
        assert "sk_orga_ai" not in body
    for secret in [emulator.api_key, "sk_orga_ai_not_the_right_key_0001", shared, *tokens, *turn, *jwts]:
        assert secret not in logs, "a secret reached the logs"
    assert "orga_proxy_request" in logs  # the access lines were captured at all
    assert '"token_fingerprint":"fp:' in logs
