"""Fixtures of the proxy tests: the emulator (real HTTP), the proxy served by uvicorn in a thread, JWT minting."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from orga_ai.proxy import JWTAuth, create_app
from orga_ai.testing import RunningEmulator
from tests.support import serve

JWT_SECRET = "test-jwt-secret-" + "0123456789abcdef" * 4
AUDIENCE = "orga-tests"
ISSUER = "https://id.example.test/"


def make_jwt(sub: str = "user-1", *, secret: str = JWT_SECRET, alg: str = "HS256", **claims: Any) -> str:
    """A JWT as the app would issue it (valid by default; override any claim, or pass exp=... in the past)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=alg)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_auth(**kwargs: Any) -> JWTAuth:
    kwargs.setdefault("audience", AUDIENCE)
    kwargs.setdefault("issuer", ISSUER)
    return JWTAuth(secret=JWT_SECRET, **kwargs)


ProxyFactory = Callable[..., httpx.Client]


@pytest.fixture
def proxy(emulator: RunningEmulator) -> Iterator[ProxyFactory]:
    """A factory: ``proxy(**create_app_kwargs)`` serves a proxy in front of the emulator and returns an httpx client
    on it (``client.app`` is the app). JWT auth with the test secret unless ``authenticate=`` is given."""
    stack = contextlib.ExitStack()

    def factory(**kwargs: Any) -> httpx.Client:
        if "authenticate" not in kwargs and not kwargs.get("allow_anonymous"):
            kwargs["authenticate"] = jwt_auth()
        options = {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}
        options.update(kwargs.pop("orga_options", {}))
        app = create_app(orga_options=options, **kwargs)
        url = stack.enter_context(serve(app))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=15))
        client.app = app  # type: ignore[attr-defined]
        return client

    with stack:
        yield factory


def upstream_calls(emulator: RunningEmulator) -> list[dict[str, Any]]:
    """The API requests the emulator received (admin calls excluded)."""
    return [r for r in emulator.requests() if "/v1/" in str(r.get("path", ""))]
