"""``serve --log-format json``, the JSON formatter for adapter users (trace ids included), and the optional events
beacon that joins a minted session to its Orga conversation in the logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orga_ai.telemetry import JSONFormatter
from orga_ai.testing import RunningEmulator
from tests.otel_support import Recorded, otel
from tests.support import captured_lines

from .conftest import JWT_SECRET, ProxyFactory, bearer, make_jwt
from .test_route import ROUTE, assert_error
from .test_serve import SECRET, replicas

__all__ = ["otel"]

EVENTS = ROUTE + "/events"


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_serve_writes_every_line_as_json_and_logs_the_beacon(emulator: RunningEmulator) -> None:
    args = ("--shared-secret", SECRET, "--log-format", "json", "--events")
    auth = {"Authorization": f"Bearer {SECRET}"}
    with replicas(emulator, 1, *args) as (replica,):
        minted = httpx.get(replica.url + ROUTE, headers={**auth, "X-Request-ID": "app-req-42"}, timeout=10)
        assert minted.status_code == 200 and minted.headers["x-request-id"] == "app-req-42"
        event = {"request_id": "app-req-42", "conversation_id": "conv_8f2a91", "state": "connected"}
        answer = httpx.post(replica.url + EVENTS, headers=auth, json=event, timeout=10)
        assert answer.status_code == 204 and answer.content == b""
    lines = _lines("".join(replica.stderr))  # every line parses: the server's own ones too
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
    access = next(line for line in lines if line.get("event") == "orga_proxy_request")
    assert access["request_id"] == "app-req-42" and access["outcome"] == "ok" and access["status"] == 200
    assert access["principal"].startswith("fp:") and len(access["upstream_request_ids"]) == 2
    assert access["logger"] == "orga_ai.proxy.access" and access["timestamp"].endswith("+00:00")
    beacon = next(line for line in lines if line.get("event") == "orga_session_event")
    assert {k: beacon[k] for k in event} == event and beacon["principal"] == access["principal"]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # the server's own lines too
    text = "".join(replica.stderr)
    assert SECRET not in text and emulator.api_key not in text and minted.json()["ephemeralToken"] not in text


def test_the_beacon_is_off_unless_asked(proxy: ProxyFactory) -> None:
    client = proxy()
    assert_error(client.post(EVENTS, headers=bearer(make_jwt()), json={}), 404, "not_found")
    assert EVENTS not in client.get("/openapi.json").json()["paths"]
    described = proxy(events=True).get("/openapi.json").json()["paths"][EVENTS]["post"]
    assert described["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "request_id", "conversation_id", "state"
    ]


def test_the_beacon_refuses_like_the_route(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(events=True, cors_origins=["https://app.example"])
    headers = bearer(make_jwt("beacon-user"))
    good = {"request_id": "r-1", "conversation_id": "c-1", "state": "ended"}
    assert_error(client.post(EVENTS, json=good), 401, "unauthenticated")
    assert_error(client.post(EVENTS, headers={**headers, "Origin": "https://evil.example"}, json=good), 403,
                 "origin_not_allowed")
    for bad in ({"conversation_id": "c-1", "state": "ended"}, {**good, "state": "Ended!"}, [good], "x"):
        assert_error(client.post(EVENTS, headers=headers, json=bad), 400, "bad_request")
    assert_error(client.post(EVENTS, headers=headers, content=b"{" + b" " * 4096 + b"}"), 413, "body_too_large")
    preflight = client.options(
        EVENTS,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, traceparent"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    # 60 per minute, counted before the body is read: the four malformed beacons above spent four.
    codes = [client.post(EVENTS, headers=headers, json=good).status_code for _ in range(57)]
    assert codes == [204] * 56 + [429], codes
    # Beacons have their own window: minting still works for the same caller.
    assert client.get(ROUTE, headers=headers).status_code == 200
    assert [c for c in emulator.requests() if "/v1/" in c["path"]] != []


@pytest.fixture
def json_access_log() -> Iterator[list[str]]:
    with captured_lines(
        "orga_ai.proxy.access", "orga_ai.proxy.events", level=logging.INFO, formatter=JSONFormatter()
    ) as lines:
        yield lines


def test_the_formatter_puts_the_route_span_ids_on_the_access_line(
    proxy: ProxyFactory, otel: Recorded, json_access_log: list[str]
) -> None:
    client = proxy()
    token = make_jwt("traced-user")
    response = client.get(ROUTE, headers={**bearer(token), "X-Request-ID": "trace-me-1"})
    assert response.status_code == 200
    line = next(json.loads(text) for text in json_access_log if '"trace-me-1"' in text)
    span = otel.one("orga.proxy.request")
    assert line["trace_id"] == f"{span.context.trace_id:032x}" and line["span_id"] == f"{span.context.span_id:016x}"
    assert line["level"] == "INFO" and line["message"] == f"orga_proxy_request GET {ROUTE} 200 ok"
    assert token not in "".join(json_access_log) and JWT_SECRET not in "".join(json_access_log)


def test_the_formatter_keeps_exceptions_and_plain_records() -> None:
    formatter = JSONFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed %s", ("twice",), None)
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(formatter.format(record))
    assert line["message"] == "failed twice" and line["level"] == "ERROR" and line["logger"] == "app"
    assert "ValueError: boom" in line["exception"] and "trace_id" not in line
