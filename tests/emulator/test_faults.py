"""The fault knob: every fault, through the X-Orga-Emulator header and through POST /_emulator/faults."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from orga_ai import OrgaAI, OrgaAIConnectionError, OrgaAIInvalidResponseError, OrgaAIServerError, OrgaAITimeoutError
from orga_ai.emulator import BODY_KINDS, DEV_API_KEY, EmulatedDrop, EmulatorConfig, create_app
from orga_ai.testing import RunningEmulator, run_emulator
from tests.support import wait_in_flight

from .conftest import auth, mint

TOKEN_PATH = "/v1/realtime/client-secrets"
ICE_PATH = "/v1/realtime/ice-config"


def sdk(emulator: RunningEmulator, **options: Any) -> OrgaAI:
    """The SDK's sync client pointed at the emulator."""
    return OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, **options)


def fault(**spec: Any) -> dict[str, str]:
    """The header form of a fault, with the dev key as bearer."""
    return {"X-Orga-Emulator": json.dumps(spec), **auth(DEV_API_KEY)}


def _wait_for_requests(emulator: RunningEmulator, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(emulator.requests()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(emulator.requests()) >= count


def test_latency_then_the_real_answer(emulator: RunningEmulator, http: httpx.Client) -> None:
    started = time.perf_counter()
    response = http.post(TOKEN_PATH, headers=fault(latency_ms=250))
    assert time.perf_counter() - started >= 0.25
    assert response.status_code == 200
    assert "ephemeral_token" in response.json()
    stats = emulator.stats()
    assert stats["tokens_issued"] == 1
    assert stats["faults_applied"] == 1


@pytest.mark.parametrize("status", [400, 404, 429, 500, 502, 503])
def test_status_with_orga_error_envelope(http: httpx.Client, status: int) -> None:
    response = http.post(TOKEN_PATH, headers=fault(status=status))
    assert response.status_code == status
    assert "retry-after" not in response.headers
    assert response.headers["x-request-id"]
    envelope = response.json()["error"]
    assert set(envelope) == {"message", "type", "param", "code"}
    assert envelope["type"] == ("rate_limit_error" if status == 429 else "server_error" if status >= 500 else
                                "invalid_request_error")


@pytest.mark.parametrize("retry_after", ["1", "0", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"])
def test_retry_after_is_sent_verbatim(http: httpx.Client, retry_after: str) -> None:
    response = http.post(TOKEN_PATH, headers=fault(status=503, retry_after=retry_after))
    assert response.status_code == 503
    assert response.headers["retry-after"] == retry_after


def test_latency_and_status_combine(emulator: RunningEmulator, http: httpx.Client) -> None:
    started = time.perf_counter()
    response = http.get(ICE_PATH, headers=fault(latency_ms=200, status=429, retry_after="2"))
    assert time.perf_counter() - started >= 0.2
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")
    assert emulator.stats()["ice_configs_served"] == 0  # a faulted request never reaches the endpoint


def test_stall_holds_until_the_client_gives_up_without_blocking_others(
    emulator: RunningEmulator, http: httpx.Client
) -> None:
    host, port = emulator.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        head = "\r\n".join(f"{name}: {value}" for name, value in fault(stall=True).items())
        stalled.sendall(f"POST {TOKEN_PATH} HTTP/1.1\r\nHost: emulator\r\nContent-Length: 0\r\n{head}\r\n\r\n".encode())
        wait_in_flight(emulator, 1)
        assert http.post(TOKEN_PATH, headers=auth(emulator.api_key)).status_code == 200  # not behind the stall
        assert emulator.stats()["in_flight"] == 1  # still held: a stall ends when its client gives up
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):
            stalled.recv(1)  # not a byte of answer
    wait_in_flight(emulator, 0)
    stalled_entry = next(entry for entry in emulator.requests() if entry["fault"])
    assert stalled_entry["status"] is None
    assert stalled_entry["fault"] == {"stall": True}


def test_stall_is_bounded_so_the_server_can_stop() -> None:
    with run_emulator(EmulatorConfig(stall_seconds=0.3)) as running, httpx.Client(base_url=running.base_url) as c:
        response = c.post(TOKEN_PATH, headers=fault(stall=True), timeout=5)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "emulated_fault"


def test_sdk_times_out_on_a_stall(emulator: RunningEmulator) -> None:
    emulator.arm("ice-config", stall=True)
    with sdk(emulator, timeout=0.3, max_retries=0) as orga, pytest.raises(OrgaAITimeoutError):
        orga.get_session_config()
    # The server logs the stalled request once it notices the client left; wait, so no later test inherits it.
    _wait_for_requests(emulator, 2)


def test_drop_breaks_the_connection_mid_body(emulator: RunningEmulator, http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|without sending complete message body"):
        http.post(TOKEN_PATH, headers=fault(drop=True))
    # The server survives it and answers the next request.
    assert http.post(TOKEN_PATH, headers=auth(emulator.api_key)).status_code == 200
    [dropped, ok] = emulator.requests()
    assert dropped["fault"] == {"drop": True}
    assert (dropped["status"], ok["status"]) == (200, 200)


def test_drop_with_a_status(http: httpx.Client) -> None:
    with http.stream("POST", TOKEN_PATH, headers=fault(drop=True, status=503)) as response:
        assert response.status_code == 503
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_sdk_reports_a_drop_as_a_connection_error(emulator: RunningEmulator) -> None:
    emulator.arm("client-secrets", drop=True)
    with sdk(emulator, max_retries=0) as orga, pytest.raises(OrgaAIConnectionError):
        orga.get_session_config()


async def test_drop_in_process_raises_remote_protocol_error() -> None:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.post(TOKEN_PATH, headers=fault(drop=True))
        assert isinstance(caught.value, EmulatedDrop)
        # ... and the in-process app keeps serving.
        assert (await client.post(TOKEN_PATH, headers=auth(DEV_API_KEY))).status_code == 200


def _token_body_check(kind: str, response: httpx.Response) -> None:
    raw = response.content
    if kind == "empty":
        assert raw == b""
    elif kind == "html":
        assert response.headers["content-type"].startswith("text/html")
        assert raw.lstrip().lower().startswith(b"<!doctype html")
    elif kind == "non_json":
        assert response.headers["content-type"] == "application/json"  # it lies about its type
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
    elif kind == "truncated":
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
        assert raw.startswith(b'{"ephemeral_token"')
    elif kind == "wrong_types":
        body = json.loads(raw)
        assert not isinstance(body["ephemeral_token"], str)
    elif kind == "missing_fields":
        body = json.loads(raw)
        assert "ephemeral_token" not in body
        assert "ephemeralToken" not in body
    elif kind == "oversized":
        assert len(raw) > 2 * 1024 * 1024
        assert isinstance(json.loads(raw)["ephemeral_token"], str)
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_broken_bodies_are_200_with_the_broken_body(http: httpx.Client, kind: str) -> None:
    response = http.post(TOKEN_PATH, headers=fault(body=kind))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    _token_body_check(kind, response)


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_the_sdk_refuses_every_broken_body(emulator: RunningEmulator, kind: str) -> None:
    emulator.arm("client-secrets", body=kind)
    with sdk(emulator, max_retries=0) as orga, pytest.raises(OrgaAIInvalidResponseError):
        orga.get_session_config()


@pytest.mark.parametrize("kind", ["wrong_types", "missing_fields", "truncated"])
def test_broken_bodies_are_shaped_for_each_endpoint(emulator: RunningEmulator, http: httpx.Client, kind: str) -> None:
    token = mint(http, emulator.api_key)
    response = http.get(ICE_PATH, headers={"X-Orga-Emulator": json.dumps({"body": kind}), **auth(token)})
    if kind == "wrong_types":
        assert not isinstance(response.json()["iceServers"][0]["urls"], (str, list))
    elif kind == "missing_fields":
        assert "iceServers" not in response.json()
    else:
        assert response.content.startswith(b'{"iceServers"')
    calls = http.post("/v1/realtime/calls", headers={"X-Orga-Emulator": json.dumps({"body": kind}), **auth(token)})
    assert calls.status_code == 200
    if kind == "wrong_types":
        assert not isinstance(calls.json()["conversation_id"], str)
    elif kind == "missing_fields":
        assert "answer" not in calls.json()


def test_status_and_body_combine(http: httpx.Client) -> None:
    response = http.post(TOKEN_PATH, headers=fault(status=502, body="html", retry_after="3"))
    assert response.status_code == 502
    assert response.headers["retry-after"] == "3"
    assert b"502 Bad Gateway" in response.content


def test_armed_faults_count_down_per_path_in_fifo_order(emulator: RunningEmulator, http: httpx.Client) -> None:
    emulator.arm("client-secrets", count=2, status=503)
    armed = emulator.arm("*", count=1, status=500)
    assert armed == [{"path": "client-secrets", "count": 2, "status": 503}, {"path": "*", "count": 1, "status": 500}]
    statuses = [http.post(TOKEN_PATH, headers=auth(emulator.api_key)).status_code for _ in range(3)]
    assert statuses == [503, 503, 500]
    token = mint(http, emulator.api_key)
    assert http.get(ICE_PATH, headers=auth(token)).status_code == 200
    assert emulator.stats()["faults_applied"] == 3


def test_wildcard_matches_any_api_path_and_clear_disarms(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    emulator.arm("*", count=5, status=418)
    assert http.get(ICE_PATH, headers=auth(token)).status_code == 418
    assert http.post(TOKEN_PATH, headers=auth(emulator.api_key)).status_code == 418
    # Admin paths are never faulted.
    assert http.get("/_emulator/stats").status_code == 200
    assert http.get("/_emulator/faults").json() == {"armed": [{"path": "*", "count": 3, "status": 418}]}
    emulator.clear_faults()
    assert http.get(ICE_PATH, headers=auth(token)).status_code == 200


def test_the_header_wins_over_the_queue_and_leaves_it_armed(emulator: RunningEmulator, http: httpx.Client) -> None:
    emulator.arm("client-secrets", status=503)
    assert http.post(TOKEN_PATH, headers=fault(status=429)).status_code == 429
    assert http.post(TOKEN_PATH, headers=auth(emulator.api_key)).status_code == 503


@pytest.mark.parametrize(
    "header",
    ['{"stauts": 503}', "not json", "[1]", '{"status": 99}', '{"status": "503"}', '{"latency_ms": -1}',
     '{"body": "xml"}', '{"drop": "yes"}', '{"retry_after": ["1"]}', '{"latency_ms": true}'],
)
def test_an_invalid_header_is_a_loud_400(emulator: RunningEmulator, http: httpx.Client, header: str) -> None:
    response = http.post(TOKEN_PATH, headers={"X-Orga-Emulator": header, **auth(emulator.api_key)})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_fault"
    assert emulator.stats()["tokens_issued"] == 0


@pytest.mark.parametrize(
    "payload",
    [{"path": "tokens", "status": 503}, {"count": 0, "status": 503}, {"count": "2"}, {"stall": 1}, {"oops": True}],
)
def test_an_invalid_armed_fault_is_a_400(http: httpx.Client, payload: dict[str, Any]) -> None:
    response = http.post("/_emulator/faults", json=payload)
    assert response.status_code == 400
    assert http.get("/_emulator/faults").json() == {"armed": []}


def test_arm_helper_rejects_invalid_faults(emulator: RunningEmulator) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        emulator.arm("client-secrets", body="xml")


def test_sdk_retries_through_armed_503s_honouring_retry_after(emulator: RunningEmulator) -> None:
    emulator.arm("ice-config", count=2, status=503, retry_after="0")
    with sdk(emulator, max_retries=2) as orga:
        session = orga.get_session_config()
    assert session.ice_servers
    assert [entry["status"] for entry in emulator.requests()] == [200, 503, 503, 200]


def test_sdk_gives_up_after_the_retries(emulator: RunningEmulator) -> None:
    emulator.arm("client-secrets", count=10, status=500)
    with sdk(emulator, max_retries=1) as orga, pytest.raises(OrgaAIServerError) as caught:
        orga.get_session_config()
    assert caught.value.status == 500
