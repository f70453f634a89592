"""``orga_ai.realtime``: place a realtime call with Orga from Python, the way ``@orga-ai/core`` does from a browser.

With the API key (a backend, a test, a batch job)::

    async with AsyncOrgaAI() as orga:
        async with orga.realtime.connect(voice="Sofía", instructions="Be brief.") as call:
            await call.play_wav("question.wav")
            async for event in call:
                print(event.type)

On a device that holds no key, from your session-config route (or a :class:`~orga_ai.SessionConfig`, or the JSON
the route returned)::

    async with orga_ai.realtime.connect("https://app.example.com/api/orga-client-secrets",
                                        headers={"Authorization": "Bearer <the user's session>"}) as call:
        ...

Needs the ``orga-ai[realtime]`` extra (aiortc); ``import orga_ai`` never imports it. The events are frozen
dataclasses; errors are the ``OrgaAIRealtimeError`` family of :mod:`orga_ai`. See docs/realtime.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._config import DEFAULT_BASE_URL, validate_base_url
from .._exceptions import OrgaAIConfigurationError
from .._models import SessionConfig
from ._events import (
    ConversationCreated,
    ErrorEvent,
    InputTranscriptionCompleted,
    RealtimeEvent,
    ResponseOutputItemDone,
    SessionCreated,
    SessionInfo,
    SessionUpdated,
    UnknownEvent,
    parse_event,
)
from ._wire import (
    DEFAULT_CALLS_TIMEOUT,
    DEFAULT_GATHER_TIMEOUT,
    DEFAULT_MODEL,
    DEFAULT_VOICE,
    EVENTS_CHANNEL,
    CallParams,
    build_call_body,
)

if TYPE_CHECKING:
    from ._audio import AudioChunk, WavRecorder, read_wav
    from ._call import AudioStream, CallTimings, RealtimeCall

__all__ = [
    "DEFAULT_CALLS_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_GATHER_TIMEOUT",
    "DEFAULT_MODEL",
    "DEFAULT_VOICE",
    "EVENTS_CHANNEL",
    "MISSING_EXTRA",
    "AudioChunk",
    "AudioStream",
    "CallParams",
    "CallTimings",
    "Connecting",
    "ConversationCreated",
    "ErrorEvent",
    "InputTranscriptionCompleted",
    "RealtimeCall",
    "RealtimeEvent",
    "ResponseOutputItemDone",
    "SessionCreated",
    "SessionInfo",
    "SessionUpdated",
    "UnknownEvent",
    "WavRecorder",
    "build_call_body",
    "connect",
    "parse_event",
    "read_wav",
]

DEFAULT_CONNECT_TIMEOUT = 20.0
"""Seconds from ``connect()`` until the call must be usable (connected and its events channel open)."""
MISSING_EXTRA = "pip install 'orga-ai[realtime]'"
"""How the one line a missing extra gives ends (its start names what is not installed)."""

_LAZY = {
    "AudioChunk": "_audio",
    "WavRecorder": "_audio",
    "read_wav": "_audio",
    "AudioStream": "_call",
    "CallTimings": "_call",
    "RealtimeCall": "_call",
}


def _require() -> Any:
    """The aiortc-backed module, or one clear MissingExtraError (an ImportError) naming the extra."""
    from .._extras import require_extra

    require_extra("orga_ai.realtime", "realtime")
    from . import _call

    return _call


def __getattr__(name: str) -> object:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'orga_ai.realtime' has no attribute {name!r}")
    _require()
    import importlib

    value = getattr(importlib.import_module(f"orga_ai.realtime.{home}"), name)
    globals()[name] = value
    return value


class Connecting:
    """What :func:`connect` returns: ``await`` it for the call, or ``async with`` it to close the call at the end."""

    def __init__(self, opener: Callable[[], Awaitable[RealtimeCall]]) -> None:
        self._opener = opener
        self._call: RealtimeCall | None = None

    def __await__(self) -> Generator[Any, None, RealtimeCall]:
        return self._opener().__await__()

    async def __aenter__(self) -> RealtimeCall:
        self._call = await self._opener()
        return self._call

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._call is not None:
            await self._call.close()


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise OrgaAIConfigurationError(f"{name} must be a number of seconds from 0 to 600")
    return float(value)


def connect(
    config: SessionConfig | Mapping[str, Any] | str | _Minted,
    *,
    base_url: str | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    voice: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    return_transcription: bool | None = None,
    instructions: str | None = None,
    modalities: Sequence[str] | None = None,
    history: bool | None = None,
    video: Any = None,
    relay_only: bool = False,
    gather_timeout: float = DEFAULT_GATHER_TIMEOUT * 2,
    calls_timeout: float = DEFAULT_CALLS_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Connecting:
    """Place a call with a session config minted elsewhere: a :class:`~orga_ai.SessionConfig`, the JSON your route
    returned (``{"ephemeralToken", "iceServers"}``), or the route's URL (fetched with ``GET``, ``headers`` and
    ``cookies``, as ``@orga-ai/core``'s ``sessionConfigEndpoint``).

    Args:
        base_url: where ``POST /v1/realtime/calls`` goes: the argument, else ``ORGA_BASE_URL``, else Orga Cloud.
        voice, model, temperature, return_transcription, instructions, modalities, history: the call's ``params``;
            None sends ``@orga-ai/core``'s default.
        video: an aiortc video ``MediaStreamTrack`` to send (a ``sendonly`` transceiver), or None.
        relay_only: gather only TURN relay candidates (``iceTransportPolicy: "relay"``).
        gather_timeout: the bound on ICE gathering (aioice itself waits at most 5 s for STUN/TURN answers and then
            goes on with what it has, as core does).
        calls_timeout: the bound on ``POST /v1/realtime/calls`` (and on fetching the route).
        connect_timeout: seconds from this call until the call must be usable.

    Returns a :class:`Connecting`: ``call = await connect(...)`` or ``async with connect(...) as call:``.

    Raises:
        OrgaAIRealtimeError: a subclass naming the failed phase (see :mod:`orga_ai`).
        ImportError: the ``orga-ai[realtime]`` extra is missing (:data:`MISSING_EXTRA`).
    """
    params = CallParams(voice, model, temperature, return_transcription, instructions, modalities, history)
    url = validate_base_url(base_url or os.environ.get("ORGA_BASE_URL", "").strip() or DEFAULT_BASE_URL)
    timeouts = {
        "gather_timeout": _positive(gather_timeout, "gather_timeout"),
        "calls_timeout": _positive(calls_timeout, "calls_timeout"),
        "connect_timeout": _positive(connect_timeout, "connect_timeout"),
    }
    call_module = _require()

    async def opener() -> RealtimeCall:
        started = time.monotonic()
        source = await config.mint() if isinstance(config, _Minted) else config
        call: RealtimeCall = await call_module.open_call(
            source, base_url=url, params=params, headers=headers, cookies=cookies, video=video,
            relay_only=relay_only, started=started, **timeouts,
        )
        return call

    return Connecting(opener)


def connect_with_client(orga: Any, **options: Any) -> Connecting:
    """``AsyncOrgaAI.realtime.connect``: mint a session config with the client's key, then place the call to the
    client's base URL. The timings count from here, the token and ICE fetch included."""
    for name in ("config", "base_url", "headers", "cookies"):
        if name in options:
            raise OrgaAIConfigurationError(f"{name} is not an option here: the client mints the config itself")
    async def minted() -> SessionConfig:
        session: SessionConfig = await orga.get_session_config()
        return session

    return connect(_Minted(minted), base_url=orga.base_url, **options)


class _Minted:
    """A config minted when the call starts (what ``AsyncOrgaAI.realtime.connect`` passes to :func:`connect`)."""

    def __init__(self, mint: Callable[[], Awaitable[SessionConfig]]) -> None:
        self.mint = mint


class RealtimeNamespace:
    """``AsyncOrgaAI.realtime``: calls placed with the client's own key."""

    def __init__(self, orga: Any) -> None:
        self._orga = orga

    def connect(self, **options: Any) -> Connecting:
        """Mint a session config with the API key and place a call (the options of :func:`connect`, without
        ``base_url``, ``headers`` and ``cookies``)."""
        return connect_with_client(self._orga, **options)
