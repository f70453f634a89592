"""The framework-neutral core of the client-secrets route: who may call, how much, what JSON comes back, and which
error becomes which status. Every adapter (Starlette, FastAPI, Flask, Django) only translates its request into a
:class:`ProxyRequest` and a :class:`ProxyResponse` back.

The route's logic is written once, as a generator (:meth:`ProxyCore._flow`) that yields the three things needing
I/O (authenticate, count against the rate limit, ask Orga) and receives their results; :meth:`ProxyCore.handle`
and :meth:`ProxyCore.handle_sync` are thin drivers that await or call them. The order of a request:

    request id -> shape checks (method, header and body size) -> CORS origin -> authenticate -> deny-list /
    kill switch -> rate limit (principal, then global) -> circuit breaker -> concurrency cap -> Orga (with the
    remaining deadline) -> 200 JSON; any refusal before "Orga" costs no upstream call.

The request and response it speaks are in :mod:`._request`; the exception -> status mapping and the error envelope in
:mod:`._errors`.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from .._exceptions import (
    OrgaAIAuthenticationError,
    OrgaAIConfigurationError,
    OrgaAIError,
    OrgaAIRateLimitError,
    OrgaAITimeoutError,
)
from .._ice import apply_ice_policy
from .._logging import current_request_id
from .._telemetry import reset_observer, set_observer
from ._auth import (
    AnonymousAuth,
    AuthenticationError,
    Principal,
    PrincipalTypeError,
    hook_name,
    to_principal,
)
from ._breaker import CircuitBreaker
from ._errors import (
    AsyncTimeout,
    ProxyError,
    _DeadlineExceeded,
    _is_upstream_failure,
    _retry_after,
    error_for,
    json_error,
    log_refusal,
    redact,
)
from ._fingerprint import principal_fingerprint, set_fingerprint_key
from ._killswitch import KillSwitch
from ._metrics import Metrics
from ._policy import (
    ANONYMOUS_GLOBAL_RATE_LIMIT,
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_PATH,
    LOOPBACK_HOSTS,
    ProxyPolicy,
    networks,
    validate_origins,
    validate_path,
)
from ._ratelimit import RateLimitDecision, RateLimiter, RateLimiterUnavailable
from ._request import ProxyRequest, ProxyResponse, json_bytes, new_request_id, sane_request_id, security_headers
from ._tracing import annotate, current_request_span, request_span

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI, OrgaAI
    from .._models import SessionConfig

__all__ = [
    "ANONYMOUS_GLOBAL_RATE_LIMIT",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_PATH",
    "LOOPBACK_HOSTS",
    "BodyReader",
    "ProxyCore",
    "has_body",
    "principal_key",
    "validate_path",
]

logger = logging.getLogger("orga_ai.proxy")
access_logger = logging.getLogger("orga_ai.proxy.access")

_ALLOWED_METHODS = ("GET", "POST")
_ALLOW_HEADERS = frozenset({"authorization", "content-type", "x-request-id", "traceparent", "tracestate"})
_EXPOSE_HEADERS = "X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
_MIN_UPSTREAM_SECONDS = 0.05
ICE_POLICY_RETRY_SECONDS = 30.0
"""After the ICE policy left no server of a config, requests are refused for this long without asking Orga (each ask
spends a token for nothing); then one request asks again, in case Orga's servers changed."""


# -- effects the flow asks its driver to perform ---------------------------------------------------------------------


class _Authenticate(NamedTuple):
    request: ProxyRequest


class _Limit(NamedTuple):
    key: str


class _Upstream(NamedTuple):
    deadline: float


class _ReadBody(NamedTuple):
    """Receive the request's body (capped), now that its head passed: True when whole, False past the cap, None
    when the client went away. No body byte is waited for before the caller is known."""


_READ_BODY = _ReadBody()
BodyReader = Callable[[], Awaitable["bool | None"]]
"""What an async adapter hands :meth:`ProxyCore.handle` to receive a POST's body: see :class:`_ReadBody`."""

