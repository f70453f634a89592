"""Every way a call can fail comes out as a typed OrgaAIRealtimeError, with the phase, status and request id, and
without the token: refusals (401, 429, 500) and broken answers from a real emulator, an Orga that answers without a
conversation_id, an unreachable Orga, a timeout, and ICE that cannot find a path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import orga_ai.realtime as rt
from orga_ai import (
    OrgaAI,
    OrgaAIRealtimeConnectionError,
    OrgaAIRealtimeError,
    OrgaAIRealtimeICEError,
    OrgaAIRealtimeInvalidAnswerError,
    OrgaAIRealtimeRefusedError,
    OrgaAIRealtimeTimeoutError,
    SessionConfig,
)
from orga_ai.testing import RunningEmulator
from tests.support import free_port, serve

pytestmark = pytest.mark.slow


def session(emulator: RunningEmulator) -> SessionConfig:
    with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url) as orga:
        return orga.get_session_config()


def orga_at(calls: Callable[[Request], Awaitable[Response]]) -> Starlette:
    """A stand-in Orga whose /v1/realtime/calls is ``calls``."""
    return Starlette(routes=[Route("/v1/realtime/calls", calls, methods=["POST"])])


def assert_no_secret(error: BaseException, config: SessionConfig) -> None:
    secrets = [config.ephemeral_token] + [s for server in config.ice_servers
                                          for s in (server.username, server.credential) if s]
    for text in (str(error), repr(error), repr(error.__cause__), repr(error.__context__)):
        for secret in secrets:
            assert secret not in text


async def test_a_used_token_is_refused_with_401(rt_emulator: RunningEmulator) -> None:
    config = session(rt_emulator)
    async with rt.connect(config, base_url=rt_emulator.base_url):
        pass
    with pytest.raises(OrgaAIRealtimeRefusedError) as caught:
        await rt.connect(config, base_url=rt_emulator.base_url)
    error = caught.value
    assert (error.phase, error.status_code, error.conversation_id) == ("calls", 401, None)
    assert error.request_id is not None
    assert "401" in str(error)
    assert_no_secret(error, config)


@pytest.mark.parametrize(("status", "retry_after"), [(429, 2.0), (500, None), (503, 1.0)])
async def test_refusals_carry_status_request_id_and_retry_after(
    rt_emulator: RunningEmulator, status: int, retry_after: float | None
) -> None:
    config = session(rt_emulator)
    fault: dict[str, object] = {"status": status}
    if retry_after is not None:
        fault["retry_after"] = str(int(retry_after))
    rt_emulator.arm("calls", **fault)
    with pytest.raises(OrgaAIRealtimeRefusedError) as caught:
        await rt.connect(config, base_url=rt_emulator.base_url)
    error = caught.value
    assert (error.phase, error.status_code, error.retry_after) == ("calls", status, retry_after)
    logged = [r for r in rt_emulator.requests() if r["path"] == "/v1/realtime/calls"]
    assert error.request_id is not None and error.request_id == logged[-1]["request_id"]
    assert_no_secret(error, config)


@pytest.mark.parametrize("body", ["missing_fields", "non_json", "wrong_types", "html"])
async def test_broken_answers_are_invalid_answer_errors(rt_emulator: RunningEmulator, body: str) -> None:
    config = session(rt_emulator)
    rt_emulator.arm("calls", body=body)
    with pytest.raises(OrgaAIRealtimeInvalidAnswerError) as caught:
        await rt.connect(config, base_url=rt_emulator.base_url)
    assert caught.value.phase == "calls"
    assert_no_secret(caught.value, config)


async def test_an_answer_without_conversation_id(rt_emulator: RunningEmulator) -> None:
    # An Orga that answers 200 with an SDP but no conversation_id: what core refuses too.
    async def calls(request: Request) -> Response:
        await request.body()
        return JSONResponse({"answer": {"sdp": "v=0\r\n", "type": "answer"}}, headers={"x-request-id": "req_x"})

    config = session(rt_emulator)
    refused = pytest.raises(OrgaAIRealtimeInvalidAnswerError, match="conversation_id")
    with serve(orga_at(calls)) as url, refused as caught:
        await rt.connect(config, base_url=url)
    assert (caught.value.request_id, caught.value.status_code) == ("req_x", 200)


async def test_an_sdp_the_peer_refuses(rt_emulator: RunningEmulator) -> None:
    async def calls(request: Request) -> Response:
        await request.body()
        return JSONResponse({"conversation_id": "conv_bad", "answer": {"sdp": "v=0\r\nnot an sdp\r\n",
                                                                        "type": "answer"}})

    config = session(rt_emulator)
    with serve(orga_at(calls)) as url, pytest.raises(OrgaAIRealtimeInvalidAnswerError) as caught:
        await rt.connect(config, base_url=url)
    assert caught.value.conversation_id == "conv_bad"


async def test_calls_timeout(rt_emulator: RunningEmulator) -> None:
    config = session(rt_emulator)
    rt_emulator.arm("calls", stall=True)
    started = time.monotonic()
    with pytest.raises(OrgaAIRealtimeTimeoutError) as caught:
        await rt.connect(config, base_url=rt_emulator.base_url, calls_timeout=0.5)
    assert caught.value.phase == "calls"
    assert time.monotonic() - started < 5
    assert_no_secret(caught.value, config)


async def test_orga_unreachable(rt_emulator: RunningEmulator) -> None:
    config = session(rt_emulator)
    with pytest.raises(OrgaAIRealtimeConnectionError) as caught:
        await rt.connect(config, base_url=f"http://127.0.0.1:{free_port()}")
    assert caught.value.phase == "calls"


async def test_relay_only_with_refused_turn_credentials_is_an_ice_error(rt_emulator: RunningEmulator) -> None:
    good = session(rt_emulator)
    turn = good.ice_servers[-1]
    assert turn.credential is not None
    forged = SessionConfig(good.ephemeral_token, (type(turn)(turn.urls, turn.username, "forged-credential"),))
    with pytest.raises(OrgaAIRealtimeICEError) as caught:
        await rt.connect(forged, base_url=rt_emulator.base_url, relay_only=True)
    assert caught.value.phase == "gather"
    assert_no_secret(caught.value, forged)


async def test_no_path_is_an_ice_failure_or_timeout_never_a_hang(rt_emulator: RunningEmulator) -> None:
    # A path-less network between the two peers: the offer reaches Orga without our candidates, and the answer
    # names one nobody listens on, so no connectivity check can succeed either way.
    import json

    import httpx

    def without_candidates(sdp: str) -> list[str]:
        return [line for line in sdp.split("\r\n") if not line.startswith("a=candidate:")]

    async def calls(request: Request) -> Response:
        offer = json.loads(await request.body())
        offer["offer"]["sdp"] = "\r\n".join(without_candidates(offer["offer"]["sdp"]))
        offer["offer"]["candidates"] = []
        async with httpx.AsyncClient(base_url=rt_emulator.base_url) as client:
            real = await client.post("/v1/realtime/calls", json=offer,
                                     headers={"Authorization": request.headers["authorization"]})
        answer = real.json()
        lines = without_candidates(answer["answer"]["sdp"])
        port = free_port()
        for index, line in enumerate(lines):
            if line.startswith("a=ice-ufrag"):
                lines.insert(index, f"a=candidate:1 1 UDP 2130706431 127.0.0.1 {port} typ host")
                break
        answer["answer"]["sdp"] = "\r\n".join(lines)
        return JSONResponse(answer)

    config = session(rt_emulator)
    with serve(orga_at(calls)) as url, pytest.raises((OrgaAIRealtimeICEError, OrgaAIRealtimeTimeoutError)) as caught:
        await rt.connect(config, base_url=url, connect_timeout=4)
    assert caught.value.phase == "ice"
    assert caught.value.conversation_id is not None


async def test_closed_call_refuses_to_send(rt_emulator: RunningEmulator) -> None:
    from orga_ai import OrgaAIRealtimeChannelClosedError

    call = await rt.connect(session(rt_emulator), base_url=rt_emulator.base_url)
    await call.close()
    await call.close()  # idempotent
    with pytest.raises(OrgaAIRealtimeChannelClosedError):
        await call.update(voice="alloy")
    with pytest.raises(OrgaAIRealtimeChannelClosedError):
        call.send_audio(b"\0\0")


async def test_every_error_is_an_orga_realtime_error() -> None:
    for cls in (OrgaAIRealtimeConnectionError, OrgaAIRealtimeICEError, OrgaAIRealtimeInvalidAnswerError,
                OrgaAIRealtimeRefusedError, OrgaAIRealtimeTimeoutError):
        assert issubclass(cls, OrgaAIRealtimeError)
    await asyncio.sleep(0)
