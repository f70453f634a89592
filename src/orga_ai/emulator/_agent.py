"""The scripted agent of the emulator: it listens to the caller's audio, and on each finished utterance sends the
transcription and reply events of its script and speaks the scripted WAV or tone. Lets every event type
``@orga-ai/core`` handles be exercised offline, deterministically. Needs aiortc (the ``webrtc`` extra)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..realtime._audio import SAMPLE_RATE, OutgoingAudio, Resampler, read_wav
from ._script import AgentScript, AgentTurn

__all__ = ["ScriptedAgent"]

_MIN_SPEECH_MS = 200
_FRAME_MS = 20


def _rms(pcm: bytes) -> float:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def _speech(turn: AgentTurn) -> bytes:
    if turn.wav is not None:
        pcm, rate, channels = read_wav(turn.wav)
        resampler = Resampler(rate, channels)
        return resampler.feed(pcm) + resampler.flush()
    count = int(turn.seconds * SAMPLE_RATE)
    step = 2 * math.pi * turn.tone_hz / SAMPLE_RATE
    return array.array("h", (int(0.3 * 32767 * math.sin(step * i)) for i in range(count))).tobytes()


class ScriptedAgent:
    """One call's agent: ``voice`` is the track it speaks on; ``listen(track)`` runs until the caller's track ends."""

    def __init__(self, script: AgentScript, send: Callable[[dict[str, Any]], None]) -> None:
        self.script = script
        self.voice = OutgoingAudio()
        self._send = send
        self._utterances = 0
        self._replies: set[asyncio.Task[None]] = set()

    async def listen(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        speech_ms = silence_ms = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            for out in resampler.resample(frame):
                loud = _rms(bytes(out.planes[0])[: out.samples * 2]) >= self.script.threshold
                ms = out.samples * 1000 // SAMPLE_RATE
                if loud:
                    speech_ms += ms
                    silence_ms = 0
                elif speech_ms:
                    silence_ms += ms
                    if silence_ms >= self.script.silence_ms:
                        if speech_ms >= _MIN_SPEECH_MS:
                            self._finished(speech_ms)
                        speech_ms = silence_ms = 0

    def _finished(self, speech_ms: int) -> None:
        index = self._utterances
        self._utterances += 1
        turn = self.script.turn(index)
        item = "item_" + uuid.uuid4().hex[:16]
        self._send({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item,
            "content_index": 0,
            "transcript": (turn.transcript if turn and turn.transcript is not None
                           else f"(utterance {index + 1}, {speech_ms / 1000:.1f} s)"),
        })
        if turn is not None:
            task = asyncio.ensure_future(self._reply(turn))
            self._replies.add(task)
            task.add_done_callback(self._replies.discard)

    async def _reply(self, turn: AgentTurn) -> None:
        self.voice.push(_speech(turn))
        await self.voice.drained()
        item = "item_" + uuid.uuid4().hex[:16]
        self._send({
            "type": "response.output_item.done",
            "response_id": "resp_" + uuid.uuid4().hex[:16],
            "output_index": 0,
            "text": turn.reply,
            "item": {"id": item, "object": "realtime.item", "type": "message", "role": "assistant",
                     "status": "completed", "content": [{"type": "audio", "transcript": turn.reply}]},
        })

    async def close(self) -> None:
        self.voice.stop()
        for task in list(self._replies):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._replies, return_exceptions=True)
