"""Server messages become typed, frozen events (anything unknown kept raw); ``import orga_ai`` never imports aiortc;
without the extra, one clear line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from orga_ai.realtime import (
    ConversationCreated,
    ErrorEvent,
    InputTranscriptionCompleted,
    ResponseOutputItemDone,
    SessionCreated,
    UnknownEvent,
    parse_event,
)


def test_each_type_core_handles_has_a_class() -> None:
    session = {"id": "sess_1", "model": "orga-1-beta", "voice": "alloy", "temperature": 0.5,
               "modalities": ["audio"], "instructions": None, "return_transcription": True,
               "object": "realtime.session"}
    created = parse_event(json.dumps({"type": "session.created", "session": session}))
    assert isinstance(created, SessionCreated)
    assert (created.session.id, created.session.voice, created.session.modalities) == ("sess_1", "alloy", ("audio",))
    assert parse_event('{"type": "conversation.created", "conversation": {"id": "conv_1"}}') == ConversationCreated(
        "conv_1", {})
    heard = parse_event('{"type": "conversation.item.input_audio_transcription.completed", "item_id": "i1", '
                        '"transcript": "hello"}')
    assert isinstance(heard, InputTranscriptionCompleted) and (heard.transcript, heard.item_id) == ("hello", "i1")
    said = parse_event(json.dumps({"type": "response.output_item.done", "item": {
        "id": "i2", "content": [{"type": "audio", "transcript": "Hi there."}]}}))
    assert isinstance(said, ResponseOutputItemDone) and (said.text, said.item_id) == ("Hi there.", "i2")
    assert parse_event('{"type": "response.output_item.done", "text": "Plain."}').text == "Plain."  # type: ignore[union-attr]
    error = parse_event('{"type": "error", "error": {"message": "nope", "code": "bad"}}')
    assert isinstance(error, ErrorEvent) and (error.message, error.code) == ("nope", "bad")
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.message = "changed"  # type: ignore[misc]


def test_anything_else_is_kept_raw() -> None:
    future = parse_event('{"type": "response.audio.delta", "delta": "AAA="}')
    assert future == UnknownEvent("response.audio.delta", {"type": "response.audio.delta", "delta": "AAA="})
    assert parse_event("not json") == UnknownEvent("", {"data": "not json"})
    assert parse_event("[1, 2]") == UnknownEvent("", {"data": [1, 2]})
    assert parse_event('{"no": "type"}').type == ""
    # Wrong types inside a known event never raise.
    odd = parse_event('{"type": "session.created", "session": {"temperature": "hot", "modalities": "audio"}}')
    assert isinstance(odd, SessionCreated) and odd.session.temperature is None and odd.session.modalities == ()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_import_orga_ai_does_not_import_aiortc() -> None:
    result = run_python("import sys, orga_ai, orga_ai.realtime; from orga_ai import AsyncOrgaAI, OrgaAIRealtimeError\n"
                        "orga_ai.realtime.parse_event('{}')\n"
                        "print(sorted(m for m in ('aiortc', 'av', 'aioice') if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_the_extra_one_clear_line() -> None:
    blocked = "import sys; sys.modules['aiortc'] = None\n"
    result = run_python(blocked + "import orga_ai.realtime as rt\n"
                        "try:\n    rt.connect({'ephemeralToken': 't', 'iceServers': []})\n"
                        "except ImportError as exc:\n    print(exc)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "orga_ai.realtime needs the realtime extra (aiortc is not installed): pip install 'orga-ai[realtime]'"
    )
    cli = run_python(blocked + "from orga_ai.cli import main\nraise SystemExit(main(['call', '--duration', '1']))")
    assert cli.returncode == 2
    assert cli.stderr.strip().count("\n") == 0 and "pip install 'orga-ai[realtime]'" in cli.stderr
