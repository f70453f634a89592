"""The sync transport over a caller's own ``httpx.Client`` (``OrgaAI(http_client=...)``): mTLS, custom transports.

The client's own settings (proxies, certificates, limits) are the caller's and stay as they are; what this module adds
is what the flows need of every transport: the attempt's deadline for each phase and, by the clock, between body
chunks; the size cap; no redirects. The caller keeps the client open and closes it: :meth:`HttpxTransport.close` does
nothing.
"""

from __future__ import annotations

import time

import httpx

from .._protocol import FailureKind, Request, Response, TransportFailure
from .base import describe

__all__ = ["HttpxTransport"]


class HttpxTransport:
    """A :class:`~orga_ai._transports.base.SyncTransport` on a caller's ``httpx.Client``."""

    def __init__(self, client: httpx.Client, *, max_response_bytes: int) -> None:
        self.client = client
        self._cap = max_response_bytes

    def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        """One attempt, bounded per phase, and by the clock between body chunks."""
        started = deadline - request.timeout
        cap = self._cap
        try:
            with self.client.stream(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                timeout=httpx.Timeout(max(deadline - time.monotonic(), 0.0)),
                follow_redirects=False,
            ) as response:
                body, truncated = bytearray(), False
                declared = response.headers.get("content-length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > cap:
                    truncated = True
                else:
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > cap:
                            truncated = True
                            break
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("the whole answer took longer than the timeout")
                headers = {k.lower(): v for k, v in response.headers.items()}
                return Response(response.status_code, headers, bytes(body), time.monotonic() - started, truncated)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return TransportFailure(FailureKind.CONNECT_TIMEOUT, describe(exc), exc, time.monotonic() - started)
        except httpx.TimeoutException as exc:
            return TransportFailure(FailureKind.READ_TIMEOUT, describe(exc), exc, time.monotonic() - started)
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
            return TransportFailure(FailureKind.CONNECT, describe(exc), exc, time.monotonic() - started)
        except httpx.HTTPError as exc:
            return TransportFailure(FailureKind.BROKEN, describe(exc), exc, time.monotonic() - started)

    def close(self) -> None:
        """Nothing: the caller closes their own client."""
