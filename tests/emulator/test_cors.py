"""Browsers call /v1/realtime/calls cross-origin, as Orga's client SDKs do: the emulator must allow it."""

from __future__ import annotations

import httpx

from orga_ai.testing import RunningEmulator


def test_preflight_of_calls_is_answered_without_spending_a_fault(emulator: RunningEmulator) -> None:
    emulator.arm(path="calls", count=1, status=500)
    response = httpx.options(
        f"{emulator.base_url}/v1/realtime/calls",
        headers={
            "Origin": "http://127.0.0.1:8000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in {"*", "http://127.0.0.1:8000"}
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    armed = httpx.get(f"{emulator.base_url}/_emulator/faults").json()["armed"]
    assert armed, "the preflight did not consume the armed fault"


def test_cross_origin_answer_exposes_the_request_id(emulator: RunningEmulator) -> None:
    response = httpx.post(
        f"{emulator.base_url}/v1/realtime/client-secrets",
        headers={"Origin": "http://127.0.0.1:8000", "Authorization": f"Bearer {emulator.api_key}"},
    )
    assert response.status_code == 200
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
