"""A whole call run for a while: play an input into it, collect what comes back, summarise. What ``orga-ai call``,
``orga-ai doctor --call`` and :func:`orga_ai.testing.place_call` share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._events import RealtimeEvent

if TYPE_CHECKING:
    from . import Connecting
    from ._call import CallTimings

__all__ = ["CallResult", "run_call"]

_MAX_KEPT_AUDIO_SECONDS = 600.0


@dataclass(slots=True)
class CallResult:
    """What one call did.

    Attributes:
        conversation_id: Orga's id of the conversation.
        events: every server event, in order (``[e.type for e in events]`` for the order of types).
        transcript: ``("user", text)`` and ``("agent", text)`` lines, in order.
        audio: the agent's audio, 48 kHz mono PCM16 (``sample_rate``), at most 10 minutes.
        audio_in_seconds: seconds of input that went into the call; audio_out_seconds: of the agent's audio received.
        timings: seconds from connect() to each step (a ``CallTimings``).
        selected_candidate_type: ``host``, ``srflx``, ``prflx`` or ``relay``: the local side of the pair ICE chose.
        stats: media counters (``packetsSent``, ``packetsReceived``, ``remotePacketsReceived``, ``rttMs``).
    """

    conversation_id: str | None
    events: list[RealtimeEvent]
    transcript: list[tuple[str, str]]
    audio: bytes
    audio_in_seconds: float
    audio_out_seconds: float
    timings: CallTimings
    selected_candidate_type: str | None
    remote_candidate_type: str | None
    stats: dict[str, Any] = field(default_factory=dict)
    sample_rate: int = 48000

    @property
    def event_types(self) -> list[str]:
        return [event.type for event in self.events]

    @property
    def connected_ms(self) -> float | None:
        connected = self.timings.channel_open
        return None if connected is None else round(connected * 1000, 1)

    def to_json(self) -> dict[str, Any]:
        """The ``orga-ai call --json`` object (``ok`` is added by the caller)."""
        return {
            "conversationId": self.conversation_id,
            "connectedMs": self.connected_ms,
            "events": self.event_types,
            "transcripts": [{"role": role, "text": text} for role, text in self.transcript],
            "audioInSeconds": round(self.audio_in_seconds, 3),
            "audioOutSeconds": round(self.audio_out_seconds, 3),
            "selectedCandidateType": self.selected_candidate_type,
            "timingsMs": self.timings.to_ms(),
            "media": self.stats,
        }


async def run_call(
    connecting: Connecting,
    *,
    duration: float,
    input_wav: str | os.PathLike[str] | None = None,
    input_pcm: bytes | None = None,
    input_rate: int = 48000,
    output_wav: str | os.PathLike[str] | None = None,
    on_event: Callable[[RealtimeEvent], None] | None = None,
    until: Callable[[list[RealtimeEvent]], bool] | None = None,
) -> CallResult:
    """Open the call, play the input (then silence) and listen for ``duration`` seconds after it connected (or until
    ``until(events)`` is true), then hang up and summarise. Connect errors propagate as ``OrgaAIRealtimeError``."""
    async with connecting as call:
        if output_wav is not None:
            call.record_wav(output_wav)
        kept = bytearray()
        stream = call.audio()

        async def collect() -> None:
            limit = int(_MAX_KEPT_AUDIO_SECONDS * 48000 * 2)
            async for chunk in stream:
                if len(kept) < limit:
                    kept.extend(chunk.pcm)

        collector = asyncio.ensure_future(collect())
        try:
            if input_wav is not None:
                await call.play_wav(input_wav, wait=False)
            if input_pcm is not None:
                call.send_audio(input_pcm, sample_rate=input_rate)
            deadline = time.monotonic() + duration
            seen = 0
            while (left := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(call.__anext__(), left)
                except (asyncio.TimeoutError, StopAsyncIteration):
                    break
                seen += 1
                if on_event is not None:
                    on_event(event)
                if until is not None and until(call.events[:seen]):
                    break
            stats = await call.stats()
        finally:
            await stream.aclose()
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        return CallResult(
            conversation_id=call.conversation_id,
            events=list(call.events),
            transcript=call.transcript,
            audio=bytes(kept),
            audio_in_seconds=call.audio_in_seconds,
            audio_out_seconds=call.audio_out_seconds,
            timings=call.timings,
            selected_candidate_type=call.selected_candidate_type,
            remote_candidate_type=call.remote_candidate_type,
            stats=stats,
        )