_Effect = _Authenticate | _Limit | _Upstream | _ReadBody
_Flow = Generator[_Effect, Any, ProxyResponse]


@dataclass(slots=True)
class _Exchange:
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

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()


class _ConcurrencyCap:
    """A non-blocking counter of upstream calls in flight (threads and tasks alike); full means shed, not queue."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.in_flight = 0

    def try_enter(self) -> bool:
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1



def _hop_address(hop: str) -> str | None:
    """The address of one ``X-Forwarded-For`` hop, written ``ip``, ``ip:port``, ``[v6]`` or ``[v6]:port`` (proxies
    differ); None when it is none of these."""
    if hop.startswith("["):
        inner, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        hop = inner
    elif hop.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        host, _, port = hop.partition(":")
        if not port.isdigit():
            return None
        hop = host
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def _valid_port(port: str) -> bool:
    return port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536


def _host_name(host: str) -> str | None:
    """The name in a lower-cased ``Host`` header, or None unless the header is ``name``, ``name:port``, ``[v6]`` or
    ``[v6]:port`` with a port of 1-65535 (``[::1]evil.example`` and ``localhost:x`` are not loopback)."""
    if host.startswith("["):
        end = host.find("]") + 1
        if not end:
            return None
        rest = host[end:]
        if rest and not (rest[0] == ":" and _valid_port(rest[1:])):
            return None
        return host[:end]
    name, colon, port = host.partition(":")  # an unbracketed IPv6 address leaves ":..." as its port: refused
    if colon and not _valid_port(port):
        return None
    return name.rstrip(".") or None


def _netloc(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[" and other unparsable origins are refused like any other
        return None












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


_principal_fingerprint = principal_fingerprint  # keyed: logs cannot be reversed to IPs or user ids


# -- the core --------------------------------------------------------------------------------------------------------


class ProxyCore:
    """The client-secrets route's flow and state (limiter, breaker, deny-list, metrics) for one
    :class:`~orga_ai.proxy.ProxyPolicy`, held once, for every framework.

    ``ProxyCore(policy)``, or ``ProxyCore(**settings)`` for ``ProxyCore(ProxyPolicy(**settings))`` (every setting and
    its default: :class:`~orga_ai.proxy.ProxyPolicy`). The collaborators can be given ready-made: ``breaker`` (else
    one from ``breaker_threshold``/``breaker_cooldown``), ``kill_switch`` (else one watching ``deny_file``),
    ``metrics`` (else a fresh registry), ``rate_limiter`` (else one from the three rate-limit settings).
    """

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        kill_switch: KillSwitch | None = None,
        metrics: Metrics | None = None,
        rate_limiter: RateLimiter | None = None,
        **settings: Any,
    ) -> None:
        if policy is None:
            policy = ProxyPolicy(**settings)
        elif settings:
            policy = policy.replace(**settings)
        self.policy = policy
        authenticate = policy.authenticate if policy.authenticate is not None else AnonymousAuth()
        self.authenticate: Callable[[ProxyRequest], Principal | str] = authenticate
        self.anonymous = policy.allow_anonymous and isinstance(authenticate, AnonymousAuth)
        self.metrics = metrics if metrics is not None else Metrics()
        global_rate_limit = policy.global_rate_limit
        if self.anonymous and global_rate_limit is None and rate_limiter is None:
            # Per-IP limits alone let a botnet (or an IPv6 host's many /64s) mint without end: a ceiling by default.
            global_rate_limit = ANONYMOUS_GLOBAL_RATE_LIMIT
        self.rate_limiter = rate_limiter or RateLimiter(
            policy.rate_limit, global_rate_limit, storage_uri=policy.storage_uri
        )
        self._unlimited = rate_limiter is None and policy.rate_limit is None
        self.cors_origins = validate_origins(policy.cors_origins)  # adoption adds the host app's origins
        self._cors_patterns: tuple[re.Pattern[str], ...] = ()
        self.cors_setting = "cors_origins"  # what the 403 tells a developer to change; adapters name their own
        self.trusted_proxies = networks(policy.trusted_proxies)
        self.deadline = policy.deadline
        self.cap = _ConcurrencyCap(policy.max_concurrency)
        if breaker is None:
            breaker = CircuitBreaker(policy.breaker_threshold, policy.breaker_cooldown)
        self.breaker = breaker
        self.breaker._on_change = self._breaker_changed
        self.kill_switch = kill_switch if kill_switch is not None else KillSwitch(policy.deny_file)
        self.max_body_bytes = policy.max_body_bytes
        self.max_header_bytes = policy.max_header_bytes
        self.ice_policy = policy.ice_policy
        self._ice_policy_refusal: tuple[float, str] | None = None  # (until, why) the policy left no ICE server
        if policy.fingerprint_key is not None:
            set_fingerprint_key(policy.fingerprint_key)
        allowed_hosts = policy.allowed_hosts
        if allowed_hosts is None and self.anonymous:
            allowed_hosts = LOOPBACK_HOSTS  # anonymous minting: only for pages served from this machine
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts or () if h.strip())
        self.last_upstream_success: float | None = None
        self._auth_may_block = bool(getattr(authenticate, "may_block", False))
        self._auth_name = hook_name(authenticate)

    def _breaker_changed(self, state: str) -> None:
        self.metrics.breaker_transitions.labels(state=state).inc()
        self.metrics.breaker_state.set(0 if state == "closed" else 1)
        log = logger.warning if state == "open" else logger.info
        log("orga proxy: circuit breaker %s", state.replace("_", "-"))

    def announce(self) -> None:
        """Log the configuration at start-up; anonymous access and turned-off limits are announced loudly."""
        if self._unlimited:
            logger.warning("orga proxy: rate_limit=None - no per-caller rate limit; one caller can mint without end")
        if self.anonymous:
            logger.warning(
                "orga proxy: ANONYMOUS ACCESS IS ON - anyone who can reach this server can mint Orga sessions "
                "(rate-limited per client IP). Use it for local development only."
            )
        logger.info(
            "orga proxy: auth %s; rate limit %s; deadline %.1f s; max concurrency %d; CORS %s",
            type(self.authenticate).__name__,
            self.rate_limiter.describe(),
            self.deadline,
            self.cap.limit,
            ", ".join(sorted(self.cors_origins)) or "same-origin only",
        )
        if self.ice_policy is not None:
            logger.info("orga proxy: ICE policy %s", self.ice_policy.describe())

    # -- drivers ---------------------------------------------------------------------------------------------------

    async def handle(
        self,
        request: ProxyRequest,
        orga: AsyncOrgaAI,
        *,
        offload: Callable[[Callable[[ProxyRequest], Any], ProxyRequest], Awaitable[Any]] | None = None,
        read_body: BodyReader | None = None,
    ) -> ProxyResponse:
        """Serve one request from async code (Starlette, FastAPI, Django-async).

        ``offload(authenticate, request)``, when given, runs every authentication off the event loop (Django's
        ``sync_to_async``, so a hook may use the ORM); otherwise only authenticators marked ``may_block`` leave it.
        ``read_body()`` receives a POST's body once its head has passed the Host, CORS, authentication and
        deny-list checks (a refused request is answered without waiting for it); None: the adapter read it already.
        """
        span = request_span(request)
        request = self.prepare(request)
        # Every line logged while this request is served carries its id (tasks and to_thread inherit the context).
        logging_as = current_request_id.set(request.request_id)
        try:
            if span is None:
                return await self._handle(request, orga, offload, read_body)
            with span:
                return await self._handle(request, orga, offload, read_body)
        finally:
            current_request_id.reset(logging_as)

    async def _handle(
        self,
        request: ProxyRequest,
        orga: AsyncOrgaAI,
        offload: Callable[[Callable[[ProxyRequest], Any], ProxyRequest], Awaitable[Any]] | None,
        read_body: BodyReader | None = None,
    ) -> ProxyResponse:
        import asyncio

        flow = self._flow(request)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                response: ProxyResponse = stop.value
                return response
            value, error = None, None
            try:
                if isinstance(effect, _Authenticate):
                    value = await self.authenticate_async(effect.request, offload)
                elif isinstance(effect, _ReadBody):
                    value = True if read_body is None else await read_body()
                else:
                    value = await self._perform_async(effect, orga)
            except Exception as exc:  # noqa: BLE001 - handed to the flow, which maps it
                error = exc
            except asyncio.CancelledError as exc:
                # The caller went away: let the flow release what it holds, then stop.
                flow.throw(exc)
                raise

    async def authenticate_async(
        self,
        request: ProxyRequest,
        offload: Callable[[Callable[[ProxyRequest], Any], ProxyRequest], Awaitable[Any]] | None,
    ) -> Any:
        """The authenticator from async code: through ``offload`` when given, in a thread when it may block."""
        if offload is not None:
            return await offload(self.authenticate, request)
        if self._auth_may_block:
            import asyncio

            return await asyncio.to_thread(self.authenticate, request)
        return self.authenticate(request)

    async def _perform_async(self, effect: _Limit | _Upstream, orga: AsyncOrgaAI) -> Any:
        import asyncio

        if isinstance(effect, _Limit):
            return await self.rate_limiter.hit(effect.key)
        # The SDK keeps to its own deadline; this is the backstop should a step ever ignore it. asyncio.timeout
        # (3.11+) acts on the running task; wait_for wraps the call in a second task.
        observing = set_observer(self.metrics.observe_sdk)  # the SDK's per-step measurements into our metrics
        try:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(effect.deadline + 0.25):
                    return await orga.get_session_config(deadline=effect.deadline)
            return await asyncio.wait_for(orga.get_session_config(deadline=effect.deadline), effect.deadline + 0.25)
        finally:
            reset_observer(observing)

    def handle_sync(self, request: ProxyRequest, orga: OrgaAI, *, deadline: float | None = None) -> ProxyResponse:
        """Serve one request from sync code (Flask, Django-sync); safe to call from many threads.

        ``deadline``: seconds this request may take if fewer than the route's own (a function's time left).
        """
        span = request_span(request)
        request = self.prepare(request)
        logging_as = current_request_id.set(request.request_id)  # this thread's lines, until the request is served
        try:
            if span is None:
                return self._handle_sync(request, orga, deadline)
            with span:
                return self._handle_sync(request, orga, deadline)
        finally:
            current_request_id.reset(logging_as)

    def _handle_sync(self, request: ProxyRequest, orga: OrgaAI, deadline: float | None = None) -> ProxyResponse:
        flow = self._flow(request, deadline)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                response: ProxyResponse = stop.value
                return response
            value, error = None, None
            try:
                if isinstance(effect, _Authenticate):
                    value = self.authenticate(effect.request)
                elif isinstance(effect, _ReadBody):
                    value = True  # a sync adapter has read (and capped) the body before calling
                elif isinstance(effect, _Limit):
                    value = self.rate_limiter.hit_sync(effect.key)
                else:
                    observing = set_observer(self.metrics.observe_sdk)
                    try:
                        value = orga.get_session_config(deadline=effect.deadline)
                    finally:
                        reset_observer(observing)
            except Exception as exc:  # noqa: BLE001 - handed to the flow, which maps it
                error = exc

    # -- the flow (shared by both drivers) -------------------------------------------------------------------------

    def client_ip(self, request: ProxyRequest) -> str | None:
        """The caller's address: the TCP peer, or, when the peer is a trusted proxy, the right-most address of
        ``X-Forwarded-For`` that is not itself a trusted proxy."""
        peer = request.client_host
        if not self.trusted_proxies or peer is None or not self._trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        client = peer
        for written in reversed(hops):
            hop = _hop_address(written)
            if hop is None:
                break  # a garbled hop: trust nothing further left of it
            client = hop
            if not self._trusted(hop):
                break
        return client

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    def _origin_check(self, request: ProxyRequest) -> dict[str, str]:
        """CORS headers for an allowed cross-origin caller; raises ProxyError(403) for a refused origin."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}  # not a browser cross-origin request (same-origin GET, server-to-server, curl)
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.cors_origins or (self._cors_patterns and self._pattern_allows(normalized)):
            return {
                # The allowlist's spelling (an allowed origin equals an entry, or a pattern's fullmatch, once
                # normalized): never bytes the caller chose.
                "Access-Control-Allow-Origin": normalized,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": _EXPOSE_HEADERS,
                "Vary": "Origin",
            }
        host = request.headers.get("host", "").lower()
        if normalized != "null" and host and _netloc(normalized) == host:
            return {"Vary": "Origin"}  # same-origin: the browser needs no CORS headers
        raise ProxyError(
            403,
            "origin_not_allowed",
            f"This origin may not call this endpoint; to allow it, add it to {self.cors_setting}.",
            detail=f"origin refused ({len(origin)} chars)",
        )

    def host_allowed(self, host: str) -> bool:
        """Whether a ``Host`` header names this server: one of ``allowed_hosts`` (by name, or by name and port), or
        anything when there is no allowlist."""
        if not self.allowed_hosts:
            return True
        host = host.strip().lower()
        name = _host_name(host)
        return name is not None and (name in self.allowed_hosts or host in self.allowed_hosts)

    def _host_check(self, request: ProxyRequest) -> None:
        """ProxyError(400) unless ``Host`` is one of ``allowed_hosts`` (by name, or by name and port)."""
        if not self.host_allowed(request.headers.get("host", "")):
            raise ProxyError(
                400,
                "host_not_allowed",
                "This server does not answer for that host name; add it to allowed_hosts.",
                detail=f"host refused ({len(request.headers.get('host', ''))} chars)",
            )

    def _pattern_allows(self, origin: str) -> bool:
        return origin != "null" and any(pattern.fullmatch(origin) for pattern in self._cors_patterns)

    def adopt_cors(self, origins: Iterable[str], patterns: Iterable[str] = (), *, setting: str) -> None:
        """Also allow the origins the host app's own CORS set-up allows (``setting`` names where they are written,
        for the 403 message): exact origins, and regular expressions matched against the whole origin. Wildcards are
        refused as in ``cors_origins``."""
        if isinstance(origins, str) or isinstance(patterns, str):
            raise ValueError(f"{setting}: expected a list of origins, got one string")
        self.cors_origins = self.cors_origins | validate_origins(origins)
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"{setting}: {pattern!r} is not a regular expression ({exc})") from None
        self._cors_patterns = (*self._cors_patterns, *compiled)
        self.cors_setting = setting

    def _shape_check(self, request: ProxyRequest) -> None:
        size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        if size > self.max_header_bytes:
            raise ProxyError(431, "headers_too_large", "Request headers too large.", detail=f"{size} header bytes")
        # WSGI servers report a missing length as an empty CONTENT_LENGTH: treat it as absent.
        length = request.headers.get("content-length", "").strip()
        if length:
            if not (length.isascii() and length.isdigit()):  # str.isdigit() also takes "²" and other digits
                raise ProxyError(400, "bad_request", "Invalid Content-Length.")
            if int(length) > self.max_body_bytes:
                raise ProxyError(413, "body_too_large", "Request body too large.", detail=f"{length} body bytes")

    def _preflight(self, request: ProxyRequest, cors: dict[str, str]) -> ProxyResponse:
        wanted = request.headers.get("access-control-request-method", "").upper()
        headers = {"Allow": "GET, POST, OPTIONS"}
        if cors and wanted:
            if wanted not in _ALLOWED_METHODS:
                raise ProxyError(405, "method_not_allowed", "Method not allowed.", headers=headers)
            asked = {h.strip().lower() for h in request.headers.get("access-control-request-headers", "").split(",")}
            asked.discard("")
            if not asked <= _ALLOW_HEADERS:
                raise ProxyError(403, "header_not_allowed", "A requested header is not allowed.")
            headers.update(cors)
            headers.pop("Access-Control-Expose-Headers", None)
            headers["Access-Control-Allow-Methods"] = "GET, POST"
            if asked:
                headers["Access-Control-Allow-Headers"] = ", ".join(sorted(asked))
            headers["Access-Control-Max-Age"] = "600"
        return ProxyResponse(204, headers, b"")

    def prepare(self, request: ProxyRequest) -> ProxyRequest:
        """``request`` with its effective client IP and its request id filled in (what authenticators see)."""
        request_id = request.request_id or sane_request_id(request.headers.get("x-request-id")) or new_request_id()
        r = request  # dataclasses.replace, spelled out: replace() inspects the fields on every call
        client_ip = self.client_ip(r)
        return type(r)(r.method, r.path, r.headers, r.cookies, r.client_host, client_ip, request_id, r.native)

    def _flow(self, request: ProxyRequest, deadline: float | None = None) -> _Flow:
        """The flow of one request, already through :meth:`prepare` (its drivers set the logging context first)."""
        started = time.monotonic()
        assert request.request_id is not None
        budget = self.deadline if deadline is None else min(self.deadline, deadline)
        ex = _Exchange(request, request.request_id, started, started + budget)
        try:
            self._shape_check(request)
            if self.allowed_hosts:
                self._host_check(request)
            ex.cors = self._origin_check(request)
            if request.method == "OPTIONS":
                return self._finish(ex, self._preflight(request, ex.cors), "preflight")
            if request.method not in _ALLOWED_METHODS:
                raise ProxyError(405, "method_not_allowed", "Method not allowed.", headers={"Allow": "GET, POST"})
            if self.kill_switch.check() == "all":
                raise ProxyError(
                    503,
                    "minting_disabled",
                    "Session minting is paused; try again later.",
                    headers={"Retry-After": "30"},
                )

            found = yield _Authenticate(request)
            principal = to_principal(found, source=self._auth_name)
            ex.principal = principal
            if self.kill_switch.check(principal.id) is not None:
                raise ProxyError(403, "principal_denied", "This account may not start sessions.")
            if request.method == "POST" and has_body(request.headers):
                whole = yield _READ_BODY
                if whole is False:
                    raise ProxyError(413, "body_too_large", "Request body too large.")
                if whole is None:
                    raise ProxyError(400, "bad_request", "The request body did not arrive.", detail="client gone")

            decision: RateLimitDecision | None = yield _Limit(principal_key(principal))
            if decision is not None:
                ex.limit_headers = decision.headers()
                if not decision.allowed:
                    self.metrics.record(self.metrics.rate_limited, decision.scope)(1.0)
                    raise ProxyError(
                        429, "rate_limited", "Too many requests; slow down.", detail=f"{decision.scope} limit"
                    )

            allowed, wait = self.breaker.acquire()
            if not allowed:
                self.metrics.breaker_rejected.inc()
                raise ProxyError(
                    503,
                    "upstream_unavailable",
                    "The session service is unavailable; try again soon.",
                    headers={"Retry-After": _retry_after(wait)},
                    detail="circuit breaker open",
                )
            if not self.cap.try_enter():
                self.breaker.release()
                self.metrics.shed.inc()
                raise ProxyError(
                    503,
                    "overloaded",
                    "Too many sessions being started; try again.",
                    headers={"Retry-After": "1"},
                    detail="concurrency cap reached",
                )
            return (yield from self._upstream(ex))
        except ProxyError as exc:
            return self._refuse(ex, exc)
        except AuthenticationError as exc:
            return self._refuse(ex, error_for(exc))
        except RateLimiterUnavailable as exc:
            return self._refuse(ex, error_for(exc))
        except PrincipalTypeError as exc:
            # A hook returning no user id: a 500 each time, one ERROR line per hook (the message says what to fix).
            report_once(exc)
            return self._refuse(ex, error_for(exc))
        except Exception as exc:
            # A custom authenticator's bug, say: the caller gets a bare 500, the log gets the traceback.
            logger.error("orga proxy: unexpected error %s", type(exc).__name__, exc_info=exc)
            return self._refuse(ex, error_for(exc))

    def _upstream(self, ex: _Exchange) -> _Flow:
        held = self._ice_policy_refusal
        if held is not None and time.monotonic() < held[0]:
            # The policy left nothing of Orga's last config moments ago: refuse without spending another token.
            return self._refuse(ex, error_for(OrgaAIConfigurationError(held[1], step="ice")))
        self.metrics.in_flight_add(1.0)
        began = time.monotonic()
        settled = False
        try:
            remaining = ex.remaining()
            if remaining < _MIN_UPSTREAM_SECONDS:
                raise _DeadlineExceeded()
            try:
                config: SessionConfig = yield _Upstream(remaining)
                try:
                    config = apply_ice_policy(config, self.ice_policy)
                except OrgaAIConfigurationError as exc:
                    # A setting, not a bug: one line (no traceback), then no upstream call for a while.
                    self._ice_policy_refusal = (time.monotonic() + ICE_POLICY_RETRY_SECONDS, exc.message)
                    logger.error("orga proxy: %s; refusing for %g s without asking Orga", exc.message,
                                 ICE_POLICY_RETRY_SECONDS)
                    raise
            except OrgaAITimeoutError:
                raise
            except (OrgaAIError, AsyncTimeout) as exc:
                if ex.remaining() <= 0 and not isinstance(exc, (OrgaAIRateLimitError, OrgaAIAuthenticationError)):
                    raise _DeadlineExceeded() from exc
                raise
        except Exception as exc:
            ex.upstream_seconds = time.monotonic() - began
            self.metrics.record(self.metrics.upstream_latency, "error")(ex.upstream_seconds)
            ex.upstream_ids = (getattr(exc, "request_id", None),)
            if _is_upstream_failure(exc):
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # Orga answered: it is up, even if it said no
            settled = True
            problem = error_for(exc)
            if problem.status == 500 and not isinstance(exc, OrgaAIConfigurationError):
                logger.error("orga proxy: unexpected error %s", type(exc).__name__, exc_info=exc)
            return self._refuse(ex, problem)
        finally:
            self.metrics.in_flight_add(-1.0)
            self.cap.leave()
            if not settled and ex.upstream_seconds is None:
                # Reached only when the generator is closed or cancelled mid-call (the caller went away).
                self.breaker.release()
        ex.upstream_seconds = time.monotonic() - began
        self.metrics.record(self.metrics.upstream_latency, "ok")(ex.upstream_seconds)
        self.breaker.record_success()
        self.last_upstream_success = time.monotonic()
        ex.upstream_ids = config.request_ids
        ex.token_fp = config.token_fingerprint
        body = json_bytes(config.to_client_json())
        headers = {"Content-Type": "application/json", **ex.limit_headers}
        return self._finish(ex, ProxyResponse(200, headers, body), "ok")

    def _refuse(self, ex: _Exchange, problem: ProxyError) -> ProxyResponse:
        ex.detail = problem.detail
        if problem.status in (401, 403):
            self.metrics.record(self.metrics.denied, problem.code)(1.0)
            log_refusal(problem, ex.request_id)
        headers = dict(ex.limit_headers)
        headers.update(problem.headers)
        response = json_error(problem.status, problem.code, problem.message, ex.request_id, headers)
        return self._finish(ex, response, problem.code)

    def _finish(self, ex: _Exchange, response: ProxyResponse, outcome: str) -> ProxyResponse:
        headers = {**security_headers(), "X-Request-ID": ex.request_id, **ex.cors, **response.headers}
        if response.status != 204:
            headers.setdefault("Content-Type", "application/json")
        response.headers = headers
        self.metrics.record(self.metrics.requests, outcome)(1.0)
        self._access_log(ex, response.status, outcome)
        span = current_request_span()
        if span is not None:
            principal = ex.principal
            annotate(
                span,
                request_id=ex.request_id,
                status=response.status,
                outcome=outcome,
                principal_fingerprint=_principal_fingerprint(principal.id) if principal else None,
                principal_kind=principal.kind if principal else None,
                limit_headers=ex.limit_headers,
                breaker_state=self.breaker.state,
                upstream_ids=ex.upstream_ids,
                token_fingerprint=ex.token_fp,
            )
        return response

    def _access_log(self, ex: _Exchange, status: int, outcome: str) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        principal = ex.principal
        line: dict[str, Any] = {
            "event": "orga_proxy_request",
            "request_id": ex.request_id,
            "method": ex.request.method,
            "path": ex.request.path,
            "status": status,
            "outcome": outcome,
            "latency_ms": round((time.monotonic() - ex.started) * 1000, 1),
            "principal": _principal_fingerprint(principal.id) if principal else None,
            "principal_kind": principal.kind if principal else None,
        }
        if ex.upstream_seconds is not None:
            line["upstream_ms"] = round(ex.upstream_seconds * 1000, 1)
            line["upstream_request_ids"] = [rid for rid in ex.upstream_ids if rid]
        if ex.token_fp:
            line["token_fingerprint"] = ex.token_fp
        if ex.detail:
            line["detail"] = redact(ex.detail)
        text = json_bytes(line).decode()
        # serve's own text-mode handler, alone on this logger (no filter, formatter or other handler to feed a
        # record to): the line straight into its batch, without building a LogRecord (~4 % of the route's CPU).
        handlers = access_logger.handlers
        if len(handlers) == 1 and not access_logger.filters and not access_logger.propagate:
            handler = handlers[0]
            emit_line = getattr(handler, "emit_line", None)
            plain = handler.formatter is None and not handler.filters and handler.level <= logging.INFO
            if emit_line is not None and plain:
                emit_line(text)
                return
        # makeRecord + handle is logger.info without findCaller's walk up the stack: the line says where it is from.
        record = access_logger.makeRecord(
            access_logger.name, logging.INFO, __file__, 0, text, (), None, "_access_log",
            {"orga": line},  # the fields themselves, for a structured formatter (serve --log-format json)
        )
        access_logger.handle(record)

    # -- health ----------------------------------------------------------------------------------------------------

    def health(self) -> ProxyResponse:
        """``/healthz``: the process is alive."""
        return ProxyResponse(200, {"Content-Type": "application/json", **security_headers()}, b'{"status":"ok"}')

    def readiness(self, storage_ok: bool) -> ProxyResponse:
        """``/readyz``: configuration loaded, rate-limit storage answering, breaker not open, minting on."""
        breaker = self.breaker.state
        checks = {
            "config": "ok",
            "rateLimiter": "ok" if storage_ok else f"unavailable: {self.rate_limiter.problem or 'no answer'}",
            "upstream": "ok" if breaker == "closed" else f"circuit {breaker.replace('_', '-')}",
            "minting": "on" if self.kill_switch.minting_enabled else "stopped",
            # Each worker answers for its own storage connection and breaker: say which one answered.
            "worker": str(os.getpid()),
        }
        deny_problem = self.kill_switch.problem
        if deny_problem is not None:
            checks["denyFile"] = deny_problem
        last = self.last_upstream_success
        if last is not None:
            checks["lastUpstreamSuccessSecondsAgo"] = str(round(time.monotonic() - last, 1))
        ready = storage_ok and breaker != "open" and deny_problem is None
        body = json_bytes({"status": "ready" if ready else "unavailable", "checks": checks})
        return ProxyResponse(200 if ready else 503, {"Content-Type": "application/json", **security_headers()}, body)

    def __repr__(self) -> str:
        return f"ProxyCore(auth={type(self.authenticate).__name__}, deadline={self.deadline}, cap={self.cap.limit})"
