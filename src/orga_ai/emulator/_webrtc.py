"""The answering peer of ``POST /v1/realtime/calls``, built on aiortc (the ``orga-ai[webrtc]`` extra).

Imported only when a call arrives, so ``import orga_ai.emulator`` works without aiortc. Each call gets one
``RTCPeerConnection`` that accepts the client's ``orga-realtime-client-events`` data channel, greets it with
``session.created`` and ``conversation.created``, answers ``session.update`` with ``session.updated``, and sends the
client's own audio back: enough for a client to prove its whole path (signalling, ICE, DTLS, SCTP, RTP) works.
With an agent script (``EmulatorConfig.agent_script``) a scripted agent answers instead of the echo (``_agent.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from aiortc.sdp import candidate_from_sdp

from ..realtime._wire import DEFAULT_MODEL, DEFAULT_TEMPERATURE, DEFAULT_VOICE, EVENTS_CHANNEL
from ._script import AgentScript
from ._validation import CallRequest

__all__ = ["EVENTS_CHANNEL", "CallManager"]

logger = logging.getLogger("orga_ai.emulator")

_SESSION_FIELDS = ("model", "voice", "temperature", "modalities", "instructions", "return_transcription")
_DEFAULTS: dict[str, Any] = {  # what a session holds when the caller's params leave a field out (the client's defaults)
    "model": DEFAULT_MODEL,
    "voice": DEFAULT_VOICE,
    "temperature": DEFAULT_TEMPERATURE,
    "modalities": ["audio"],
    "instructions": None,
    "return_transcription": False,
}


def _session(params: dict[str, Any]) -> dict[str, Any]:
    session: dict[str, Any] = {"id": "sess_" + uuid.uuid4().hex, "object": "realtime.session"}
    for name in _SESSION_FIELDS:
        value = params.get(name)
        session[name] = _DEFAULTS[name] if value is None else value
    return session


class _Call:
    """One peer connection and what must be stopped with it."""

    def __init__(self, conversation_id: str, params: dict[str, Any], agent_script: AgentScript | None = None) -> None:
        self.conversation_id = conversation_id
        self.session = _session(params)
        self.agent_script = agent_script
        self.agent: Any = None
        self.listener: asyncio.Task[None] | None = None
        self.channel: RTCDataChannel | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.blackhole = MediaBlackhole()
        self.expiry: asyncio.Task[None] | None = None
        self.closed = False

    def send(self, channel: RTCDataChannel, message: dict[str, Any]) -> None:
        if channel.readyState == "open":
            channel.send(json.dumps(message, ensure_ascii=False))

    def on_message(self, channel: RTCDataChannel, raw: Any) -> None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            self.send(channel, {"type": "error", "error": {"message": "messages must be JSON text"}})
            return
        if not isinstance(message, dict):
            self.send(channel, {"type": "error", "error": {"message": "messages must be JSON objects"}})
            return
        event = message.get("event", message.get("type"))
        if event == "session.update":
            data = message.get("data", message.get("session"))
            if isinstance(data, dict):
                for name in _SESSION_FIELDS:
                    if name in data:
                        self.session[name] = data[name]
            self.send(channel, {"type": "session.updated", "session": dict(self.session)})
        else:
            self.send(channel, {"type": "error", "error": {"message": f"unsupported event {event!r}"}})

    def on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL:
            return
        self.channel = channel
        channel.on("message", lambda raw: self.on_message(channel, raw))
        # aiortc reports an in-band channel only once it is open, so the greeting can go right away.
        self.send(channel, {"type": "session.created", "session": dict(self.session)})
        self.send(channel, {"type": "conversation.created", "conversation": {"id": self.conversation_id}})

    def on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.agent_script is not None:
            from ._agent import ScriptedAgent

            def send(message: dict[str, Any]) -> None:
                if self.channel is not None:
                    self.send(self.channel, message)

            self.agent = ScriptedAgent(self.agent_script, send)
            self.pc.addTrack(self.agent.voice)
            self.listener = asyncio.ensure_future(self.agent.listen(track))
        elif track.kind == "audio":
            # The echo: the remote track is the source of our sender, so the client hears itself.
            self.pc.addTrack(track)
        else:
            # Unread remote tracks would queue decoded frames forever.
            self.blackhole.addTrack(track)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.listener is not None:
            self.listener.cancel()
            await asyncio.gather(self.listener, return_exceptions=True)
        if self.agent is not None:
            await self.agent.close()
        await self.blackhole.stop()
        await self.pc.close()


class CallManager:
    """The live calls of one emulator: answers offers, closes peers on timeout, failure or shutdown."""

    def __init__(self, *, call_seconds: float, agent_script: AgentScript | None = None) -> None:
        self._call_seconds = call_seconds
        self._agent_script = agent_script
        self._calls: dict[str, _Call] = {}

    @property
    def active(self) -> int:
        """How many peers are open."""
        return len(self._calls)

    async def answer(self, conversation_id: str, request: CallRequest) -> str:
        """Accept ``request.sdp`` and return the SDP answer (ICE gathered, no trickle). ValueError if it can't."""
        call = _Call(conversation_id, request.params, self._agent_script)
        pc = call.pc
        pc.on("datachannel", call.on_datachannel)
        pc.on("track", call.on_track)

        @pc.on("connectionstatechange")
        async def _state_changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._close(conversation_id)

        self._calls[conversation_id] = call
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=request.sdp, type="offer"))
            if "a=candidate:" not in request.sdp:
                # Only a client that trickled its candidates separately needs them added one by one.
                for item in request.candidates:
                    candidate = candidate_from_sdp(str(item["candidate"]).removeprefix("a=").removeprefix("candidate:"))
                    candidate.sdpMid = item.get("sdpMid")
                    candidate.sdpMLineIndex = item.get("sdpMLineIndex")
                    await pc.addIceCandidate(candidate)
            await pc.setLocalDescription(await pc.createAnswer())
            await call.blackhole.start()
        except Exception as exc:
            await self._close(conversation_id)
            raise ValueError(f"could not negotiate the offer: {type(exc).__name__}") from exc
        call.expiry = asyncio.get_running_loop().create_task(self._expire(conversation_id))
        return str(pc.localDescription.sdp)

    async def _expire(self, conversation_id: str) -> None:
        await asyncio.sleep(self._call_seconds)
        logger.info("call %s: closing after %.0f s", conversation_id, self._call_seconds)
        await self._close(conversation_id)

    async def _close(self, conversation_id: str) -> None:
        call = self._calls.pop(conversation_id, None)
        if call is None:
            return
        if call.expiry is not None and call.expiry is not asyncio.current_task():
            call.expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call.expiry
        await call.close()

    async def close_all(self) -> None:
        """Close every peer (the app's shutdown)."""
        for conversation_id in list(self._calls):
            await self._close(conversation_id)
