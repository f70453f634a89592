"""POST /v1/realtime/calls without media: auth, single use, body validation, the 501 without aiortc."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator

from ._webrtc_client import ClientPeer
from .conftest import auth, mint

PATH = "/v1/realtime/calls"
ICE_PATH = "/v1/realtime/ice-config"
SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def body(**offer: Any) -> dict[str, Any]:
    return {"offer": {"sdp": SDP, "type": "offer", "candidates": [], **offer}, "params": {"voice": "Sofía"}}


@pytest.fixture
async def offer() -> AsyncIterator[dict[str, Any]]:
    """A real offer from an aiortc client peer (closed after the test)."""
    peer = ClientPeer()
    try:
        yield await peer.offer()
    finally:
        await peer.close()


async def test_a_token_opens_one_call_only(emulator: RunningEmulator, offer: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=10) as client:
        token = (await client.post("/v1/realtime/client-secrets", headers=auth(emulator.api_key))).json()[
            "ephemeral_token"
        ]
        first = await client.post(PATH, headers=auth(token), json=offer)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["conversation_id"].startswith("conv_")
        assert answer["answer"]["type"] == "answer"
        assert answer["answer"]["sdp"].startswith("v=0")
        assert first.headers["x-request-id"]

        second = await client.post(PATH, headers=auth(token), json=offer)
        assert second.status_code == 401
        assert "already consumed" in second.json()["error"]["message"]
        # A consumed token is dead everywhere, ICE included.
        assert (await client.get(ICE_PATH, headers=auth(token))).status_code == 401
        stats = (await client.get("/_emulator/stats")).json()
        assert stats["calls"] == 1
        assert stats["active_calls"] >= 1
        assert stats["rejected"] == {"token_consumed": 2}


def test_missing_header_is_403(http: httpx.Client) -> None:
    response = http.post(PATH, json=body())
    assert response.status_code == 403
    assert response.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize("bearer", ["garbage", "sk_orga_ai_local_emulator_dev_key"])
def test_invalid_token_is_401(http: httpx.Client, bearer: str) -> None:
    response = http.post(PATH, headers=auth(bearer), json=body())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_expired_token_is_401_before_the_body_is_read(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    emulator.advance_clock(121)
    response = http.post(PATH, headers=auth(token), content=b"not even json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


@pytest.mark.parametrize(
    ("payload", "locs"),
    [
        ({}, [["body", "offer"]]),
        ({"offer": "v=0"}, [["body", "offer"]]),
        ({"offer": {"type": "offer"}}, [["body", "offer", "sdp"]]),
        ({"offer": {"sdp": SDP}}, [["body", "offer", "type"]]),
        ({"offer": {"sdp": SDP, "type": "answer"}}, [["body", "offer", "type"]]),
        ({"offer": {"sdp": 42, "type": "offer"}}, [["body", "offer", "sdp"]]),
        ({"offer": {"sdp": "hello", "type": "offer"}}, [["body", "offer", "sdp"]]),
        ({"offer": {"sdp": SDP, "type": "offer", "candidates": "x"}}, [["body", "offer", "candidates"]]),
        ({"offer": {"sdp": SDP, "type": "offer", "candidates": [1]}}, [["body", "offer", "candidates", 0]]),
        ({**body(), "params": []}, [["body", "params"]]),
        ({**body(), "params": {"voice": 7, "model": False}}, [["body", "params", n] for n in ("voice", "model")]),
        ({**body(), "params": {"temperature": "hot"}}, [["body", "params", "temperature"]]),
        ({**body(), "params": {"temperature": 9}}, [["body", "params", "temperature"]]),
        ({**body(), "params": {"return_transcription": "no"}}, [["body", "params", "return_transcription"]]),
        ({**body(), "params": {"modalities": ["audio", "smell"]}}, [["body", "params", "modalities", 1]]),
        ([], [["body"]]),
    ],
)
def test_bad_bodies_get_fastapi_style_422(
    emulator: RunningEmulator, http: httpx.Client, payload: Any, locs: list[list[Any]]
) -> None:
    token = mint(http, emulator.api_key)
    response = http.post(PATH, headers=auth(token), json=payload)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [error["loc"] for error in detail] == locs
    assert all({"type", "loc", "msg", "input"} <= set(error) for error in detail)
    # A refused body does not use the token up.
    assert http.get(ICE_PATH, headers=auth(token)).status_code == 200


def test_non_json_body_is_422(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    response = http.post(PATH, headers={**auth(token), "content-type": "application/json"}, content=b"{oops")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_oversized_body_is_413(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    response = http.post(PATH, headers=auth(token), json=body(sdp=SDP + "a=x\r\n" * 300_000))
    assert response.status_code == 413


@pytest.mark.parametrize("voice", ["Sofía", "alloy", "a voice from next year"])
async def test_voice_and_model_are_opaque_strings(
    emulator: RunningEmulator, offer: dict[str, Any], voice: str
) -> None:
    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=10) as client:
        token = (await client.post("/v1/realtime/client-secrets", headers=auth(emulator.api_key))).json()
        offer["params"].update(voice=voice, model="orga-9-from-the-future")
        response = await client.post(PATH, headers=auth(token["ephemeral_token"]), json=offer)
        assert response.status_code == 200, response.text


def test_an_offer_without_data_channel_is_400_and_keeps_the_token(
    emulator: RunningEmulator, http: httpx.Client
) -> None:
    token = mint(http, emulator.api_key)
    response = http.post(PATH, headers=auth(token), json=body())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_offer"
    assert http.get(ICE_PATH, headers=auth(token)).status_code == 200


def test_an_offer_that_cannot_be_negotiated_is_400(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    sdp = SDP + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    response = http.post(PATH, headers=auth(token), json=body(sdp=sdp))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_offer"
    assert "Traceback" not in response.text
    assert emulator.stats()["active_calls"] == 0


def test_webrtc_switched_off_is_501_naming_the_extra() -> None:
    with run_emulator(EmulatorConfig(webrtc=False)) as running, httpx.Client(base_url=running.base_url) as client:
        token = mint(client, running.api_key)
        response = client.post(PATH, headers=auth(token), json=body())
        assert response.status_code == 501
        assert "orga-ai[webrtc]" in response.json()["error"]["message"]
        assert "sdp" not in response.text.lower().replace("sdp\"", "")  # never a fake answer
        # The token was not used up: nothing was opened.
        assert client.get(ICE_PATH, headers=auth(token)).status_code == 200


def test_without_aiortc_import_is_clean_and_calls_answer_501() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["aiortc"] = None  # as if the webrtc extra were not installed
        import httpx
        import orga_ai.emulator, orga_ai.testing
        from orga_ai.testing import run_emulator
        assert not any(name.startswith("aiortc") for name in sys.modules if sys.modules[name] is not None)
        with run_emulator() as em, httpx.Client(base_url=em.base_url) as c:
            token = c.post("/v1/realtime/client-secrets", headers={"Authorization": "Bearer " + em.api_key}).json()
            r = c.post("/v1/realtime/calls", headers={"Authorization": "Bearer " + token["ephemeral_token"]},
                       json={"offer": {"sdp": "v=0\\r\\n", "type": "offer"}, "params": {}})
            print(json.dumps({"status": r.status_code, "body": r.json()}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 501
    assert "pip install 'orga-ai[webrtc]'" in outcome["body"]["error"]["message"]
