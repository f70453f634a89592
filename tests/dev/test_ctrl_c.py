"""Ctrl-C in the middle of a live call stops ``orga-ai dev`` cleanly, every time: exit 0, "stopped" as the last line,
and no traceback, no CancelledError and no "Task was destroyed but it is pending!" on the way out."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator._webrtc_client import ClientPeer

from .conftest import start_dev

pytestmark = pytest.mark.slow

NOISE = ("Traceback", "CancelledError", "Task was destroyed", "was never awaited", "Exception in callback", "Error")


async def _live_call(page_url: str, emulator_url: str, peer: ClientPeer) -> None:
    await _offer_only(page_url, emulator_url, peer)
    await asyncio.wait_for(peer.channel_open.wait(), 10)
    assert (await peer.next_message())["type"] == "session.created"
    for _ in range(100):  # audio flows both ways: the call is really in progress
        if peer.frames_back >= 5:
            break
        await asyncio.sleep(0.05)
    assert peer.frames_back >= 5


async def _offer_only(page_url: str, emulator_url: str, peer: ClientPeer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        # As the demo page does: a session config from the dev proxy, then the offer to /v1/realtime/calls.
        session = (await client.get(page_url + "/api/orga-client-secrets")).json()
        response = await client.post(
            emulator_url + "/v1/realtime/calls",
            headers={"Authorization": f"Bearer {session['ephemeralToken']}"},
            json=await peer.offer(),
        )
        assert response.status_code == 200, response.text
        await peer.accept(response.json()["answer"])  # ICE and DTLS now run while the signal comes


@pytest.mark.parametrize(
    "when",
    [
        "in-call",
        "in-call-coturn",
        "negotiating",
        "offer-in-flight",
        "request-in-flight",
        "double-ctrl-c",
        "in-call-again",
    ],
)
async def test_ctrl_c_mid_call_exits_cleanly(when: str, tmp_path: Path) -> None:
    server = start_dev(tmp_path, *([] if "coturn" in when else ["--no-coturn"]))
    peer = ClientPeer()
    offering: asyncio.Future[Any] | None = None
    try:
        if when == "negotiating":
            await _offer_only(server.url, server.emulator_url, peer)
        elif when == "offer-in-flight":
            # The signal lands while the emulator is still answering the offer (its peer gathering candidates).
            offering = asyncio.ensure_future(_offer_only(server.url, server.emulator_url, peer))
            await _wait_for_call_request(server.emulator_url)
        elif when == "request-in-flight":
            # A session config is still being minted (the emulator answers slowly) when the signal lands: the two
            # servers finish at different times, and the first to finish must not rush the other.
            await _live_call(server.url, server.emulator_url, peer)
            httpx.post(
                server.emulator_url + "/_emulator/faults",
                json={"path": "client-secrets", "latency_ms": 3000},
                headers={"X-Orga-Emulator-Admin": "1"},
            ).raise_for_status()
            offering = asyncio.ensure_future(asyncio.to_thread(httpx.get, server.url + "/api/orga-client-secrets"))
            await _wait_for_fault_taken(server.emulator_url)
        else:
            await _live_call(server.url, server.emulator_url, peer)
        if when == "double-ctrl-c":
            os.killpg(server.process.pid, signal.SIGINT)  # the developer presses Ctrl-C twice
        code = await asyncio.to_thread(server.stop)  # SIGINT while the call is live
    finally:
        if offering is not None:
            await asyncio.gather(offering, return_exceptions=True)  # the server went away mid-request: fine
        await peer.close()
        server.stop()
    output = server.output()
    assert code == 0, output
    assert output.rstrip().endswith("orga-ai dev: stopped"), output
    for noise in NOISE:
        assert noise not in output, output


async def _wait_for_fault_taken(emulator_url: str) -> None:
    """Until the armed fault was taken: the token request arrived and now sits in its latency."""
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(500):
            if not (await client.get(emulator_url + "/_emulator/faults")).json()["armed"]:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the slow token request never reached the emulator")


async def _wait_for_call_request(emulator_url: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(200):
            tokens = (await client.get(emulator_url + "/_emulator/stats")).json().get("tokens_issued", 0)
            if tokens:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the page's token was never minted")
