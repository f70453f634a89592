"""The emulator's scripted agent: on each utterance the caller finishes it sends the transcription and the reply of
its script and speaks the scripted tone or WAV, so every event type core handles can be tested offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from orga_ai.emulator._cli import _config_from
from orga_ai.emulator._script import load_agent_script, parse_agent_script
from orga_ai.realtime import InputTranscriptionCompleted, ResponseOutputItemDone
from orga_ai.testing import place_call, run_emulator
from tests.support import Coturn

from .conftest import dominant_frequency, emulator_config, loud_part, tone, write_wav

pytestmark = pytest.mark.slow


def test_scripts_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one turn"):
        parse_agent_script({"turns": []})
    with pytest.raises(ValueError, match="reply"):
        parse_agent_script({"turns": [{"transcript": "x"}]})
    with pytest.raises(ValueError, match="no such WAV"):
        parse_agent_script({"turns": [{"reply": "x", "wav": "missing.wav"}]}, tmp_path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_agent_script(tmp_path / "bad.json")
    script = tmp_path / "script.json"
    write_wav(tmp_path / "hi.wav", tone(300, 0.2))
    script.write_text(json.dumps({"turns": [{"reply": "Hi.", "wav": "hi.wav"}], "loop": True}))
    parsed = load_agent_script(script)
    assert parsed.turns[0].wav == str(tmp_path / "hi.wav") and parsed.turn(5) is parsed.turns[0]
    args = argparse.Namespace(api_keys=None, ttl=None, token_form=None, quota=None, stun_urls=None, turn_urls=None,
                              no_webrtc=None, turn_secret=None, host=None, port=None, allow_remote=None,
                              log_level=None, agent_script=str(script))
    config = _config_from(args, {})[0]
    assert config.agent_script == parsed


async def test_the_agent_answers_each_utterance(coturn: Coturn, tmp_path: Path) -> None:
    write_wav(tmp_path / "second.wav", tone(330, 0.6, rate=22050), rate=22050)
    script = parse_agent_script({"turns": [
        {"transcript": "What time is it?", "reply": "It is noon.", "tone_hz": 660, "seconds": 0.6},
        {"reply": "Goodbye.", "wav": "second.wav"},
    ]}, tmp_path)
    # Two utterances of the caller: 0.5 s of tone, 0.8 s of silence, 0.5 s of tone, then silence.
    silence = b"\0\0" * int(0.8 * 16000)
    speech = tone(880, 0.5) + silence + tone(880, 0.5) + silence

    def replied_twice(events: list[object]) -> bool:
        return sum(isinstance(e, ResponseOutputItemDone) for e in events) == 2

    with run_emulator(emulator_config(coturn, agent_script=script)) as running:
        result = await place_call(running.base_url, running.api_key, input_pcm=speech, input_rate=16000,
                                  duration=10, until=replied_twice)
    types = [t for t in result.event_types if t not in ("session.created", "conversation.created")]
    assert types == ["conversation.item.input_audio_transcription.completed", "response.output_item.done"] * 2
    assert result.transcript == [("user", "What time is it?"), ("agent", "It is noon."),
                                 ("user", "(utterance 2, 0.5 s)"), ("agent", "Goodbye.")]
    heard = [e for e in result.events if isinstance(e, InputTranscriptionCompleted)]
    assert heard[0].item_id is not None
    # The agent spoke 660 Hz, then the WAV's 330 Hz (never the caller's 880 Hz: no echo with a script).
    loud = loud_part(result.audio)
    half = len(loud) // 2
    assert dominant_frequency(loud[:half]) == pytest.approx(660, abs=8)
    assert dominant_frequency(loud[half:]) == pytest.approx(330, abs=8)
