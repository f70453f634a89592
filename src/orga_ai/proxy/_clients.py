"""Lazily created SDK clients for the proxy: built on first use (no socket at import), counting retries."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from typing import Any

from .._client import AsyncOrgaAI, OrgaAI
from ._metrics import CountingRetryBudget, Metrics

__all__ = ["AsyncClientHolder", "SyncClientHolder", "preload_transport"]


def preload_transport() -> None:
    """Import the async SDK client's default transport (asyncio + httptools) now, at start-up: the client imports it
    on first use, which would otherwise be the first caller's request. Not aiohttp (some 0.1 s): the client needs it
    only around a session of the caller's, who has imported it already, or when httptools is missing."""
    try:
        from .._transports import asyncio  # noqa: F401
    except ImportError:  # httptools missing: the client falls back to aiohttp, as AsyncOrgaAI._connections does
        import aiohttp  # noqa: F401


def _kwargs(metrics: Metrics, options: Mapping[str, Any], cls: type[Any], prefetch: int) -> dict[str, Any]:
    kwargs = dict(options)
    kwargs.setdefault("retry_budget", CountingRetryBudget(metrics))
    if prefetch:
        # The warm pool is another change to the SDK; pass the option on only once the client takes it.
        if "prefetch" not in inspect.signature(cls).parameters:
            raise ValueError(f"prefetch={prefetch} needs an orga-ai whose {cls.__name__} accepts prefetch=")
        kwargs["prefetch"] = prefetch
    return kwargs


class AsyncClientHolder:
    """One :class:`AsyncOrgaAI` per app: the caller's, or one built on first use (and then closed by us)."""

    def __init__(
        self,
        metrics: Metrics,
        client: AsyncOrgaAI | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        prefetch: int = 0,
    ) -> None:
        self._client = client
        self._owned = client is None
        self._metrics = metrics
        self._options = dict(options or {})
        self._prefetch = prefetch

    def get(self) -> AsyncOrgaAI:
        """The client, created now if needed (raises OrgaAIConfigurationError without an API key)."""
        if self._client is None:
            self._client = AsyncOrgaAI(**_kwargs(self._metrics, self._options, AsyncOrgaAI, self._prefetch))
        return self._client

    async def warm_up(self, timeout: float) -> bool | None:
        """Fill the client's warm pool before the first caller (None when there is no pool to fill)."""
        if not self._prefetch:
            return None
        warm_up = getattr(self.get(), "warm_up", None)
        return None if warm_up is None else bool(await warm_up(timeout))

    async def aclose(self) -> None:
        """Close the client if we created it; a client passed in stays the caller's to close."""
        client, owned = self._client, self._owned
        if owned:
            self._client = None
        if client is not None and owned:
            await client.close()


class SyncClientHolder:
    """:class:`AsyncClientHolder` for the sync adapters: one thread-safe :class:`OrgaAI`."""

    def __init__(
        self, metrics: Metrics, client: OrgaAI | None = None, *, options: Mapping[str, Any] | None = None
    ) -> None:
        self._client = client
        self._owned = client is None
        self._metrics = metrics
        self._options = dict(options or {})
        self._lock = threading.Lock()

    def get(self) -> OrgaAI:
        """The client, created on first use."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = OrgaAI(**_kwargs(self._metrics, self._options, OrgaAI, 0))
                client = self._client
        return client

    def close(self) -> None:
        """Close the client if we created it."""
        with self._lock:
            client, owned = self._client, self._owned
            if owned:
                self._client = None
        if client is not None and owned:
            client.close()
