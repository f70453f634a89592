"""The route's flows, without I/O: what a request goes through, in order, as generators that yield the steps
needing I/O (:data:`Effect`) to a driver (:mod:`._drivers`) and receive their results. Written once, driven from
async code and from sync code alike.

The route (:func:`route_flow`):

    request id -> shape (header and body size) -> Host -> CORS origin -> method -> kill switch -> authenticate ->
    deny-list -> body (only now, once the caller is known) -> rate limit (global ceiling, then principal) ->
    circuit breaker -> concurrency cap -> Orga (with the remaining deadline) -> 200 JSON

Any refusal before "Orga" costs no upstream call. The events beacon (:func:`beacon_flow`) is a second flow through
the same checks, ending in a log line instead of Orga.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .._exceptions import (
    OrgaAIAuthenticationError,
    OrgaAIConfigurationError,
    OrgaAIError,
    OrgaAIRateLimitError,
    OrgaAITimeoutError,
)
from .._ice import apply_ice_policy
from ._accesslog import write_access_line
from ._auth import AuthenticationError, Principal, PrincipalTypeError, to_principal
from ._cors import ALLOWED_METHODS, METHODS
from ._errors import (
    AsyncTimeout,
    ProxyError,
    _DeadlineExceeded,
    _is_upstream_failure,
    _retry_after,
    error_for,
    json_error,
    log_refusal,
)
from ._fingerprint import principal_fingerprint
from ._ratelimit import RateLimitDecision, RateLimiter, RateLimiterUnavailable
from ._request import _REQUEST_ID, ProxyRequest, ProxyResponse, json_bytes, security_headers
from ._tracing import annotate, current_request_span

if TYPE_CHECKING:
    from .._models import SessionConfig
    from ._core import ProxyCore
    from ._events import EventBeacon

__all__ = [
    "BodyReader",
    "Effect",
    "Exchange",
    "Flow",
    "beacon_flow",
    "has_body",
    "principal_key",
    "report_once",
    "route_flow",
]

logger = logging.getLogger("orga_ai.proxy")
events_logger = logging.getLogger("orga_ai.proxy.events")

_MIN_UPSTREAM_SECONDS = 0.05
ICE_POLICY_RETRY_SECONDS = 30.0
"""After the ICE policy left no server of a config, requests are refused for this long without asking Orga (each ask
spends a token for nothing); then one request asks again, in case Orga's servers changed."""
_STATE = re.compile(r"[a-z][a-z_]{0,31}")


# -- effects a flow asks its driver to perform ------------------------------------------------------------------------


class Authenticate(NamedTuple):
    request: ProxyRequest


class Limit(NamedTuple):
    key: str
    limiter: RateLimiter | None = None  # None: the route's own


class Upstream(NamedTuple):
    deadline: float


class ReadBody(NamedTuple):
    """Receive the request's body, now that its head passed: the route's reader answers True when whole, False past
    the cap, None when the client went away; the beacon's answers the bytes, or None past its cap. No body byte is
    waited for before the caller is known."""


READ_BODY = ReadBody()
BodyReader = Callable[[], Awaitable[Any]]
"""What an async adapter hands :meth:`ProxyCore.handle` to receive a POST's body: see :class:`ReadBody`."""

Effect = Authenticate | Limit | Upstream | ReadBody
Flow = Generator[Effect, Any, ProxyResponse]


@dataclass(slots=True)
class Exchange:
    """What one request accumulates for its response headers and its access-log line."""

    request: ProxyRequest
    request_id: str
    started: float
    deadline_at: float
    cors: dict[str, str] = field(default_factory=dict)
    principal: Principal | None = None
    limit_headers: dict[str, str] = field(default_factory=dict)
    upstream_ids: tuple[str | None, ...] = ()
    token_fp: str | None = None
    upstream_seconds: float | None = None
    detail: str = ""
    logged: bool = True  # the route's requests get an access line and count in the metrics; the beacon's not

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()


