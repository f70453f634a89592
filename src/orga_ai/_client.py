"""``OrgaAI`` (sync) and ``AsyncOrgaAI`` (asyncio): the public API, and thin drivers of the flows in _protocol.

A driver runs a flow, sends each request it yields through a transport (``_transports/``: the interface is in
``base.py``) and sleeps when it asks. Both build their transport on first use, so ``import orga_ai`` and a
module-level client stay cheap and open no socket until the first call.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from ._config import Settings, resolve_settings, validate_max_retries, validate_timeout
from ._exceptions import (
    OrgaAIAuthenticationError,
    OrgaAIConfigurationError,
    OrgaAIError,
    OrgaAIPermissionError,
)
from ._ice import IcePolicy, apply_ice_policy
from ._logging import enable_debug_logging
from ._models import EphemeralToken, IceServer, SessionConfig
from ._protocol import (
    CallContext,
    Flow,
    Request,
    Response,
    Sleep,
    TransportFailure,
    ice_flow,
    session_flow,
    token_flow,
)
from ._proxy_env import ProxyConfigurationError
from ._retry import RetryBudget
from ._telemetry import instrument

if TYPE_CHECKING:
    import aiohttp
    import httpx

    from ._pool import PoolStats, WarmPool
    from ._transports.base import AsyncTransport, SyncTransport
    from .realtime import RealtimeNamespace

__all__ = ["AsyncOrgaAI", "OrgaAI"]

T = TypeVar("T")

_POOL_CONNECTIONS = 100
_KEEPALIVE_SECONDS = 30.0


_Client = TypeVar("_Client", bound="_BaseClient")


class _BaseClient:
    """Settings, validation and the pieces both drivers share; no I/O."""

    _settings: Settings
    _origin: _BaseClient | None = None  # set on a with_options() copy: the client whose connections it uses

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float | None,
        max_retries: int | None,
        debug: bool | None,
        default_headers: Mapping[str, str] | None,
        retry_budget: RetryBudget | None,
        max_retry_after: float | None,
    ) -> None:
        self._settings = resolve_settings(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            debug=debug,
            default_headers=default_headers,
            max_retry_after=max_retry_after,
        )
        if self._settings.debug:
            enable_debug_logging()
        self._budget = retry_budget if retry_budget is not None else RetryBudget()

    @property
    def base_url(self) -> str:
        """The Orga Cloud base URL in use, without a trailing slash."""
        return self._settings.base_url

    @property
    def timeout(self) -> float:
        """Seconds allowed for each request."""
        return self._settings.timeout

    @property
    def max_retries(self) -> int:
        """Retries allowed after the first attempt of each step."""
        return self._settings.max_retries

    @property
    def api_key_fingerprint(self) -> str:
        """A short, log-safe tag of the API key in use."""
        return self._settings.api_key.fingerprint

    @property
    def retry_budget(self) -> RetryBudget:
        """The retry budget shared by every call of this client."""
        return self._budget

    def with_options(self: _Client, *, timeout: float | None = None, max_retries: int | None = None) -> _Client:
        """A copy of this client with other defaults, sharing its connections (pool or session), its warm pool and
        its retry budget: ``orga.with_options(timeout=2, max_retries=0).get_session_config()``. Cheap; nothing is
        opened. The connections belong to the original: closing either one closes them for both."""
        import copy
        import dataclasses

        changes: dict[str, object] = {}
        if timeout is not None:
            changes["timeout"] = validate_timeout(timeout)
        if max_retries is not None:
            changes["max_retries"] = validate_max_retries(max_retries)
        clone = copy.copy(self)
        clone._settings = dataclasses.replace(self._settings, **changes)  # type: ignore[arg-type]
        clone._origin = self._origin or self
        return clone

    def _context(self, timeout: float | None, deadline: float | None) -> CallContext:
        per_request = self._settings.timeout if timeout is None else validate_timeout(timeout)
        deadline_at = None
        if deadline is not None:
            deadline_at = time.monotonic() + validate_timeout(deadline, "deadline")
        return CallContext(self._settings, per_request, deadline_at, self._budget)

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"{type(self).__name__}(base_url={s.base_url!r}, api_key={s.api_key.fingerprint}, "
            f"timeout={s.timeout}, max_retries={s.max_retries})"
        )


def _token_value(token: str | EphemeralToken) -> str:
    return token.value if isinstance(token, EphemeralToken) else token


class OrgaAI(_BaseClient):
    """The synchronous client, for Flask, Django, scripts and worker threads.

    One instance is safe to share between threads and reuses its connections. It opens nothing until the first call.

    Args:
        api_key: the permanent Orga API key (``sk_orga_ai_...``); default ``ORGA_API_KEY``.
        base_url: Orga Cloud's address; default ``ORGA_BASE_URL`` or ``https://api.orga-ai.com``. Plain http is
            refused except to a loopback host.
        timeout: seconds for each request; default ``ORGA_TIMEOUT`` or 10.0.
        max_retries: retries after the first attempt of each step; default ``ORGA_MAX_RETRIES`` or 2.
        debug: log a readable trace of each exchange to stderr; default ``ORGA_DEBUG`` or False.
        http_client: your own ``httpx.Client`` (mTLS, custom transports; ``pip install 'orga-ai[httpx]'``); you
            keep closing it. Without it the client runs on the standard library (see docs/reliability.md).
        transport: a transport of your own instead (``orga_ai.testing.MockTransport`` for tests without sockets);
            not with ``http_client``.
        default_headers: extra headers sent with every request (not Authorization).
        retry_budget: share one :class:`RetryBudget` between clients; each client has its own by default.
        max_retry_after: longest ``Retry-After`` (seconds) worth waiting for; default 10.0.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        debug: bool | None = None,
        http_client: httpx.Client | None = None,
        default_headers: Mapping[str, str] | None = None,
        retry_budget: RetryBudget | None = None,
        max_retry_after: float | None = None,
        transport: SyncTransport | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            debug=debug,
            default_headers=default_headers,
            retry_budget=retry_budget,
            max_retry_after=max_retry_after,
        )
        if http_client is not None and transport is not None:
            raise OrgaAIConfigurationError("pass http_client or transport, not both")
        if http_client is not None:
            from ._transports.httpx import HttpxTransport

            transport = HttpxTransport(http_client, max_response_bytes=self._settings.max_response_bytes)
        self._transport: SyncTransport | None = transport
        self._lock = threading.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------------------------------

    def get_session_config(
        self, *, timeout: float | None = None, deadline: float | None = None, ice: IcePolicy | None = None
    ) -> SessionConfig:
        """Mint an ephemeral token and fetch ICE servers with it: what one client needs to open one session.

        Args:
            timeout: seconds for each request of this call, instead of the client's ``timeout``.
            deadline: seconds for the whole call, retries and backoff included.
            ice: an :class:`~orga_ai.IcePolicy` narrowing the ICE servers handed out (see docs/ice.md).

        Raises:
            OrgaAIError: one of its subclasses, naming the step that failed.
        """
        return apply_ice_policy(self._run(session_flow(self._context(timeout, deadline))), ice)

    def fetch_ephemeral_token(self, *, timeout: float | None = None, deadline: float | None = None) -> EphemeralToken:
        """Only the first step: POST /v1/realtime/client-secrets with the API key."""
        return self._run(token_flow(self._context(timeout, deadline)))

    def fetch_ice_servers(
        self, token: str | EphemeralToken, *, timeout: float | None = None, deadline: float | None = None
    ) -> list[IceServer]:
        """Only the second step: GET /v1/realtime/ice-config with an ephemeral token."""
        servers, _ = self._run(ice_flow(self._context(timeout, deadline), _token_value(token)))
        return list(servers)

    def close(self) -> None:
        """Close the pooled connections (a client you passed in as ``http_client`` is left open)."""
        if isinstance(self._origin, OrgaAI):
            self._closed = True
            self._origin.close()
            return
        with self._lock:
            self._closed = True
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def __enter__(self) -> OrgaAI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- driver -----------------------------------------------------------------------------------------------------

    def _connections(self) -> SyncTransport:
        if isinstance(self._origin, OrgaAI):
            return self._origin._connections()
        transport = self._transport
        if transport is not None:
            return transport
        with self._lock:
            if self._closed:
                raise OrgaAIError("this OrgaAI client is closed")
            if self._transport is None:
                from ._transports.stdlib import StdlibTransport

                self._transport = StdlibTransport(
                    max_idle=_POOL_CONNECTIONS,
                    keepalive=_KEEPALIVE_SECONDS,
                    max_response_bytes=self._settings.max_response_bytes,
                )
            return self._transport

    def _run(self, flow: Flow[T]) -> T:
        flow = instrument(flow)
        outcome: Response | TransportFailure | None = None
        try:
            while True:
                action = flow.send(outcome)
                if isinstance(action, Sleep):
                    time.sleep(action.seconds)
                    outcome = None
                else:
                    outcome = self._send(action)
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            flow.close()

    def _send(self, request: Request) -> Response | TransportFailure:
        # The attempt's clock starts before the first call builds the transport (and imports http.client), so that
        # cost is part of the attempt's time.
        deadline = time.monotonic() + request.timeout
        if self._closed:
            raise OrgaAIError("this OrgaAI client is closed")
        return self._connections().send(request, deadline)


