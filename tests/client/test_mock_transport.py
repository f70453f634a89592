"""The mock transports of orga_ai.testing: the emulator's answers and faults, without a socket, for users' tests."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from orga_ai import (
    AsyncOrgaAI,
    OrgaAI,
    OrgaAIAuthenticationError,
    OrgaAIConfigurationError,
    OrgaAIConnectionError,
    OrgaAIInvalidResponseError,
    OrgaAIRateLimitError,
    OrgaAITimeoutError,
)
from orga_ai.emulator import FaultError
from orga_ai.testing import AsyncMockTransport, MockTransport

from .conftest import resolve


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket opened during the test fails it: the mock must answer without the network."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return


@pytest.fixture(params=["sync", "async"])
def pair(request: pytest.FixtureRequest, no_sockets: None) -> tuple[Any, Any]:
    """(mock, client) of one kind: a client whose only transport is the mock."""
    mock = MockTransport() if request.param == "sync" else AsyncMockTransport()
    cls: Any = OrgaAI if request.param == "sync" else AsyncOrgaAI
    return mock, cls(api_key=mock.api_key, base_url="https://api.example.test", transport=mock)


async def test_answers_a_token_then_ice_servers(pair: tuple[Any, Any]) -> None:
    mock, client = pair
    config = await resolve(client.get_session_config())
    assert config.ephemeral_token.startswith("mock_")
    assert next(s.urls for s in config.ice_servers) == ("stun:127.0.0.1:3478",)
    assert config.expires_at is not None
    assert [(r.method, r.path) for r in mock.requests] == [("POST", "client-secrets"), ("GET", "ice-config")]
    await resolve(client.close())


async def test_armed_faults_drive_the_retry_policy(pair: tuple[Any, Any]) -> None:
    mock, client = pair
    mock.arm("client-secrets", count=2, status=503, retry_after="0")
    await resolve(client.get_session_config())
    assert [r.path for r in mock.requests] == ["client-secrets"] * 3 + ["ice-config"]
    assert mock.requests[0].fault == {"status": 503, "retry_after": "0"}
    mock.clear()
    mock.arm("*", count=5, status=429, retry_after="60")
    with pytest.raises(OrgaAIRateLimitError) as info:
        await resolve(client.get_session_config())
    assert info.value.retry_after == 60


async def test_the_fault_header_works_as_on_the_emulator(no_sockets: None) -> None:
    mock = AsyncMockTransport()
    header = {"X-Orga-Emulator": json.dumps({"body": "html"})}
    async with AsyncOrgaAI(api_key=mock.api_key, transport=mock, default_headers=header) as orga:
        with pytest.raises(OrgaAIInvalidResponseError, match="HTML"):
            await orga.get_session_config()


async def test_a_stall_is_a_timeout_bounded_by_the_attempt(pair: tuple[Any, Any]) -> None:
    mock, client = pair
    mock.arm("ice-config", count=100, stall=True)
    with pytest.raises(OrgaAITimeoutError):
        await resolve(client.get_session_config(timeout=0.05, deadline=0.5))
    assert mock.requests[0].fault == {}
    assert {r.path for r in mock.requests[1:]} == {"ice-config"}
    assert all(r.fault == {"stall": True} for r in mock.requests[1:])


async def test_a_drop_on_the_post_is_retried_once_only(pair: tuple[Any, Any]) -> None:
    mock, client = pair
    mock.arm("client-secrets", count=5, drop=True)
    with pytest.raises(OrgaAIConnectionError):
        await resolve(client.get_session_config())
    assert len(mock.requests) == 2


async def test_the_wrong_key_and_a_reused_token_are_refused(pair: tuple[Any, Any]) -> None:
    mock, client = pair
    token = await resolve(client.fetch_ephemeral_token())
    await resolve(client.fetch_ice_servers(token))
    with pytest.raises(OrgaAIAuthenticationError):
        await resolve(client.fetch_ice_servers(token))  # single use
    stranger = type(client)(api_key="sk_orga_ai_" + "x" * 32, transport=mock)
    with pytest.raises(OrgaAIAuthenticationError):
        await resolve(stranger.fetch_ephemeral_token())


def test_an_unknown_fault_key_is_refused() -> None:
    with pytest.raises(FaultError, match="unknown fault key"):
        MockTransport().arm("client-secrets", stauts=503)


def test_http_client_and_transport_together_are_refused() -> None:
    import httpx

    with httpx.Client() as http, pytest.raises(OrgaAIConfigurationError, match="not both"):
        OrgaAI(api_key=MockTransport().api_key, http_client=http, transport=MockTransport())
