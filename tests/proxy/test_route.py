"""The client-secrets route over real HTTP, in front of the emulator: every status, auth, CORS, headers, ids."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import jwt
import pytest

from orga_ai.proxy import ERROR_CODES, create_app
from orga_ai.testing import RunningEmulator

from .conftest import AUDIENCE, JWT_SECRET, ProxyFactory, bearer, jwt_auth, make_jwt, upstream_calls

ROUTE = "/api/orga-client-secrets"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache", "x-content-type-options": "nosniff"}


def assert_safe_headers(headers: Any, *, json: bool = True) -> None:
    for name, value in NO_STORE.items():
        assert headers.get(name) == value, name
    assert headers.get("x-request-id")
    if json:
        assert headers["content-type"].startswith("application/json")


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert_safe_headers(response.headers)
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "requestId"}
    assert body["error"]["code"] == code
    assert body["error"]["requestId"] == response.headers["x-request-id"]
    assert code in ERROR_CODES
    return body


# -- success ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_success_returns_camel_case_session_config(proxy: ProxyFactory, emulator: RunningEmulator, method: str) -> None:
    client = proxy()
    response = client.request(method, ROUTE, headers=bearer(make_jwt()))
    assert response.status_code == 200, response.text
    assert_safe_headers(response.headers)
    body = response.json()
    assert set(body) == {"ephemeralToken", "iceServers", "expiresAt", "refreshAfter"}
    assert isinstance(body["ephemeralToken"], str) and body["ephemeralToken"]
    assert isinstance(body["iceServers"], list) and body["iceServers"]
    for server in body["iceServers"]:
        assert None not in server.values()
        assert set(server) <= {"urls", "username", "credential"}
    expires = dt.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None and expires > dt.datetime.now(dt.timezone.utc)
    assert body["expiresAt"].endswith("Z")
    assert response.headers["ratelimit-limit"] == "10"
    assert response.headers["ratelimit-remaining"] == "9"
    assert [c["path"] for c in upstream_calls(emulator)] == ["/v1/realtime/client-secrets", "/v1/realtime/ice-config"]


def test_each_call_mints_a_fresh_token(proxy: ProxyFactory) -> None:
    client = proxy()
    tokens = {client.get(ROUTE, headers=bearer(make_jwt())).json()["ephemeralToken"] for _ in range(3)}
    assert len(tokens) == 3


# -- authentication --------------------------------------------------------------------------------------------------


def _forged() -> str:
    return make_jwt(secret="another-secret-entirely-" + "f" * 64)


def _alg_none() -> str:
    now = int(time.time())
    claims = {"sub": "user-1", "aud": AUDIENCE, "iss": "https://id.example.test/", "exp": now + 300}
    return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "code"),
    [
        pytest.param(lambda: make_jwt(exp=int(time.time()) - 3600), "token_expired", id="expired"),
        pytest.param(lambda: make_jwt(aud="someone-else"), "invalid_token", id="wrong-audience"),
        pytest.param(lambda: make_jwt(iss="https://evil.example/"), "invalid_token", id="wrong-issuer"),
        pytest.param(lambda: make_jwt(alg="HS512"), "invalid_token", id="wrong-algorithm"),
        pytest.param(_alg_none, "invalid_token", id="alg-none"),
        pytest.param(_forged, "invalid_token", id="forged"),
        pytest.param(lambda: make_jwt(exp=None), "invalid_token", id="no-exp"),
        pytest.param(lambda: make_jwt(sub=None), "invalid_token", id="no-sub"),
        pytest.param(lambda: "not-a-jwt", "invalid_token", id="garbage"),
    ],
)
def test_bad_jwts_are_refused_without_upstream_calls(
    proxy: ProxyFactory, emulator: RunningEmulator, token: Any, code: str
) -> None:
    client = proxy()
    response = client.get(ROUTE, headers=bearer(token()))
    assert_error(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert upstream_calls(emulator) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}])
def test_missing_credentials_is_401(proxy: ProxyFactory, emulator: RunningEmulator, headers: dict[str, str]) -> None:
    assert_error(proxy().get(ROUTE, headers=headers), 401, "unauthenticated")
    assert upstream_calls(emulator) == []


def test_jwt_from_cookie(proxy: ProxyFactory) -> None:
    client = proxy(authenticate=jwt_auth(cookie_name="session"))
    client.cookies.set("session", make_jwt())
    assert client.get(ROUTE).status_code == 200


def test_shared_secret(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    from orga_ai.proxy import SharedSecretAuth

    client = proxy(authenticate=SharedSecretAuth(["old-secret-0123456789", "new-secret-0123456789"]))
    assert client.get(ROUTE, headers=bearer("new-secret-0123456789")).status_code == 200
    assert client.get(ROUTE, headers=bearer("old-secret-0123456789")).status_code == 200
    assert_error(client.get(ROUTE, headers=bearer("new-secret-012345678")), 401, "invalid_token")
    assert len(upstream_calls(emulator)) == 4


def test_custom_authenticator_callable(proxy: ProxyFactory) -> None:
    from orga_ai.proxy import AuthenticationError

    def by_header(request: Any) -> str:
        user = request.headers.get("x-user")
        if user != "alice":
            raise AuthenticationError("Not allowed.", status=403, code="principal_denied")
        return user

    client = proxy(authenticate=by_header)
    assert client.get(ROUTE, headers={"X-User": "alice"}).status_code == 200
    assert_error(client.get(ROUTE, headers={"X-User": "bob"}), 403, "principal_denied")


def test_no_authentication_is_a_construction_error() -> None:
    with pytest.raises(ValueError, match="needs authentication"):
        create_app()
    from orga_ai.proxy import AnonymousAuth

    with pytest.raises(ValueError, match="allow_anonymous"):
        create_app(authenticate=AnonymousAuth())


def test_jwt_auth_refuses_unsafe_configurations() -> None:
    from orga_ai.proxy import JWTAuth

    with pytest.raises(ValueError, match="exactly one"):
        JWTAuth()
    with pytest.raises(ValueError, match="cannot be used"):
        JWTAuth(secret=JWT_SECRET, algorithms=["RS256"])
    with pytest.raises(ValueError, match="cannot be used"):
        JWTAuth(jwks_url="https://id.example/jwks", algorithms=["HS256"])
    with pytest.raises(ValueError, match="at least 32"):
        JWTAuth(secret="short")
    assert JWT_SECRET not in repr(JWTAuth(secret=JWT_SECRET))


# -- rate limits -----------------------------------------------------------------------------------------------------


def test_rate_limit_per_principal(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(rate_limit="2/minute")
    alice, bob = bearer(make_jwt("alice")), bearer(make_jwt("bob"))
    assert [client.get(ROUTE, headers=alice).status_code for _ in range(2)] == [200, 200]
    refused = client.get(ROUTE, headers=alice)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-limit"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert 0 < int(refused.headers["ratelimit-reset"]) <= 60
    assert client.get(ROUTE, headers=bob).status_code == 200
    assert len(upstream_calls(emulator)) == 6  # three successes, two calls each; the refusal made none


def test_global_ceiling(proxy: ProxyFactory) -> None:
    client = proxy(rate_limit="5/minute", global_rate_limit="2/minute")
    assert client.get(ROUTE, headers=bearer(make_jwt("a"))).status_code == 200
    assert client.get(ROUTE, headers=bearer(make_jwt("b"))).status_code == 200
    refused = client.get(ROUTE, headers=bearer(make_jwt("c")))
    assert_error(refused, 429, "rate_limited")
    assert refused.headers["ratelimit-limit"] == "2"


def test_anonymous_is_limited_per_client_ip_and_ignores_untrusted_forwarded_for(
    proxy: ProxyFactory, emulator: RunningEmulator
) -> None:
    client = proxy(allow_anonymous=True, rate_limit="2/minute")
    # The peer (127.0.0.1) is not a trusted proxy: a spoofed X-Forwarded-For must not buy a fresh limit.
    codes = [client.get(ROUTE, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    assert len(upstream_calls(emulator)) == 4


def test_forwarded_for_is_honoured_from_a_trusted_proxy(proxy: ProxyFactory) -> None:
    client = proxy(allow_anonymous=True, rate_limit="1/minute", trusted_proxies=["127.0.0.1/32"])
    assert client.get(ROUTE, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert client.get(ROUTE, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429
    # The right-most untrusted hop is the client; a left-most forged entry does not change it.
    assert client.get(ROUTE, headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.1"}).status_code == 429
    assert client.get(ROUTE, headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 200


# -- upstream failures -----------------------------------------------------------------------------------------------


def test_orga_refusing_our_key_is_502_not_401(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(orga_options={"api_key": "sk_orga_ai_wrong_key_for_this_test"})
    body = assert_error(client.get(ROUTE, headers=bearer(make_jwt())), 502, "upstream_auth_failed")
    assert "sk_orga_ai" not in str(body)
    assert "www-authenticate" not in client.get(ROUTE, headers=bearer(make_jwt())).headers


def test_orga_rate_limiting_us_is_503_with_retry_after(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    emulator.arm("client-secrets", status=429, retry_after="30")
    response = proxy().get(ROUTE, headers=bearer(make_jwt()))
    assert_error(response, 503, "upstream_rate_limited")
    assert response.headers["retry-after"] == "30"


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"status": 503}, {"body": "non_json"}, {"body": "missing_fields"}, {"drop": True}],
    ids=["500", "503", "non-json", "missing-fields", "drop"],
)
def test_other_upstream_failures_are_502(proxy: ProxyFactory, emulator: RunningEmulator, fault: dict[str, Any]) -> None:
    emulator.arm("client-secrets", **fault)
    assert_error(proxy().get(ROUTE, headers=bearer(make_jwt())), 502, "upstream_error")


def test_ice_step_failure_is_502(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    emulator.arm("ice-config", status=500)
    assert_error(proxy().get(ROUTE, headers=bearer(make_jwt())), 502, "upstream_error")


def test_deadline_exceeded_is_504_on_time(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    emulator.arm("client-secrets", latency_ms=5000)
    client = proxy(deadline=1.0)
    started = time.monotonic()
    response = client.get(ROUTE, headers=bearer(make_jwt()))
    elapsed = time.monotonic() - started
    assert_error(response, 504, "deadline_exceeded")
    assert elapsed < 2.0


def test_stalled_upstream_is_504(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    emulator.arm("ice-config", stall=True)
    assert_error(proxy(deadline=1.0).get(ROUTE, headers=bearer(make_jwt())), 504, "deadline_exceeded")


# -- CORS ------------------------------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def test_cors_preflight_allowed(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(cors_origins=[ORIGIN])
    response = client.options(
        ROUTE,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization"
    assert response.headers["vary"] == "Origin"
    assert_safe_headers(response.headers, json=False)
    actual = client.get(ROUTE, headers={"Origin": ORIGIN, **bearer(make_jwt())})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in actual.headers["access-control-expose-headers"]
    assert len(upstream_calls(emulator)) == 2


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://app.example.com.evil.example"])
def test_cors_refuses_other_origins(proxy: ProxyFactory, emulator: RunningEmulator, origin: str) -> None:
    client = proxy(cors_origins=[ORIGIN])
    preflight = client.options(ROUTE, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert_error(preflight, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in preflight.headers
    actual = client.get(ROUTE, headers={"Origin": origin, **bearer(make_jwt())})
    assert_error(actual, 403, "origin_not_allowed")
    assert upstream_calls(emulator) == []


def test_cors_preflight_refuses_unknown_headers_and_methods(proxy: ProxyFactory) -> None:
    client = proxy(cors_origins=[ORIGIN])
    assert_error(
        client.options(ROUTE, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"}),
        405,
        "method_not_allowed",
    )
    assert_error(
        client.options(
            ROUTE,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-evil",
            },
        ),
        403,
        "header_not_allowed",
    )


def test_same_origin_requests_need_no_allowlist(proxy: ProxyFactory) -> None:
    client = proxy()
    origin = str(client.base_url).rstrip("/")
    assert client.post(ROUTE, headers={"Origin": origin, **bearer(make_jwt())}).status_code == 200


@pytest.mark.parametrize("origin", ["*", "null", "https://app.example.com/path", "app.example.com"])
def test_cors_wildcards_and_malformed_origins_are_refused_at_construction(origin: str) -> None:
    with pytest.raises(ValueError, match="CORS origin"):
        create_app(authenticate=jwt_auth(), cors_origins=[origin])


# -- request ids, headers, sizes -------------------------------------------------------------------------------------


def test_request_id_propagated_when_sane(proxy: ProxyFactory) -> None:
    client = proxy()
    sane = client.get(ROUTE, headers={"X-Request-ID": "req-abc_123.4:5", **bearer(make_jwt())})
    assert sane.headers["x-request-id"] == "req-abc_123.4:5"
    failed = client.get(ROUTE, headers={"X-Request-ID": "abc-123"})
    assert failed.json()["error"]["requestId"] == "abc-123"
    for insane in ["has space", "x" * 200, "semi;colon", "<script>"]:
        response = client.get(ROUTE, headers={"X-Request-ID": insane})
        assert response.headers["x-request-id"] != insane
        assert len(response.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("PUT", ROUTE, 405, "method_not_allowed"),
        ("DELETE", ROUTE, 405, "method_not_allowed"),
    ],
)
def test_framework_errors_are_json_with_safe_headers(
    proxy: ProxyFactory, method: str, path: str, status: int, code: str
) -> None:
    assert_error(proxy().request(method, path), status, code)


def test_oversized_body_is_413_without_upstream_calls(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy()
    assert_error(client.post(ROUTE, content=b"x" * 5000, headers=bearer(make_jwt())), 413, "body_too_large")

    def chunks() -> Any:
        for _ in range(10):
            yield b"y" * 1000

    assert_error(client.post(ROUTE, content=chunks(), headers=bearer(make_jwt())), 413, "body_too_large")
    assert client.post(ROUTE, content=b"{}", headers=bearer(make_jwt())).status_code == 200
    assert len(upstream_calls(emulator)) == 2


def test_oversized_headers_are_refused_without_upstream_calls(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy()
    response = client.get(ROUTE, headers={"X-Padding": "p" * 20_000, **bearer(make_jwt())})
    assert response.status_code in (400, 431)
    huge_token = client.get(ROUTE, headers=bearer("e" * 9000))
    assert huge_token.status_code == 401
    assert upstream_calls(emulator) == []


# -- operations ------------------------------------------------------------------------------------------------------


def test_kill_switch_stops_all_minting_live(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy()
    switch = client.app.state.orga_proxy.kill_switch  # type: ignore[attr-defined]
    switch.disable()
    response = client.get(ROUTE, headers=bearer(make_jwt()))
    assert_error(response, 503, "minting_disabled")
    assert response.headers["retry-after"]
    assert upstream_calls(emulator) == []
    switch.enable()
    assert client.get(ROUTE, headers=bearer(make_jwt())).status_code == 200


def test_kill_switch_denies_one_principal(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy()
    client.app.state.orga_proxy.kill_switch.deny("mallory")  # type: ignore[attr-defined]
    assert_error(client.get(ROUTE, headers=bearer(make_jwt("mallory"))), 403, "principal_denied")
    assert client.get(ROUTE, headers=bearer(make_jwt("alice"))).status_code == 200


def test_deny_file_is_reread_without_restart(proxy: ProxyFactory, tmp_path: Any) -> None:
    from orga_ai.proxy import principal_fingerprint

    deny = tmp_path / "deny"
    deny.write_text("# nobody yet\n")
    client = proxy(deny_file=str(deny))
    client.app.state.orga_proxy.kill_switch.recheck_interval = 0  # type: ignore[attr-defined]
    assert client.get(ROUTE, headers=bearer(make_jwt("mallory"))).status_code == 200
    deny.write_text(f"{principal_fingerprint('mallory')}  # seen in the access log\n")
    assert_error(client.get(ROUTE, headers=bearer(make_jwt("mallory"))), 403, "principal_denied")
    assert client.get(ROUTE, headers=bearer(make_jwt("alice"))).status_code == 200
    deny.write_text("*\n")
    assert_error(client.get(ROUTE, headers=bearer(make_jwt("alice"))), 503, "minting_disabled")


def test_health_ready_metrics_openapi(proxy: ProxyFactory) -> None:
    client = proxy()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert_safe_headers(health.headers)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    client.get(ROUTE, headers=bearer(make_jwt()))
    client.get(ROUTE)
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert metrics.headers["cache-control"] == "no-store"
    text = metrics.text
    assert 'orga_proxy_requests_total{outcome="ok"} 1.0' in text
    assert 'orga_proxy_requests_total{outcome="unauthenticated"} 1.0' in text
    assert 'orga_proxy_denied_total{reason="unauthenticated"} 1.0' in text
    assert "orga_proxy_upstream_latency_seconds_bucket" in text
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"][ROUTE]) == {"get", "post"}


def test_custom_path(proxy: ProxyFactory) -> None:
    client = proxy(path="/session")
    assert client.get("/session", headers=bearer(make_jwt())).status_code == 200
    assert client.get(ROUTE).status_code == 404
