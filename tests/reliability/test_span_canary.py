"""The canary scan extended to exported spans: every span the SDK and the route record (successes, retries, upstream
errors, refused callers, propagation on), serialised as an exporter would send it, holds no canary secret."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orga_ai import AsyncOrgaAI, OrgaAI, OrgaAIError
from orga_ai.telemetry import configure
from orga_ai.testing import RunningEmulator
from tests.otel_support import install, otel  # noqa: F401 - otel: the fixture, recording for this test
from tests.reliability.support import CANARY_SHARED_SECRET, Canary, app_jwt
from tests.reliability.test_route_faults import ROUTE_PATH, feed, route


@pytest.mark.usefixtures("otel")
def test_exported_spans_hold_no_canary(emulator: RunningEmulator, canary: Canary) -> None:
    recorded = install()
    configure(propagate_to_orga=True)  # the propagated headers are built beside the secrets: scan that path too
    try:
        with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=2) as orga:
            emulator.arm("client-secrets", count=1, status=503)
            canary.add_session_config(orga.get_session_config())
            emulator.arm("ice-config", count=3, status=500)
            try:
                orga.get_session_config()
            except OrgaAIError as exc:
                canary.scan(str(exc), "exception")

        async def async_calls() -> None:
            async with AsyncOrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=1) as orga:
                canary.add_session_config(await orga.get_session_config())
                emulator.arm("client-secrets", count=1, status=401)
                try:
                    await orga.get_session_config()
                except OrgaAIError as exc:
                    canary.scan(str(exc), "exception")

        asyncio.run(async_calls())
        user_jwt = app_jwt()
        with route(emulator.base_url, emulator.api_key) as url, httpx.Client(base_url=url, timeout=10) as client:
            for headers in (
                {"Authorization": f"Bearer {CANARY_SHARED_SECRET}"},
                {"Authorization": f"Bearer {user_jwt}"},
                {"Authorization": "Bearer " + CANARY_SHARED_SECRET[:-2] + "xx"},
                {},
            ):
                feed(canary, client.get(ROUTE_PATH, headers=headers))
    finally:
        configure(propagate_to_orga=False)
    spans = recorded.exporter.get_finished_spans()
    assert len(spans) > 15
    assert {"orga.session_config", "orga.token", "orga.ice", "orga.proxy.request"} <= {s.name for s in spans}
    assert canary.scan(recorded.exported_text(), "spans") == 0
    assert user_jwt.split(".")[2] not in recorded.exported_text()
