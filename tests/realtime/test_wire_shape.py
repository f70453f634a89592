"""The body this client POSTs to /v1/realtime/calls has exactly the shape ``@orga-ai/core`` sends: the same keys,
the same JSON types, the same headers. Recorded by a real HTTP server; compared with a pinned copy of core 1.0.0's
shape, and, when Node and npm are here, with what the published package itself sends."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import orga_ai.realtime as rt
from orga_ai import IceServer, OrgaAIRealtimeRefusedError, SessionConfig
from tests.support import Coturn, npm_project, serve

pytestmark = pytest.mark.slow

CORE_PACKAGE = "@orga-ai/core@1.0.0"
# What core 1.0.0's connectToRealtime sends with every option unset (read from its dist/index.js).
CORE_DEFAULT_SHAPE: dict[str, Any] = {
    "offer": {"sdp": "string", "type": "string",
              "candidates": [{"candidate": "string", "sdpMid": "string", "sdpMLineIndex": "number"}]},
    "params": {"voice": "string", "model": "string", "temperature": "number", "return_transcription": "boolean",
               "instructions": "null", "modalities": ["string"], "history": "boolean"},
}

# Calls core's own connectToRealtime with fetch replaced by a recorder; prints the request it would send.
NODE_SCRIPT = """
const core = require("@orga-ai/core");
globalThis.fetch = async (url, init) => {
  console.log(JSON.stringify({ url, headers: init.headers, body: JSON.parse(init.body) }));
  return { ok: true, json: async () => ({ conversation_id: "conv_x", answer: { sdp: "v=0", type: "answer" } }) };
};
(async () => {
  core.OrgaAI.init({ fetchSessionConfig: async () => ({ ephemeralToken: "t", iceServers: [] }) });
  await core.connectToRealtime({
    ephemeralToken: "tok",
    peerConnection: { localDescription: { sdp: "v=0\\r\\n", type: "offer" } },
    gathered: [{ candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0 }],
  });
})();
"""


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (a list by the shape of its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


async def recorded_request(coturn: Coturn, **options: Any) -> dict[str, Any]:
    """The request this client sends, as a real server receives it (answered 401 so the call stops there)."""
    seen: list[dict[str, Any]] = []

    async def calls(request: Request) -> Response:
        seen.append({"headers": dict(request.headers), "body": json.loads(await request.body())})
        return JSONResponse({"error": {"message": "recorded"}}, status_code=401)

    config = SessionConfig("tok-recorded", (IceServer(coturn.stun_urls()[0]),))
    app = Starlette(routes=[Route("/v1/realtime/calls", calls, methods=["POST"])])
    with serve(app) as url, pytest.raises(OrgaAIRealtimeRefusedError):
        await rt.connect(config, base_url=url, gather_timeout=10, **options)
    assert len(seen) == 1
    return seen[0]


async def test_the_body_has_cores_shape_and_defaults(coturn: Coturn) -> None:
    request = await recorded_request(coturn)
    body = request["body"]
    assert shape(body) == CORE_DEFAULT_SHAPE
    assert list(body) == ["offer", "params"]
    assert list(body["params"]) == list(CORE_DEFAULT_SHAPE["params"])  # the same key order too
    params = body["params"]
    assert (params["model"], params["temperature"], params["return_transcription"], params["instructions"],
            params["modalities"], params["history"]) == ("orga-1-beta", 0.5, False, None, ["audio", "video"], True)
    assert params["voice"] == rt.DEFAULT_VOICE
    offer = body["offer"]
    assert offer["type"] == "offer" and offer["sdp"].startswith("v=0")
    assert "a=candidate:" in offer["sdp"]  # non-trickle: the SDP carries every candidate ...
    assert offer["candidates"] and all(c["candidate"].startswith("candidate:") for c in offer["candidates"])
    assert len(offer["candidates"]) == offer["sdp"].count("a=candidate:")  # ... and so does the list
    assert "m=application" in offer["sdp"] and "a=sendrecv" in offer["sdp"].split("m=application")[0]
    headers = request["headers"]
    assert headers["authorization"] == "Bearer tok-recorded"
    assert headers["content-type"] == "application/json"


async def test_explicit_params_keep_the_shape(coturn: Coturn) -> None:
    body = (await recorded_request(coturn, voice="alloy", model="orga-1-beta", temperature=0.9,
                                   return_transcription=True, instructions="Be brief.", modalities=["audio"],
                                   history=False))["body"]
    expected = json.loads(json.dumps(CORE_DEFAULT_SHAPE))
    expected["params"]["instructions"] = "string"
    assert shape(body) == expected
    assert body["params"] == {"voice": "alloy", "model": "orga-1-beta", "temperature": 0.9,
                              "return_transcription": True, "instructions": "Be brief.", "modalities": ["audio"],
                              "history": False}


@pytest.mark.node
async def test_the_shape_is_what_the_published_core_sends(
    tmp_path_factory: pytest.TempPathFactory, coturn: Coturn
) -> None:
    folder: Path = npm_project(tmp_path_factory.mktemp("orga-core-calls"), CORE_PACKAGE)
    result = subprocess.run(["node", "-e", NODE_SCRIPT], cwd=folder, capture_output=True, text=True, timeout=60,
                            check=True)
    core = json.loads(result.stdout.strip().splitlines()[-1])
    assert core["url"].endswith("/v1/realtime/calls")
    ours = await recorded_request(coturn)
    assert shape(ours["body"]) == shape(core["body"]) == CORE_DEFAULT_SHAPE
    assert {k.lower() for k in core["headers"]} <= set(ours["headers"])
    # The same defaults, but the voice: core 1.0.0 still says "alloy", Orga's current clients "Sofía".
    core_params = {k: v for k, v in core["body"]["params"].items() if k != "voice"}
    assert core_params == {k: v for k, v in ours["body"]["params"].items() if k != "voice"}
