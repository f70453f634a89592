"""A whole call: an aiortc client peer against /v1/realtime/calls, data channel events and audio echo."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from orga_ai.emulator import EmulatorConfig, create_app
from orga_ai.testing import RunningEmulator, run_emulator

from ._webrtc_client import ClientPeer
from .conftest import auth

pytestmark = pytest.mark.slow


async def _open_call(client: httpx.AsyncClient, api_key: str, peer: ClientPeer) -> str:
    token = (await client.post("/v1/realtime/client-secrets", headers=auth(api_key))).json()["ephemeral_token"]
    response = await client.post("/v1/realtime/calls", headers=auth(token), json=await peer.offer())
    assert response.status_code == 200, response.text
    await peer.accept(response.json()["answer"])
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


async def test_call_greets_answers_session_update_and_echoes_audio(emulator: RunningEmulator) -> None:
    peer = ClientPeer()
    try:
        async with httpx.AsyncClient(base_url=emulator.base_url, timeout=10) as client:
            conversation_id = await _open_call(client, emulator.api_key, peer)
            await asyncio.wait_for(peer.channel_open.wait(), 10)

            created = await peer.next_message()
            assert created["type"] == "session.created"
            session = created["session"]
            assert session["object"] == "realtime.session"
            assert session["id"].startswith("sess_")
            assert (session["voice"], session["model"], session["temperature"]) == ("alloy", "orga-1-beta", 0.5)
            assert set(session) >= {"id", "model", "voice", "temperature", "modalities", "instructions",
                                    "return_transcription", "object"}
            conversation = await peer.next_message()
            assert conversation == {"type": "conversation.created", "conversation": {"id": conversation_id}}

            peer.channel.send('{"event": "session.update", "data": {"voice": "Sofía", "instructions": "Be brief."}}')
            updated = await peer.next_message()
            assert updated["type"] == "session.updated"
            assert (updated["session"]["voice"], updated["session"]["instructions"]) == ("Sofía", "Be brief.")
            assert updated["session"]["id"] == session["id"]

            peer.channel.send("not json")
            assert (await peer.next_message())["type"] == "error"

            # Our own (silent) audio comes back: 20 ms frames, so dozens within a second or two.
            for _ in range(100):
                if peer.frames_back >= 20:
                    break
                await asyncio.sleep(0.05)
            assert peer.frames_back >= 20
            assert (await client.get("/_emulator/stats")).json()["active_calls"] == 1
    finally:
        await peer.close()


async def test_peers_are_closed_after_call_seconds() -> None:
    peer = ClientPeer(audio=False)
    try:
        with run_emulator(EmulatorConfig(call_seconds=0.5)) as running:
            async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as client:
                await _open_call(client, running.api_key, peer)
                await asyncio.wait_for(peer.channel_open.wait(), 10)
                assert (await client.get("/_emulator/stats")).json()["active_calls"] == 1
                for _ in range(60):
                    if (await client.get("/_emulator/stats")).json()["active_calls"] == 0:
                        break
                    await asyncio.sleep(0.05)
                assert (await client.get("/_emulator/stats")).json()["active_calls"] == 0
    finally:
        await peer.close()


async def test_peers_are_closed_on_lifespan_shutdown() -> None:
    app = create_app()
    peer = ClientPeer(audio=False)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://emu"))
            await _open_call(client, "sk_orga_ai_local_emulator_dev_key", peer)
            await asyncio.wait_for(peer.channel_open.wait(), 10)
            assert (await client.get("/_emulator/stats")).json()["active_calls"] == 1
        # The lifespan has ended: the server side of the call is gone, so the client sees it close.
        for _ in range(100):
            if peer.pc.connectionState in ("closed", "failed") or peer.channel.readyState == "closed":
                break
            await asyncio.sleep(0.05)
        assert peer.channel.readyState == "closed"
        transport_app_stats = app.state.emulator_state.stats()
        assert transport_app_stats["calls"] == 1
    finally:
        await peer.close()
