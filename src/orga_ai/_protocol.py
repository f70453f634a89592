"""The sans-IO core: how requests to Orga Cloud are built, how answers are read, and the token -> ICE flow.

Nothing here performs I/O. A flow is a generator that yields :class:`Request` (send it and send back a
:class:`Response` or a :class:`TransportFailure`) or :class:`Sleep` (sleep, send back None), and finally returns its
result. ``OrgaAI`` and ``AsyncOrgaAI`` are thin drivers of the same flows, which keeps their behaviour identical.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from ._config import USER_AGENT, Settings
from ._exceptions import (
    OrgaAIConnectionError,
    OrgaAIError,
    OrgaAIInvalidResponseError,
    OrgaAITimeoutError,
    Step,
    error_for_status,
)
from ._models import EphemeralToken, IceServer, SessionConfig
from ._retry import Retryability, RetryBudget, backoff, classify_status, parse_retry_after, should_retry
from ._secret import fingerprint

__all__ = [
    "FailureKind",
    "Flow",
    "Request",
    "Response",
    "Sleep",
    "TransportFailure",
    "ice_flow",
    "parse_ice_response",
    "parse_ice_servers_payload",
    "parse_token_response",
    "session_flow",
    "token_flow",
]

logger = logging.getLogger("orga_ai")

T = TypeVar("T")

_MAX_TOKEN_LENGTH = 16 * 1024
_MAX_ICE_SERVERS = 32
_MAX_URLS = 32
_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
_MAX_MESSAGE = 200


# The records a flow and its driver exchange are NamedTuples: as immutable as frozen dataclasses, and defined about
# seven times faster, which counts in a function's cold start (each frozen dataclass execs five generated methods).
class Request(NamedTuple):
    """One HTTP request for a driver to send. ``timeout`` bounds this attempt, connect and read together."""

    method: str
    url: str
    headers: Mapping[str, str]
    step: Step
    timeout: float
    content: bytes = b""

    def __repr__(self) -> str:  # headers carry the key or a token: never print them
        return f"Request({self.method} {self.url}, step={self.step!r}, timeout={self.timeout:.3f})"


class Response(NamedTuple):
    """What a driver read back. Header names are lower case; ``truncated`` is set when the body passed the cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float = 0.0
    truncated: bool = False

    @property
    def request_id(self) -> str | None:
        value = self.headers.get("x-request-id")
        if value is None:
            return None
        value = value.strip()
        return value[:128] if value and value.isprintable() else None


class FailureKind(enum.Enum):
    """Why no response came back, as far as the drivers can tell."""

    CONNECT = "connect"
    """The request never left: refused, unreachable, DNS, TLS handshake."""
    CONNECT_TIMEOUT = "connect_timeout"
    """The connection was not made in time: the request never left."""
    READ_TIMEOUT = "read_timeout"
    """The request was sent but no whole answer came in time: ambiguous."""
    BROKEN = "broken"
    """The connection broke after the request was sent: ambiguous."""


class TransportFailure(NamedTuple):
    """A failed attempt, reported by a driver. ``detail`` is a short, secret-free description."""

    kind: FailureKind
    detail: str
    exception: BaseException | None = None
    elapsed: float = 0.0


class Sleep(NamedTuple):
    """Ask the driver to sleep before the next attempt."""

    seconds: float


Outcome = Response | TransportFailure | None
Flow = Generator[Request | Sleep, Outcome, T]

_STEP_NAMES: dict[str, str] = {"token": "token request", "ice": "ICE servers request"}


# --------------------------------------------------------------------------------------------------------------------
# Parsing


def _fail(step: Step, what: str, response: Response | None = None) -> OrgaAIInvalidResponseError:
    return OrgaAIInvalidResponseError(
        f"{_STEP_NAMES[step]}: invalid response from Orga Cloud: {what}",
        status=response.status if response is not None else None,
        request_id=response.request_id if response is not None else None,
        step=step,
    )


