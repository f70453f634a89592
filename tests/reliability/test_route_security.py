"""Hostile callers, the fuzzer, and sharing: refused with zero upstream calls, no 5xx, never a shared token."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from orga_ai.proxy import AnonymousAuth
from orga_ai.testing import RunningEmulator
from tests.reliability.support import CANARY_SHARED_SECRET, Canary, Report, app_jwt, security_header_problems
from tests.reliability.test_route_faults import ROUTE_PATH, count, feed, route

TOKEN_PATH = "/v1/realtime/client-secrets"


def _alg_none() -> str:
    import base64
    import json

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": "mallory", "aud": "orga-reliability", "iss": "https://id.reliability.test/", "exp": now + 300}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


HOSTILE: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("no credentials", "GET", {}, None),
    ("forged JWT (wrong key)", "GET", {"Authorization": f"Bearer {app_jwt(secret='x' * 40)}"}, None),
    ("expired JWT", "GET", {"Authorization": f"Bearer {app_jwt(exp=int(time.time()) - 3600)}"}, None),
    ("alg: none JWT", "GET", {"Authorization": f"Bearer {_alg_none()}"}, None),
    ("wrong-audience JWT", "GET", {"Authorization": f"Bearer {app_jwt(aud='someone-else')}"}, None),
    ("wrong shared secret", "GET", {"Authorization": "Bearer " + "n" * 40}, None),
    ("valid JWT, Origin: null", "GET", {"Authorization": f"Bearer {app_jwt()}", "Origin": "null"}, None),
    ("valid JWT, foreign Origin", "GET", {"Authorization": f"Bearer {app_jwt()}", "Origin": "https://evil.example"},
     None),
    ("valid JWT, 32 KB of headers", "GET", {"Authorization": f"Bearer {app_jwt()}", "X-Pad": "p" * 32_768}, None),
    ("valid JWT, 1 MB body", "POST", {"Authorization": f"Bearer {app_jwt()}"}, b"{" + b" " * 1_000_000 + b"}"),
]


def test_hostile_callers_are_refused_without_upstream_calls(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    with route(emulator.base_url, emulator.api_key, cors_origins=["https://app.example"]) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        worst = 0.0
        outcomes: list[str] = []
        for name, method, headers, body in HOSTILE:
            started = time.monotonic()
            response = client.request(method, ROUTE_PATH, headers=headers, content=body)
            worst = max(worst, time.monotonic() - started)
            feed(canary, response)
            outcomes.append(f"{response.status_code}")
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
            assert not security_header_problems(response.headers), (name, response.headers)
        upstream = count(emulator, TOKEN_PATH)
    report.add(f"route: {len(HOSTILE)} hostile callers (forged/expired/none/aud JWT, Origin null, 32 KB, 1 MB)",
               requests=len(HOSTILE), outcome="all refused: " + " ".join(outcomes), worst_s=worst,
               deadline_s=None, upstream=upstream)
    assert upstream == 0


def test_spoofed_forwarded_for_does_not_escape_the_per_ip_limit(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    # The peer (127.0.0.1) is not a trusted proxy: its X-Forwarded-For must not pick the rate-limit key.
    with route(emulator.base_url, emulator.api_key, authenticate=AnonymousAuth(), allow_anonymous=True,
               rate_limit="3/minute", trusted_proxies=["10.0.0.0/8"]) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        statuses = []
        for i in range(10):
            response = client.get(ROUTE_PATH, headers={"X-Forwarded-For": f"203.0.113.{i}"})
            feed(canary, response)
            statuses.append(response.status_code)
            assert not security_header_problems(response.headers)
    upstream = count(emulator, TOKEN_PATH)
    report.add("route: 10 anonymous calls, each with a new spoofed X-Forwarded-For (limit 3/min)", requests=10,
               outcome=f"{statuses.count(200)} served, {statuses.count(429)} refused 429", worst_s=None,
               deadline_s=None, upstream=upstream)
    assert statuses.count(200) == 3
    assert statuses.count(429) == 7
    assert upstream == 3


async def test_tokens_are_never_shared(emulator: RunningEmulator, canary: Canary, report: Report) -> None:
    import aiohttp  # the load client: httpx's pool slows down quadratically with 1,000 requests queued

    users, per_user = 50, 20
    # 1,000 requests at once, served with the emulator in this same process: on a loaded two-core machine the last
    # ones wait seconds for the loop. What is checked is that no two callers share a token, not the latency, so the
    # route gets a deadline long enough that none of them ends in a 504.
    with route(emulator.base_url, emulator.api_key, max_concurrency=users * per_user, deadline=45.0,
               orga_options={"timeout": 40.0}) as url:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            jwts = [app_jwt(f"user-{u}") for u in range(users)]

            async def one(token: str) -> tuple[int, Any, float]:
                t0 = time.monotonic()
                async with session.get(url + ROUTE_PATH, headers={"Authorization": f"Bearer {token}"}) as response:
                    body = await response.json(content_type=None)
                    problems = security_header_problems(response.headers)
                    assert not problems, problems
                    return response.status, body, time.monotonic() - t0

            started = time.monotonic()
            results = await asyncio.gather(*(one(jwts[u]) for u in range(users) for _ in range(per_user)))
            total = time.monotonic() - started
    tokens, credentials = set(), set()
    for status, body, _ in results:
        assert status == 200, body
        canary.add_session_config(body)
        tokens.add(body["ephemeralToken"])
        credentials.update(s["credential"] for s in body["iceServers"] if "credential" in s)
    worst = max(elapsed for _, _, elapsed in results)
    report.add(f"route: {users} users x {per_user} concurrent", requests=users * per_user,
               outcome=f"{len(tokens)} distinct tokens, {len(credentials)} distinct TURN credentials "
               f"({total:.1f} s)", worst_s=worst, deadline_s=45.0, upstream=count(emulator, TOKEN_PATH))
    assert len(tokens) == users * per_user
    assert len(credentials) == users * per_user


@pytest.mark.slow
def test_schemathesis_with_auth_finds_no_5xx_no_schema_violation_no_bypass(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    import schemathesis
    from hypothesis import given

    headers = {"Authorization": f"Bearer {CANARY_SHARED_SECRET}"}
    failures: list[str] = []
    calls = 0
    with route(emulator.base_url, emulator.api_key, rate_limit=None, cors_origins=["https://app.example"]) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=40, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                nonlocal calls
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=url, timeout=10)
                calls += 1
                canary.scan(response.text + str(dict(response.headers)), "error body")
                if response.status_code == 200:
                    canary.add_session_config(response.json())
                try:
                    case.validate_response(response)
                except Exception as exc:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{case.operation.label}: {exc}".splitlines()[0])
                    canary.scan(str(exc), "exception")
                if response.status_code >= 500 and response.status_code not in (502, 503, 504):
                    failures.append(f"{case.operation.label}: HTTP {response.status_code}")
                if security_header_problems(response.headers):
                    failures.append(f"{case.operation.label}: {security_header_problems(response.headers)}")

            run()
        # No auth: every operation that declares security must refuse.
        with httpx.Client(base_url=url, timeout=10) as client:
            bypass = [client.get(ROUTE_PATH), client.post(ROUTE_PATH)]
    report.add(f"route: schemathesis, {len(operations)} operations, authenticated", requests=calls,
               outcome=f"{len(failures)} failures; unauthenticated: {[r.status_code for r in bypass]}",
               worst_s=None, deadline_s=None, upstream=count(emulator, TOKEN_PATH))
    assert not failures, sorted(set(failures))[:10]
    assert all(r.status_code == 401 for r in bypass)
