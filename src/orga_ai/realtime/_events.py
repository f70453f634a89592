"""The server events of a realtime call, as frozen dataclasses, and the one function that reads them off the wire.

Orga's server sends JSON objects on the ``orga-realtime-client-events`` data channel, told apart by ``type``. The
types ``@orga-ai/core`` handles get a class each; anything else arrives as :class:`UnknownEvent` with its raw JSON, so
a new server event never breaks a client. Pure data, no I/O, no aiortc.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConversationCreated",
    "ErrorEvent",
    "InputTranscriptionCompleted",
    "RealtimeEvent",
    "ResponseOutputItemDone",
    "SessionCreated",
    "SessionInfo",
    "SessionUpdated",
    "UnknownEvent",
    "parse_event",
]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The session as the server describes it in ``session.created`` / ``session.updated``."""

    id: str | None
    model: str | None
    voice: str | None
    temperature: float | None
    modalities: tuple[str, ...]
    instructions: str | None
    return_transcription: bool | None

    @classmethod
    def from_json(cls, data: Any) -> SessionInfo:
        data = data if isinstance(data, dict) else {}
        temperature = data.get("temperature")
        modalities = data.get("modalities")
        return cls(
            id=_str(data.get("id")),
            model=_str(data.get("model")),
            voice=_str(data.get("voice")),
            temperature=float(temperature)
            if isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            else None,
            modalities=tuple(m for m in modalities if isinstance(m, str)) if isinstance(modalities, list) else (),
            instructions=_str(data.get("instructions")),
            return_transcription=data.get("return_transcription")
            if isinstance(data.get("return_transcription"), bool)
            else None,
        )


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """``session.created``: the server greets the call with its session."""

    session: SessionInfo
    raw: dict[str, Any] = field(repr=False, compare=False)
    type: str = "session.created"


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """``session.updated``: the answer to :meth:`RealtimeCall.update`, with the session as it is now."""

    session: SessionInfo
    raw: dict[str, Any] = field(repr=False, compare=False)
    type: str = "session.updated"


@dataclass(frozen=True, slots=True)
class ConversationCreated:
    """``conversation.created``: the conversation this call belongs to."""

    conversation_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    type: str = "conversation.created"


@dataclass(frozen=True, slots=True)
class InputTranscriptionCompleted:
    """``conversation.item.input_audio_transcription.completed``: what the caller said, as text."""

    transcript: str
    item_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    type: str = "conversation.item.input_audio_transcription.completed"


@dataclass(frozen=True, slots=True)
class ResponseOutputItemDone:
    """``response.output_item.done``: the agent finished one reply; ``text`` is its words (transcript or text)."""

    text: str
    item_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    type: str = "response.output_item.done"


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """``error``: the server refused something the client sent (the call goes on)."""

    message: str
    code: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    type: str = "error"


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """Any other message, kept whole: ``type`` as sent (``""`` when it had none), ``raw`` the JSON object (or
    ``{"data": text}`` for a message that was not a JSON object)."""

    type: str
    raw: dict[str, Any] = field(compare=False)


RealtimeEvent = (
    SessionCreated
    | SessionUpdated
    | ConversationCreated
    | InputTranscriptionCompleted
    | ResponseOutputItemDone
    | ErrorEvent
    | UnknownEvent
)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _first_text(*candidates: Any) -> str | None:
    for value in candidates:
        if isinstance(value, str):
            return value
    return None


def _item_text(item: Any) -> str | None:
    # An item may carry its words in content parts (text or audio transcript), as realtime APIs commonly do.
    if not isinstance(item, dict):
        return None
    direct = _first_text(item.get("transcript"), item.get("text"))
    if direct is not None:
        return direct
    content = item.get("content")
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        parts = [
            _first_text(part.get("transcript"), part.get("text"), part.get("message"))
            for part in content
            if isinstance(part, dict)
        ]
        words = [p for p in parts if p]
        if words:
            return " ".join(words)
    return None


def parse_event(raw: str | bytes) -> RealtimeEvent:
    """One data-channel message as a typed event; never raises (what cannot be read becomes :class:`UnknownEvent`)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return UnknownEvent("", {"data": raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw})
    if not isinstance(data, dict):
        return UnknownEvent("", {"data": data})
    declared = data.get("type", data.get("event"))
    kind = declared if isinstance(declared, str) else ""
    if kind == "session.created":
        return SessionCreated(SessionInfo.from_json(data.get("session")), data)
    if kind == "session.updated":
        return SessionUpdated(SessionInfo.from_json(data.get("session")), data)
    if kind == "conversation.created":
        conversation = data.get("conversation")
        cid = _str(conversation.get("id")) if isinstance(conversation, dict) else None
        return ConversationCreated(cid, data)
    if kind == "conversation.item.input_audio_transcription.completed":
        text = _first_text(data.get("transcript"), data.get("text"), data.get("message"))
        return InputTranscriptionCompleted(text or "", _str(data.get("item_id")), data)
    if kind == "response.output_item.done":
        item = data.get("item")
        text = _first_text(data.get("transcript"), data.get("text"), data.get("message")) or _item_text(item)
        item_id = _str(item.get("id")) if isinstance(item, dict) else _str(data.get("item_id"))
        return ResponseOutputItemDone(text or "", item_id, data)
    if kind == "error":
        error = data.get("error")
        message: str | None
        code: str | None
        if isinstance(error, dict):
            message, code = _str(error.get("message")), _str(error.get("code")) or _str(error.get("type"))
        else:
            message, code = _first_text(error, data.get("message")), _str(data.get("code"))
        return ErrorEvent(message or "", code, data)
    return UnknownEvent(kind, data)