# -- small shared rules -----------------------------------------------------------------------------------------------


_reported: set[str] = set()
_reported_lock = threading.Lock()


def report_once(exc: BaseException) -> None:
    """Log an app bug (with its traceback) the first time it happens in this process; later ones at DEBUG."""
    message = str(exc)
    with _reported_lock:
        first = message not in _reported and len(_reported) < 64
        if first:
            _reported.add(message)
    if first:
        logger.error("orga proxy: %s", message, exc_info=exc)
    else:
        logger.debug("orga proxy: %s", message)


def has_body(headers: Mapping[str, str]) -> bool:
    """Whether a request's head announces a body (a non-zero Content-Length, or any Transfer-Encoding)."""
    return "transfer-encoding" in headers or headers.get("content-length", "").strip() not in ("", "0")


def principal_key(principal: Principal) -> str:
    """The rate-limit key of a principal: a hash, so the shared storage holds no user ids or IPs."""
    return _principal_key(principal.kind, principal.id)


# A caller makes many requests: hash its id once (bounded caches of short strings, a few hundred KiB at most).
@functools.lru_cache(maxsize=4096)
def _principal_key(kind: str, principal_id: str) -> str:
    return hashlib.sha256(f"{kind}:{principal_id}".encode()).hexdigest()[:32]


def _shape_check(core: ProxyCore, request: ProxyRequest) -> None:
    size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
    if size > core.max_header_bytes:
        raise ProxyError.of("headers_too_large", detail=f"{size} header bytes")
    # WSGI servers report a missing length as an empty CONTENT_LENGTH: treat it as absent.
    length = request.headers.get("content-length", "").strip()
    if length:
        if not (length.isascii() and length.isdigit()):  # str.isdigit() also takes "²" and other digits
            raise ProxyError.of("bad_request", "Invalid Content-Length.")
        if int(length) > core.max_body_bytes:
            raise ProxyError.of("body_too_large", detail=f"{length} body bytes")


def _admit(core: ProxyCore, ex: Exchange) -> Generator[Effect, Any, Principal | ProxyResponse]:
    """The checks every flow makes of a request, from its head: shape, Host, CORS (a preflight is answered here),
    method, kill switch, authentication, deny-list. Returns the principal, or the preflight's response."""
    request = ex.request
    _shape_check(core, request)
    if core.hosts.allowed:
        core.hosts.check(request)
    ex.cors = core.cors.check(request)
    if request.method == "OPTIONS":
        return finish(core, ex, core.cors.preflight(request, ex.cors), "preflight")
    if request.method not in ALLOWED_METHODS:
        raise ProxyError.of("method_not_allowed", headers={"Allow": METHODS})
    if core.kill_switch.check() == "all":
        raise ProxyError.of("minting_disabled", headers={"Retry-After": "30"})
    found = yield Authenticate(request)
    principal = to_principal(found, source=core.auth_name)
    ex.principal = principal
    if core.kill_switch.check(principal.id) is not None:
        raise ProxyError.of("principal_denied")
    return principal


def _refused(core: ProxyCore, ex: Exchange, exc: Exception) -> ProxyResponse:
    """The answer to a refusal raised by a flow: mapped (:func:`error_for`), counted and logged."""
    if isinstance(exc, PrincipalTypeError):
        report_once(exc)  # a hook returning no user id: a 500 each time, one ERROR line per hook
    elif not isinstance(exc, (ProxyError, AuthenticationError, RateLimiterUnavailable)):
        # A custom authenticator's bug, say: the caller gets a bare 500, the log gets the traceback.
        logger.error("orga proxy: unexpected error %s", type(exc).__name__, exc_info=exc)
    return refuse(core, ex, error_for(exc))


def refuse(core: ProxyCore, ex: Exchange, problem: ProxyError) -> ProxyResponse:
    ex.detail = problem.detail
    if problem.status in (401, 403):
        core.metrics.record(core.metrics.denied, problem.code)(1.0)
        log_refusal(problem, ex.request_id)
    headers = dict(ex.limit_headers)
    headers.update(problem.headers)
    response = json_error(problem.status, problem.code, problem.message, ex.request_id, headers)
    return finish(core, ex, response, problem.code)


