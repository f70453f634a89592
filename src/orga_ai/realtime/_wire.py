"""The signalling of a realtime call, free of I/O: the ``POST /v1/realtime/calls`` body exactly as ``@orga-ai/core``
builds it, the candidates read back out of a gathered SDP, and the reading of Orga's answer into a typed result or
a typed error."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import (
    OrgaAIConfigurationError,
    OrgaAIRealtimeInvalidAnswerError,
    OrgaAIRealtimeRefusedError,
    RealtimePhase,
)
from .._protocol import _clean, _error_details

__all__ = [
    "CALLS_PATH",
    "DEFAULT_CALLS_TIMEOUT",
    "DEFAULT_GATHER_TIMEOUT",
    "DEFAULT_MODEL",
    "DEFAULT_VOICE",
    "EVENTS_CHANNEL",
    "CallAnswer",
    "CallParams",
    "build_call_body",
    "candidates_from_sdp",
    "parse_call_answer",
    "refused_error",
]

CALLS_PATH = "/v1/realtime/calls"
EVENTS_CHANNEL = "orga-realtime-client-events"
DEFAULT_GATHER_TIMEOUT = 5.0
"""Seconds ICE gathering may take (``@orga-ai/core`` waits as long, then sends what it has)."""
DEFAULT_CALLS_TIMEOUT = 10.0
"""Seconds ``POST /v1/realtime/calls`` may take (``@orga-ai/core``'s AbortController)."""
DEFAULT_VOICE = "Sofía"
"""The voice Orga's current client code asks for when none is given (the published core 1.0.0 still says "alloy")."""
DEFAULT_MODEL = "orga-1-beta"
DEFAULT_TEMPERATURE = 0.5
DEFAULT_MODALITIES: tuple[str, ...] = ("audio", "video")
_MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CallParams:
    """The ``params`` of ``POST /v1/realtime/calls``; None means the default ``@orga-ai/core`` sends.

    ``voice`` and ``model`` are opaque strings (Orga's voice lists change); ``temperature`` is 0..2 on the wire.
    """

    voice: str | None = None
    model: str | None = None
    temperature: float | None = None
    return_transcription: bool | None = None
    instructions: str | None = None
    modalities: Sequence[str] | None = None
    history: bool | None = None

    def __post_init__(self) -> None:
        for name in ("voice", "model", "instructions"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise OrgaAIConfigurationError(f"{name} must be a string")
        for name in ("return_transcription", "history"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise OrgaAIConfigurationError(f"{name} must be True or False")
        t = self.temperature
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= 2
        ):
            raise OrgaAIConfigurationError("temperature must be a number from 0 to 2")
        if self.modalities is not None:
            if isinstance(self.modalities, str) or any(m not in ("audio", "video") for m in self.modalities):
                raise OrgaAIConfigurationError("modalities must be a list of 'audio' and 'video'")
            object.__setattr__(self, "modalities", tuple(self.modalities))

    def to_json(self) -> dict[str, Any]:
        """The ``params`` object: every key always present, core's defaults filled in (as core does: falsy voice,
        model and instructions fall back too)."""
        return {
            "voice": self.voice or DEFAULT_VOICE,
            "model": self.model or DEFAULT_MODEL,
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "return_transcription": bool(self.return_transcription),
            "instructions": self.instructions or None,
            "modalities": list(self.modalities) if self.modalities else list(DEFAULT_MODALITIES),
            "history": True if self.history is None else self.history,
        }


def candidates_from_sdp(sdp: str) -> list[dict[str, Any]]:
    """The ``RTCIceCandidateInit`` list of a gathered SDP: each ``a=candidate:`` line with its m-line's mid and index,
    what a browser's ``icecandidate`` events would have collected."""
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        elif sections:
            sections[-1].append(line.strip())
    out: list[dict[str, Any]] = []
    for index, lines in enumerate(sections):
        mid = next((line[len("a=mid:") :] for line in lines if line.startswith("a=mid:")), None)
        out.extend(
            {"candidate": line[len("a=") :], "sdpMid": mid, "sdpMLineIndex": index}
            for line in lines
            if line.startswith("a=candidate:")
        )
    return out


def build_call_body(sdp: str, sdp_type: str, params: CallParams) -> dict[str, Any]:
    """The JSON body of ``POST /v1/realtime/calls``, key for key what ``@orga-ai/core`` sends."""
    return {
        "offer": {"sdp": sdp, "type": sdp_type, "candidates": candidates_from_sdp(sdp)},
        "params": params.to_json(),
    }


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """What Orga answered: the conversation and the SDP answer."""

    conversation_id: str
    sdp: str
    type: str
    request_id: str | None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def refused_error(
    phase: RealtimePhase, what: str, status: int, headers: Mapping[str, str], body: bytes, secrets: tuple[str, ...]
) -> OrgaAIRealtimeRefusedError:
    """The typed error of a non-2xx answer, with the server's own message (secrets scrubbed) when it sent one."""
    message, code = _error_details(body[:_MAX_ANSWER_BYTES])
    text = f"{what} answered HTTP {status}"
    if message:
        text += f": {_clean(message, secrets)}"
    return OrgaAIRealtimeRefusedError(
        text,
        phase=phase,
        status=status,
        code=_clean(code, secrets)[:64] if code else None,
        request_id=headers.get("x-request-id"),
        retry_after=_retry_after(headers) if status in (429, 503) else None,
    )


def parse_call_answer(status: int, headers: Mapping[str, str], body: bytes, secrets: tuple[str, ...]) -> CallAnswer:
    """Orga's answer to ``POST /v1/realtime/calls``, or the typed error it amounts to (headers lower-cased)."""
    if not 200 <= status < 300:
        raise refused_error("calls", "POST /v1/realtime/calls", status, headers, body, secrets)
    request_id = headers.get("x-request-id")

    def invalid(what: str, conversation_id: str | None = None) -> OrgaAIRealtimeInvalidAnswerError:
        return OrgaAIRealtimeInvalidAnswerError(
            f"POST /v1/realtime/calls answered HTTP {status} but {what}",
            phase="calls",
            status=status,
            request_id=request_id,
            conversation_id=conversation_id,
        )

    if len(body) > _MAX_ANSWER_BYTES:
        raise invalid(f"its body is larger than {_MAX_ANSWER_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise invalid("its body is not JSON") from None
    if not isinstance(data, dict):
        raise invalid("its body is not a JSON object")
    conversation_id = data.get("conversation_id")
    if not isinstance(conversation_id, str) or not conversation_id:
        raise invalid("without a conversation_id")
    answer = data.get("answer")
    if not isinstance(answer, dict):
        raise invalid("without an answer", conversation_id)
    sdp, kind = answer.get("sdp"), answer.get("type", "answer")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise invalid("its answer has no SDP", conversation_id)
    if kind != "answer":
        raise invalid(f"its answer has type {kind!r}, not 'answer'", conversation_id)
    return CallAnswer(conversation_id, sdp, "answer", request_id)
