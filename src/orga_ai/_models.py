"""The typed results of an exchange: EphemeralToken, IceServer and SessionConfig."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._secret import fingerprint

__all__ = ["EphemeralToken", "IceServer", "SessionConfig"]


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EphemeralToken:
    """A short-lived, single-use token minted by Orga Cloud from the API key.

    ``value`` is the token itself; ``repr()`` shows only its fingerprint.
    """

    value: str = field(repr=False)
    expires_at: dt.datetime | None = None
    token_type: str = "bearer"
    request_id: str | None = None

    @property
    def fingerprint(self) -> str:
        """A short, log-safe tag of the token."""
        return fingerprint(self.value)

    def seconds_left(self, now: dt.datetime | None = None) -> float | None:
        """Seconds until expiry (negative once expired), or None when the expiry is unknown."""
        if self.expires_at is None:
            return None
        now = now or dt.datetime.now(dt.timezone.utc)
        return (self.expires_at - now).total_seconds()

    def __repr__(self) -> str:
        return (
            f"EphemeralToken({self.fingerprint}, expires_at={_iso(self.expires_at)!r}, "
            f"request_id={self.request_id!r})"
        )


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server, as ``RTCPeerConnection`` takes it.

    ``urls`` keeps the form Orga sent (one string or a tuple of strings); ``username`` and ``credential`` are set only
    on TURN entries, and ``repr()`` masks the credential.
    """

    urls: str | tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``RTCIceServer`` JSON object: absent ``username``/``credential`` are omitted, never ``null``."""
        out: dict[str, Any] = {"urls": self.urls if isinstance(self.urls, str) else list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out

    def __repr__(self) -> str:
        cred = "" if self.credential is None else f", credential={fingerprint(self.credential)}"
        user = "" if self.username is None else ", username=<set>"
        return f"IceServer(urls={self.urls!r}{user}{cred})"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a browser or mobile client needs to open one Orga session. Immutable; hand it out once.

    Attributes:
        ephemeral_token: the single-use token (``repr()`` shows only its fingerprint).
        ice_servers: the STUN/TURN servers fetched with that token.
        expires_at: when the token (and its TURN credentials) expire, timezone-aware UTC, or None if unknown.
        token_request_id / ice_request_id: Orga's ``x-request-id`` of each upstream call, for support tickets.
    """

    ephemeral_token: str = field(repr=False)
    ice_servers: tuple[IceServer, ...]
    expires_at: dt.datetime | None = None
    token_request_id: str | None = None
    ice_request_id: str | None = None

    @property
    def token_fingerprint(self) -> str:
        """A short, log-safe tag of the token."""
        return fingerprint(self.ephemeral_token)

    @property
    def request_ids(self) -> tuple[str | None, str | None]:
        """The upstream request ids of the token call and the ICE call."""
        return (self.token_request_id, self.ice_request_id)

    def seconds_left(self, now: dt.datetime | None = None) -> float | None:
        """Seconds until the token expires (negative once expired), or None when unknown."""
        if self.expires_at is None:
            return None
        now = now or dt.datetime.now(dt.timezone.utc)
        return (self.expires_at - now).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """The JSON the Orga client SDKs expect: ``{"ephemeralToken": ..., "iceServers": [...]}``, camelCase."""
        return {
            "ephemeralToken": self.ephemeral_token,
            "iceServers": [server.to_dict() for server in self.ice_servers],
        }

    def to_client_json(self) -> dict[str, Any]:
        """:meth:`to_dict` plus ``expiresAt`` (ISO 8601 UTC, or omitted when unknown): what the proxy route returns."""
        out = self.to_dict()
        if self.expires_at is not None:
            out["expiresAt"] = _iso(self.expires_at)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionConfig:
        """Rebuild a config from :meth:`to_client_json` output; raises OrgaAIInvalidResponseError if malformed."""
        from ._exceptions import OrgaAIInvalidResponseError
        from ._protocol import parse_ice_servers_payload  # local: avoids an import cycle

        if not isinstance(data, Mapping):
            raise OrgaAIInvalidResponseError("a session config must be a JSON object")
        token = data.get("ephemeralToken")
        if not isinstance(token, str) or not token:
            raise OrgaAIInvalidResponseError("ephemeralToken must be a non-empty string")
        expires = data.get("expiresAt")
        expires_at = None
        if expires is not None:
            try:
                if not isinstance(expires, str):
                    raise ValueError(expires)
                expires_at = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
            except ValueError:
                raise OrgaAIInvalidResponseError("expiresAt must be an ISO 8601 timestamp") from None
            if expires_at.tzinfo is None:  # the route writes UTC; a naive value means UTC too
                expires_at = expires_at.replace(tzinfo=dt.timezone.utc)
        return cls(token, parse_ice_servers_payload(data.get("iceServers")), expires_at)

    def __repr__(self) -> str:
        return (
            f"SessionConfig(token={self.token_fingerprint}, ice_servers={len(self.ice_servers)}, "
            f"expires_at={_iso(self.expires_at)!r}, request_ids={self.request_ids!r})"
        )