def finish(core: ProxyCore, ex: Exchange, response: ProxyResponse, outcome: str) -> ProxyResponse:
    headers = {**security_headers(), "X-Request-ID": ex.request_id, **ex.cors, **response.headers}
    if response.status != 204:
        headers.setdefault("Content-Type", "application/json")
    response.headers = headers
    if not ex.logged:
        return response
    core.metrics.record(core.metrics.requests, outcome)(1.0)
    write_access_line(ex, response.status, outcome)
    span = current_request_span()
    if span is not None:
        principal = ex.principal
        annotate(
            span,
            request_id=ex.request_id,
            status=response.status,
            outcome=outcome,
            principal_fingerprint=principal_fingerprint(principal.id) if principal else None,
            principal_kind=principal.kind if principal else None,
            limit_headers=ex.limit_headers,
            breaker_state=core.breaker.state,
            upstream_ids=ex.upstream_ids,
            token_fingerprint=ex.token_fp,
        )
    return response


# -- the route --------------------------------------------------------------------------------------------------------


def route_flow(core: ProxyCore, request: ProxyRequest, deadline: float | None = None) -> Flow:
    """One request of the route, already through :meth:`ProxyCore.prepare` (its drivers set the logging context
    first); ``deadline``: seconds the caller may wait if fewer than the route's own (a function's time left)."""
    started = time.monotonic()
    assert request.request_id is not None
    budget = core.deadline if deadline is None else min(core.deadline, deadline)
    ex = Exchange(request, request.request_id, started, started + budget)
    try:
        admitted = yield from _admit(core, ex)
        if isinstance(admitted, ProxyResponse):
            return admitted
        principal = admitted
        if request.method == "POST" and has_body(request.headers):
            whole = yield READ_BODY
            if whole is False:
                raise ProxyError.of("body_too_large")
            if whole is None:
                raise ProxyError.of("bad_request", "The request body did not arrive.", detail="client gone")

        decision: RateLimitDecision | None = yield Limit(principal_key(principal))
        if decision is not None:
            ex.limit_headers = decision.headers()
            if not decision.allowed:
                core.metrics.record(core.metrics.rate_limited, decision.scope)(1.0)
                raise ProxyError.of("rate_limited", detail=f"{decision.scope} limit")

        allowed, wait = core.breaker.acquire()
        if not allowed:
            core.metrics.breaker_rejected.inc()
            raise ProxyError.of(
                "upstream_unavailable", headers={"Retry-After": _retry_after(wait)}, detail="circuit breaker open"
            )
        if not core.cap.try_enter():
            core.breaker.release()
            core.metrics.shed.inc()
            raise ProxyError.of("overloaded", headers={"Retry-After": "1"}, detail="concurrency cap reached")
        return (yield from _upstream(core, ex))
    except Exception as exc:  # noqa: BLE001 - every refusal and every bug becomes an answer (_refused)
        return _refused(core, ex, exc)


