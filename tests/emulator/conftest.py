"""Fixtures of the emulator tests: the public ``emulator`` fixtures, plus clients and token helpers built on them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jwt
import pytest

from orga_ai.emulator import ADMIN_HEADER
from orga_ai.testing import RunningEmulator


@pytest.fixture
def http(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """A plain HTTP client on the (freshly reset) session emulator."""
    with httpx.Client(base_url=emulator.base_url, timeout=10.0, headers={ADMIN_HEADER: "1"}) as client:
        yield client


def auth(value: str) -> dict[str, str]:
    """The Authorization header for a bearer."""
    return {"Authorization": f"Bearer {value}"}


def mint(client: httpx.Client, api_key: str) -> str:
    """A fresh ephemeral token from the emulator (API form)."""
    response = client.post("/v1/realtime/client-secrets", headers=auth(api_key))
    assert response.status_code == 200, response.text
    token: str = response.json()["ephemeral_token"]
    return token


def claims(token: str, secret: str) -> dict[str, object]:
    """The verified claims of an emulator token (time claims unchecked: the emulator clock may run ahead)."""
    decoded: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    return decoded