class AsyncOrgaAI(_BaseClient):
    """The asyncio client, on asyncio's own sockets and httptools' parser (``_transports/asyncio.py``: measured
    cheapest of aiohttp, aiosonic, httpcore, pyreqwest and rnet, see benchmarks/async_transport.py).

    One instance is safe to share between the tasks of one event loop and reuses its connections. It opens nothing
    until the first call. Use ``async with`` or ``await close()`` to release the connections.

    Takes the same arguments as :class:`OrgaAI`; ``http_client`` is your own ``aiohttp.ClientSession``, ``transport``
    an async transport (``orga_ai.testing.AsyncMockTransport``). And:

    Args:
        prefetch: keep up to this many fresh session configs minted ahead (the warm pool; 0, the default, is off).
            A pooled config is handed out once, and answers a call without any round trip to Orga. The cost:
            tokens minted ahead that expire unused when traffic is low. See docs/pool.md.
        prefetch_min_ttl_share: a pooled config with less than this share of its lifetime left is discarded.
        prefetch_refill_rate: at most this many configs minted per second to refill the pool.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        debug: bool | None = None,
        http_client: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        retry_budget: RetryBudget | None = None,
        max_retry_after: float | None = None,
        prefetch: int = 0,
        prefetch_min_ttl_share: float = 0.5,
        prefetch_refill_rate: float = 20.0,
        transport: AsyncTransport | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            debug=debug,
            default_headers=default_headers,
            retry_budget=retry_budget,
            max_retry_after=max_retry_after,
        )
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 0 <= prefetch <= 1000:
            raise OrgaAIConfigurationError("prefetch must be a whole number between 0 and 1000")
        self._pool: WarmPool | None = None
        if prefetch:
            from ._pool import WarmPool

            try:
                self._pool = WarmPool(
                    self._mint_for_pool,
                    size=prefetch,
                    min_ttl_share=prefetch_min_ttl_share,
                    refill_rate=prefetch_refill_rate,
                )
            except ValueError as exc:
                raise OrgaAIConfigurationError(f"warm pool: {exc}") from None
        if http_client is not None and transport is not None:
            raise OrgaAIConfigurationError("pass http_client or transport, not both")
        self._http_client = http_client
        self._transport: AsyncTransport | None = transport
        self._closed = False

    # -- public API -------------------------------------------------------------------------------------------------

    async def get_session_config(
        self, *, timeout: float | None = None, deadline: float | None = None, ice: IcePolicy | None = None
    ) -> SessionConfig:
        """Mint an ephemeral token and fetch ICE servers with it: what one client needs to open one session.

        Args:
            timeout: seconds for each request of this call, instead of the client's ``timeout``.
            deadline: seconds for the whole call, retries and backoff included.
            ice: an :class:`~orga_ai.IcePolicy` narrowing the ICE servers handed out (see docs/ice.md).

        Raises:
            OrgaAIError: one of its subclasses, naming the step that failed.
        """
        return apply_ice_policy(await self._session_config(timeout, deadline), ice)

    async def _session_config(self, timeout: float | None, deadline: float | None) -> SessionConfig:
        pool = self._pool
        if pool is None:
            return await self._run(session_flow(self._context(timeout, deadline)))
        if self._closed:
            raise OrgaAIError("this AsyncOrgaAI client is closed")
        pool.start()
        pooled = pool.take()
        if pooled is not None:
            return pooled
        try:
            config = await self._run(session_flow(self._context(timeout, deadline)))
        except (OrgaAIAuthenticationError, OrgaAIPermissionError):
            pool.pause()
            raise
        pool.resume()
        return config

    async def warm_up(self, timeout: float = 5.0) -> bool:
        """Start the warm pool and wait (at most ``timeout`` s) until it is full; True when full, False otherwise.

        Without ``prefetch`` this does nothing and returns True.
        """
        if self._pool is None:
            return True
        return await self._pool.wait_filled(timeout)

    @property
    def pool_stats(self) -> PoolStats | None:
        """Counters of the warm pool (hits, misses, discards, refill latency), or None when it is off."""
        return None if self._pool is None else self._pool.stats

    async def _mint_for_pool(self) -> SessionConfig:
        return await self._run(session_flow(self._context(None, None)))

    async def fetch_ephemeral_token(
        self, *, timeout: float | None = None, deadline: float | None = None
    ) -> EphemeralToken:
        """Only the first step: POST /v1/realtime/client-secrets with the API key."""
        return await self._run(token_flow(self._context(timeout, deadline)))

    @property
    def realtime(self) -> RealtimeNamespace:
        """Realtime calls placed with this client's key: ``async with orga.realtime.connect(voice=...) as call:``
        (the ``orga-ai[realtime]`` extra; see :mod:`orga_ai.realtime`)."""
        from .realtime import RealtimeNamespace

        return RealtimeNamespace(self)

    async def fetch_ice_servers(
        self, token: str | EphemeralToken, *, timeout: float | None = None, deadline: float | None = None
    ) -> list[IceServer]:
        """Only the second step: GET /v1/realtime/ice-config with an ephemeral token."""
        servers, _ = await self._run(ice_flow(self._context(timeout, deadline), _token_value(token)))
        return list(servers)

    async def close(self) -> None:
        """Stop the warm pool and close the connections (a session you passed in as ``http_client`` is left open)."""
        self._closed = True
        if isinstance(self._origin, AsyncOrgaAI):
            await self._origin.close()
            return
        if self._pool is not None:
            await self._pool.close()
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    async def __aenter__(self) -> AsyncOrgaAI:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- driver -----------------------------------------------------------------------------------------------------

    def _connections(self) -> AsyncTransport:
        if isinstance(self._origin, AsyncOrgaAI):
            return self._origin._connections()
        transport = self._transport
        if transport is not None:
            return transport
        if self._closed:
            raise OrgaAIError("this AsyncOrgaAI client is closed")
        settings = self._settings
        if self._http_client is None:
            try:
                from ._transports.asyncio import AsyncioTransport
            except ImportError:  # httptools missing (installed without its dependencies): aiohttp
                pass
            else:
                self._transport = AsyncioTransport(
                    base_url=settings.base_url,
                    max_response_bytes=settings.max_response_bytes,
                    limit=_POOL_CONNECTIONS,
                    keepalive=_KEEPALIVE_SECONDS,
                )
                return self._transport
        from ._transports.aiohttp import AiohttpTransport

        self._transport = transport = AiohttpTransport(
            self._http_client,
            base_url=settings.base_url,
            max_response_bytes=settings.max_response_bytes,
            limit=_POOL_CONNECTIONS,
            keepalive=_KEEPALIVE_SECONDS,
        )
        return transport

    async def _run(self, flow: Flow[T]) -> T:
        import asyncio

        # Build the transport and open its connections' home on this loop (importing its library the first time)
        # before the flow computes the first attempt's timeout from the time left, so that cost counts against the
        # deadline instead of overrunning it.
        with contextlib.suppress(ProxyConfigurationError):  # each attempt reports it, as a connection failure
            self._connections().prepare()
        flow = instrument(flow)
        outcome: Response | TransportFailure | None = None
        try:
            while True:
                action = flow.send(outcome)
                if isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                    outcome = None
                else:
                    outcome = await self._send(action)
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            flow.close()

    async def _send(self, request: Request) -> Response | TransportFailure:
        deadline = time.monotonic() + request.timeout
        return await self._connections().send(request, deadline)
