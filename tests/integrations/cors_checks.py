"""One CORS scenario for every framework: the app's own CORS package allows ALLOWED; the route must agree with it
(preflight and GET work from ALLOWED, with credentials) and mint nothing for REFUSED."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import upstream_calls

ALLOWED = "https://app.example.com"
REFUSED = "https://evil.example.net"
ROUTE = "/api/orga-client-secrets"


def check_cors_cooperates(
    client: httpx.Client, url: str, emulator: RunningEmulator, *, setting: str, headers: Mapping[str, str] = {}
) -> None:
    """``client`` is signed in (its cookies identify a user who has not called the route yet)."""
    preflight = client.options(
        url + ROUTE, headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET", **headers}
    )
    assert preflight.status_code in (200, 204), preflight.text
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert preflight.headers["access-control-allow-credentials"] == "true"

    before = len(upstream_calls(emulator))
    refused = client.get(url + ROUTE, headers={"Origin": REFUSED, **headers})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert setting in refused.json()["error"]["message"]
    assert refused.headers.get("access-control-allow-origin") != REFUSED
    bad_preflight = client.options(
        url + ROUTE, headers={"Origin": REFUSED, "Access-Control-Request-Method": "GET", **headers}
    )
    assert bad_preflight.headers.get("access-control-allow-origin") != REFUSED
    assert len(upstream_calls(emulator)) == before  # the refused origin cost no upstream call

    allowed = client.get(url + ROUTE, headers={"Origin": ALLOWED, **headers})
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert len(upstream_calls(emulator)) == before + 2
