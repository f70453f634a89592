"""``OrgaAI`` (sync, on httpx) and ``AsyncOrgaAI`` (asyncio, on aiohttp): thin drivers of the flows in _protocol.

Both import their HTTP library on first use, so ``import orga_ai`` and a module-level client stay cheap and open no
socket until the first call.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._config import Settings, resolve_settings, validate_timeout
from ._exceptions import (
    OrgaAIAuthenticationError,
    OrgaAIConfigurationError,
    OrgaAIError,
    OrgaAIPermissionError,
)
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
from ._retry import RetryBudget

if TYPE_CHECKING:
    import asyncio
    import ssl

    import aiohttp
    import httpcore
    import httpx

    from ._pool import PoolStats, WarmPool

__all__ = ["AsyncOrgaAI", "OrgaAI"]

T = TypeVar("T")

_POOL_CONNECTIONS = 100
_KEEPALIVE_SECONDS = 30.0


# --------------------------------------------------------------------------------------------------------------------
# The sync client's whole-attempt deadline.
#
# httpx's timeouts bound each socket operation, not the attempt: a server that sends one byte every 200 ms never trips
# a 1 s read timeout, and while the status line and headers arrive the client cannot even look at the clock. The
# default httpx client of OrgaAI therefore runs on an httpcore network backend whose every connect, read and write is
# given min(its own timeout, the time left until the attempt's deadline), kept in a context variable (each thread has
# its own). When no time is left the operation fails with the matching httpcore timeout, which httpx maps to its
# own, so the driver classifies it as before (connect timeout: never left; read/write timeout: ambiguous).

_attempt_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orga_ai_attempt_deadline", default=None
)


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _attempt_deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt ran out of time")
    return left if timeout is None else min(timeout, left)


@functools.cache
def _deadline_backend_class() -> type[httpcore.NetworkBackend]:
    # Built on first use: httpcore is imported with httpx, never by ``import orga_ai``.
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: httpcore.NetworkStream) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            try:
                left = _time_left(timeout, httpcore.ConnectTimeout)
            except BaseException:
                # The TCP connection is up and nobody else holds it: httpcore closes a stream only when its own
                # start_tls fails, so a deadline that ran out between connect and TLS would leave it to the GC.
                self._stream.close()
                raise
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._backend = httpcore.SyncBackend()

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        ) -> httpcore.NetworkStream:
            stream = self._backend.connect_tcp(
                host, port, _time_left(timeout, httpcore.ConnectTimeout), local_address, socket_options
            )
            return DeadlineStream(stream)

        def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        ) -> httpcore.NetworkStream:  # pragma: no cover - OrgaAI never dials a unix socket
            left = _time_left(timeout, httpcore.ConnectTimeout)
            return DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    return DeadlineBackend


def _default_sync_http_client(timeout: float) -> httpx.Client:
    import urllib.request

    import httpcore
    import httpx

    limits = httpx.Limits(
        max_connections=_POOL_CONNECTIONS,
        max_keepalive_connections=_POOL_CONNECTIONS,
        keepalive_expiry=_KEEPALIVE_SECONDS,
    )
    if urllib.request.getproxies():
        # HTTP(S)_PROXY is set: keep httpx's own proxy handling (an explicit transport would switch it off). The
        # attempt is then bounded per phase and between body chunks only; docs/reliability.md says so.
        return httpx.Client(follow_redirects=False, timeout=timeout, limits=limits)
    ssl_context = httpx.create_ssl_context()  # loading the CA bundle costs ~0.1 s: do it once, share it
    transport = httpx.HTTPTransport(verify=ssl_context, limits=limits)
    # httpx (0.28) takes no network backend, so give its transport the same pool it builds, on ours; httpcore's
    # network backends are public API (https://www.encode.io/httpcore/network-backends/).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_deadline_backend_class()(),
    )
    return httpx.Client(follow_redirects=False, timeout=timeout, transport=transport)


def _describe(exc: BaseException) -> str:
    # Exception texts of the HTTP libraries name the URL and the OS error, never our headers.
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text[:160]}" if text else name


class _BaseClient:
    """Settings, validation and the pieces both drivers share; no I/O."""

    _settings: Settings

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
        http_client: your own ``httpx.Client`` (proxies, mTLS, custom transports); you keep closing it.
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
        self._owns_http = http_client is None
        self._lock = threading.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------------------------------

    def get_session_config(self, *, timeout: float | None = None, deadline: float | None = None) -> SessionConfig:
        """Mint an ephemeral token and fetch ICE servers with it: what one client needs to open one session.

        Args:
            timeout: seconds for each request of this call, instead of the client's ``timeout``.
            deadline: seconds for the whole call, retries and backoff included.

        Raises:
            OrgaAIError: one of its subclasses, naming the step that failed.
        """
        return self._run(session_flow(self._context(timeout, deadline)))

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
        with self._lock:
            self._closed = True
            http, self._http = self._http, None
        if http is not None and self._owns_http:
            http.close()

    def __enter__(self) -> OrgaAI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- driver -----------------------------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        http = self._http
        if http is not None:
            return http
        with self._lock:
            if self._closed:
                raise OrgaAIError("this OrgaAI client is closed")
            if self._http is None:
                self._http = _default_sync_http_client(self._settings.timeout)
            return self._http

    def _run(self, flow: Flow[T]) -> T:
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
        # Read by the network backend of the default client (see _time_left); a client passed in as http_client
        # ignores it and is bounded per phase and by the clock check between body chunks. Set before the first
        # call builds the client, whose set-up (loading the CA bundle) is part of the attempt's time.
        token = _attempt_deadline.set(time.monotonic() + request.timeout)
        try:
            return self._exchange(request)
        finally:
            _attempt_deadline.reset(token)

    def _exchange(self, request: Request) -> Response | TransportFailure:
        import httpx

        client = self._client()
        cap = self._settings.max_response_bytes
        started = time.perf_counter()
        try:
            with client.stream(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                timeout=httpx.Timeout(request.timeout),
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
        self._closed = False

    # -- public API -------------------------------------------------------------------------------------------------

    async def get_session_config(
        self, *, timeout: float | None = None, deadline: float | None = None
    ) -> SessionConfig:
        """Mint an ephemeral token and fetch ICE servers with it: what one client needs to open one session.

        Args:
            timeout: seconds for each request of this call, instead of the client's ``timeout``.
            deadline: seconds for the whole call, retries and backoff included.

        Raises:
            OrgaAIError: one of its subclasses, naming the step that failed.
        """
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

    async def fetch_ice_servers(
        self, token: str | EphemeralToken, *, timeout: float | None = None, deadline: float | None = None
    ) -> list[IceServer]:
        """Only the second step: GET /v1/realtime/ice-config with an ephemeral token."""
        servers, _ = await self._run(ice_flow(self._context(timeout, deadline), _token_value(token)))
        return list(servers)

    async def close(self) -> None:
        """Stop the warm pool and close the connections (a session you passed in as ``http_client`` is left open)."""
        self._closed = True
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

        # The loop that owned the old session is closed, so its sockets are gone with it; start afresh.
        connector = aiohttp.TCPConnector(
            limit=_POOL_CONNECTIONS, keepalive_timeout=_KEEPALIVE_SECONDS, ttl_dns_cache=300
        )
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False)
        self._loop = loop
        return self._http

    async def _run(self, flow: Flow[T]) -> T:
        import asyncio

        # Open the session (and import aiohttp, ~0.2 s the first time) before the flow computes the first attempt's
        # timeout from the time left, so that cost counts against the deadline instead of overrunning it.
        self._session()
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

        session = self._session()
        cap = self._settings.max_response_bytes
        started = time.perf_counter()
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
        except aiohttp.ClientConnectorError as exc:
            return TransportFailure(FailureKind.CONNECT, _describe(exc), exc, time.perf_counter() - started)
        except (aiohttp.ClientError, OSError) as exc:
            return TransportFailure(FailureKind.BROKEN, _describe(exc), exc, time.perf_counter() - started)
