"""Audio in and out of a call: PCM16 in any rate resampled to the 48 kHz mono the call sends, the paced outgoing
track, the agent's frames as PCM16, and WAV files both ways. Resampling is PyAV's (libswresample), which aiortc
already brings; no numpy needed."""

from __future__ import annotations

import asyncio
import fractions
import os
import time
import wave
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["SAMPLE_RATE", "AudioChunk", "OutgoingAudio", "Resampler", "WavRecorder", "pcm16_bytes", "read_wav"]

SAMPLE_RATE = 48000
"""Samples per second of the audio a call sends and hands out (Opus's own rate: no resampling on the wire)."""
FRAME_SAMPLES = 960
"""20 ms at 48 kHz: one RTP packet of Opus audio."""
_FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
_MAX_BUFFERED_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Some of the agent's audio: ``pcm`` is 16-bit little-endian mono at ``sample_rate``; ``received_at`` is the
    ``time.monotonic()`` it arrived at."""

    pcm: bytes
    sample_rate: int
    received_at: float

    @property
    def seconds(self) -> float:
        """How long the chunk plays."""
        return len(self.pcm) / 2 / self.sample_rate


def pcm16_bytes(samples: Any) -> bytes:
    """PCM16 samples as bytes: ``bytes``/``bytearray``/``memoryview``, ``array.array("h")`` or a numpy ``int16``
    array (anything exposing 16-bit integers through the buffer protocol)."""
    if isinstance(samples, (bytes, bytearray)):
        data = bytes(samples)
    else:
        try:
            view = memoryview(samples)
        except TypeError:
            raise TypeError(f"expected PCM16 bytes or an int16 array, got {type(samples).__name__}") from None
        if view.format.lstrip("<=@") not in ("h", "B", "b", "c"):
            raise TypeError(f"expected 16-bit integer samples, got items of format {view.format!r}")
        data = view.tobytes()
    if len(data) % 2:
        raise ValueError("PCM16 data must have an even number of bytes")
    return data


class Resampler:
    """PCM16 at ``rate`` with ``channels`` channels to PCM16 mono at ``target`` (stateful: feed it a stream)."""

    def __init__(self, rate: int, channels: int, target: int = SAMPLE_RATE) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384_000:
            raise ValueError(f"sample_rate must be a whole number of Hz from 1000 to 384000, got {rate!r}")
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        self.rate = rate
        self.channels = channels
        self.target = target
        self._layout = "mono" if channels == 1 else "stereo"
        self._same = rate == target and channels == 1
        self._resampler = None if self._same else av.AudioResampler(format="s16", layout="mono", rate=target)

    def feed(self, data: bytes) -> bytes:
        if self._same or not data:
            return data
        assert self._resampler is not None
        width = 2 * self.channels
        samples = len(data) // width
        frame = av.AudioFrame(format="s16", layout=self._layout, samples=samples)
        frame.planes[0].update(data[: samples * width].ljust(frame.planes[0].buffer_size, b"\0"))
        frame.sample_rate = self.rate
        return b"".join(_frame_pcm(out) for out in self._resampler.resample(frame))

    def flush(self) -> bytes:
        if self._resampler is None:
            return b""
        return b"".join(_frame_pcm(out) for out in self._resampler.resample(None))


def _frame_pcm(frame: Any) -> bytes:
    """The samples of a packed s16 frame (a plane's buffer is padded for alignment: cut it to the samples)."""
    size = frame.samples * 2 * len(frame.layout.channels)
    return bytes(frame.planes[0])[:size]


def read_wav(path: str | os.PathLike[str]) -> tuple[bytes, int, int]:
    """A 16-bit PCM WAV file as ``(pcm, sample_rate, channels)``; ValueError for other encodings."""
    with wave.open(os.fspath(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getcomptype() != "NONE":
            raise ValueError(f"{os.fspath(path)}: only 16-bit PCM WAV files are supported")
        channels = wav.getnchannels()
        if channels not in (1, 2):
            raise ValueError(f"{os.fspath(path)}: only mono or stereo WAV files are supported")
        return wav.readframes(wav.getnframes()), wav.getframerate(), channels


class WavRecorder:
    """Writes PCM16 mono chunks to a WAV file as they come (valid at every close)."""

    def __init__(self, path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> None:
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.samples = 0
        self._wav: wave.Wave_write | None = wave.open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)

    @property
    def seconds(self) -> float:
        """How much audio was written."""
        return self.samples / self.sample_rate

    def write(self, pcm: bytes) -> None:
        if self._wav is not None:
            self._wav.writeframes(pcm)
            self.samples += len(pcm) // 2

    def close(self) -> None:
        wav, self._wav = self._wav, None
        if wav is not None:
            wav.close()


class OutgoingAudio(MediaStreamTrack):
    """The call's microphone: 20 ms frames of 48 kHz mono PCM16 from a buffer, silence when it is empty, paced in
    real time (aiortc pulls frames as fast as ``recv`` returns them)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._start: float | None = None
        self._timestamp = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.sent_seconds = 0.0
        """Seconds of queued (non-padding) audio that went out."""

    @property
    def buffered_seconds(self) -> float:
        """Seconds of audio queued and not sent yet."""
        return len(self._buffer) / 2 / SAMPLE_RATE

    def push(self, pcm: bytes) -> None:
        if self.buffered_seconds + len(pcm) / 2 / SAMPLE_RATE > _MAX_BUFFERED_SECONDS:
            raise ValueError(f"more than {_MAX_BUFFERED_SECONDS:.0f} s of audio queued: send it as it plays")
        if pcm:
            self._buffer += pcm
            self._drained.clear()

    async def drained(self) -> None:
        """Until everything queued has gone out."""
        await self._drained.wait()

    def clear(self) -> None:
        self._buffer.clear()
        self._drained.set()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._timestamp += FRAME_SAMPLES
            wait = self._start + self._timestamp / SAMPLE_RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.5:
                # The loop stalled for a while: restart the clock instead of sending a burst to catch up.
                self._start = now - self._timestamp / SAMPLE_RATE
        size = FRAME_SAMPLES * 2
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        if chunk:
            self.sent_seconds += len(chunk) / 2 / SAMPLE_RATE
        if not self._buffer:
            self._drained.set()
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk.ljust(frame.planes[0].buffer_size, b"\0"))
        frame.pts = self._timestamp
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame

    def stop(self) -> None:
        self._drained.set()
        super().stop()
