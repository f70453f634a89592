from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from orga_ai import AsyncOrgaAI, OrgaAI

T = TypeVar("T")

Factory = Callable[..., Any]


async def resolve(value: T | Awaitable[T]) -> T:
    """Await what the async client returns; pass through what the sync one returns."""
    if inspect.isawaitable(value):
        return await value
    return value


@pytest.fixture(params=["sync", "async", "async-aiohttp"])
async def make_client(request: pytest.FixtureRequest, emulator: Any) -> AsyncIterator[Factory]:
    """A factory of clients of one kind, pointed at the emulator unless told otherwise; closes them all after.

    ``async`` is AsyncOrgaAI on its default transport; ``async-aiohttp`` on the aiohttp one (a caller's session runs
    there, and it is the fallback without httptools), built as the client would build it."""
    cls = OrgaAI if request.param == "sync" else AsyncOrgaAI
    made: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("api_key", emulator.api_key)
        kwargs.setdefault("base_url", emulator.base_url)
        if request.param == "async-aiohttp" and "http_client" not in kwargs and "transport" not in kwargs:
            from orga_ai._config import DEFAULT_MAX_RESPONSE_BYTES
            from orga_ai._transports.aiohttp import AiohttpTransport

            kwargs["transport"] = AiohttpTransport(
                None,
                base_url=kwargs["base_url"],
                max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES,
                limit=100,
                keepalive=30.0,
            )
        client = cls(**kwargs)
        made.append(client)
        return client

    yield factory
    for client in made:
        await resolve(client.close())
