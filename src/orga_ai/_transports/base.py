"""The interface every transport of the SDK implements: one attempt in, one outcome out.

A transport sends one :class:`~orga_ai._protocol.Request` and returns what came back: a
:class:`~orga_ai._protocol.Response`, or a :class:`~orga_ai._protocol.TransportFailure` saying why nothing usable came
back (it never raises for a network error). The drivers in ``_client.py`` know nothing else about HTTP.

What every transport owes the flows, whatever library it is written on:

* **the whole-attempt deadline**: ``deadline`` (a ``time.monotonic()`` reading) bounds connecting, the proxy tunnel,
  the TLS handshake, sending and reading the whole answer together; past it the outcome is a timeout failure;
* **the failure kind**: ``CONNECT``/``CONNECT_TIMEOUT`` only when the request cannot have reached the server (the flow
  retries those freely), ``READ_TIMEOUT``/``BROKEN`` once it may have;
* **the size cap** given at construction: a body past it is not read further and comes back ``truncated``;
* **no redirects** (a 3xx is an answer like any other), TLS verified against the system trust store, and the proxy the
  environment names for the origin (``_proxy_env``) unless the caller brought their own client;
* **lower-case header names** in the response, and no secret in a failure's ``detail``.

Adding one: a module here with a class that has these methods, a line in the client that builds it, and the client
test suite run against it (``tests/client`` parametrizes the transports).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

from .._protocol import Request, Response, TransportFailure

__all__ = ["MAX_HEADERS", "AsyncTransport", "SyncTransport", "describe", "replayable", "start_guard"]

# The most header lines an answer may carry, as http.client allows: past it, the answer is a broken connection.
MAX_HEADERS = 100


class SyncTransport(Protocol):
    """A transport for :class:`~orga_ai.OrgaAI`; safe to call from several threads at once."""

    def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        """One attempt of ``request``, all of it before ``deadline`` (``time.monotonic()`` seconds)."""
        ...

    def close(self) -> None:
        """Release what the transport opened (a client the caller brought stays open)."""
        ...


class AsyncTransport(Protocol):
    """A transport for :class:`~orga_ai.AsyncOrgaAI`; safe to call from the tasks of one event loop."""

    def prepare(self) -> None:
        """Called on the running loop before a call starts: do the one-time set-up (a session, a pool) there, so its
        cost is not an attempt's, and raise :class:`~orga_ai.OrgaAIError` if this loop cannot be served."""
        ...

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        """One attempt of ``request``, all of it before ``deadline`` (``time.monotonic()`` seconds)."""
        ...

    async def aclose(self) -> None:
        """Release what the transport opened (a session the caller brought stays open)."""
        ...


def describe(exc: BaseException) -> str:
    """A failure's short ``detail``: the exception's class and text, cut to 160 characters."""
    # Exception texts of the HTTP libraries name the URL and the OS error, never our headers.
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text[:160]}" if text else name


def replayable(method: str, headers: Mapping[str, str]) -> bool:
    """Whether sending the request again cannot do anything twice: a GET, or a request carrying an idempotency key."""
    return method in ("GET", "HEAD", "OPTIONS") or any(name.lower() == "idempotency-key" for name in headers)


async def _close_at_loop_shutdown(close: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await close()


def start_guard(close: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """An async generator, started on the running loop and parked at its ``yield``: the loop tracks it (asyncio's
    asyncgen hooks), so ``asyncio.run()`` finalises it at shutdown, awaiting ``close()`` while the loop still runs.
    An async transport keeps one for the connections it opened on that loop."""
    guard = _close_at_loop_shutdown(close)
    step = guard.__anext__()
    with contextlib.suppress(StopIteration):  # StopIteration is the step's completion: it ran to the yield at once
        step.send(None)  # type: ignore[attr-defined]
    return guard
