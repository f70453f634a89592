"""get_session_config and the two granular calls, against the emulator over real HTTP, for both clients."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
import pytest

from orga_ai import EphemeralToken, IceServer, OrgaAIAuthenticationError, SessionConfig, __version__
from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import run_emulator

from .conftest import Factory, resolve


async def test_session_config_has_token_ice_servers_and_expiry(make_client: Factory, emulator: Any) -> None:
    client = make_client()
    before = dt.datetime.now(dt.timezone.utc)
    session = await resolve(client.get_session_config())
    assert isinstance(session, SessionConfig)
    claims = jwt.decode(session.ephemeral_token, options={"verify_signature": False})
    assert {"sub", "api_key_id", "scope", "iat", "exp", "jti"} <= set(claims)
    assert session.expires_at is not None and session.expires_at.tzinfo is not None
    lifetime = (session.expires_at - before).total_seconds()
    assert emulator.config.ttl - 5 <= lifetime <= emulator.config.ttl + 5
    assert session.ice_servers and all(isinstance(s, IceServer) for s in session.ice_servers)
    assert any(s.username and s.credential for s in session.ice_servers), "a TURN entry with credentials"
    assert session.token_request_id and session.ice_request_id
    assert session.token_request_id != session.ice_request_id


async def test_to_dict_is_exactly_what_the_client_sdks_read(make_client: Factory) -> None:
    session = await resolve(make_client().get_session_config())
    data = session.to_dict()
    assert set(data) == {"ephemeralToken", "iceServers"}
    assert data["ephemeralToken"] == session.ephemeral_token
    assert isinstance(data["iceServers"], list) and data["iceServers"]
    for entry in data["iceServers"]:
        assert set(entry) <= {"urls", "username", "credential"}
        assert None not in entry.values()
        assert isinstance(entry["urls"], (str, list))
    json.dumps(data)  # plain JSON types only
    assert session.to_client_json()["expiresAt"].endswith("Z")


async def test_session_config_is_immutable(make_client: Factory) -> None:
    session = await resolve(make_client().get_session_config())
    with pytest.raises(AttributeError):
        session.ephemeral_token = "x"  # type: ignore[misc]
    assert isinstance(session.ice_servers, tuple)


async def test_each_call_mints_a_fresh_token(make_client: Factory) -> None:
    client = make_client()
    tokens = {(await resolve(client.get_session_config())).ephemeral_token for _ in range(5)}
    assert len(tokens) == 5


async def test_granular_calls(make_client: Factory, emulator: Any) -> None:
    client = make_client()
    token = await resolve(client.fetch_ephemeral_token())
    assert isinstance(token, EphemeralToken)
    assert token.expires_at is not None and token.request_id
    servers = await resolve(client.fetch_ice_servers(token))
    assert isinstance(servers, list) and servers
    assert await resolve(client.fetch_ice_servers(token.value)) == servers
    paths = [r["path"] for r in emulator.requests()]
    assert paths == ["/v1/realtime/client-secrets", "/v1/realtime/ice-config", "/v1/realtime/ice-config"]


async def test_requests_carry_user_agent_and_default_headers(make_client: Factory, emulator: Any) -> None:
    client = make_client(default_headers={"X-Team": "checkout"})
    await resolve(client.get_session_config())
    for record in emulator.requests():
        assert record["user_agent"] == f"orga-ai-python/{__version__}"


async def test_howto_token_form_with_ttl(make_client: Factory) -> None:
    with run_emulator(EmulatorConfig(token_form="howto", ttl=300)) as emu:
        client = make_client(api_key=emu.api_key, base_url=emu.base_url)
        before = dt.datetime.now(dt.timezone.utc)
        session = await resolve(client.get_session_config())
        assert session.expires_at is not None
        assert 295 <= (session.expires_at - before).total_seconds() <= 305
        assert session.to_dict()["ephemeralToken"] == session.ephemeral_token


async def test_wrong_api_key_is_an_authentication_error_on_the_token_step(make_client: Factory) -> None:
    client = make_client(api_key="sk_orga_ai_not_a_key_the_emulator_knows")
    with pytest.raises(OrgaAIAuthenticationError) as info:
        await resolve(client.get_session_config())
    error = info.value
    assert (error.status, error.step) == (401, "token")
    assert "token" in str(error) and "Incorrect or inactive API key" in str(error)
    assert error.request_id


async def test_ice_with_a_bad_token_is_an_authentication_error_on_the_ice_step(make_client: Factory) -> None:
    client = make_client()
    with pytest.raises(OrgaAIAuthenticationError) as info:
        await resolve(client.fetch_ice_servers("eyJhbGciOiJIUzI1NiJ9.e30.forged"))
    assert (info.value.status, info.value.step) == (401, "ice")


async def test_expired_token_is_refused_by_ice(make_client: Factory, emulator: Any) -> None:
    client = make_client()
    token = await resolve(client.fetch_ephemeral_token())
    emulator.advance_clock(emulator.config.ttl + 1)
    with pytest.raises(OrgaAIAuthenticationError):
        await resolve(client.fetch_ice_servers(token))
