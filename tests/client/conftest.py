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


@pytest.fixture(params=["sync", "async"])
async def make_client(request: pytest.FixtureRequest, emulator: Any) -> AsyncIterator[Factory]:
    """A factory of clients of one kind, pointed at the emulator unless told otherwise; closes them all after."""
    cls = OrgaAI if request.param == "sync" else AsyncOrgaAI
    made: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("api_key", emulator.api_key)
        kwargs.setdefault("base_url", emulator.base_url)
        client = cls(**kwargs)
        made.append(client)
        return client

    yield factory
    for client in made:
        await resolve(client.close())
