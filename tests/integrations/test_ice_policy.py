"""The route's ICE policy passes through every framework adapter (FastAPI, Flask, Django), given as an IcePolicy or,
as Django settings would, as a dict of its fields."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orga_ai import IcePolicy
from tests.proxy.conftest import bearer, make_jwt

from .conftest import MountFactory

ROUTE = "/api/orga-client-secrets"


@pytest.mark.parametrize("policy", [IcePolicy(relay_only=True), {"relay_only": True}])
def test_relay_only_through_each_adapter(mount: MountFactory, policy: Any) -> None:
    mounted = mount(ice_policy=policy)
    response = httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt()), timeout=15)
    assert response.status_code == 200, response.text
    body = response.json()
    # The emulator lists a STUN and a TURN URL; relay_only keeps the TURN one, with its credentials.
    assert [server["urls"] for server in body["iceServers"]] == [["turn:127.0.0.1:3478?transport=udp"]]
    assert body["iceServers"][0]["username"] and body["iceServers"][0]["credential"]
    assert body["refreshAfter"] < body["expiresAt"]
    assert mounted.core.ice_policy == IcePolicy(relay_only=True)
