"""``orga-ai call`` against the emulator: the JSON summary, the live transcript, the WAV out, --route, and a failure
as exit 1 with one line."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orga_ai import OrgaAI
from orga_ai.cli import main
from orga_ai.testing import RunningEmulator
from tests.support import serve

from .conftest import tone, write_wav

pytestmark = pytest.mark.slow


@pytest.fixture
def env(rt_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    monkeypatch.setenv("ORGA_API_KEY", rt_emulator.api_key)
    monkeypatch.setenv("ORGA_BASE_URL", rt_emulator.base_url)
    return rt_emulator


def test_json_summary_with_input_and_output(env: RunningEmulator, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    wav = write_wav(tmp_path / "in.wav", tone(440, 0.5))
    out = tmp_path / "out.wav"
    code = main(["call", "--input", str(wav), "--output", str(out), "--duration", "1.5", "--json", "--voice", "alloy"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert set(summary) >= {"conversationId", "connectedMs", "events", "transcripts", "audioInSeconds",
                            "audioOutSeconds", "selectedCandidateType", "ok"}
    assert summary["ok"] is True and summary["conversationId"].startswith("conv_")
    assert summary["events"][:2] == ["session.created", "conversation.created"]
    assert summary["audioInSeconds"] == pytest.approx(0.5, abs=0.03)
    assert summary["audioOutSeconds"] > 1.0
    assert summary["selectedCandidateType"] == "host"
    assert summary["connectedMs"] > 0
    with wave.open(str(out), "rb") as recorded:
        assert recorded.getnframes() > 48000
    assert env.api_key not in captured.out + captured.err


def test_live_transcript_and_route(env: RunningEmulator, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    async def route(request: Request) -> Response:
        if request.headers.get("x-user") != "u1":
            return JSONResponse({"error": "who?"}, status_code=401)
        with OrgaAI(api_key=env.api_key, base_url=env.base_url) as orga:
            return JSONResponse(orga.get_session_config().to_client_json())

    monkeypatch.delenv("ORGA_API_KEY")
    with serve(Starlette(routes=[Route("/session", route)])) as url:
        code = main(["call", "--route", url + "/session", "--header", "X-User: u1", "--duration", "1"])
        live = capsys.readouterr()
        assert code == 0, live.err
        assert "[session] voice Sofía" in live.out and "connected in" in live.out
        refused = main(["call", "--route", url + "/session", "--duration", "1"])
        failed = capsys.readouterr()
    assert refused == 1
    assert failed.err.count("\n") == 1 and "OrgaAIRealtimeRefusedError" in failed.err and "401" in failed.err


def test_refused_call_exits_1_with_one_line(env: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    env.arm("calls", status=503)
    code = main(["call", "--duration", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["ok"] is False
    assert captured.err.count("\n") == 1 and "503" in captured.err