def _upstream(core: ProxyCore, ex: Exchange) -> Flow:
    held = core.ice_policy_refusal
    if held is not None and time.monotonic() < held[0]:
        # The policy left nothing of Orga's last config moments ago: refuse without spending another token.
        return refuse(core, ex, error_for(OrgaAIConfigurationError(held[1], step="ice")))
    core.metrics.in_flight_add(1.0)
    began = time.monotonic()
    settled = False
    try:
        remaining = ex.remaining()
        if remaining < _MIN_UPSTREAM_SECONDS:
            raise _DeadlineExceeded()
        try:
            config: SessionConfig = yield Upstream(remaining)
            try:
                config = apply_ice_policy(config, core.ice_policy)
            except OrgaAIConfigurationError as exc:
                # A setting, not a bug: one line (no traceback), then no upstream call for a while.
                core.ice_policy_refusal = (time.monotonic() + ICE_POLICY_RETRY_SECONDS, exc.message)
                logger.error(
                    "orga proxy: %s; refusing for %g s without asking Orga", exc.message, ICE_POLICY_RETRY_SECONDS
                )
                raise
        except OrgaAITimeoutError:
            raise
        except (OrgaAIError, AsyncTimeout) as exc:
            if ex.remaining() <= 0 and not isinstance(exc, (OrgaAIRateLimitError, OrgaAIAuthenticationError)):
                raise _DeadlineExceeded() from exc
            raise
    except Exception as exc:
        ex.upstream_seconds = time.monotonic() - began
        core.metrics.record(core.metrics.upstream_latency, "error")(ex.upstream_seconds)
        ex.upstream_ids = (getattr(exc, "request_id", None),)
        if _is_upstream_failure(exc):
            core.breaker.record_failure()
        else:
            core.breaker.record_success()  # Orga answered: it is up, even if it said no
        settled = True
        problem = error_for(exc)
        if problem.status == 500 and not isinstance(exc, OrgaAIConfigurationError):
            logger.error("orga proxy: unexpected error %s", type(exc).__name__, exc_info=exc)
        return refuse(core, ex, problem)
    finally:
        core.metrics.in_flight_add(-1.0)
        core.cap.leave()
        if not settled and ex.upstream_seconds is None:
            # Reached only when the generator is closed or cancelled mid-call (the caller went away).
            core.breaker.release()
    ex.upstream_seconds = time.monotonic() - began
    core.metrics.record(core.metrics.upstream_latency, "ok")(ex.upstream_seconds)
    core.breaker.record_success()
    core.last_upstream_success = time.monotonic()
    ex.upstream_ids = config.request_ids
    ex.token_fp = config.token_fingerprint
    body = json_bytes(config.to_client_json())
    headers = {"Content-Type": "application/json", **ex.limit_headers}
    return finish(core, ex, ProxyResponse(200, headers, body), "ok")


# -- the events beacon ------------------------------------------------------------------------------------------------


def _field(data: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ProxyError.of("bad_request", f"'{name}' is missing or malformed.")
    return value


def beacon_flow(beacon: EventBeacon, request: ProxyRequest) -> Flow:
    """One beacon, ``POST {path}/events``: the route's checks from the head (:func:`_admit`: Host, CORS, kill switch,
    authentication, deny-list), then its body (1 KiB at most), its own rate limit, and one log line
    ``{request_id, conversation_id, state}`` in place of Orga."""
    core = beacon.core
    started = time.monotonic()
    assert request.request_id is not None
    ex = Exchange(request, request.request_id, started, started + core.deadline, logged=False)
    try:
        admitted = yield from _admit(core, ex)
        if isinstance(admitted, ProxyResponse):
            return admitted
        body = yield READ_BODY
        if body is None:
            raise ProxyError.of("body_too_large")
        decision: RateLimitDecision | None = yield Limit(principal_key(admitted), beacon.rate_limiter)
        if decision is not None and not decision.allowed:
            raise ProxyError.of("rate_limited", "Too many events; slow down.", headers=decision.headers())
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise ProxyError.of("bad_request", "The body must be a JSON object.")
        line = {
            "event": "orga_session_event",
            "request_id": _field(data, "request_id", _REQUEST_ID),
            "conversation_id": _field(data, "conversation_id", _REQUEST_ID),  # the same grammar
            "state": _field(data, "state", _STATE),
            "principal": principal_fingerprint(admitted.id),
            "beacon_request_id": ex.request_id,
        }
    except Exception as exc:  # noqa: BLE001 - every refusal and every bug becomes an answer (_refused)
        return _refused(core, ex, exc)
    events_logger.info(json.dumps(line, separators=(",", ":")), extra={"orga": line})
    return finish(core, ex, ProxyResponse(204, {}, b""), "ok")
