"""The agent script of the emulator's scripted agent (``orga-ai emulator --agent-script FILE``): what it "heard" and
what it answers on each utterance the caller finishes. Pure parsing, no aiortc; the agent itself is ``_agent.py``.

A script is a JSON object::

    {"turns": [{"transcript": "Hello?", "reply": "Hi! How can I help?", "wav": "hi.wav"},
               {"reply": "Anything else?", "tone_hz": 660, "seconds": 0.8}],
     "loop": false, "threshold": 500, "silence_ms": 500}

Each utterance of the caller takes the next turn: the agent sends
``conversation.item.input_audio_transcription.completed`` with ``transcript`` (default ``"(utterance N)"``), speaks the
turn's ``wav`` (16-bit PCM, a path relative to the script) or a ``tone_hz`` sine of ``seconds`` (default 440 Hz,
1 s), then sends ``response.output_item.done`` with ``reply``. After the last turn it starts over with ``loop``, else it
only transcribes. An utterance is speech (20 ms frames whose RMS passes ``threshold``) of 200 ms or more followed by
``silence_ms`` of silence.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AgentScript", "AgentTurn", "load_agent_script", "parse_agent_script"]


@dataclass(frozen=True, slots=True)
class AgentTurn:
    """One answer of the scripted agent."""

    reply: str
    transcript: str | None = None
    wav: str | None = None
    tone_hz: float = 440.0
    seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class AgentScript:
    """The turns, in order, and how utterances are told apart."""

    turns: tuple[AgentTurn, ...]
    loop: bool = False
    threshold: float = 500.0
    silence_ms: int = 500

    def turn(self, index: int) -> AgentTurn | None:
        """The turn answering utterance ``index`` (0-based), or None once the script is over."""
        if self.loop:
            return self.turns[index % len(self.turns)]
        return self.turns[index] if index < len(self.turns) else None


def _number(data: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"agent script: {name} must be a number")
    if not low <= value <= high:
        raise ValueError(f"agent script: {name} must be between {low:g} and {high:g}")
    return float(value)


def parse_agent_script(data: Any, base: Path | None = None) -> AgentScript:
    """An :class:`AgentScript` from its JSON; ``wav`` paths are resolved against ``base``. ValueError if invalid."""
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list) or not data["turns"]:
        raise ValueError('agent script: expected {"turns": [{"reply": ...}, ...]} with at least one turn')
    turns = []
    for index, raw in enumerate(data["turns"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("reply"), str):
            raise ValueError(f"agent script: turn {index} needs a 'reply' string")
        transcript = raw.get("transcript")
        if transcript is not None and not isinstance(transcript, str):
            raise ValueError(f"agent script: turn {index}: 'transcript' must be a string")
        wav = raw.get("wav")
        if wav is not None:
            if not isinstance(wav, str):
                raise ValueError(f"agent script: turn {index}: 'wav' must be a path")
            path = Path(wav) if base is None or os.path.isabs(wav) else base / wav
            if not path.is_file():
                raise ValueError(f"agent script: turn {index}: no such WAV file {str(path)!r}")
            wav = str(path)
        turns.append(AgentTurn(
            reply=raw["reply"], transcript=transcript, wav=wav,
            tone_hz=_number(raw, "tone_hz", 440.0, 20, 20000), seconds=_number(raw, "seconds", 1.0, 0.02, 60),
        ))
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        raise ValueError("agent script: loop must be true or false")
    return AgentScript(
        tuple(turns), loop=loop, threshold=_number(data, "threshold", 500.0, 1, 32767),
        silence_ms=int(_number(data, "silence_ms", 500, 60, 10_000)),
    )


def load_agent_script(path: str | os.PathLike[str]) -> AgentScript:
    """Read and check a script file (ValueError with the reason when it cannot be used)."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"agent script {str(file)!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"agent script {str(file)!r} is not JSON: {exc}") from None
    return parse_agent_script(data, file.parent)
