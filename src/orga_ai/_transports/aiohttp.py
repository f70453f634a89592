"""The async transport on aiohttp: a session of its own, or the ``aiohttp.ClientSession`` a caller brought.

Its own session is made on first use, on the running loop, and belongs to that loop:

* **One loop at a time.** A call from another loop while the first still runs is refused (an
  :class:`~orga_ai.OrgaAIError`); once that loop is closed, its sockets are gone with it and a new session is made.
* **Proxies** as the sync client reads them (``_proxy_env``: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``), decided
  once per session: not aiohttp's ``trust_env``, which reads ``~/.netrc`` and the environment again on every request.
  The proxy's credentials go on the CONNECT to the proxy only, never inside the tunnel to Orga.
* **Clean close.** A module-level client is often never closed. ``asyncio.run()`` closes every async generator still
  open before it closes the loop; a guard generator parked on the loop closes the session then, while the loop still
  runs, so aiohttp has no "Unclosed client session" to report. A finalizer covers loops ended without that step, and
  the interpreter's exit.
* Per attempt: a ``total`` timeout from the attempt's deadline, no redirects, the size cap (a declared length past it
  is not read at all).

A caller's session keeps its own settings (proxy, TLS, limits) and is never closed here.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from urllib.parse import urlsplit

import aiohttp

from .._exceptions import OrgaAIError
from .._protocol import FailureKind, Request, Response, TransportFailure
from .._proxy_env import ProxyConfigurationError, ProxyTarget, proxy_from_environment
from .base import MAX_HEADERS, describe, start_guard

__all__ = ["AiohttpTransport"]


class AiohttpTransport:
    """An :class:`~orga_ai._transports.base.AsyncTransport` on aiohttp; ``session`` is a caller's, or None for one of
    its own (``limit`` connections, idle ones kept ``keepalive`` seconds)."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        base_url: str,
        max_response_bytes: int,
        limit: int,
        keepalive: float,
    ) -> None:
        self._http = session
        self._owns_http = session is None
        self._base_url = base_url
        self._cap = max_response_bytes
        self._limit = limit
        self._keepalive = keepalive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy_headers: dict[str, str] | None = None
        self._closed = False

    def prepare(self) -> None:
        self._session()

    def _session(self) -> aiohttp.ClientSession:
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
        # An unusable proxy raises ProxyConfigurationError before anything is opened.
        proxy = _proxy_for(self._base_url)
        # The loop that owned the old session is closed, so its sockets are gone with it; start afresh.
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive, ttl_dns_cache=300)
        self._http = http = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            trust_env=False,
            proxy=None if proxy is None else proxy.url,
        )
        # aiohttp has no session-wide proxy headers (and proxy_auth is deprecated): they go per request.
        authorization = None if proxy is None else proxy.authorization()
        self._proxy_headers = None if authorization is None else {"Proxy-Authorization": authorization}
        self._loop = loop
        self._guard = start_guard(functools.partial(_close_session, http))
        weakref.finalize(self, _close_abandoned, http, loop)
        return http

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        started = deadline - request.timeout
        try:
            session = self._session()
        except ProxyConfigurationError as exc:
            return TransportFailure(FailureKind.CONNECT, describe(exc), exc, time.monotonic() - started)
        cap = self._cap
        left = max(deadline - time.monotonic(), 0.001)
        timeout = aiohttp.ClientTimeout(total=left, sock_connect=left)
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
                if len(response.raw_headers) > MAX_HEADERS:
                    # aiohttp refuses such a head itself only from 3.14 on; the other transports always do.
                    detail = f"the answer has more than {MAX_HEADERS} headers"
                    return TransportFailure(FailureKind.BROKEN, detail, None, time.monotonic() - started)
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
                return Response(response.status, headers, data, time.monotonic() - started, truncated)
        except aiohttp.ConnectionTimeoutError as exc:
            return TransportFailure(FailureKind.CONNECT_TIMEOUT, describe(exc), exc, time.monotonic() - started)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            # The connect phase has its own error above, so the request may have reached Orga: ambiguous.
            detail = describe(exc) if str(exc) else "TimeoutError: no whole answer in time"
            return TransportFailure(FailureKind.READ_TIMEOUT, detail, exc, time.monotonic() - started)
        except (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError) as exc:
            # A proxy that refused the tunnel (407, 403...) is a connection failure too: nothing reached Orga.
            return TransportFailure(FailureKind.CONNECT, describe(exc), exc, time.monotonic() - started)
        except (aiohttp.ClientError, OSError) as exc:
            return TransportFailure(FailureKind.BROKEN, describe(exc), exc, time.monotonic() - started)

    async def aclose(self) -> None:
        """Close the session this transport made (a caller's stays open); no call is served afterwards."""
        self._closed = True
        http, self._http = self._http, None
        if http is not None and self._owns_http and not http.closed:
            await http.close()


def _proxy_for(base_url: str) -> ProxyTarget | None:
    """The environment's proxy for the client's one origin (NO_PROXY and the other rules of _proxy_env)."""
    parts = urlsplit(base_url)
    return proxy_from_environment(parts.scheme, parts.hostname or "")


async def _close_session(http: aiohttp.ClientSession) -> None:
    if not http.closed:
        await http.close()


def _close_abandoned(http: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    """Close the session of a transport that was dropped (or still open at exit) without ``aclose()``."""
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
