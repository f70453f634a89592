"""``OrgaAI`` (sync, on http.client) and ``AsyncOrgaAI`` (asyncio, on aiohttp): thin drivers of the flows in _protocol.

Both import their HTTP library on first use, so ``import orga_ai`` and a module-level client stay cheap and open no
socket until the first call. The sync transport (its whole-attempt deadline, pool, proxies, TLS) is in _sync_http.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Mapping
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
    FailureKind,
    Flow,
    Request,
    Response,
    Sleep,
    TransportFailure,
    ice_flow,
    session_flow,
    token_flow,
)
from ._proxy_env import ProxyConfigurationError, ProxyTarget, proxy_from_environment
from ._retry import RetryBudget
from ._telemetry import instrument

if TYPE_CHECKING:
    import asyncio

    import aiohttp
    import httpx

    from ._pool import PoolStats, WarmPool
    from ._sync_http import SyncPool
    from .realtime import RealtimeNamespace

__all__ = ["AsyncOrgaAI", "OrgaAI"]

T = TypeVar("T")

_POOL_CONNECTIONS = 100
_KEEPALIVE_SECONDS = 30.0


def _describe(exc: BaseException) -> str:
    # Exception texts of the HTTP libraries name the URL and the OS error, never our headers.
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text[:160]}" if text else name


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
        self._http: httpx.Client | None = http_client
        self._pool: SyncPool | None = None
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
            pool, self._pool = self._pool, None
            self._http = None
        if pool is not None:
            pool.close()

    def __enter__(self) -> OrgaAI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- driver -----------------------------------------------------------------------------------------------------

    def _connections(self) -> SyncPool:
        if isinstance(self._origin, OrgaAI):
            return self._origin._connections()
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise OrgaAIError("this OrgaAI client is closed")
            if self._pool is None:
                from ._sync_http import SyncPool

                self._pool = SyncPool(max_idle=_POOL_CONNECTIONS, keepalive=_KEEPALIVE_SECONDS)
            return self._pool

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
        if self._http is not None:
            return _exchange_httpx(self._http, request, self._settings.max_response_bytes)
        if self._closed:
            raise OrgaAIError("this OrgaAI client is closed")
        return self._exchange(request)

    def _exchange(self, request: Request) -> Response | TransportFailure:
        # Every socket operation of this attempt (connect, TLS, each send and receive) gets at most the time left
        # until this deadline: see _sync_http. Set before the first call builds the pool (and imports http.client),
        # so that cost is part of the attempt's time.
        started = time.perf_counter()
        from . import _sync_http

        token = _sync_http.set_deadline(time.monotonic() + request.timeout)
        try:
            status, headers, body, truncated = self._connections().exchange(
                request.method,
                request.url,
                request.headers,
                request.content,
                request.timeout,
                self._settings.max_response_bytes,
            )
            return Response(status, headers, body, time.perf_counter() - started, truncated)
        except _sync_http.ConnectPhaseError as exc:
            cause = exc.cause
            kind = FailureKind.CONNECT_TIMEOUT if isinstance(cause, TimeoutError) else FailureKind.CONNECT
            return TransportFailure(kind, _describe(cause), cause, time.perf_counter() - started)
        except TimeoutError as exc:
            return TransportFailure(FailureKind.READ_TIMEOUT, _describe(exc), exc, time.perf_counter() - started)
        except (_sync_http.HTTPException, OSError) as exc:
            return TransportFailure(FailureKind.BROKEN, _describe(exc), exc, time.perf_counter() - started)
        finally:
            _sync_http.reset_deadline(token)


def _exchange_httpx(client: httpx.Client, request: Request, cap: int) -> Response | TransportFailure:
    """One attempt on a caller's ``httpx.Client``: bounded per phase, and by the clock between body chunks."""
    import httpx

    started = time.perf_counter()
    try:
        with client.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=request.content,
            timeout=httpx.Timeout(request.timeout),
            follow_redirects=False,
        ) as response:
            body, truncated = bytearray(), False
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                truncated = True
            else:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        truncated = True
                        break
                    if time.perf_counter() - started > request.timeout:
                        raise httpx.ReadTimeout("the whole answer took longer than the timeout")
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Response(response.status_code, headers, bytes(body), time.perf_counter() - started, truncated)
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return TransportFailure(FailureKind.CONNECT_TIMEOUT, _describe(exc), exc, time.perf_counter() - started)
    except httpx.TimeoutException as exc:
        return TransportFailure(FailureKind.READ_TIMEOUT, _describe(exc), exc, time.perf_counter() - started)
    except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
        return TransportFailure(FailureKind.CONNECT, _describe(exc), exc, time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return TransportFailure(FailureKind.BROKEN, _describe(exc), exc, time.perf_counter() - started)


class AsyncOrgaAI(_BaseClient):
    """The asyncio client, on aiohttp (measured several times faster than httpx's async stack on this workload).

    One instance is safe to share between the tasks of one event loop and reuses its connections. It opens nothing
    until the first call. Use ``async with`` or ``await close()`` to release the connections.

    Takes the same arguments as :class:`OrgaAI`; ``http_client`` is your own ``aiohttp.ClientSession``. And:

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
        self._http: aiohttp.ClientSession | None = http_client
        self._owns_http = http_client is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy_headers: dict[str, str] | None = None
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
        http, self._http = self._http, None
        if http is not None and self._owns_http and not http.closed:
            await http.close()

    async def __aenter__(self) -> AsyncOrgaAI:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- driver -----------------------------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        import asyncio

        if isinstance(self._origin, AsyncOrgaAI):
            session = self._origin._session()
            self._proxy_headers = self._origin._proxy_headers
            return session
        loop = asyncio.get_running_loop()
        http = self._http
        if http is not None and (not self._owns_http or self._loop is loop):
            return http
        if self._closed:
            raise OrgaAIError("this AsyncOrgaAI client is closed")
        if http is not None and self._loop is not None and not self._loop.is_closed():
            raise OrgaAIError(
                "this AsyncOrgaAI client is in use by another event loop; create one client per event loop"
            )
        import aiohttp

        # The proxy the environment names for Orga's origin (the same rules as the sync client), decided once here:
        # not trust_env, which reads ~/.netrc and the environment again on every request. An unusable proxy raises
        # ProxyConfigurationError before anything is opened.
        proxy = _async_proxy(self._settings.base_url)
        # The loop that owned the old session is closed, so its sockets are gone with it; start afresh.
        connector = aiohttp.TCPConnector(
            limit=_POOL_CONNECTIONS, keepalive_timeout=_KEEPALIVE_SECONDS, ttl_dns_cache=300
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            trust_env=False,
            proxy=None if proxy is None else proxy.url,
        )
        # Its credentials go per request (aiohttp has no session-wide proxy headers; proxy_auth is deprecated): on
        # the CONNECT to the proxy only, never inside the tunnel to Orga.
        authorization = None if proxy is None else proxy.authorization()
        self._proxy_headers = None if authorization is None else {"Proxy-Authorization": authorization}
        self._loop = loop
        # A module-level client is often never closed. asyncio.run() closes every async generator still open before
        # it closes the loop (shutdown_asyncgens); this one's `finally` then closes the session while the loop still
        # runs, so the sockets close cleanly and aiohttp has no "Unclosed client session" to report. The finalizer
        # covers loops ended without that step, and the interpreter's exit.
        self._guard = _start_guard(self._http)
        weakref.finalize(self, _close_abandoned, self._http, loop)
        return self._http

    async def _run(self, flow: Flow[T]) -> T:
        import asyncio

        # Open the session (and import aiohttp, ~0.2 s the first time) before the flow computes the first attempt's
        # timeout from the time left, so that cost counts against the deadline instead of overrunning it.
        with contextlib.suppress(ProxyConfigurationError):  # each attempt reports it, as a connection failure
            self._session()
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
        import asyncio

        import aiohttp

        started = time.perf_counter()
        try:
            session = self._session()
        except ProxyConfigurationError as exc:
            return TransportFailure(FailureKind.CONNECT, _describe(exc), exc, time.perf_counter() - started)
        cap = self._settings.max_response_bytes
        timeout = aiohttp.ClientTimeout(total=request.timeout, sock_connect=request.timeout)
        try:
            # request.headers is built afresh for each request by the flow, and aiohttp copies it: no copy here.
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.content if request.content else None,
                timeout=timeout,
                allow_redirects=False,
                proxy_headers=self._proxy_headers,
            ) as response:
                truncated = False
                declared = response.content_length
                if declared is not None and declared > cap:
                    data = b""
                    truncated = True
                elif declared is not None:
                    data = await response.read()  # announced and under the cap: one read, no chunk loop
                else:
                    body = bytearray()
                    async for chunk in response.content.iter_any():
                        body += chunk
                        if len(body) > cap:
                            truncated = True
                            break
                    data = bytes(body)
                headers = {k.lower(): v for k, v in response.headers.items()}
                return Response(response.status, headers, data, time.perf_counter() - started, truncated)
        except aiohttp.ConnectionTimeoutError as exc:
            return TransportFailure(FailureKind.CONNECT_TIMEOUT, _describe(exc), exc, time.perf_counter() - started)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            # The connect phase has its own error above, so the request may have reached Orga: ambiguous.
            detail = _describe(exc) if str(exc) else "TimeoutError: no whole answer in time"
            return TransportFailure(FailureKind.READ_TIMEOUT, detail, exc, time.perf_counter() - started)
        except (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError) as exc:
            # A proxy that refused the tunnel (407, 403...) is a connection failure too: nothing reached Orga.
            return TransportFailure(FailureKind.CONNECT, _describe(exc), exc, time.perf_counter() - started)
        except (aiohttp.ClientError, OSError) as exc:
            return TransportFailure(FailureKind.BROKEN, _describe(exc), exc, time.perf_counter() - started)


def _async_proxy(base_url: str) -> ProxyTarget | None:
    """The environment's proxy for the client's one origin (NO_PROXY and the other rules of _proxy_env)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    return proxy_from_environment(parts.scheme, parts.hostname or "")


async def _close_at_loop_shutdown(http: aiohttp.ClientSession) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if not http.closed:
            await http.close()


def _start_guard(http: aiohttp.ClientSession) -> AsyncIterator[None]:
    """An async generator, started on the running loop (so the loop tracks it) and parked at its ``yield``."""
    guard = _close_at_loop_shutdown(http)
    step = guard.__anext__()
    with contextlib.suppress(StopIteration):  # StopIteration is the step's completion: it ran to the yield at once
        step.send(None)  # type: ignore[attr-defined]
    return guard


def _close_abandoned(http: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    """Close the session of an AsyncOrgaAI that was dropped (or still open at exit) without ``close()``."""
    import asyncio

    if http.closed:
        return
    try:
        if loop.is_closed():
            # Its sockets went with the loop; closing now only marks the session and its connector closed.
            asyncio.run(http.close())
        elif loop.is_running():
            loop.create_task(http.close())
        else:
            loop.run_until_complete(http.close())
    except Exception:  # noqa: BLE001, S110 - best effort at exit: never let clean-up raise from a finalizer
        pass
