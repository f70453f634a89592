"""Who may call the route: the ``Authenticator`` protocol and the three built-in authenticators.

An authenticator is any callable ``(ProxyRequest) -> Principal | str`` that raises :class:`AuthenticationError` to
refuse the caller. It is synchronous on purpose: verifying a JWT is CPU work, and the one built-in that may do I/O
(``JWTAuth`` with a JWKS URL, on a key-cache miss) says so with ``may_block = True`` so the async core runs it in a
worker thread instead of stalling the event loop.
"""

from __future__ import annotations

import functools
import hmac
import logging
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._secret import Secret
from ._jwks import JWKSKeys, UnknownKey

if TYPE_CHECKING:
    from ._request import ProxyRequest

__all__ = [
    "AnonymousAuth",
    "AnyOf",
    "AuthenticationError",
    "Authenticator",
    "JWTAuth",
    "Principal",
    "PrincipalTypeError",
    "SharedSecretAuth",
    "bearer_token",
    "hook_name",
    "to_principal",
]

# Asymmetric algorithms a JWKS may serve; HMAC ones only make sense with a shared secret.
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_HMAC = frozenset({"HS256", "HS384", "HS512"})
_MAX_TOKEN_CHARS = 8192
_MIN_DISTINCT_CHARS = 8  # 32 spaces, or "ab" * 16, is no key
_MAX_LEEWAY = 300.0  # five minutes of clock skew; more turns `exp` into a suggestion

logger = logging.getLogger("orga_ai.proxy")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as the authenticator identified it.

    Attributes:
        id: a stable identifier (the JWT ``sub``, ``"service"``, or the client IP); rate limits and the deny-list key
            on it. Logs only ever show its fingerprint.
        kind: ``"user"``, ``"service"`` or ``"anonymous"``.
        claims: the verified JWT claims, for your own hooks; never logged.
    """

    id: str
    kind: str = "user"
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        from ._fingerprint import principal_fingerprint

        return f"Principal({principal_fingerprint(self.id)}, kind={self.kind!r})"


class PrincipalTypeError(TypeError):
    """An authenticator or login hook returned something that is no user id; the message names the hook. A bug in
    the app: the request gets a 500, the log one line per hook."""


def _is_id(value: object) -> bool:
    """A ``str``, ``int`` or :class:`uuid.UUID`, not a ``bool``. ``uuid`` is not imported for this check (with the
    ``platform`` module it brings, ~6 ms of a function's cold start): a UUID can only exist once ``uuid`` is loaded."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (str, int)):
        return True
    uuid = sys.modules.get("uuid")
    return uuid is not None and isinstance(value, uuid.UUID)


def to_principal(found: object, *, source: str) -> Principal:
    """The principal of what an authenticator or an app's login hook returned: the one rule for every adapter.

    A :class:`Principal` as is (its ``id`` a non-blank ``str``); a ``str``, ``int`` or :class:`uuid.UUID` as a user
    id; an object whose ``id`` (or Django's ``pk``) is one of those, by that; ``None``, ``""`` or ``False`` as
    "nobody is logged in" (401). Anything else - a method, a value object, a blank id - raises
    :class:`PrincipalTypeError`: ``str()`` of it could differ on every request (a bound method's text holds an
    address), which would give each request a principal of its own, past the rate limit and the deny-list.
    """
    if isinstance(found, Principal):
        if isinstance(found.id, str) and found.id.strip():
            return found
        raise PrincipalTypeError(
            f"{source} returned a Principal whose id is {_described(found.id)}; use a non-blank str"
        )
    if found is None or found is False or found == "":
        raise AuthenticationError(
            "Log in first: no signed-in user on this request.", code="unauthenticated", detail=f"{source} found no user"
        )
    value: object = found
    if not _is_id(found):
        for attribute in ("id", "pk"):
            value = getattr(found, attribute, None)
            if value is not None:
                break
        else:
            raise PrincipalTypeError(
                f"{source} returned a {type(found).__name__}; return a user id (str, int or UUID), an object whose "
                ".id or .pk is one, or None"
            )
    if not _is_id(value):
        raise PrincipalTypeError(
            f"{source} returned a user whose id is {_described(value)}; the id must be a str, int or UUID"
        )
    text = str(value)
    if not text.strip():
        raise PrincipalTypeError(f"{source} returned a blank user id")
    return Principal(text, kind="user")


def _described(value: object) -> str:
    if callable(value):
        return f"a {type(value).__name__} (call it: .id is a method here?)"
    return f"a {type(value).__name__}" if not isinstance(value, str) else "blank"


def hook_name(hook: object) -> str:
    """How a log line names an authenticator or a login hook."""
    name = getattr(hook, "__qualname__", None) or type(hook).__qualname__
    module = getattr(hook, "__module__", None) or type(hook).__module__
    return f"{module}.{name}" if module else str(name)


class AuthenticationError(Exception):
    """The caller is not allowed to mint credentials.

    ``status`` is 401 (no or bad credentials) or 403 (known caller, not allowed); ``code`` is the machine-readable
    reason sent back; ``message`` is a safe, generic sentence. ``detail`` is for the log only and never echoes a
    credential.
    """

    def __init__(self, message: str, *, status: int = 401, code: str = "unauthenticated", detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail


@runtime_checkable
class Authenticator(Protocol):
    """Decides who the caller is. Raise :class:`AuthenticationError` to refuse; a plain ``str`` return is a user id."""

    def __call__(self, request: ProxyRequest, /) -> Principal | str: ...


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when there is none."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def _missing() -> AuthenticationError:
    return AuthenticationError(
        "Authentication required: no credentials were sent.", code="unauthenticated", detail="no credentials"
    )


def _check_jwks_url(url: str) -> None:
    """The keys that decide who may mint sessions come over https (plain http only to this machine, for tests)."""
    from urllib.parse import urlsplit

    from .._config import is_loopback_host

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return
    # The URL itself is not echoed: it may carry a password or a token in its query. Its scheme and host are enough.
    scheme = parts.scheme if parts.scheme in ("http", "https", "ftp", "file", "ws", "wss") else None
    given = f"{scheme}:// to {parts.hostname}" if scheme and parts.hostname else "a URL without a scheme and host"
    raise ValueError(
        f"jwks_url must be an https:// URL (http:// only to localhost), not {given}: "
        "anyone on the path could otherwise swap the keys"
    )


def _jwt_reason(exc: Exception) -> str:
    """Why a JWT was refused, in words safe to show the caller (fixed sentences: nothing of the token is echoed)."""
    import jwt

    reasons: tuple[tuple[type[Exception], str], ...] = (
        (jwt.InvalidAudienceError, "the token is for another audience"),
        (jwt.InvalidIssuerError, "the token is from another issuer"),
        (jwt.ImmatureSignatureError, "the token is not valid yet"),
        (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
        (jwt.InvalidSignatureError, "the token's signature does not verify"),
        (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
        (jwt.PyJWKClientError, "no key of the identity provider matches the token"),
        (jwt.DecodeError, "the token is malformed"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            if isinstance(exc, jwt.MissingRequiredClaimError):
                return f"the token lacks the {exc.claim!r} claim"
            return reason
    return "the token was refused"


class SharedSecretAuth:
    """Service-to-service access: the caller sends ``Authorization: Bearer <secret>``.

    Several secrets may be active at once (rotation: add the new one, deploy callers, drop the old one). Comparison
    is constant-time over every configured secret, so timing does not reveal which one nearly matched.
    """

    may_block = False

    def __init__(self, secrets: str | Iterable[str], *, principal_id: str = "service") -> None:
        values = [secrets] if isinstance(secrets, str) else list(secrets)
        if not values or any(not isinstance(v, str) or len(v) < 16 for v in values):
            raise ValueError("shared secrets must be strings of at least 16 characters")
        self._secrets = tuple(Secret(v) for v in values)
        self._principal_id = principal_id

    def __call__(self, request: ProxyRequest, /) -> Principal:
        token = bearer_token(request.headers)
        if token is None:
            raise _missing()
        given = token.encode()
        matched = False
        for secret in self._secrets:
            # No early exit: every secret is compared, whatever the outcome.
            matched |= hmac.compare_digest(given, secret.reveal().encode())
        if not matched:
            raise AuthenticationError(
                "Invalid credentials: the secret is not recognized.",
                code="invalid_token",
                detail="shared secret mismatch",
            )
        return Principal(self._principal_id, kind="service")

    def __repr__(self) -> str:
        return f"SharedSecretAuth({', '.join(s.fingerprint for s in self._secrets)})"


class JWTAuth:
    """Verify your application's own JWT, from ``Authorization: Bearer`` or a named cookie.

    Exactly one of ``secret`` (HMAC) or ``jwks_url`` (asymmetric keys, fetched and cached with bounds: one fetch at
    a time, at most one per 30 s whatever ``kid`` callers send, ``jwks_timeout`` each; see ``_jwks.py``) is given.
    The algorithms are pinned (``alg: none`` and algorithm confusion are refused), and ``exp`` is always required;
    ``audience`` and ``issuer`` are checked when given (and you should give them).

    Args:
        secret: the HMAC key your app signs its tokens with.
        jwks_url: your identity provider's JWKS endpoint.
        audience: the expected ``aud``; one string or several.
        issuer: the expected ``iss``.
        algorithms: the accepted algorithms; default ``HS256`` with a secret, ``RS256`` and ``ES256`` with a JWKS.
        cookie_name: also accept the token from this cookie when there is no Authorization header.
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``/``iat``.
        subject_claim: the claim that names the principal (default ``sub``).
        jwks_timeout: seconds for one whole JWKS fetch (connect, TLS, head and body; redirects are not followed).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str | Collection[str] | None = None,
        issuer: str | None = None,
        algorithms: Iterable[str] | None = None,
        cookie_name: str | None = None,
        leeway: float = 30.0,
        subject_claim: str = "sub",
        jwks_timeout: float = 2.0,
    ) -> None:
        from .._extras import require_extra

        require_extra("JWTAuth", "proxy", "jwt")  # a missing PyJWT fails here, at configuration, not at the first call

        if (secret is None) == (jwks_url is None):
            raise ValueError("JWTAuth needs exactly one of secret= or jwks_url=")
        if jwks_url is not None:
            _check_jwks_url(jwks_url)
        if secret is not None:
            if len(secret.strip()) < 32 or len(set(secret)) < _MIN_DISTINCT_CHARS:
                raise ValueError(
                    "the JWT secret must be at least 32 characters, not padding or a repeated pattern "
                    "(RFC 7518 asks for 256 random bits)"
                )
            algs = tuple(algorithms or ("HS256",))
            allowed = _HMAC
        else:
            algs = tuple(algorithms or ("RS256", "ES256"))
            allowed = _ASYMMETRIC
        bad = [a for a in algs if a not in allowed]
        if not algs or bad:
            kind = "an HMAC secret" if secret is not None else "a JWKS"
            raise ValueError(f"algorithms {bad or algs} cannot be used with {kind}; allowed: {sorted(allowed)}")
        if not (isinstance(leeway, (int, float)) and 0 <= leeway <= _MAX_LEEWAY):
            raise ValueError(f"leeway must be between 0 and {_MAX_LEEWAY:g} seconds")
        self._secret = Secret(secret) if secret is not None else None
        self._jwks = JWKSKeys(jwks_url, timeout=jwks_timeout) if jwks_url else None
        self.jwks_url = jwks_url
        self.audience = audience if audience is None or isinstance(audience, str) else list(audience)
        self.issuer = issuer
        self.algorithms = algs
        self.cookie_name = cookie_name
        self.leeway = float(leeway)
        self.subject_claim = subject_claim
        missing = [name for name, value in (("audience", audience), ("issuer", issuer)) if not value]
        if missing:
            logger.warning(
                "orga proxy: JWTAuth without %s: a token your identity provider issued for another application "
                "(or any issuer holding the key) is accepted; set %s",
                " and ".join(missing),
                " and ".join(missing),
            )
        # A JWKS cache miss is a blocking HTTP fetch: the async core moves the call to a thread.
        self.may_block = self._jwks is not None

    def _token(self, request: ProxyRequest) -> str:
        token = bearer_token(request.headers)
        if token is None and self.cookie_name:
            token = request.cookies.get(self.cookie_name) or None
        if token is None:
            raise _missing()
        if len(token) > _MAX_TOKEN_CHARS:
            raise AuthenticationError(
                "Invalid credentials: the token is too long.", code="invalid_token", detail="token too long"
            )
        return token

    def __call__(self, request: ProxyRequest, /) -> Principal:
        import jwt

        token = self._token(request)
        try:
            header = jwt.get_unverified_header(token)
            # Checked before any key lookup, so `alg: none` or an HMAC-signed token never reaches the JWKS client.
            if header.get("alg") not in self.algorithms:
                raise jwt.InvalidAlgorithmError("algorithm not allowed")
            key: Any
            if self._jwks is not None:
                key = self._jwks.key(header.get("kid"))
            else:
                assert self._secret is not None
                key = self._secret.reveal()
            required = ["exp"] + (["aud"] if self.audience is not None else []) + (["iss"] if self.issuer else [])
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": required},
            )
        except UnknownKey:
            raise AuthenticationError("Invalid credentials.", code="invalid_token", detail="unknown kid") from None
        except jwt.ExpiredSignatureError:
            raise AuthenticationError(
                "Token expired: sign in again.", code="token_expired", detail="exp in the past"
            ) from None
        except jwt.PyJWKClientConnectionError as exc:
            # The identity provider is unreachable: the caller may well be legitimate, but we cannot tell.
            raise AuthenticationError(
                "Cannot verify credentials right now.", status=503, code="auth_unavailable", detail=type(exc).__name__
            ) from None
        except (jwt.PyJWTError, ValueError) as exc:
            # PyJWT messages name claims and algorithms, never the token itself; the caller gets a fixed sentence.
            raise AuthenticationError(
                f"Invalid credentials: {_jwt_reason(exc)}.",
                code="invalid_token",
                detail=f"{type(exc).__name__}: {str(exc)[:120]}",
            ) from None
        subject = claims.get(self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(
                "Invalid credentials: the token names no subject.", code="invalid_token", detail="no subject claim"
            )
        return Principal(subject, kind="user", claims=claims)

    def __repr__(self) -> str:
        source = f"jwks_url={self.jwks_url!r}" if self.jwks_url else f"secret={self._secret!r}"
        return f"JWTAuth({source}, algorithms={self.algorithms}, audience={self.audience!r}, issuer={self.issuer!r})"


def anonymous_bucket(address: str | None) -> str:
    """The principal of an anonymous caller: its IPv4 address, or the /64 network of its IPv6 address (one host
    commonly holds a whole /64, so per-address limits would give it 2**64 buckets)."""
    if not address:
        return "unknown"
    return _bucket_of(address)


# A caller makes many requests: its bucket is computed once (parsing and printing an address is ~3 us per request).
@functools.lru_cache(maxsize=4096)
def _bucket_of(address: str) -> str:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class AnonymousAuth:
    """Everyone is allowed; the principal is the client IP, IPv6 addresses grouped by /64 (so rate limits are per
    IPv4 address or IPv6 /64).

    For local development and demos only: ``create_app`` requires ``allow_anonymous=True`` to use it and logs a
    warning at start-up.
    """

    may_block = False

    def __call__(self, request: ProxyRequest, /) -> Principal:
        return Principal(anonymous_bucket(request.client_ip), kind="anonymous")

    def __repr__(self) -> str:
        return "AnonymousAuth()"


_REFUSAL_RANK = {"unauthenticated": 0, "invalid_token": 1, "token_expired": 2, "auth_unavailable": 3}


class AnyOf:
    """Accept a caller any of ``authenticators`` accepts, tried in order (say, service secret, then user JWT).

    When all refuse, the most telling refusal is raised (an unreachable identity provider, then an expired token,
    then an invalid one, then "no credentials"; a shared-secret mismatch ranks below another authenticator's verdict
    on the same token), so an expired JWT is reported, and logged, as expired, not as missing or as a wrong secret.
    """

    def __init__(self, *authenticators: Authenticator) -> None:
        if not authenticators:
            raise ValueError("AnyOf needs at least one authenticator")
        self.authenticators = authenticators
        self.may_block = any(getattr(a, "may_block", False) for a in authenticators)

    def __call__(self, request: ProxyRequest, /) -> Principal | str:
        refusals: list[tuple[int, int, AuthenticationError]] = []
        for index, authenticate in enumerate(self.authenticators):
            try:
                return authenticate(request)
            except AuthenticationError as exc:
                # A shared secret that does not match says nothing about the token (a JWT, say, that another
                # authenticator found expired): it ranks below their refusals of the same code.
                weak = isinstance(authenticate, SharedSecretAuth) and exc.code == "invalid_token"
                refusals.append((_REFUSAL_RANK.get(exc.code, 1) * 2 - weak, -index, exc))
        raise max(refusals, key=lambda r: r[:2])[2]

    def __repr__(self) -> str:
        return f"AnyOf({', '.join(repr(a) for a in self.authenticators)})"
