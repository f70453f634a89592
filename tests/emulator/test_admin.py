"""The /_emulator/ admin API: stats, request log, clock, reset, health."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from orga_ai.emulator import ADMIN_HEADER, EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator
from tests.support import wait_in_flight

from .conftest import auth, mint


def test_stats_count_tokens_ice_statuses_paths_and_rejections(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    http.get("/v1/realtime/ice-config", headers=auth(token))
    http.get("/v1/realtime/ice-config", headers=auth("nope"))
    http.post("/v1/realtime/client-secrets")
    stats = emulator.stats()
    assert stats["tokens_issued"] == 1
    assert stats["ice_configs_served"] == 1
    assert stats["calls"] == 0
    assert stats["active_calls"] == 0
    assert stats["statuses"] == {"200": 2, "401": 1, "403": 1}
    assert stats["paths"] == {"/v1/realtime/client-secrets": 2, "/v1/realtime/ice-config": 2}
    assert stats["rejected"] == {"invalid_token": 1, "missing_auth": 1}


def test_request_log_holds_fingerprints_never_secrets(emulator: RunningEmulator, http: httpx.Client) -> None:
    http.post(
        "/v1/realtime/client-secrets",
        headers={**auth(emulator.api_key), "Idempotency-Key": "idem-1", "User-Agent": "tests/1.0"},
    )
    token = mint(http, emulator.api_key)
    http.get("/v1/realtime/ice-config", headers=auth(token))
    entries = emulator.requests()
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/v1/realtime/client-secrets", 200),
        ("POST", "/v1/realtime/client-secrets", 200),
        ("GET", "/v1/realtime/ice-config", 200),
    ]
    first = entries[0]
    assert first["idempotency_key"] == "idem-1"
    assert first["user_agent"] == "tests/1.0"
    assert first["bearer"].startswith("fp:")
    assert first["request_id"].startswith("req_")
    assert isinstance(first["client_port"], int)
    assert len({entry["client_port"] for entry in entries}) == 1  # one keep-alive connection
    assert entries[1]["idempotency_key"] is None
    dumped = json.dumps(entries)
    assert emulator.api_key not in dumped
    assert token not in dumped
    # The same bearer always has the same fingerprint, so tests can tell clients apart.
    assert entries[0]["bearer"] == entries[1]["bearer"] != entries[2]["bearer"]

    emulator.clear_requests()
    assert emulator.requests() == []
    assert emulator.stats()["tokens_issued"] == 2  # clearing the log keeps the counters


def test_admin_requests_are_not_logged(emulator: RunningEmulator, http: httpx.Client) -> None:
    http.get("/_emulator/stats")
    http.get("/_emulator/health")
    assert emulator.requests() == []


def test_the_log_is_bounded_and_keeps_the_newest() -> None:
    with run_emulator(EmulatorConfig(max_logged_requests=3)) as running, httpx.Client(base_url=running.base_url) as c:
        for index in range(5):
            c.post("/v1/realtime/client-secrets", headers={**auth(running.api_key), "Idempotency-Key": str(index)})
        assert [entry["idempotency_key"] for entry in running.requests()] == ["2", "3", "4"]
        assert running.stats()["paths"] == {"/v1/realtime/client-secrets": 5}


def test_clock_moves_forward_only(emulator: RunningEmulator, http: httpx.Client) -> None:
    before = http.get("/_emulator/clock").json()
    after = http.post("/_emulator/clock", json={"advance": 3600}).json()
    assert after["offset"] == 3600
    assert after["now"] - before["now"] >= 3600
    for bad in ({"advance": -1}, {"advance": "1"}, {}, {"advance": True}, {"advance": float("inf")}):
        response = http.post("/_emulator/clock", content=json.dumps(bad))
        assert response.status_code == 400
    assert http.post("/_emulator/clock", content=b"{").status_code == 400
    assert http.post("/_emulator/clock", json=[1]).status_code == 400


def test_reset_puts_everything_back(emulator: RunningEmulator, http: httpx.Client) -> None:
    mint(http, emulator.api_key)
    emulator.arm("ice-config", count=3, status=500)
    emulator.advance_clock(100)
    emulator.reset()
    stats = emulator.stats()
    assert (stats["tokens_issued"], stats["statuses"], stats["clock_offset"]) == (0, {}, 0.0)
    assert emulator.requests() == []
    assert http.get("/_emulator/faults").json() == {"armed": []}


def test_health(http: httpx.Client) -> None:
    response = http.get("/_emulator/health")
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/_emulator/faults", "/_emulator/clock"])
def test_admin_rejects_oversized_bodies(http: httpx.Client, path: str) -> None:
    assert http.post(path, content=b"{" + b" " * 70_000 + b"}").status_code == 413


def test_a_request_begun_before_a_reset_is_not_logged_after_it(emulator: RunningEmulator) -> None:
    """A stalled request of one test must not show up in the next test's request log."""

    emulator.arm(path="client-secrets", count=1, stall=True)
    host, port = emulator.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        stalled.sendall(
            b"POST /v1/realtime/client-secrets HTTP/1.1\r\nHost: emulator\r\n"
            + f"Authorization: Bearer {emulator.api_key}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        wait_in_flight(emulator, 1)  # stalled inside the emulator...
        emulator.reset()  # ...when the next test's reset comes
    wait_in_flight(emulator, 0)  # the hang-up ends it, after the reset
    assert emulator.requests() == []


def test_admin_api_refuses_cross_site_requests(emulator: RunningEmulator) -> None:
    url = emulator.base_url
    evil = {"Origin": "https://evil.test"}
    # The attack of issue 11: a text/plain POST (no preflight) from a foreign page.
    simple = httpx.post(
        url + "/_emulator/faults", content='{"status": 500}', headers={**evil, "Content-Type": "text/plain"}
    )
    assert simple.status_code == 403
    assert "access-control-allow-origin" not in simple.headers
    # No custom header, even from a same-origin page or a script without one.
    assert httpx.post(url + "/_emulator/reset").status_code == 403
    assert httpx.delete(url + "/_emulator/faults").status_code == 403
    cross_site = {"Sec-Fetch-Site": "cross-site", ADMIN_HEADER: "1"}
    assert httpx.post(url + "/_emulator/clock", json={"advance": 10}, headers=cross_site).status_code == 403
    # A preflight is never approved.
    preflight = httpx.options(
        url + "/_emulator/faults",
        headers={
            **evil,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-orga-emulator-admin",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    # Reads carry no CORS either.
    assert "access-control-allow-origin" not in httpx.get(url + "/_emulator/stats", headers=evil).headers
    assert httpx.get(url + "/_emulator/faults").json() == {"armed": []}  # nothing was armed
    # The API's own endpoints keep their CORS for browsers.
    api = httpx.options(
        url + "/v1/realtime/calls",
        headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST"},
    )
    assert api.headers.get("access-control-allow-origin")
    # With the header: accepted.
    assert httpx.post(url + "/_emulator/reset", headers={ADMIN_HEADER: "1"}).status_code == 200