def _decode_json(step: Step, response: Response) -> Any:
    if response.truncated:
        raise _fail(step, "the body is larger than the size limit", response)
    body = response.body
    if not body.strip():
        raise _fail(step, "the body is empty", response)
    head = body.lstrip()[:15].lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        raise _fail(step, "got an HTML page instead of JSON", response)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail(step, "the body is not valid JSON", response) from None


def _aware(moment: dt.datetime) -> dt.datetime:
    # Orga sends naive ISO timestamps that mean UTC.
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _seconds_field(step: Step, name: str, value: Any, response: Response | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(step, f"{name!r} must be a number of seconds", response)
    if not math.isfinite(value) or value <= 0 or value > 10 * 365 * 86_400:
        raise _fail(step, f"{name!r} must be a positive number of seconds", response)
    return float(value)


def _jwt_expiry(token: str) -> dt.datetime | None:
    """The ``exp`` claim of a JWT, read without verifying the signature, or None when it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 8192:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return None
    try:
        return dt.datetime.fromtimestamp(exp, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def parse_token_response(response: Response, *, now: dt.datetime | None = None) -> EphemeralToken:
    """Read a token from either wire form: ``{"ephemeral_token", "expires_at"}`` or ``{"ephemeralToken", "ttl"}``."""
    step: Step = "token"
    data = _decode_json(step, response)
    if not isinstance(data, dict):
        raise _fail(step, f"expected a JSON object, got {type(data).__name__}", response)
    if "ephemeral_token" in data:
        token = data["ephemeral_token"]
    elif "ephemeralToken" in data:
        token = data["ephemeralToken"]
    else:
        raise _fail(step, "no 'ephemeral_token' or 'ephemeralToken' field", response)
    if not isinstance(token, str):
        raise _fail(step, f"the token must be a string, got {type(token).__name__}", response)
    if not token.strip():
        raise _fail(step, "the token is empty", response)
    if len(token) > _MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token:
        raise _fail(step, "the token contains characters a bearer token cannot have", response)

    token_type = data.get("token_type", "bearer")
    if not isinstance(token_type, str):
        raise _fail(step, "'token_type' must be a string", response)

    now = now or dt.datetime.now(dt.timezone.utc)
    expires_at: dt.datetime | None = None
    if data.get("expires_at") is not None:
        raw = data["expires_at"]
        if isinstance(raw, str):
            try:
                expires_at = _aware(dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00")))
            except ValueError:
                raise _fail(step, "'expires_at' is not an ISO 8601 timestamp", response) from None
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
            try:
                expires_at = dt.datetime.fromtimestamp(raw, tz=dt.timezone.utc)
            except (OverflowError, OSError, ValueError):
                raise _fail(step, "'expires_at' is out of range", response) from None
        else:
            raise _fail(step, "'expires_at' must be an ISO 8601 string", response)
    else:
        for name in ("ttl", "expires_in"):
            if data.get(name) is not None:
                expires_at = now + dt.timedelta(seconds=_seconds_field(step, name, data[name], response))
                break
    if expires_at is None:
        expires_at = _jwt_expiry(token)
    return EphemeralToken(token, expires_at, token_type.lower(), response.request_id)


def _parse_ice_entry(index: int, entry: Any, response: Response | None) -> IceServer:
    step: Step = "ice"
    if not isinstance(entry, dict):
        raise _fail(step, f"ICE server #{index} is not an object", response)
    urls = entry.get("urls", entry.get("url"))
    if urls is None:
        raise _fail(step, f"ICE server #{index} has no 'urls'", response)
    if isinstance(urls, str):
        url_list = [urls]
    elif isinstance(urls, list) and urls:
        url_list = urls
    else:
        raise _fail(step, f"ICE server #{index}: 'urls' must be a string or a non-empty list of strings", response)
    if len(url_list) > _MAX_URLS:
        raise _fail(step, f"ICE server #{index} lists too many URLs", response)
    for url in url_list:
        if not isinstance(url, str) or not url.strip():
            raise _fail(step, f"ICE server #{index}: every URL must be a non-empty string", response)
        if not url.lower().startswith(_ICE_SCHEMES):
            raise _fail(step, f"ICE server #{index}: URL scheme must be stun:, stuns:, turn: or turns:", response)
    values: dict[str, str | None] = {}
    for name in ("username", "credential"):
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            raise _fail(step, f"ICE server #{index}: {name!r} must be a string", response)
        values[name] = value
    return IceServer(
        urls if isinstance(urls, str) else tuple(url_list),
        values["username"],
        values["credential"],
    )


def parse_ice_servers_payload(payload: Any, response: Response | None = None) -> tuple[IceServer, ...]:
    """Read ICE servers from ``{"iceServers": [...]}``, ``{"ice_servers": [...]}`` or a bare array."""
    step: Step = "ice"
    if isinstance(payload, dict):
        if "iceServers" in payload:
            servers = payload["iceServers"]
        elif "ice_servers" in payload:
            servers = payload["ice_servers"]
        else:
            raise _fail(step, "no 'iceServers' field", response)
    else:
        servers = payload
    if not isinstance(servers, list):
        raise _fail(step, f"the ICE server list must be an array, got {type(servers).__name__}", response)
    if not servers:
        raise _fail(step, "the ICE server list is empty", response)
    if len(servers) > _MAX_ICE_SERVERS:
        raise _fail(step, "the ICE server list is implausibly long", response)
    return tuple(_parse_ice_entry(i, entry, response) for i, entry in enumerate(servers))


def parse_ice_response(response: Response) -> tuple[IceServer, ...]:
    """Read the ICE servers of a 2xx ice-config response."""
    return parse_ice_servers_payload(_decode_json("ice", response), response)


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _error_details(body: bytes) -> tuple[str | None, str | None]:
    """Message and code from Orga's error envelope, a nested envelope, or a FastAPI ``detail``; best effort."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    for _ in range(3):  # the 401 of client-secrets nests an envelope inside "message"
        if not isinstance(data, dict):
            return None, None
        if isinstance(data.get("error"), dict):
            err = data["error"]
            message, code = err.get("message"), err.get("code") or err.get("type")
            code = code if isinstance(code, str) else None
            if isinstance(message, str):
                stripped = message.strip()
                if stripped.startswith("{"):
                    try:
                        data = json.loads(stripped)
                        continue
                    except ValueError:
                        pass
                return message, code
            return None, code
        detail = data.get("detail")
        if isinstance(detail, str):
            return detail, None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            msg = detail[0].get("msg")
            loc = detail[0].get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else None
            if isinstance(msg, str):
                return (f"{where}: {msg}" if where else msg), "validation_error"
        if isinstance(data.get("message"), str):
            return data["message"], None
        return None, None
    return None, None


def error_from_response(
    step: Step, response: Response, secrets: tuple[str, ...] = (), *, retry_after: float | None = None
) -> OrgaAIError:
    """The typed error for a non-2xx answer, with Orga's own message when it sent one.

    ``retry_after`` is the response's parsed ``Retry-After`` (the caller parses it once, for the error and for its own
    retry decision); it becomes ``OrgaAIRateLimitError.retry_after`` on a 429.
    """
    message, code = _error_details(response.body) if not response.truncated else (None, None)
    text = f"{_STEP_NAMES[step]} failed: Orga Cloud answered HTTP {response.status}"
    if message:
        text += f": {_clean(message, secrets)}"
    if code is not None:
        code = _clean(code, secrets)[:64]
    return error_for_status(
        response.status, text, code=code, request_id=response.request_id, step=step, retry_after=retry_after
    )


def error_from_failure(step: Step, failure: TransportFailure) -> OrgaAIError:
    what = _STEP_NAMES[step]
    if failure.kind in (FailureKind.CONNECT_TIMEOUT, FailureKind.READ_TIMEOUT):
        phase = "connecting" if failure.kind is FailureKind.CONNECT_TIMEOUT else "waiting for the answer"
        return OrgaAITimeoutError(f"{what} timed out {phase} ({failure.detail})", step=step)
    phase = "could not connect" if failure.kind is FailureKind.CONNECT else "connection broke"
    return OrgaAIConnectionError(f"{what} failed: {phase} to Orga Cloud ({failure.detail})", step=step)


def _retryability(outcome: Response | TransportFailure) -> Retryability:
    if isinstance(outcome, Response):
        return classify_status(outcome.status)
    if outcome.kind in (FailureKind.CONNECT, FailureKind.CONNECT_TIMEOUT):
        return Retryability.SAFE
    return Retryability.AMBIGUOUS


# --------------------------------------------------------------------------------------------------------------------
# Flows


@dataclass(slots=True)
class CallContext:
    """What one public call carries through its flow: settings, per-request timeout, deadline and policy."""

    settings: Settings
    timeout: float
    deadline_at: float | None = None
    """An absolute ``clock()`` reading past which nothing may be sent or slept."""
    budget: RetryBudget | None = None
    clock: Callable[[], float] = time.monotonic
    rng: random.Random | None = None

    def remaining(self) -> float | None:
        return None if self.deadline_at is None else self.deadline_at - self.clock()


def _headers(settings: Settings, bearer: str, *, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = dict(settings.default_headers)
    headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
    if extra:
        headers.update(extra)
    headers["Authorization"] = f"Bearer {bearer}"
    return headers


def _deadline_error(step: Step, ctx: CallContext, cause: OrgaAIError | None = None) -> OrgaAITimeoutError:
    extra = f"; last error: {cause.message}" if cause is not None else ""
    error = OrgaAITimeoutError(f"{_STEP_NAMES[step]}: the call's deadline ran out{extra}", step=step)
    if cause is not None:
        error.status, error.request_id = cause.status, cause.request_id
    return error


def _attempts(
    ctx: CallContext,
    step: Step,
    build: Callable[[float], Request],
    parse: Callable[[Response], T],
    *,
    idempotent: bool,
    secrets: Callable[[], tuple[str, ...]],
) -> Flow[T]:
    """Send ``build(timeout)`` until it succeeds or the retry policy, the budget or the deadline says stop."""
    settings = ctx.settings
    attempt = 0
    ambiguous_retries = 0
    last_error: OrgaAIError | None = None
    while True:
        remaining = ctx.remaining()
        if remaining is not None and remaining <= 0:
            raise _deadline_error(step, ctx, last_error)
        timeout = ctx.timeout if remaining is None else min(ctx.timeout, remaining)
        outcome = yield build(timeout)
        if outcome is None:  # pragma: no cover - a driver bug, not a user error
            raise RuntimeError("the driver sent no outcome for a request")

        if isinstance(outcome, Response) and 200 <= outcome.status < 300:
            if ctx.budget is not None:
                ctx.budget.record_success()
            if logger.isEnabledFor(logging.DEBUG):  # the arguments cost more than the call when it logs nothing
                logger.debug(
                    "%s: HTTP %d in %.1f ms (request id %s, attempt %d)",
                    step, outcome.status, outcome.elapsed * 1000, outcome.request_id, attempt + 1,
                )
            return parse(outcome)

        if isinstance(outcome, Response):
            advised = parse_retry_after(outcome.headers.get("retry-after"))
            error = error_from_response(step, outcome, secrets(), retry_after=advised)
            logger.debug(
                "%s: HTTP %d in %.1f ms (request id %s, attempt %d)",
                step, outcome.status, outcome.elapsed * 1000, outcome.request_id, attempt + 1,
            )
        else:
            advised = None
            error = error_from_failure(step, outcome)
            logger.debug("%s: %s after %.1f ms (attempt %d)", step, outcome.kind.value, outcome.elapsed * 1000,
                         attempt + 1)
        last_error = error
        retryability = _retryability(outcome)
        if not should_retry(
            retryability=retryability,
            idempotent=idempotent,
            attempt=attempt,
            max_retries=settings.max_retries,
            ambiguous_retries=ambiguous_retries,
        ):
            raise _with_cause(error, outcome)

        delay = backoff(attempt, rng=ctx.rng)
        if advised is not None:
            if advised > settings.max_retry_after:
                logger.debug("%s: Retry-After %.1f s is past the %.1f s cap; not retrying",
                             step, advised, settings.max_retry_after)
                raise _with_cause(error, outcome)
            delay = advised
        remaining = ctx.remaining()
        if remaining is not None and delay >= remaining:
            logger.debug("%s: the next attempt would start past the deadline; giving up", step)
            raise _with_cause(error, outcome)
        if ctx.budget is not None and not ctx.budget.try_spend():
            logger.debug("%s: retry budget exhausted; not retrying", step)
            raise _with_cause(error, outcome)
        if retryability is Retryability.AMBIGUOUS:
            ambiguous_retries += 1
        attempt += 1
        logger.debug("%s: retrying in %.3f s (attempt %d of %d)", step, delay, attempt + 1, settings.max_retries + 1)
        if delay > 0:
            yield Sleep(delay)


def _with_cause(error: OrgaAIError, outcome: Response | TransportFailure) -> OrgaAIError:
    if isinstance(outcome, TransportFailure) and outcome.exception is not None:
        error.__cause__ = outcome.exception
    return error


def _uuid4() -> str:
    # A random (version 4) UUID without importing uuid, which pulls in platform and ctypes-adjacent modules.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def token_flow(ctx: CallContext) -> Flow[EphemeralToken]:
    """POST /v1/realtime/client-secrets with the API key; every attempt carries one ``Idempotency-Key``."""
    settings = ctx.settings
    idempotency_key = _uuid4()
    key = settings.api_key.reveal()

    def build(timeout: float) -> Request:
        headers = _headers(
            settings, key, extra={"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        )
        return Request("POST", settings.token_url, headers, "token", timeout)

    token = yield from _attempts(
        ctx, "token", build, parse_token_response, idempotent=False, secrets=lambda: (key,)
    )
    if logger.isEnabledFor(logging.DEBUG):  # a fingerprint is a SHA-256: only when it is logged
        logger.debug(
            "token: minted %s, expires %s",
            token.fingerprint,
            token.expires_at.isoformat() if token.expires_at else "at an unknown time",
        )
    return token


def ice_flow(ctx: CallContext, token: str) -> Flow[tuple[tuple[IceServer, ...], str | None]]:
    """GET /v1/realtime/ice-config with the ephemeral token; returns the servers and the upstream request id."""
    if not isinstance(token, str) or not token.strip():
        raise OrgaAIError("fetch_ice_servers needs a non-empty ephemeral token string", step="ice")
    settings = ctx.settings

    def build(timeout: float) -> Request:
        return Request("GET", settings.ice_url, _headers(settings, token), "ice", timeout)

    def parse(response: Response) -> tuple[tuple[IceServer, ...], str | None]:
        return parse_ice_response(response), response.request_id

    servers, request_id = yield from _attempts(
        ctx, "ice", build, parse, idempotent=True, secrets=lambda: (token, settings.api_key.reveal())
    )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("ice: %d server(s) for token %s", len(servers), fingerprint(token))
    return servers, request_id


def session_flow(ctx: CallContext) -> Flow[SessionConfig]:
    """The whole exchange: one token, then ICE servers with that token (never a second token if ICE fails)."""
    token = yield from token_flow(ctx)
    servers, ice_request_id = yield from ice_flow(ctx, token.value)
    return SessionConfig(token.value, servers, token.expires_at, token.request_id, ice_request_id)
