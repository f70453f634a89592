"""The typed results of an exchange: EphemeralToken, IceServer and SessionConfig."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._secret import fingerprint

__all__ = ["EphemeralToken", "IceServer", "SessionConfig"]


# Refresh this long before the credentials expire at most (and at most a fifth of their lifetime): long enough for a
# page to fetch a new config and finish its ICE restart, short enough to use most of a short (2-minute) lifetime.
_REFRESH_MARGIN_SECONDS = 60.0
_REFRESH_MARGIN_SHARE = 0.2


def _turn_expiry_seconds(username: str | None) -> int | None:
    # The unix time of a TURN REST username, as an int: the route reads it on every request, so no datetime here.
    if not username:
        return None
    head = username.partition(":")[0]
    if not (head.isascii() and head.isdigit()) or len(head) > 12:  # "²".isdigit() is true too; int() refuses it
        return None
    seconds = int(head)
    return seconds if seconds >= 1_000_000_000 else None  # before 2001: some other numeric prefix, not a time


def turn_username_expiry(username: str | None) -> dt.datetime | None:
    """The expiry carried by a TURN REST API username (``"<unix expiry>:<id>"``), or None when it carries none."""
    seconds = _turn_expiry_seconds(username)
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _refresh_time(expiry: float | None, now: float) -> dt.datetime | None:
    if expiry is None:
        return None
    left = max(0.0, expiry - now)
    try:
        return dt.datetime.fromtimestamp(
            expiry - min(_REFRESH_MARGIN_SECONDS, left * _REFRESH_MARGIN_SHARE), tz=dt.timezone.utc
        )
    except (OverflowError, OSError, ValueError):
        return None


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
        refresh_after: a safe time to fetch a fresh config (timezone-aware UTC, or None when no expiry is known):
            before the token and the TURN credentials expire, whichever comes first, by a fifth of their remaining
            lifetime at most 60 s. Computed when the config is built unless given.
    """

    ephemeral_token: str = field(repr=False)
    ice_servers: tuple[IceServer, ...]
    expires_at: dt.datetime | None = None
    token_request_id: str | None = None
    ice_request_id: str | None = None
    refresh_after: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.refresh_after is None:
            object.__setattr__(self, "refresh_after", _refresh_time(self._first_expiry(), time.time()))

    def _first_expiry(self) -> float | None:
        first = self.expires_at.timestamp() if self.expires_at is not None else None
        for server in self.ice_servers:
            turn = _turn_expiry_seconds(server.username)
            if turn is not None and (first is None or turn < first):
                first = turn
        return first

    @property
    def credentials_expire_at(self) -> dt.datetime | None:
        """When the first of the token and the TURN credentials expires (TURN REST usernames carry their expiry)."""
        first = self._first_expiry()
        return None if first is None else dt.datetime.fromtimestamp(first, tz=dt.timezone.utc)

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
        """:meth:`to_dict` plus ``expiresAt`` and ``refreshAfter`` (ISO 8601 UTC, each omitted when unknown): what the
        proxy route returns."""
        out = self.to_dict()
        if self.expires_at is not None:
            out["expiresAt"] = _iso(self.expires_at)
        if self.refresh_after is not None:
            out["refreshAfter"] = _iso(self.refresh_after)
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
        expires_at = _moment(data, "expiresAt")
        refresh_after = _moment(data, "refreshAfter")
        servers = parse_ice_servers_payload(data.get("iceServers"))
        return cls(token, servers, expires_at, refresh_after=refresh_after)

    def __repr__(self) -> str:
        return (
            f"SessionConfig(token={self.token_fingerprint}, ice_servers={len(self.ice_servers)}, "
            f"expires_at={_iso(self.expires_at)!r}, request_ids={self.request_ids!r})"
        )


def _moment(data: Mapping[str, Any], name: str) -> dt.datetime | None:
    from ._exceptions import OrgaAIInvalidResponseError

    value = data.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OrgaAIInvalidResponseError(f"{name} must be an ISO 8601 timestamp") from None
    # The route writes UTC; a naive value means UTC too.
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment
