"""The retry policy, observed from the emulator's request log."""

from __future__ import annotations

import time
from typing import Any

import pytest

from orga_ai import OrgaAIAuthenticationError, OrgaAIRateLimitError, OrgaAIServerError, OrgaAITimeoutError

from .conftest import Factory, resolve

TOKEN = "/v1/realtime/client-secrets"
ICE = "/v1/realtime/ice-config"


def attempts(emulator: Any, path: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["path"] == path]


@pytest.mark.parametrize("status", [408, 429, 503])
async def test_safe_failures_are_retried_with_one_idempotency_key(
    make_client: Factory, emulator: Any, status: int
) -> None:
    emulator.arm(path="client-secrets", count=2, status=status)
    session = await resolve(make_client(max_retries=2).get_session_config())
    assert session.ephemeral_token
    tries = attempts(emulator, TOKEN)
    assert len(tries) == 3
    keys = {t["idempotency_key"] for t in tries}
    assert len(keys) == 1 and None not in keys


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_ambiguous_token_failures_are_retried_at_most_once(
    make_client: Factory, emulator: Any, status: int
) -> None:
    emulator.arm(path="client-secrets", count=5, status=status)
    with pytest.raises(OrgaAIServerError):
        await resolve(make_client(max_retries=5).get_session_config())
    tries = attempts(emulator, TOKEN)
    assert len(tries) == 2
    assert tries[0]["idempotency_key"] == tries[1]["idempotency_key"]


async def test_ambiguous_failure_then_success(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, status=502)
    assert (await resolve(make_client().get_session_config())).ephemeral_token
    assert len(attempts(emulator, TOKEN)) == 2


async def test_dropped_connection_on_the_token_post_is_retried_once(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=5, drop=True)
    with pytest.raises(OrgaAIServerError):
        await resolve(make_client(max_retries=5).get_session_config())
    assert len(attempts(emulator, TOKEN)) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(make_client: Factory, emulator: Any, status: int) -> None:
    emulator.arm(path="client-secrets", count=3, status=status)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the class is covered in test_errors
        await resolve(make_client(max_retries=2).get_session_config())
    assert len(attempts(emulator, TOKEN)) == 1


async def test_ice_failures_are_retried_with_the_same_token_and_never_mint_twice(
    make_client: Factory, emulator: Any
) -> None:
    emulator.arm(path="ice-config", count=2, status=500)
    session = await resolve(make_client(max_retries=2).get_session_config())
    assert session.ephemeral_token
    assert len(attempts(emulator, TOKEN)) == 1
    ice = attempts(emulator, ICE)
    assert len(ice) == 3
    assert len({r["bearer"] for r in ice}) == 1


async def test_ice_failure_past_retries_does_not_mint_a_second_token(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="ice-config", count=10, status=503)
    with pytest.raises(OrgaAIServerError) as info:
        await resolve(make_client(max_retries=2).get_session_config())
    assert info.value.step == "ice"
    assert len(attempts(emulator, TOKEN)) == 1
    assert len(attempts(emulator, ICE)) == 3


async def test_max_retries_zero_turns_retries_off(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, status=503)
    with pytest.raises(OrgaAIServerError):
        await resolve(make_client(max_retries=0).get_session_config())
    assert len(attempts(emulator, TOKEN)) == 1


async def test_retry_after_in_seconds_is_honoured(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, status=429, retry_after="1")
    started = time.monotonic()
    await resolve(make_client().get_session_config())
    assert time.monotonic() - started >= 1.0


async def test_retry_after_as_an_http_date_is_honoured(make_client: Factory, emulator: Any) -> None:
    import datetime as dt
    from email.utils import format_datetime

    when = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2), usegmt=True)
    emulator.arm(path="client-secrets", count=1, status=503, retry_after=when)
    started = time.monotonic()
    await resolve(make_client().get_session_config())
    assert time.monotonic() - started >= 0.9  # the date has one-second resolution


async def test_retry_after_past_the_cap_is_not_waited_for(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, status=429, retry_after="120")
    started = time.monotonic()
    with pytest.raises(OrgaAIRateLimitError) as info:
        await resolve(make_client().get_session_config())
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 120.0
    assert len(attempts(emulator, TOKEN)) == 1


async def test_retry_after_never_sleeps_past_the_deadline(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, status=503, retry_after="3")
    started = time.monotonic()
    with pytest.raises(OrgaAIServerError):
        await resolve(make_client().get_session_config(deadline=1.0))
    assert time.monotonic() - started < 1.0


async def test_deadline_bounds_the_whole_call(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="*", count=10, stall=True)
    client = make_client(timeout=5, max_retries=5)
    started = time.monotonic()
    with pytest.raises(OrgaAITimeoutError):
        await resolve(client.get_session_config(deadline=1.0))
    assert time.monotonic() - started < 1.0 + 0.25


async def test_per_call_timeout_override(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, stall=True)
    client = make_client(timeout=30, max_retries=0)
    started = time.monotonic()
    with pytest.raises(OrgaAITimeoutError):
        await resolve(client.get_session_config(timeout=0.3))
    assert time.monotonic() - started < 1.0


async def test_auth_errors_are_not_retried(make_client: Factory, emulator: Any) -> None:
    client = make_client(api_key="sk_orga_ai_unknown_key", max_retries=3)
    with pytest.raises(OrgaAIAuthenticationError):
        await resolve(client.get_session_config())
    assert len(attempts(emulator, TOKEN)) == 1
