"""Minting and checking the emulator's ephemeral tokens: HS256 JWTs shaped like Orga's.

Expiry is checked against the emulator's own clock, not the wall clock PyJWT would use, so a test can move time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = ["ALGORITHM", "InvalidToken", "MintedToken", "TokenClaims", "api_key_id", "decode_token", "mint_token"]

ALGORITHM = "HS256"
SCOPE = "realtime"
_REQUIRED_CLAIMS = ("sub", "api_key_id", "scope", "iat", "exp", "jti")


class InvalidToken(Exception):
    """A bearer token the emulator did not issue, or one it no longer accepts. ``reason`` is a stats key."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of a token the emulator issued."""

    sub: str
    api_key_id: str
    scope: str
    iat: int
    exp: int
    jti: str


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A freshly minted token, with the precise expiry the API form reports in ``expires_at``."""

    value: str
    claims: TokenClaims
    expires_at: dt.datetime


def api_key_id(api_key: str) -> str:
    """A stable, non-reversible id for an API key, as Orga puts in the ``api_key_id`` claim."""
    return "key_" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


def mint_token(api_key: str, *, secret: str, now: float, ttl: float) -> MintedToken:
    """A new single-use token for ``api_key``, valid from ``now`` for ``ttl`` seconds of emulator time."""
    key_id = api_key_id(api_key)
    expiry = now + ttl
    # JWT NumericDates are whole seconds; a real server encoding a datetime floors them the same way.
    claims = TokenClaims(
        sub="user_" + key_id[4:],
        api_key_id=key_id,
        scope=SCOPE,
        iat=math.floor(now),
        exp=math.floor(expiry),
        jti=uuid.uuid4().hex,
    )
    payload: dict[str, Any] = {
        "sub": claims.sub,
        "api_key_id": claims.api_key_id,
        "scope": claims.scope,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
    }
    value = jwt.encode(payload, secret, algorithm=ALGORITHM)
    expires_at = dt.datetime.fromtimestamp(expiry, tz=dt.timezone.utc)
    return MintedToken(value, claims, expires_at)


def decode_token(token: str, *, secret: str, now: float) -> TokenClaims:
    """The claims of ``token`` if the emulator signed it and it has not expired at ``now``; else ``InvalidToken``."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # Time claims are checked below against the emulator clock, which may run ahead of the wall clock.
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": list(_REQUIRED_CLAIMS)},
        )
    except jwt.PyJWTError:
        raise InvalidToken("Invalid ephemeral token.", "invalid_token") from None
    try:
        claims = TokenClaims(
            sub=str(payload["sub"]),
            api_key_id=str(payload["api_key_id"]),
            scope=str(payload["scope"]),
            iat=int(payload["iat"]),
            exp=int(payload["exp"]),
            jti=str(payload["jti"]),
        )
    except (TypeError, ValueError):
        raise InvalidToken("Invalid ephemeral token.", "invalid_token") from None
    if claims.scope != SCOPE:
        raise InvalidToken("Invalid ephemeral token.", "invalid_token")
    if now >= claims.exp:
        raise InvalidToken("Ephemeral token has expired.", "token_expired")
    return claims
