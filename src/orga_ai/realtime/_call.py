"""One realtime call on aiortc: the peer connection ``@orga-ai/core`` builds, its signalling, and what the call hands
out (events, the agent's audio, timings, the selected candidate pair).

The order is core's: ``RTCPeerConnection`` with the config's ICE servers, an audio transceiver ``sendrecv`` (and video
``sendonly`` when a video track is given), the ``orga-realtime-client-events`` data channel, a full (non-trickle)
gathering, ``POST /v1/realtime/calls`` with the token as bearer, then the answer. Every failure leaves as an
``OrgaAIRealtimeError`` subclass; the token and TURN credentials never enter a message, a repr or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcicetransport import parse_stun_turn_uri

from .._config import USER_AGENT
from .._exceptions import (
    OrgaAIRealtimeChannelClosedError,
    OrgaAIRealtimeConnectionError,
    OrgaAIRealtimeError,
    OrgaAIRealtimeICEError,
    OrgaAIRealtimeInvalidAnswerError,
    OrgaAIRealtimeTimeoutError,
    RealtimePhase,
)
from .._models import SessionConfig
from .._secret import fingerprint
from . import _redact
from ._audio import SAMPLE_RATE, AudioChunk, OutgoingAudio, Resampler, WavRecorder, pcm16_bytes, read_wav
from ._events import (
    InputTranscriptionCompleted,
    RealtimeEvent,
    ResponseOutputItemDone,
    SessionCreated,
    SessionUpdated,
)
from ._wire import CALLS_PATH, EVENTS_CHANNEL, CallParams, build_call_body, parse_call_answer

__all__ = ["AudioStream", "CallTimings", "RealtimeCall", "open_call"]

logger = logging.getLogger("orga_ai.realtime")

_END = object()
_MAX_EVENTS = 10_000
_AUDIO_QUEUE_CHUNKS = 500  # 10 s of 20 ms frames per audio() reader; the oldest go first when a reader lags


@dataclass(slots=True)
class CallTimings:
    """Seconds from ``connect()`` to each step (None until it happened)."""

    gathered: float | None = None
    """ICE gathering finished: the offer is complete."""
    answered: float | None = None
    """``POST /v1/realtime/calls`` answered."""
    connected: float | None = None
    """The peer connection reached ``connected`` (ICE and DTLS done)."""
    channel_open: float | None = None
    """The events channel opened: the call is usable."""
    session_created: float | None = None
    """``session.created`` arrived."""

    def to_ms(self) -> dict[str, float | None]:
        return {
            name: None if value is None else round(value * 1000, 1)
            for name, value in (
                ("gathered", self.gathered),
                ("answered", self.answered),
                ("connected", self.connected),
                ("channelOpen", self.channel_open),
                ("sessionCreated", self.session_created),
            )
        }


class AudioStream:
    """``call.audio()``: the agent's audio as :class:`AudioChunk` objects (48 kHz mono PCM16, ~20 ms each), from the
    moment it was created until the call ends. A reader more than 10 s behind loses the oldest chunks."""

    def __init__(self, call: RealtimeCall) -> None:
        self._call = call
        self._queue: asyncio.Queue[AudioChunk | object] = asyncio.Queue()
        if call._ended.is_set():
            self._queue.put_nowait(_END)

    def _put(self, item: AudioChunk | object) -> None:
        if self._queue.qsize() >= _AUDIO_QUEUE_CHUNKS and item is not _END:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(item)

    def __aiter__(self) -> AudioStream:
        return self

    async def __anext__(self) -> AudioChunk:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)
            raise StopAsyncIteration
        assert isinstance(item, AudioChunk)
        return item

    async def aclose(self) -> None:
        """Stop receiving (the call goes on)."""
        self._call._audio_streams.discard(self)
        self._put(_END)


def _ice_servers(config: SessionConfig, relay_only: bool) -> list[RTCIceServer]:
    """The config's servers in aiortc's form. aiortc uses one STUN and one TURN URL (the first it can use), so the
    URLs it cannot parse are left out and, relay-only, STUN is not asked at all."""
    out: list[RTCIceServer] = []
    for server in config.ice_servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        usable = []
        for url in urls:
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError:
                continue
            if relay_only and parsed["scheme"] not in ("turn", "turns"):
                continue
            usable.append(url)
        if usable:
            out.append(RTCIceServer(urls=usable, username=server.username, credential=server.credential))
    return out


def _candidate_pair(pc: RTCPeerConnection) -> tuple[str | None, str | None]:
    """The local and remote candidate types (host, srflx, prflx, relay) of the nominated pair, when known."""
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[union-attr]
        pairs = list(connection._nominated.values())
    except AttributeError:  # aiortc keeps these private: a later release may move them
        return None, None
    if not pairs:
        return None, None
    pair = pairs[0]
    return getattr(pair.local_candidate, "type", None), getattr(pair.remote_candidate, "type", None)


class RealtimeCall:
    """One live call with Orga (``async with`` it, or ``await close()``).

    Iterate it (``async for event in call``) for the server's events, typed (:mod:`orga_ai.realtime` lists them);
    speak with :meth:`send_audio` / :meth:`play_wav`; hear the agent with :meth:`audio` or :meth:`record_wav`.

    Attributes:
        conversation_id: Orga's id of this conversation (from the answer to ``POST /v1/realtime/calls``).
        state: ``connecting``, ``connected``, ``ended`` (the other side or the network closed it) or ``closed``.
        timings: :class:`CallTimings`, seconds from ``connect()`` to each step.
        selected_candidate_type / remote_candidate_type: ``host``, ``srflx``, ``prflx`` or ``relay`` of the pair ICE
            chose (this side and Orga's side).
        events: every event received so far, in order.
    """

    def __init__(
        self,
        config: SessionConfig,
        params: CallParams,
        *,
        base_url: str,
        relay_only: bool,
        video: MediaStreamTrack | None,
        started: float,
    ) -> None:
        self._config = config
        self._params = params
        self._base_url = base_url
        self.relay_only = relay_only
        self._started = started
        self.conversation_id: str | None = None
        self.request_id: str | None = None
        self.state = "connecting"
        self.timings = CallTimings()
        self.selected_candidate_type: str | None = None
        self.remote_candidate_type: str | None = None
        self.events: list[RealtimeEvent] = []
        self.audio_out_seconds = 0.0
        """Seconds of the agent's audio received."""
        self._queue: asyncio.Queue[RealtimeEvent | object] = asyncio.Queue()
        self._new_event = asyncio.Event()
        self._ended = asyncio.Event()
        self._connected = asyncio.Event()
        self._channel_open = asyncio.Event()
        self._failed = asyncio.Event()
        self._audio_streams: set[AudioStream] = set()
        self._recorders: list[WavRecorder] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._resamplers: dict[tuple[int, int], Resampler] = {}
        self._closing: asyncio.Task[None] | None = None
        self._secrets = _redact.register(
            [config.ephemeral_token]
            + [s for server in config.ice_servers for s in (server.username or "", server.credential or "")]
        )
        self._outgoing = OutgoingAudio()
        self._video = video
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=_ice_servers(config, relay_only),
                iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
            )
        )
        self._channel: RTCDataChannel | None = None

    def __repr__(self) -> str:
        return (
            f"RealtimeCall(conversation_id={self.conversation_id!r}, state={self.state!r}, "
            f"token={fingerprint(self._config.ephemeral_token)}, candidate={self.selected_candidate_type!r})"
        )

    # -- connecting ---------------------------------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _error(self, cls: type[OrgaAIRealtimeError], message: str, phase: RealtimePhase) -> OrgaAIRealtimeError:
        return cls(message, phase=phase, conversation_id=self.conversation_id)

    async def _connect(self, *, gather_timeout: float, calls_timeout: float, connect_timeout: float) -> None:
        pc = self._pc
        pc.addTransceiver(self._outgoing, direction="sendrecv")
        if self._video is not None:
            pc.addTransceiver(self._video, direction="sendonly")
        channel = pc.createDataChannel(EVENTS_CHANNEL)
        self._channel = channel
        channel.on("open", self._on_channel_open)
        channel.on("message", self._on_message)
        channel.on("close", self._on_remote_end)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)

        try:
            await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), gather_timeout)
        except asyncio.TimeoutError:
            raise self._error(
                OrgaAIRealtimeTimeoutError, f"ICE gathering took more than {gather_timeout:g} s", "gather"
            ) from None
        self.timings.gathered = self._elapsed()
        local = pc.localDescription
        body = build_call_body(local.sdp, local.type, self._params)
        if self.relay_only and not any(" typ relay" in c["candidate"] for c in body["offer"]["candidates"]):
            raise self._error(
                OrgaAIRealtimeICEError,
                "relay-only: no relay candidate was gathered (is the TURN server reachable, and are its credentials "
                "still valid?)",
                "gather",
            )
        answer = await self._post_offer(body, calls_timeout)
        self.conversation_id = answer.conversation_id
        self.request_id = answer.request_id
        self.timings.answered = self._elapsed()
        logger.debug("call %s: answered in %.0f ms", self.conversation_id, self.timings.answered * 1000)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError, InvalidStateError and others here
            raise self._error(
                OrgaAIRealtimeInvalidAnswerError, f"the SDP answer was refused: {type(exc).__name__}", "calls"
            ) from None

        left = max(0.0, connect_timeout - self._elapsed())
        waiter = asyncio.ensure_future(self._wait_usable())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            done, _ = await asyncio.wait({waiter, failed}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, failed):
                task.cancel()
            await asyncio.gather(waiter, failed, return_exceptions=True)
        if failed in done or self._failed.is_set():
            raise self._error(
                OrgaAIRealtimeICEError,
                "ICE failed: no candidate pair between this host and Orga works"
                + (" over the relay" if self.relay_only else ""),
                "ice",
            )
        if waiter not in done:
            phase: RealtimePhase = "channel" if self._connected.is_set() else "ice"
            what = "the events channel did not open" if phase == "channel" else "the connection was not established"
            raise self._error(
                OrgaAIRealtimeTimeoutError, f"{what} within {connect_timeout:g} s of connect()", phase
            )
        self.selected_candidate_type, self.remote_candidate_type = _candidate_pair(pc)
        self.state = "connected"
        logger.info(
            "call %s: connected in %.0f ms over %s (token %s)",
            self.conversation_id,
            (self.timings.connected or 0) * 1000,
            self.selected_candidate_type,
            fingerprint(self._config.ephemeral_token),
        )

    async def _wait_usable(self) -> None:
        await self._connected.wait()
        await self._channel_open.wait()

    async def _post_offer(self, body: dict[str, Any], timeout: float) -> Any:
        import aiohttp

        token = self._config.ephemeral_token
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        url = self._base_url + CALLS_PATH
        try:
            async with (
                aiohttp.ClientSession(trust_env=False) as http,
                http.post(
                    url,
                    data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False,
                ) as response,
            ):
                raw = await response.content.read(1024 * 1024 + 1)
                status = response.status
                lowered = {k.lower(): v for k, v in response.headers.items()}
        except asyncio.TimeoutError:
            raise self._error(
                OrgaAIRealtimeTimeoutError, f"POST {CALLS_PATH} did not answer within {timeout:g} s", "calls"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(
                OrgaAIRealtimeConnectionError, f"POST {CALLS_PATH} failed: {type(exc).__name__}", "calls"
            ) from None
        return parse_call_answer(status, lowered, raw, (token, *self._secrets))

    # -- callbacks ----------------------------------------------------------------------------------------------------

    def _on_state(self) -> None:
        state = self._pc.connectionState
        logger.debug("call %s: connection %s", self.conversation_id, state)
        if state == "connected" and not self._connected.is_set():
            self.timings.connected = self._elapsed()
            self._connected.set()
        elif state == "failed":
            self._failed.set()
            self._on_remote_end()
        elif state == "closed":
            self._on_remote_end()

    def _on_channel_open(self) -> None:
        self.timings.channel_open = self._elapsed()
        self._channel_open.set()

    def _on_message(self, raw: str | bytes) -> None:
        from ._events import parse_event

        event = parse_event(raw)
        if isinstance(event, SessionCreated) and self.timings.session_created is None:
            self.timings.session_created = self._elapsed()
        self.events.append(event)
        if self._queue.qsize() >= _MAX_EVENTS:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(event)
        self._new_event.set()
        self._new_event = asyncio.Event()

    def _on_remote_end(self) -> None:
        if self._ended.is_set():
            return
        if self.state == "connected":
            self.state = "ended"
        self._ended.set()
        self._queue.put_nowait(_END)
        self._new_event.set()
        for stream in list(self._audio_streams):
            stream._put(_END)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._read_audio(track))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if not isinstance(frame, av.AudioFrame):
                continue
            for out in resampler.resample(frame):
                pcm = bytes(out.planes[0])[: out.samples * 2]
                chunk = AudioChunk(pcm, SAMPLE_RATE, now)
                self.audio_out_seconds += chunk.seconds
                for recorder in self._recorders:
                    recorder.write(pcm)
                for stream in self._audio_streams:
                    stream._put(chunk)

    # -- the public API -----------------------------------------------------------------------------------------------

    def __aiter__(self) -> RealtimeCall:
        return self

    async def __anext__(self) -> RealtimeEvent:
        """The next server event; the iteration ends when the call ends or is closed."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def wait_for(self, kind: str | type[Any], *, timeout: float = 10.0, start: int = 0) -> RealtimeEvent:
        """The first event (from ``events[start]`` on) of type ``kind`` (a wire type like ``"session.created"`` or an
        event class), waiting at most ``timeout`` s; it does not take the event from the iteration.

        Raises:
            OrgaAIRealtimeTimeoutError: none came in time.
            OrgaAIRealtimeChannelClosedError: the call ended first.
        """
        deadline = time.monotonic() + timeout
        index = start
        while True:
            for event in self.events[index:]:
                if event.type == kind if isinstance(kind, str) else isinstance(event, kind):
                    return event
            index = len(self.events)
            if self._ended.is_set():
                raise self._error(OrgaAIRealtimeChannelClosedError, f"the call ended before {_name(kind)}", "channel")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._error(
                    OrgaAIRealtimeTimeoutError, f"no {_name(kind)} within {timeout:g} s", "channel"
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_event.wait(), left)

    def send(self, message: Mapping[str, Any]) -> None:
        """Send one client message (a JSON object) on the events channel."""
        channel = self._channel
        if channel is None or channel.readyState != "open" or self.state == "closed":
            raise self._error(OrgaAIRealtimeChannelClosedError, "the events channel is closed", "channel")
        channel.send(json.dumps(dict(message), ensure_ascii=False))

    async def update(self, *, timeout: float = 10.0, **session: Any) -> SessionUpdated:
        """Send ``session.update`` with ``session`` (``voice=``, ``instructions=``, ``temperature=``...) and wait for
        the server's ``session.updated``, which is returned (and also iterated)."""
        start = len(self.events)
        self.send({"event": "session.update", "data": session})
        event = await self.wait_for(SessionUpdated, timeout=timeout, start=start)
        assert isinstance(event, SessionUpdated)
        return event

    def send_audio(self, samples: Any, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> float:
        """Queue PCM16 audio (bytes or an int16 array, interleaved when stereo) at any sample rate; it is resampled to
        48 kHz mono and goes out in real time after what is already queued. Returns the seconds queued."""
        if self.state == "closed":
            raise self._error(OrgaAIRealtimeChannelClosedError, "the call is closed", "channel")
        key = (sample_rate, channels)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = self._resamplers[key] = Resampler(sample_rate, channels)
        pcm = resampler.feed(pcm16_bytes(samples))
        self._outgoing.push(pcm)
        return len(pcm) / 2 / SAMPLE_RATE

    async def play_wav(self, path: str | os.PathLike[str], *, wait: bool = True) -> float:
        """Play a 16-bit PCM WAV file into the call (any rate, mono or stereo); with ``wait``, return once it has all
        gone out. Returns its duration in seconds."""
        pcm, rate, channels = read_wav(path)
        resampler = Resampler(rate, channels)
        data = resampler.feed(pcm) + resampler.flush()
        self._outgoing.push(data)
        if wait:
            await self.wait_audio_sent()
        return len(data) / 2 / SAMPLE_RATE

    async def wait_audio_sent(self) -> None:
        """Until every queued sample has gone out (returns at once if the call closes)."""
        ended = asyncio.ensure_future(self._ended.wait())
        drained = asyncio.ensure_future(self._outgoing.drained())
        try:
            await asyncio.wait({ended, drained}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (ended, drained):
                task.cancel()
            await asyncio.gather(ended, drained, return_exceptions=True)

    @property
    def transcript(self) -> list[tuple[str, str]]:
        """The conversation as text, in order: ``("user", text)`` for each utterance the server transcribed,
        ``("agent", text)`` for each reply it finished."""
        out: list[tuple[str, str]] = []
        for event in self.events:
            if isinstance(event, InputTranscriptionCompleted):
                out.append(("user", event.transcript))
            elif isinstance(event, ResponseOutputItemDone):
                out.append(("agent", event.text))
        return out

    @property
    def audio_in_seconds(self) -> float:
        """Seconds of queued audio (send_audio / play_wav) that went into the call."""
        return self._outgoing.sent_seconds

    def audio(self) -> AudioStream:
        """The agent's audio from now on, as an async iterator of :class:`AudioChunk` (48 kHz mono PCM16)."""
        stream = AudioStream(self)
        self._audio_streams.add(stream)
        return stream

    def record_wav(self, path: str | os.PathLike[str]) -> WavRecorder:
        """Write the agent's audio from now on to a 48 kHz mono WAV file, until the call closes (or the recorder's
        ``close()``)."""
        recorder = WavRecorder(path)
        self._recorders.append(recorder)
        return recorder

    async def stats(self) -> dict[str, Any]:
        """Media counters: RTP packets and bytes sent and received, what Orga reported receiving (RTCP), round trip."""
        out: dict[str, Any] = {"packetsSent": 0, "packetsReceived": 0, "remotePacketsReceived": None, "rttMs": None}
        if self.state == "closed":
            return out
        report = await self._pc.getStats()
        lost: int | None = None
        for stat in report.values():
            kind = getattr(stat, "type", "")
            if kind == "outbound-rtp":
                out["packetsSent"] += stat.packetsSent
            elif kind == "inbound-rtp":
                out["packetsReceived"] += stat.packetsReceived
            elif kind == "remote-inbound-rtp":
                # Orga's receiver reports (RTCP): proof our packets arrived, independent of any echo.
                lost = (lost or 0) + max(0, stat.packetsLost)
                if stat.roundTripTime is not None:
                    out["rttMs"] = round(stat.roundTripTime * 1000, 1)
        if lost is not None:
            out["remotePacketsReceived"] = max(0, out["packetsSent"] - lost)
        return out

    async def close(self) -> None:
        """Hang up: stop the media, close the peer connection, end iterations and recordings. Idempotent."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._on_remote_end()
        self.state = "closed"
        # Closed by us: the iteration ends now (events not read yet stay in ``events``).
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)
        self._outgoing.stop()
        try:
            await self._pc.close()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for recorder in self._recorders:
                recorder.close()
            _redact.unregister(self._secrets)
            logger.debug("call %s: closed", self.conversation_id)

    async def __aenter__(self) -> RealtimeCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ended(self) -> None:
        """Until the call ends (the other side hung up, the network failed, or :meth:`close`)."""
        await self._ended.wait()


def _name(kind: str | type[Any]) -> str:
    return kind if isinstance(kind, str) else kind.__name__


async def _route_config(url: str, headers: Mapping[str, str], cookies: Mapping[str, str], timeout: float) -> Any:
    import aiohttp

    from ._wire import refused_error

    try:
        async with (
            aiohttp.ClientSession(trust_env=False, cookies=dict(cookies)) as http,
            http.get(url, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)) as response,
        ):
            raw = await response.content.read(256 * 1024 + 1)
            status = response.status
            lowered = {k.lower(): v for k, v in response.headers.items()}
    except asyncio.TimeoutError:
        raise OrgaAIRealtimeTimeoutError(
            f"the session config route did not answer within {timeout:g} s", phase="config"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise OrgaAIRealtimeConnectionError(
            f"the session config route could not be reached: {type(exc).__name__}", phase="config"
        ) from None
    if not 200 <= status < 300:
        # Whatever the caller sent may come back in the answer: header values (and a bearer's token alone) and
        # cookie values are scrubbed from the error text.
        sent = (*headers.values(), *(v.partition(" ")[2] for v in headers.values()), *cookies.values())
        raise refused_error("config", "the session config route", status, lowered, raw, tuple(s for s in sent if s))
    try:
        return json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise OrgaAIRealtimeInvalidAnswerError(
            f"the session config route answered HTTP {status} with a body that is not JSON", phase="config"
        ) from None


async def resolve_config(
    source: SessionConfig | Mapping[str, Any] | str,
    *,
    headers: Mapping[str, str] | None,
    cookies: Mapping[str, str] | None,
    timeout: float,
) -> SessionConfig:
    """A session config from a :class:`SessionConfig`, the JSON a route returns, or the route's URL."""
    from .._exceptions import OrgaAIError

    if isinstance(source, SessionConfig):
        return source
    data = source
    if isinstance(source, str):
        if not source.startswith(("http://", "https://")):
            raise OrgaAIRealtimeError("the session config route must be an http(s) URL", phase="config")
        data = await _route_config(source, headers or {}, cookies or {}, timeout)
    try:
        return SessionConfig.from_dict(data)  # type: ignore[arg-type]
    except OrgaAIError as exc:
        raise OrgaAIRealtimeInvalidAnswerError(f"invalid session config: {exc.message}", phase="config") from None


async def open_call(
    source: SessionConfig | Mapping[str, Any] | str,
    *,
    base_url: str,
    params: CallParams,
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    video: MediaStreamTrack | None = None,
    relay_only: bool = False,
    gather_timeout: float,
    calls_timeout: float,
    connect_timeout: float,
    started: float | None = None,
) -> RealtimeCall:
    """Resolve the config, build the peer, signal, and wait until the call is usable (see :func:`connect`)."""
    started = time.monotonic() if started is None else started
    config = await resolve_config(source, headers=headers, cookies=cookies, timeout=calls_timeout)
    call = RealtimeCall(config, params, base_url=base_url, relay_only=relay_only, video=video, started=started)
    try:
        await call._connect(gather_timeout=gather_timeout, calls_timeout=calls_timeout, connect_timeout=connect_timeout)
    except BaseException:
        await call.close()
        raise
    return call
