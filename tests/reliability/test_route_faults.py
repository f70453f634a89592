"""The route under faults: every answer within the route's deadline + 250 ms, attempts as documented, the circuit
breaker and the retry budget measured end to end.

    test client --HTTP--> proxy (uvicorn thread) --AsyncOrgaAI--> fault proxy --> emulator
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orga_ai.proxy import AnyOf, JWTAuth, SharedSecretAuth, create_app
from orga_ai.testing import RunningEmulator
from tests.reliability.faultproxy import FaultProxy, Mode
from tests.reliability.support import (
    APP_AUDIENCE,
    APP_ISSUER,
    CANARY_APP_JWT_SECRET,
    CANARY_SHARED_SECRET,
    Canary,
    Report,
    app_jwt,
    security_header_problems,
)
from tests.support import serve

SLACK = 0.25
ROUTE_PATH = "/api/orga-client-secrets"
TOKEN_PATH = "/v1/realtime/client-secrets"
ICE_PATH = "/v1/realtime/ice-config"


def authenticator() -> Any:
    return AnyOf(
        SharedSecretAuth(CANARY_SHARED_SECRET),
        JWTAuth(secret=CANARY_APP_JWT_SECRET, audience=APP_AUDIENCE, issuer=APP_ISSUER),
    )


@contextlib.contextmanager
def route(orga_base_url: str, api_key: str, **kwargs: Any) -> Iterator[str]:
    """A proxy app in front of ``orga_base_url``, with canary credentials, served; yields its base URL."""
    orga = {"api_key": api_key, "base_url": orga_base_url, "max_retries": 2, "timeout": 0.7}
    orga.update(kwargs.pop("orga_options", {}))
    kwargs.setdefault("authenticate", authenticator())
    kwargs.setdefault("rate_limit", None)
    app = create_app(orga_options=orga, **kwargs)
    with serve(app) as url:
        yield url


def feed(canary: Canary, response: httpx.Response) -> None:
    """An answer of the proxy: its tokens join the canaries if it is a success, its body is scanned if not."""
    if response.status_code == 200:
        canary.add_session_config(response.json())
    else:
        canary.scan(response.text + str(dict(response.headers)), "error body")


def count(emulator: RunningEmulator, path: str) -> int:
    return int(emulator.stats()["paths"].get(path, 0))


@pytest.fixture
def fault_proxy(emulator: RunningEmulator, canary: Canary) -> Iterator[FaultProxy]:
    with FaultProxy(emulator.base_url, on_secret=canary.on_secret) as proxy:
        yield proxy


@dataclass(frozen=True)
class RouteFault:
    name: str
    mode: Mode = "pass"
    fault: dict[str, Any] | None = None  # armed on the emulator for every request
    status: int = 502
    token_attempts: int = 1  # token POSTs that left the proxy (fault proxy log), or reached Orga with an emulator fault


ROUTE_DEADLINE = 2.0
ROUTE_FAULTS = [
    RouteFault("refused", mode="refuse", status=502, token_attempts=3),
    RouteFault("black hole", mode="blackhole", status=504, token_attempts=2),
    RouteFault("RST after send", mode="reset_after_send", status=502, token_attempts=2),
    RouteFault("1 byte / 200 ms", mode="trickle", status=504, token_attempts=2),
    RouteFault("Orga 500", fault={"status": 500}, status=502, token_attempts=2),
    RouteFault("Orga 503, Retry-After 0", fault={"status": 503, "retry_after": "0"}, status=502, token_attempts=3),
    RouteFault("Orga 503, Retry-After 30 (past the cap)", fault={"status": 503, "retry_after": "30"}, status=502,
               token_attempts=1),
    RouteFault("Orga 429, Retry-After 5 (past the deadline)", fault={"status": 429, "retry_after": "5"},
               status=503, token_attempts=1),
    RouteFault("Orga 401 (our key refused)", fault={"status": 401}, status=502, token_attempts=1),
    RouteFault("Orga 400", fault={"status": 400}, status=502, token_attempts=1),
    RouteFault("Orga stalls", fault={"stall": True}, status=504, token_attempts=2),
    RouteFault("Orga drops mid-body", fault={"drop": True}, status=502, token_attempts=2),
    RouteFault("Orga answers HTML", fault={"body": "html"}, status=502, token_attempts=1),
    RouteFault("Orga answers 2 MB", fault={"body": "oversized"}, status=502, token_attempts=1),
]


@pytest.mark.parametrize("scenario", ROUTE_FAULTS, ids=[s.name for s in ROUTE_FAULTS])
def test_route_under_fault(
    scenario: RouteFault, emulator: RunningEmulator, fault_proxy: FaultProxy, canary: Canary, report: Report
) -> None:
    headers = {"Authorization": f"Bearer {app_jwt()}"}
    with route(fault_proxy.url, emulator.api_key, deadline=ROUTE_DEADLINE, breaker_threshold=0) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        if scenario.fault is not None:
            emulator.arm("*", count=100, **scenario.fault)
        fault_proxy.set(scenario.mode)
        started = time.monotonic()
        response = client.get(ROUTE_PATH, headers=headers)
        elapsed = time.monotonic() - started
        feed(canary, response)
        fault_proxy.set("pass")
        metrics = client.get("/metrics")
        canary.scan(metrics.text, "metrics")
    seen = fault_proxy.seen()
    token_seen = [r for r in seen if r.path == TOKEN_PATH]
    attempts = token_seen if scenario.mode != "refuse" else None
    token_attempts = len(attempts) if attempts is not None else scenario.token_attempts  # refused: nothing to see
    minted = emulator.stats()["tokens_issued"]
    report.add(
        f"route: Orga path {scenario.name}" if scenario.fault is None else f"route: {scenario.name}",
        requests=1,
        outcome=f"HTTP {response.status_code} {response.json().get('error', {}).get('code', '')}".strip(),
        worst_s=elapsed,
        deadline_s=ROUTE_DEADLINE,
        upstream=f"token {token_attempts}, ICE {len([r for r in seen if r.path == ICE_PATH])} (minted {minted})",
    )
    assert response.status_code == scenario.status, response.text
    assert elapsed <= ROUTE_DEADLINE + SLACK
    assert not security_header_problems(response.headers)
    if scenario.status == 503:
        assert response.headers.get("retry-after", "").isdigit()
    if attempts is not None:
        assert len(attempts) == scenario.token_attempts
        assert len({r.idempotency_key for r in attempts}) == 1


def test_breaker_opens_rejects_fast_and_one_probe_closes_it(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    headers = {"Authorization": f"Bearer {CANARY_SHARED_SECRET}"}
    cooldown = 3.0
    with route(emulator.base_url, emulator.api_key, breaker_threshold=3, breaker_cooldown=cooldown,
               deadline=ROUTE_DEADLINE) as url, httpx.Client(base_url=url, timeout=10) as client:
        emulator.arm("*", count=1000, status=500)
        for _ in range(3):
            feed(canary, client.get(ROUTE_PATH, headers=headers))
        before = count(emulator, TOKEN_PATH)
        worst, statuses = 0.0, set()
        opened_at = time.monotonic()
        sent = 0
        for _ in range(50):
            started = time.monotonic()
            if started - opened_at > cooldown / 2:  # a slow machine: stop well before the breaker lets a probe out
                break
            sent += 1
            response = client.get(ROUTE_PATH, headers=headers)
            worst = max(worst, time.monotonic() - started)
            statuses.add(response.status_code)
            assert not security_header_problems(response.headers)
            assert 1 <= int(response.headers["retry-after"]) <= cooldown + 1
            feed(canary, response)
        during_open = count(emulator, TOKEN_PATH) - before
        report.add("route: breaker open, Orga 500", requests=sent, outcome=f"HTTP {sorted(statuses)}", worst_s=worst,
                   deadline_s=ROUTE_DEADLINE, upstream=during_open)
        assert sent >= 5
        assert statuses == {503}
        assert during_open == 0  # rejected without a call to Orga: how fast that is, is the benchmarks' business

        emulator.clear_faults()
        time.sleep(max(0.0, cooldown - (time.monotonic() - opened_at)) + 0.05)
        probe = client.get(ROUTE_PATH, headers=headers)
        feed(canary, probe)
        after = [client.get(ROUTE_PATH, headers=headers) for _ in range(5)]
        for response in after:
            feed(canary, response)
        metrics = client.get("/metrics").text
        canary.scan(metrics, "metrics")
        state = [line for line in metrics.splitlines() if line.startswith("orga_proxy_circuit_open ")]
        report.add("route: breaker half-open probe after recovery", requests=6,
                   outcome=f"probe HTTP {probe.status_code}, then {sorted({r.status_code for r in after})}",
                   worst_s=None, deadline_s=None, upstream=6 * 2)
        assert probe.status_code == 200
        assert all(r.status_code == 200 for r in after)
        assert state == ["orga_proxy_circuit_open 0.0"], state  # closed again


OUTAGE_CALLS = int(os.environ.get("RELIABILITY_OUTAGE_CALLS", "15"))  # per caller, 10 callers


async def test_route_outage_budget_caps_upstream_traffic(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    """Orga fails every request; the breaker is off so the budget alone is measured (with it on, fewer still)."""
    headers = {"Authorization": f"Bearer {CANARY_SHARED_SECRET}"}
    with route(emulator.base_url, emulator.api_key, breaker_threshold=0, deadline=ROUTE_DEADLINE) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            emulator.arm("*", count=100_000, status=503)
            # Drain: until an outage call costs one upstream request.
            for _ in range(20):
                feed(canary, await client.get(ROUTE_PATH, headers=headers))
            drained_upstream = count(emulator, TOKEN_PATH)
            routed = 0
            worst = 0.0

            # A count, not a duration: how many calls fit in some seconds depends on the machine's load.
            async def caller() -> None:
                nonlocal routed, worst
                for _ in range(OUTAGE_CALLS):
                    started = time.monotonic()
                    response = await client.get(ROUTE_PATH, headers=headers)
                    worst = max(worst, time.monotonic() - started)
                    assert response.status_code == 502
                    routed += 1

            await asyncio.gather(*(caller() for _ in range(10)))
            upstream = count(emulator, TOKEN_PATH) - drained_upstream
            ratio = upstream / routed
            report.add(
                f"route: Orga 503 on every request, 10 callers x {OUTAGE_CALLS} (retry budget)",
                requests=routed + 20,
                outcome=f"all 502; upstream/route {ratio:.3f} once drained",
                worst_s=worst,
                deadline_s=ROUTE_DEADLINE,
                upstream=f"{upstream + drained_upstream} (drain: {drained_upstream} for 20)",
            )
            assert routed == 10 * OUTAGE_CALLS
            assert ratio <= 1.2

            emulator.clear_faults()
            for _ in range(60):  # 0.2 refilled per success (token + ICE)
                response = await client.get(ROUTE_PATH, headers=headers)
                assert response.status_code == 200
                feed(canary, response)
            before = count(emulator, TOKEN_PATH)
            emulator.arm("client-secrets", count=1, status=503, retry_after="0")
            response = await client.get(ROUTE_PATH, headers=headers)
            feed(canary, response)
            report.add("route: Orga recovers (budget refilled)", requests=61,
                       outcome=f"HTTP 200 x60; then a 503 retried: HTTP {response.status_code}", worst_s=None,
                       deadline_s=None, upstream=count(emulator, TOKEN_PATH) - before)
            assert response.status_code == 200
            assert count(emulator, TOKEN_PATH) - before == 2
