"""``ProxyCore``: the client-secrets route for one :class:`~orga_ai.proxy.ProxyPolicy`, and the state it keeps
between requests (rate limiter, circuit breaker, concurrency cap, deny-list, metrics). Every adapter (Starlette,
FastAPI, Flask, Django, the function entry points, ``orga-ai serve``) only translates its request into a
:class:`ProxyRequest` and a :class:`ProxyResponse` back, and calls :meth:`ProxyCore.handle` (async) or
:meth:`ProxyCore.handle_sync`.

The pieces, one module each: the settings (:mod:`._policy`), Host and client address (:mod:`._hosts`), CORS
(:mod:`._cors`), the flows of the route and its beacon (:mod:`._flow`), their two drivers (:mod:`._drivers`), the
access line (:mod:`._accesslog`), ``/healthz`` and ``/readyz`` (:mod:`._health`), the error table (:mod:`._errors`).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._auth import AnonymousAuth, Principal, hook_name
from ._breaker import CircuitBreaker
from ._cors import Cors
from ._drivers import Offload, drive_async, drive_sync
from ._fingerprint import set_fingerprint_key
from ._flow import BodyReader, has_body, principal_key, route_flow
from ._health import health, readiness
from ._hosts import Hosts
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
    validate_path,
)
from ._ratelimit import RateLimiter
from ._request import ProxyRequest, ProxyResponse, new_request_id, sane_request_id

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI, OrgaAI

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
        self.auth_name = hook_name(authenticate)  # how a log line names the hook
        self._auth_may_block = bool(getattr(authenticate, "may_block", False))
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
        self.cors = Cors(policy.cors_origins)  # adoption adds the host app's origins
        allowed_hosts = policy.allowed_hosts
        if allowed_hosts is None and self.anonymous:
            allowed_hosts = LOOPBACK_HOSTS  # anonymous minting: only for pages served from this machine
        self.hosts = Hosts(allowed_hosts or (), networks(policy.trusted_proxies))
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
        self.ice_policy_refusal: tuple[float, str] | None = None  # (until, why) the policy left no ICE server
        if policy.fingerprint_key is not None:
            set_fingerprint_key(policy.fingerprint_key)
        self.last_upstream_success: float | None = None

    # -- what adapters read and set -------------------------------------------------------------------------------

    @property
    def cors_origins(self) -> frozenset[str]:
        """The exact origins allowed cross-origin (the policy's, plus any adopted from the host app)."""
        return self.cors.origins

    @property
    def cors_setting(self) -> str:
        """Where a developer adds an origin: named in the 403 ``origin_not_allowed``."""
        return self.cors.setting

    @cors_setting.setter
    def cors_setting(self, setting: str) -> None:
        self.cors.setting = setting

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return self.hosts.allowed

    @property
    def trusted_proxies(self) -> tuple[Any, ...]:
        return self.hosts.trusted

    def adopt_cors(self, origins: Iterable[str], patterns: Iterable[str] = (), *, setting: str) -> None:
        """Also allow the origins the host app's own CORS set-up allows (see :meth:`Cors.adopt`)."""
        self.cors.adopt(origins, patterns, setting=setting)

    def host_allowed(self, host: str) -> bool:
        """Whether a ``Host`` header names this server (any, without an allowlist)."""
        return self.hosts.allows(host)

    def client_ip(self, request: ProxyRequest) -> str | None:
        """The caller's address: the peer, or the client behind trusted proxies (see :meth:`Hosts.client_ip`)."""
        return self.hosts.client_ip(request)

    def prepare(self, request: ProxyRequest) -> ProxyRequest:
        """``request`` with its effective client IP and its request id filled in (what authenticators see)."""
        request_id = request.request_id or sane_request_id(request.headers.get("x-request-id")) or new_request_id()
        r = request  # dataclasses.replace, spelled out: replace() inspects the fields on every call
        client_ip = self.hosts.client_ip(r)
        return type(r)(r.method, r.path, r.headers, r.cookies, r.client_host, client_ip, request_id, r.native)

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

    # -- serving ----------------------------------------------------------------------------------------------------

    async def handle(
        self,
        request: ProxyRequest,
        orga: AsyncOrgaAI,
        *,
        offload: Offload | None = None,
        read_body: BodyReader | None = None,
    ) -> ProxyResponse:
        """Serve one request from async code (Starlette, FastAPI, Django-async).

        ``offload(authenticate, request)``, when given, runs every authentication off the event loop (Django's
        ``sync_to_async``, so a hook may use the ORM); otherwise only authenticators marked ``may_block`` leave it.
        ``read_body()`` receives a POST's body once its head has passed the Host, CORS, authentication and
        deny-list checks (a refused request is answered without waiting for it); None: the adapter read it already.
        """
        return await drive_async(
            self, request, lambda r: route_flow(self, r), orga, offload=offload, read_body=read_body
        )

    def handle_sync(self, request: ProxyRequest, orga: OrgaAI, *, deadline: float | None = None) -> ProxyResponse:
        """Serve one request from sync code (Flask, Django-sync); safe to call from many threads.

        ``deadline``: seconds this request may take if fewer than the route's own (a function's time left).
        """
        return drive_sync(self, request, lambda r: route_flow(self, r, deadline), orga)

    async def authenticate_async(self, request: ProxyRequest, offload: Offload | None) -> Any:
        """The authenticator from async code: through ``offload`` when given, in a thread when it may block; an
        answer that is awaitable (an app's ``async def`` hook on an async framework) is awaited on the loop."""
        if offload is not None:
            found = await offload(self.authenticate, request)
        elif self._auth_may_block:
            import asyncio

            found = await asyncio.to_thread(self.authenticate, request)
        else:
            found = self.authenticate(request)
        return await found if inspect.isawaitable(found) else found

    # -- health -----------------------------------------------------------------------------------------------------

    @staticmethod
    def health() -> ProxyResponse:
        """``/healthz``: the process is alive."""
        return health()

    def readiness(self, storage_ok: bool) -> ProxyResponse:
        """``/readyz``: configuration loaded, rate-limit storage answering, breaker not open, minting on."""
        return readiness(self, storage_ok)

    def __repr__(self) -> str:
        return f"ProxyCore(auth={type(self.authenticate).__name__}, deadline={self.deadline}, cap={self.cap.limit})"
