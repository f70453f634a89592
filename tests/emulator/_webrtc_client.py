"""An aiortc client peer, playing the part of Orga's browser SDK in the /calls tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack

EVENTS_CHANNEL = "orga-realtime-client-events"


class ClientPeer:
    """One client call: a data channel for events, a silent audio track, and what came back."""

    def __init__(self, *, audio: bool = True) -> None:
        # No public STUN: this network reaches only loopback.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel(EVENTS_CHANNEL)
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.channel_open = asyncio.Event()
        self.frames_back = 0
        self._readers: list[asyncio.Task[None]] = []
        self.channel.on("open", self.channel_open.set)
        self.channel.on("message", lambda raw: self.messages.put_nowait(json.loads(raw)))
        if audio:
            self.pc.addTrack(AudioStreamTrack())
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except Exception:  # noqa: BLE001 - MediaStreamError ends the track; nothing else matters here
                return
            self.frames_back += 1

    async def offer(self) -> dict[str, Any]:
        """The body of POST /v1/realtime/calls, with every candidate already in the SDP (no trickle)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {
            "offer": {"sdp": self.pc.localDescription.sdp, "type": "offer", "candidates": []},
            "params": {"voice": "alloy", "model": "orga-1-beta", "temperature": 0.5, "modalities": ["audio"],
                       "return_transcription": False, "instructions": None, "history": True},
        }

    async def accept(self, answer: dict[str, Any]) -> None:
        """Apply the emulator's answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event from the emulator's data channel."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def close(self) -> None:
        """Stop the readers and the peer."""
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.pc.close()
