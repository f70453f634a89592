"""Real calls, this client against the emulator's aiortc peer over 127.0.0.1: events, session.update, the echo of a
440 Hz tone, the three ways to hand over a session config, and relay-only through a real coturn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import orga_ai.realtime as rt
from orga_ai import AsyncOrgaAI, OrgaAI, OrgaAIRealtimeRefusedError
from orga_ai.testing import RunningEmulator, place_call
from tests.support import serve

from .conftest import dominant_frequency, loud_part, tone, write_wav

pytestmark = pytest.mark.slow


async def test_call_with_the_key_connects_greets_and_updates(rt_emulator: RunningEmulator) -> None:
    async with AsyncOrgaAI(api_key=rt_emulator.api_key, base_url=rt_emulator.base_url) as orga:
        async with orga.realtime.connect(voice="alloy", instructions="Be brief.", temperature=0.7) as call:
            assert call.state == "connected"
            assert call.conversation_id is not None and call.conversation_id.startswith("conv_")
            created = await call.wait_for(rt.ConversationCreated)
            assert isinstance(created, rt.ConversationCreated)
            assert created.conversation_id == call.conversation_id

            first = await call.__anext__()
            assert isinstance(first, rt.SessionCreated)
            assert (first.session.voice, first.session.instructions, first.session.temperature) == (
                "alloy", "Be brief.", 0.7)
            assert first.session.model == rt.DEFAULT_MODEL
            assert isinstance(await call.__anext__(), rt.ConversationCreated)

            updated = await call.update(voice="Sofía", instructions="Speak slowly.")
            assert isinstance(updated, rt.SessionUpdated)
            assert (updated.session.voice, updated.session.instructions) == ("Sofía", "Speak slowly.")
            assert updated.session.id == first.session.id
            assert await call.__anext__() == updated  # the iteration sees it too

            call.send({"event": "no.such.event"})
            error = await call.wait_for("error")
            assert isinstance(error, rt.ErrorEvent) and "no.such.event" in error.message

            assert [e.type for e in call.events] == [
                "session.created", "conversation.created", "session.updated", "error"]
            t = call.timings
            assert t.gathered is not None and t.answered is not None and t.connected is not None
            assert t.channel_open is not None and t.session_created is not None
            assert t.gathered <= t.answered <= t.connected and t.answered <= t.channel_open <= t.session_created
            assert call.selected_candidate_type == "host"
        assert call.state == "closed"
    async for _ in call:  # a closed call's iteration ends
        pytest.fail("no event after close")


async def test_a_440_hz_tone_comes_back_as_440_hz(rt_emulator: RunningEmulator, tmp_path: Path) -> None:
    # A 44.1 kHz stereo file: the client resamples and downmixes it to the call's 48 kHz mono.
    mono = tone(440, 1.0, rate=44100)
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))
    wav = write_wav(tmp_path / "a440.wav", stereo, rate=44100, channels=2)
    out = tmp_path / "back.wav"
    result = await place_call(rt_emulator.base_url, rt_emulator.api_key, input_wav=wav, output_wav=out, duration=2.5)
    assert result.audio_in_seconds == pytest.approx(1.0, abs=0.03)
    assert result.audio_out_seconds > 1.5
    loud = loud_part(result.audio)
    assert 0.6 * 48000 < len(loud) < 1.3 * 48000
    assert dominant_frequency(loud) == pytest.approx(440, abs=5)
    # The recording holds the same audio.
    import wave

    with wave.open(str(out), "rb") as recorded:
        assert (recorded.getframerate(), recorded.getnchannels()) == (48000, 1)
        assert recorded.getnframes() > 1.5 * 48000


async def test_send_audio_takes_arrays_at_any_rate(rt_emulator: RunningEmulator) -> None:
    import array

    import numpy as np

    with OrgaAI(api_key=rt_emulator.api_key, base_url=rt_emulator.base_url) as orga:
        config = orga.get_session_config()
    async with rt.connect(config, base_url=rt_emulator.base_url) as call:
        queued = call.send_audio(np.frombuffer(tone(440, 0.5, rate=8000), dtype="<i2"), sample_rate=8000)
        queued += call.send_audio(array.array("h", tone(440, 0.5, rate=24000)), sample_rate=24000)
        assert queued == pytest.approx(1.0, abs=0.01)
        with pytest.raises(TypeError):
            call.send_audio(np.zeros(10, dtype=np.float32))
        with pytest.raises(ValueError, match="sample_rate"):
            call.send_audio(b"\0\0", sample_rate=7)
        await asyncio.wait_for(call.wait_audio_sent(), 5)
        assert call.audio_in_seconds == pytest.approx(1.0, abs=0.03)


async def test_config_as_the_routes_json_or_url(rt_emulator: RunningEmulator) -> None:
    seen: list[dict[str, str]] = []

    async def route(request: Request) -> Response:
        seen.append({"auth": request.headers.get("authorization", ""), "cookie": request.cookies.get("session", "")})
        if request.headers.get("authorization") != "Bearer user-session":
            return JSONResponse({"error": {"message": "Log in first.", "code": "unauthenticated"}}, status_code=401,
                                headers={"x-request-id": "req_route_1"})
        with OrgaAI(api_key=rt_emulator.api_key, base_url=rt_emulator.base_url) as orga:
            return JSONResponse(orga.get_session_config().to_client_json())

    with serve(Starlette(routes=[Route("/api/orga-client-secrets", route)])) as url:
        route_url = url + "/api/orga-client-secrets"
        async with rt.connect(route_url, base_url=rt_emulator.base_url,
                              headers={"Authorization": "Bearer user-session"}, cookies={"session": "s1"}) as call:
            await call.wait_for("session.created")
        assert seen[-1] == {"auth": "Bearer user-session", "cookie": "s1"}

        with pytest.raises(OrgaAIRealtimeRefusedError) as refused:
            await rt.connect(route_url, base_url=rt_emulator.base_url)
        assert (refused.value.phase, refused.value.status_code, refused.value.request_id) == (
            "config", 401, "req_route_1")
        assert "Log in first." in str(refused.value)

        with httpx.Client() as http:
            body = http.get(route_url, headers={"Authorization": "Bearer user-session"}).json()
        call = await rt.connect(json.loads(json.dumps(body)), base_url=rt_emulator.base_url)
        try:
            await call.wait_for("conversation.created")
        finally:
            await call.close()


async def test_relay_only_goes_through_coturn(rt_emulator: RunningEmulator) -> None:
    async with AsyncOrgaAI(api_key=rt_emulator.api_key, base_url=rt_emulator.base_url) as orga:
        result_pcm = tone(440, 0.6, rate=48000)
        async with orga.realtime.connect(relay_only=True) as call:
            assert call.selected_candidate_type == "relay"
            await call.wait_for("session.created")
            stream = call.audio()
            call.send_audio(result_pcm)
            heard = bytearray()
            async for chunk in stream:
                heard += chunk.pcm
                if len(heard) >= 48000 * 2 * 1.6:
                    break
        assert dominant_frequency(loud_part(bytes(heard))) == pytest.approx(440, abs=5)
