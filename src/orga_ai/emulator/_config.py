"""Settings of one emulator instance, and the defaults `orga-ai emulator` starts with."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._script import AgentScript

__all__ = [
    "API_KEY_PREFIX",
    "DEFAULT_QUOTA_PER_MINUTE",
    "DEFAULT_STUN_URLS",
    "DEFAULT_TTL",
    "DEFAULT_TURN_URLS",
    "DEV_API_KEY",
    "EmulatorConfig",
    "TokenForm",
]

API_KEY_PREFIX = "sk_orga_ai_"
DEV_API_KEY = "sk_orga_ai_local_emulator_dev_key"
"""The API key the emulator accepts by default. It opens nothing but the emulator, so it is not a secret."""
DEFAULT_TTL = 120.0
"""Seconds an ephemeral token (and the TURN credentials minted for it) stays valid."""
DEFAULT_QUOTA_PER_MINUTE = 600
"""Tokens one API key may mint per rolling minute before the emulator answers 429."""
DEFAULT_STALL_SECONDS = 60.0
"""Upper bound of a ``stall`` fault: long enough to outlast any client timeout, short enough to let a server stop."""
DEFAULT_CALL_SECONDS = 300.0
"""A WebRTC peer of ``/v1/realtime/calls`` is closed after this many seconds, whatever the client does."""
DEFAULT_STUN_URLS: tuple[str, ...] = ("stun:127.0.0.1:3478",)
DEFAULT_TURN_URLS: tuple[str, ...] = ("turn:127.0.0.1:3478?transport=udp",)
"""Placeholders of an in-process emulator: well-formed, but nothing answers them unless you run a server there.
``orga-ai emulator`` replaces them with its own STUN server (docs/emulator.md)."""

TokenForm = Literal["api", "howto"]
_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def _random_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class EmulatorConfig:
    """What one emulator accepts and hands out. Invalid values raise ``ValueError`` at construction.

    Attributes:
        api_keys: the permanent keys ``POST /v1/realtime/client-secrets`` accepts (each starts with ``sk_orga_ai_``).
        ttl: lifetime of an ephemeral token and of its TURN credentials, in seconds.
        token_form: ``"api"`` answers ``{"ephemeral_token", "token_type", "expires_at"}`` (the API reference form),
            ``"howto"`` answers ``{"ephemeralToken", "ttl"}`` (the form of Orga's how-to pages).
        quota_per_minute: tokens one key may mint per rolling minute; 0 turns the quota off.
        stun_urls / turn_urls: what ``GET /v1/realtime/ice-config`` lists; no TURN entry when ``turn_urls`` is empty.
        turn_secret: the coturn ``static-auth-secret`` the TURN credentials are signed with (random by default).
        jwt_secret: the HS256 key of the ephemeral tokens (random by default).
        stall_seconds: how long a ``stall`` fault holds a request at most.
        call_seconds: how long a WebRTC peer of ``/v1/realtime/calls`` may live.
        webrtc: False makes ``/v1/realtime/calls`` answer 501 as if aiortc were missing.
        max_logged_requests: how many requests ``GET /_emulator/requests`` keeps (oldest dropped first).
        cors_origins: browser origins allowed to call the API cross-origin (Orga's client SDKs call
            ``/v1/realtime/calls`` from the page); ``("*",)`` by default, as the emulator holds no user data.
        agent_script: a scripted agent answers calls instead of the echo (``emulator/_script.py`` describes it;
            ``orga-ai emulator --agent-script FILE``).
    """

    api_keys: tuple[str, ...] = field(default=(DEV_API_KEY,), repr=False)
    ttl: float = DEFAULT_TTL
    token_form: TokenForm = "api"
    quota_per_minute: int = DEFAULT_QUOTA_PER_MINUTE
    stun_urls: tuple[str, ...] = DEFAULT_STUN_URLS
    turn_urls: tuple[str, ...] = DEFAULT_TURN_URLS
    turn_secret: str = field(default_factory=_random_secret, repr=False)
    jwt_secret: str = field(default_factory=_random_secret, repr=False)
    stall_seconds: float = DEFAULT_STALL_SECONDS
    call_seconds: float = DEFAULT_CALL_SECONDS
    webrtc: bool = True
    max_logged_requests: int = 1000
    cors_origins: tuple[str, ...] = ("*",)
    agent_script: AgentScript | None = None

    def __post_init__(self) -> None:
        # Tuples are part of the contract (the config is hashable and frozen); accept lists and coerce them.
        for name in ("api_keys", "stun_urls", "turn_urls", "cors_origins"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"{name} must be a sequence of strings")
            object.__setattr__(self, name, tuple(value))
        if not self.api_keys:
            raise ValueError("api_keys must name at least one key")
        for key in self.api_keys:
            if not key.startswith(API_KEY_PREFIX) or len(key) <= len(API_KEY_PREFIX):
                raise ValueError(f"every API key must start with {API_KEY_PREFIX!r}")
            if not key.isascii() or not key.isprintable() or " " in key:
                raise ValueError("API keys may not contain spaces or control characters")
        for name in ("ttl", "stall_seconds", "call_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.token_form not in ("api", "howto"):
            raise ValueError(f"token_form must be 'api' or 'howto', got {self.token_form!r}")
        if isinstance(self.quota_per_minute, bool) or not isinstance(self.quota_per_minute, int):
            raise ValueError("quota_per_minute must be a whole number")
        if self.quota_per_minute < 0:
            raise ValueError("quota_per_minute must be >= 0 (0 turns the quota off)")
        for url in (*self.stun_urls, *self.turn_urls):
            if not url.lower().startswith(_ICE_SCHEMES):
                raise ValueError(f"ICE URL {url!r} must start with stun:, stuns:, turn: or turns:")
        for url in self.stun_urls:
            if url.lower().startswith(("turn:", "turns:")):
                raise ValueError(f"{url!r} is a TURN URL: pass it in turn_urls")
        for url in self.turn_urls:
            if url.lower().startswith(("stun:", "stuns:")):
                raise ValueError(f"{url!r} is a STUN URL: pass it in stun_urls")
        if not self.turn_secret:
            raise ValueError("turn_secret must be non-empty")
        if len(self.jwt_secret.encode("utf-8")) < 32:
            # RFC 7518 wants an HS256 key at least as long as the hash; PyJWT warns (an error under pytest) otherwise.
            raise ValueError("jwt_secret must be at least 32 bytes long")
        if self.max_logged_requests < 1:
            raise ValueError("max_logged_requests must be >= 1")
