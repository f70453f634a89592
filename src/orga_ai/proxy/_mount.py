"""``RouteMount``: the adapter contract, what every framework adapter owes the route, held once.

An adapter translates its framework's request into a :class:`~orga_ai.proxy.ProxyRequest` and the
:class:`~orga_ai.proxy.ProxyResponse` back, and registers the routes; the mount does the rest:

* the :class:`ProxyCore`, from a :class:`ProxyPolicy`, its settings as keywords, or a ready core;
* the SDK clients (:attr:`clients` async, :attr:`sync_clients` sync), each built on first use, closed by us unless
  the adapter was given one;
* the body cap: the readers that stop at the cap and :func:`body_too_large`, the one 413 of every entry point;
* the events beacon when ``policy.events``;
* adopting the host app's CORS allowlist (a reader of ``orga_ai.integrations._cors``);
* the start-up announcement (:meth:`start`), and closing it all (:meth:`aclose`, :meth:`close`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._client import AsyncOrgaAI, OrgaAI
from ._auth import Principal, to_principal
from ._clients import AsyncClientHolder, SyncClientHolder
from ._core import BodyReader, ProxyCore
from ._drivers import Offload
from ._errors import body_too_large
from ._events import MAX_EVENT_BYTES, EventBeacon, read_capped
from ._policy import ProxyPolicy
from ._request import ProxyRequest, ProxyResponse, sane_request_id

if TYPE_CHECKING:
    from ..integrations._cors import Found

__all__ = ["RouteMount", "body_too_large", "drain", "gather", "refuse_stream"]



def refuse_stream(request: ProxyRequest, read: Callable[[int], bytes], limit: int) -> ProxyResponse | None:
    """The 413 of a sync POST whose body, without a declared length (the core checks a declared one), passes
    ``limit`` bytes; it is drained to the cap here so that the server buffers no more. None when within."""
    declared = request.headers.get("content-length", "").strip()  # WSGI may report a missing one as ""
    if request.method != "POST" or declared:
        return None
    seen = 0
    while chunk := read(4096):
        seen += len(chunk)
        if seen > limit:
            return body_too_large(sane_request_id(request.headers.get("x-request-id")))
    return None


async def drain(chunks: AsyncIterable[bytes], limit: int) -> bool | None:
    """Receive (and drop) a body: True once whole, False as soon as it passes ``limit`` bytes, None when the client
    went away before sending it all (the core's :data:`~orga_ai.proxy._core.BodyReader` contract)."""
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > limit:
                return False
    except ConnectionError:
        return None
    return True


async def gather(chunks: AsyncIterable[bytes], limit: int = MAX_EVENT_BYTES) -> bytes | None:
    """A beacon's body, or None once it passed ``limit`` bytes or the client went away (nothing more is read)."""
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                return None
    except ConnectionError:
        return None
    return bytes(body)


class RouteMount:
    """The route and its beacon for one adapter: built from a ``policy`` (or its settings as keywords) or a ready
    ``core`` (whose policy's ``path``, ``events`` and ``prefetch`` apply, overridden by keywords among them).

    Args:
        orga: the SDK client, sync (:class:`OrgaAI`) or async (:class:`AsyncOrgaAI`); it stays the caller's to close.
            Otherwise each kind is built on first use from ``orga_options``.
        own: the adapter's own CORS setting, named in a 403 and in a refusal of the host app's CORS.

    Attributes:
        policy: the route's settings (``path``, ``events``); ``core.policy`` without the adapter's overrides.
        beacon: the :class:`EventBeacon` when ``policy.events``, else None; ``events_path`` is where it is served.
    """

    def __init__(
        self,
        policy: ProxyPolicy | None = None,
        *,
        core: ProxyCore | None = None,
        orga: AsyncOrgaAI | OrgaAI | None = None,
        orga_options: dict[str, Any] | None = None,
        own: str = "cors_origins",
        **settings: Any,
    ) -> None:
        if core is None:
            core = ProxyCore(policy, **settings)
            core.cors_setting = own
            self.policy = core.policy
        elif policy is not None:
            raise ValueError("give a policy or a ready core, not both")
        else:
            self.policy = core.policy.replace(**settings) if settings else core.policy
        self.core = core
        self.own = own
        self.explicit_cors = bool(core.cors_origins)  # the route's own list: the host's wildcard is then ignored
        given_async = orga if isinstance(orga, AsyncOrgaAI) else None
        given_sync = orga if isinstance(orga, OrgaAI) else None
        self.clients = AsyncClientHolder(core.metrics, given_async, options=orga_options, prefetch=self.policy.prefetch)
        self.sync_clients = SyncClientHolder(core.metrics, given_sync, options=orga_options)
        self.beacon = EventBeacon(core) if self.policy.events else None
        self.path = self.policy.path
        self.events_path = self.path.rstrip("/") + "/events"
        self._adopted = threading.Event()
        self._adopting = threading.Lock()

    # -- start-up -------------------------------------------------------------------------------------------------

    def adopt_cors(self, reader: Callable[..., Found | None], *args: Any) -> None:
        """Add the host app's CORS allowlist, as ``reader(*args, own=, explicit=)`` finds it, to the route's."""
        found = reader(*args, own=self.own, explicit=self.explicit_cors)
        if found is not None:
            origins, patterns, setting = found
            self.core.adopt_cors(origins, patterns, setting=setting)

    def adopt_cors_once(self, reader: Callable[..., Found | None], *args: Any) -> None:
        """:meth:`adopt_cors` the first time only (from a request thread: the app is complete by its first request)."""
        if not self._adopted.is_set():
            with self._adopting:
                if not self._adopted.is_set():
                    self.adopt_cors(reader, *args)
                    self._adopted.set()

    def start(self, *, sync: bool = False, client: bool = True) -> None:
        """Announce the policy; with ``client``, build the SDK client of that kind now, so that a missing API key
        stops the start-up rather than the first caller."""
        self.core.announce()
        if client:
            (self.sync_clients if sync else self.clients).get()

    @contextlib.asynccontextmanager
    async def running(self, reader: Callable[..., Found | None] | None = None, *args: Any) -> AsyncIterator[None]:
        """An async app's lifetime: adopt the host's CORS (``reader(*args)``, see :meth:`adopt_cors`) and
        :meth:`start`; :meth:`aclose` on the way out."""
        if reader is not None:
            self.adopt_cors(reader, *args)
        self.start()
        try:
            yield
        finally:
            await self.aclose()

    # -- serving --------------------------------------------------------------------------------------------------

    async def serve(
        self, request: ProxyRequest, *, read_body: BodyReader | None = None, offload: Offload | None = None
    ) -> ProxyResponse:
        """The route from async code. ``read_body`` receives a POST's body once its head passed the checks (see
        :func:`drain`); ``offload`` runs authentication (as in :meth:`ProxyCore.handle`)."""
        orga = self.clients.get()
        return await self.core.handle(request, orga, offload=offload, read_body=read_body)

    async def serve_events(
        self,
        request: ProxyRequest,
        body: bytes | Callable[[], Awaitable[bytes | bytearray | None]] | None,
        *,
        offload: Offload | None = None,
    ) -> ProxyResponse:
        """The beacon from async code; ``body`` as :meth:`EventBeacon.handle` takes it (see :func:`gather`)."""
        assert self.beacon is not None, "the beacon is served only with events=True"
        return await self.beacon.handle(request, body, offload=offload)

    def serve_sync(self, request: ProxyRequest, *, read: Callable[[int], bytes] | None = None) -> ProxyResponse:
        """The route from a request thread; ``read(n)`` reads the body stream (see :func:`refuse_stream`)."""
        refused = None if read is None else refuse_stream(request, read, self.core.max_body_bytes)
        return refused or self.core.handle_sync(request, self.sync_clients.get())

    def serve_events_sync(self, request: ProxyRequest, read: Callable[[int], bytes]) -> ProxyResponse:
        """The beacon from a request thread; ``read(n)`` reads the body stream (at most the cap and one byte)."""
        assert self.beacon is not None, "the beacon is served only with events=True"
        body = read_capped(read) if request.method == "POST" else b""
        return self.beacon.handle_sync(request, body)

    async def principal(self, request: ProxyRequest) -> Principal:
        """The caller as the route's authenticator sees it (raises :class:`AuthenticationError`), for the app's own
        routes."""
        found = await self.core.authenticate_async(self.core.prepare(request), None)
        return to_principal(found, source=self.core.auth_name)

    # -- shutdown -------------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the SDK clients we built, the rate-limit storage's connections and the beacon's."""
        await self.clients.aclose()
        self.sync_clients.close()
        await self.core.rate_limiter.aclose()
        if self.beacon is not None:
            await self.beacon.aclose()

    def close(self) -> None:
        """:meth:`aclose` from sync code; an async client is left to its event loop (the SDK closes it at exit)."""
        self.sync_clients.close()
        self.core.rate_limiter.close()
        if self.beacon is not None:
            self.beacon.close()

    def __repr__(self) -> str:
        return f"RouteMount({self.path!r}, events={self.beacon is not None}, {self.core!r})"
