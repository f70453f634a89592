"""Secrets never leak; one client is shared safely; nothing opens before the first call."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from orga_ai import AsyncOrgaAI, OrgaAI, OrgaAIError

from .conftest import Factory, resolve


def secrets_of(session: Any) -> list[str]:
    values = [session.ephemeral_token]
    for server in session.ice_servers:
        if server.credential:
            values.append(server.credential)
    return values


def assert_absent(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text
        assert secret[:12] not in text or secret[:12] == "eyJhbGciOiJI", secret[:12]


async def test_debug_trace_never_holds_the_key_or_tokens(
    make_client: Factory, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # root, orga_ai, httpx, httpcore, aiohttp: everything
    client = make_client(debug=True)
    session = await resolve(client.get_session_config())
    emulator.arm(path="ice-config", count=1, status=503)
    emulator.arm(path="client-secrets", count=1, status=401)
    errors: list[BaseException] = []
    for _ in range(2):
        try:
            await resolve(client.get_session_config())
        except OrgaAIError as exc:
            errors.append(exc)
    secrets = [emulator.api_key, *secrets_of(session)]
    text = caplog.text + "".join(f"{e!s}{e!r}" for e in errors)
    assert "token: minted fp:" in caplog.text, "the trace is on and shows fingerprints"
    assert session.token_fingerprint in caplog.text
    assert_absent(text, secrets)
    assert emulator.api_key not in text and "Bearer" not in text


async def test_reprs_hide_every_secret(make_client: Factory, emulator: Any) -> None:
    client = make_client()
    session = await resolve(client.get_session_config())
    token = await resolve(client.fetch_ephemeral_token())
    text = " ".join(repr(x) + str(x) for x in (client, session, token, *session.ice_servers))
    assert_absent(text, [emulator.api_key, token.value, *secrets_of(session)])
    assert session.token_fingerprint in repr(session)


def test_debug_env_switch_emits_the_trace_on_stderr(emulator: Any) -> None:
    code = "from orga_ai import OrgaAI; OrgaAI().get_session_config()"
    env = {"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": emulator.base_url, "ORGA_DEBUG": "1", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "token: HTTP 200" in result.stderr and "ice: HTTP 200" in result.stderr
    assert emulator.api_key not in result.stderr + result.stdout


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.3)
    return sock


@pytest.mark.parametrize("cls", [OrgaAI, AsyncOrgaAI])
def test_constructing_a_client_opens_no_socket(cls: type[OrgaAI] | type[AsyncOrgaAI]) -> None:
    with _listener() as listener:
        port = listener.getsockname()[1]
        client = cls(api_key="sk_orga_ai_lazy", base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(TimeoutError):
            listener.accept()
        assert "orga_ai" in repr(type(client).__module__)


def test_import_does_not_load_the_http_libraries() -> None:
    code = "import sys, orga_ai; print(sorted(m for m in ('httpx', 'aiohttp', 'asyncio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "[]"


def test_one_sync_client_shared_by_50_threads(emulator: Any) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        barrier = threading.Barrier(50)

        def work() -> None:
            try:
                barrier.wait()
                results.append(client.get_session_config().ephemeral_token)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert len(set(results)) == 50


async def test_one_async_client_shared_by_50_tasks(emulator: Any) -> None:
    async with AsyncOrgaAI(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        sessions = await asyncio.gather(*(client.get_session_config() for _ in range(50)))
    assert len({s.ephemeral_token for s in sessions}) == 50


async def test_connections_are_reused(make_client: Factory, emulator: Any) -> None:
    client = make_client()
    for _ in range(5):
        await resolve(client.get_session_config())
    ports = {r["client_port"] for r in emulator.requests()}
    assert len(ports) == 1, ports


async def test_closed_client_refuses_new_calls(make_client: Factory) -> None:
    client = make_client()
    await resolve(client.get_session_config())
    await resolve(client.close())
    with pytest.raises(OrgaAIError, match="closed"):
        await resolve(client.get_session_config())


async def test_user_supplied_http_client_is_used_and_left_open(emulator: Any) -> None:
    import aiohttp
    import httpx

    with httpx.Client() as http:
        with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, http_client=http) as client:
            assert client.get_session_config().ephemeral_token
        assert not http.is_closed
    async with aiohttp.ClientSession() as session:
        async with AsyncOrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, http_client=session) as aclient:
            assert (await aclient.get_session_config()).ephemeral_token
        assert not session.closed
