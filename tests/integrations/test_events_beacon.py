"""The events beacon (``POST {path}/events``) through each adapter's real app: ``events=True`` for FastAPI and
Flask, ``ORGA_PROXY["events"]`` for Django; the same policy as ``create_app``'s (tests/proxy/test_json_logs.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.proxy.conftest import bearer, make_jwt
from tests.proxy.test_route import ROUTE, assert_error
from tests.support import captured_lines

from .conftest import MountFactory

EVENTS = ROUTE + "/events"
ORIGIN = "https://app.example.com"


@pytest.fixture
def event_lines() -> Iterator[list[str]]:
    with captured_lines("orga_ai.proxy.events", level=logging.INFO) as lines:
        yield lines


def test_the_beacon_logs_one_line_and_refuses_like_the_route(mount: MountFactory, event_lines: list[str]) -> None:
    mounted = mount(events=True, cors_origins=[ORIGIN])
    headers = bearer(make_jwt("beacon-user"))
    good = {"request_id": "minted-1", "conversation_id": "conv_42", "state": "connected"}
    answer = httpx.post(mounted.url + EVENTS, headers={**headers, "X-Request-ID": "beacon-1"}, json=good)
    assert answer.status_code == 204 and answer.content == b"", answer.text
    assert answer.headers["x-request-id"] == "beacon-1" and answer.headers["cache-control"] == "no-store"
    logged = [json.loads(line) for line in event_lines]
    assert len(logged) == 1 and {k: logged[0][k] for k in good} == good
    assert logged[0]["beacon_request_id"] == "beacon-1" and logged[0]["principal"].startswith("fp:")

    assert_error(httpx.post(mounted.url + EVENTS, json=good), 401, "unauthenticated")
    assert_error(httpx.post(mounted.url + EVENTS, headers=bearer(make_jwt(aud="other")), json=good), 401,
                 "invalid_token")
    assert_error(httpx.post(mounted.url + EVENTS, headers={**headers, "Origin": "https://evil.example"}, json=good),
                 403, "origin_not_allowed")
    assert_error(httpx.post(mounted.url + EVENTS, headers=headers, content=b"{" + b" " * 4096 + b"}"), 413,
                 "body_too_large")
    assert_error(httpx.post(mounted.url + EVENTS, headers=headers, json={**good, "state": "Nope!"}), 400,
                 "bad_request")
    preflight = httpx.options(
        mounted.url + EVENTS,
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert len(event_lines) == 1  # refusals log no event


def test_the_beacon_has_its_own_rate_limit(mount: MountFactory) -> None:
    mounted = mount(events=True)
    headers = bearer(make_jwt("chatty-page"))
    good = {"request_id": "minted-2", "conversation_id": "conv_43", "state": "ended"}
    codes = [httpx.post(mounted.url + EVENTS, headers=headers, json=good).status_code for _ in range(61)]
    assert codes == [204] * 60 + [429], codes
    # Beacons never spend the minting budget.
    assert httpx.get(mounted.url + ROUTE, headers=headers).status_code == 200


def test_the_beacon_is_off_unless_asked(mount: MountFactory) -> None:
    mounted = mount()
    response = httpx.post(mounted.url + EVENTS, headers=bearer(make_jwt()), json={})
    assert response.status_code == 404, response.text
