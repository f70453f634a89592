"""The same behaviour through each adapter (FastAPI, Flask, Django), each framework serving real HTTP."""

from __future__ import annotations

import httpx

from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import bearer, make_jwt, upstream_calls
from tests.proxy.test_route import ROUTE, assert_error, assert_safe_headers

from .conftest import MountFactory

ORIGIN = "https://app.example.com"


def test_success(mount: MountFactory, emulator: RunningEmulator) -> None:
    mounted = mount()
    for method in ("GET", "POST"):
        response = httpx.request(method, mounted.url + ROUTE, headers=bearer(make_jwt()))
        assert response.status_code == 200, response.text
        assert_safe_headers(response.headers)
        body = response.json()
        assert set(body) == {"ephemeralToken", "iceServers", "expiresAt", "refreshAfter"}
        assert response.headers["ratelimit-limit"] == "10"
    assert len(upstream_calls(emulator)) == 4


def test_auth_failures_make_no_upstream_call(mount: MountFactory, emulator: RunningEmulator) -> None:
    mounted = mount()
    assert_error(httpx.get(mounted.url + ROUTE), 401, "unauthenticated")
    assert_error(httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt(aud="other"))), 401, "invalid_token")
    assert_error(httpx.post(mounted.url + ROUTE, headers=bearer(make_jwt(exp=1))), 401, "token_expired")
    assert upstream_calls(emulator) == []


def test_rate_limit_and_kill_switch(mount: MountFactory) -> None:
    mounted = mount(rate_limit="1/minute")
    headers = bearer(make_jwt("alice"))
    assert httpx.get(mounted.url + ROUTE, headers=headers).status_code == 200
    refused = httpx.get(mounted.url + ROUTE, headers=headers)
    assert_error(refused, 429, "rate_limited")
    assert refused.headers["retry-after"]
    mounted.core.kill_switch.disable()
    assert_error(httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt("bob"))), 503, "minting_disabled")


def test_upstream_errors_map_the_same(mount: MountFactory, emulator: RunningEmulator) -> None:
    mounted = mount()
    emulator.arm("client-secrets", status=401)
    assert_error(httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt())), 502, "upstream_auth_failed")
    emulator.arm("client-secrets", status=429, retry_after="30")
    refused = httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt()))
    assert_error(refused, 503, "upstream_rate_limited")
    assert refused.headers["retry-after"] == "30"


def test_cors_and_request_id(mount: MountFactory, emulator: RunningEmulator) -> None:
    mounted = mount(cors_origins=[ORIGIN])
    preflight = httpx.options(
        mounted.url + ROUTE,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["cache-control"] == "no-store"
    assert_error(
        httpx.options(mounted.url + ROUTE, headers={"Origin": "null", "Access-Control-Request-Method": "GET"}),
        403,
        "origin_not_allowed",
    )
    response = httpx.get(
        mounted.url + ROUTE, headers={"Origin": ORIGIN, "X-Request-ID": "trace-42", **bearer(make_jwt())}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-42"
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert len(upstream_calls(emulator)) == 2


def test_oversized_body_is_413(mount: MountFactory, emulator: RunningEmulator) -> None:
    mounted = mount()
    assert_error(
        httpx.post(mounted.url + ROUTE, content=b"x" * 5000, headers=bearer(make_jwt())), 413, "body_too_large"
    )
    assert upstream_calls(emulator) == []


def test_sync_path_fails_closed_when_redis_is_unreachable(emulator: RunningEmulator) -> None:
    """Flask runs the sync limiter: an unreachable Redis is a fast 503, never a minted token."""
    import contextlib

    from tests.proxy.conftest import jwt_auth
    from tests.support import free_port

    from .conftest import _flask

    with contextlib.ExitStack() as stack:
        mounted = _flask(
            emulator, stack, {"authenticate": jwt_auth(), "storage_uri": f"redis://127.0.0.1:{free_port()}/0"}
        )
        response = httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt()))
        assert_error(response, 503, "rate_limiter_unavailable")
    assert upstream_calls(emulator) == []


def test_fastapi_principal_dependency(emulator: RunningEmulator) -> None:
    import contextlib

    from fastapi import Depends, FastAPI

    from orga_ai.integrations.fastapi import OrgaProxy
    from orga_ai.proxy import Principal
    from tests.proxy.conftest import jwt_auth, serve

    orga = OrgaProxy(authenticate=jwt_auth(), orga_options={"api_key": emulator.api_key, "base_url": emulator.base_url})
    app = FastAPI()
    app.include_router(orga.router)

    @app.get("/whoami")
    async def whoami(principal: Principal = Depends(orga.principal)) -> dict[str, str]:  # noqa: B008
        return {"id": principal.id}

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve(app))
        assert httpx.get(url + "/whoami", headers=bearer(make_jwt("carol"))).json() == {"id": "carol"}
        refused = httpx.get(url + "/whoami", headers=bearer(make_jwt(exp=1)))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
