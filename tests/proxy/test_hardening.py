"""Findings of the outside review of the route's policy (issue 11), one regression test each."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from orga_ai.proxy import AnyOf, AuthenticationError, JWTAuth, SharedSecretAuth
from orga_ai.proxy._auth import AnonymousAuth, anonymous_bucket
from orga_ai.proxy._core import ProxyCore
from orga_ai.proxy._request import ProxyRequest, sane_request_id

from .conftest import AUDIENCE, ISSUER, JWT_SECRET, ProxyFactory, bearer, jwt_auth, make_jwt
from .test_route import ROUTE, assert_error

SHARED = "shared-secret-0123456789abcdef"


def request(headers: dict[str, str] | None = None, peer: str = "127.0.0.1") -> ProxyRequest:
    return ProxyRequest.from_pairs("GET", "/api/orga-client-secrets", (headers or {}).items(), client_host=peer)


# -- request ids -----------------------------------------------------------------------------------------------------


def test_request_id_with_a_trailing_newline_is_not_echoed() -> None:
    assert sane_request_id("abc") == "abc"
    assert sane_request_id("abc\n") is None
    assert sane_request_id("abc\r\n") is None


# -- X-Forwarded-For hops with ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hop", "client"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("203.0.113.7:http", "127.0.0.1"),  # garbled: trust nothing left of it, the peer is the client
        ("[2001:db8::7", "127.0.0.1"),
    ],
)
def test_forwarded_hop_with_a_port_names_the_client(hop: str, client: str) -> None:
    core = ProxyCore(authenticate=SharedSecretAuth(SHARED), trusted_proxies=["127.0.0.1"])
    assert core.client_ip(request({"X-Forwarded-For": hop})) == client


# -- anonymous principals --------------------------------------------------------------------------------------------


def test_anonymous_ipv6_callers_share_their_64_bucket() -> None:
    assert anonymous_bucket("2001:db8:1:2::1") == anonymous_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert anonymous_bucket("2001:db8:1:3::1") != anonymous_bucket("2001:db8:1:2::1")
    assert anonymous_bucket("::ffff:203.0.113.9") == "203.0.113.9"
    assert anonymous_bucket("203.0.113.9") == "203.0.113.9"
    assert anonymous_bucket(None) == "unknown"
    core = ProxyCore(allow_anonymous=True)
    principal = AnonymousAuth()(core.prepare(request(peer="2001:db8:1:2::abcd")))
    assert principal.id == "2001:db8:1:2::/64"


# -- shared secret + JWT ---------------------------------------------------------------------------------------------


def test_any_of_keeps_the_jwt_verdict_over_a_shared_secret_mismatch() -> None:
    auth = AnyOf(SharedSecretAuth(SHARED), jwt_auth(leeway=0))
    expired = make_jwt(exp=int(time.time()) - 60)
    with pytest.raises(AuthenticationError) as caught:
        auth(request(bearer(expired)))
    assert caught.value.code == "token_expired"
    assert "shared secret" not in caught.value.detail
    with pytest.raises(AuthenticationError) as caught:
        auth(request(bearer(make_jwt(secret="another-" + JWT_SECRET))))
    assert caught.value.code == "invalid_token"
    assert "shared secret" not in caught.value.detail
    with pytest.raises(AuthenticationError) as caught:
        auth(request())
    assert caught.value.code == "unauthenticated"
    assert auth(request(bearer(SHARED))).kind == "service"  # type: ignore[union-attr]


# -- JWT configuration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [" " * 32, " " * 40 + "abc", "ab" * 16, "\t" * 64])
def test_weak_jwt_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        JWTAuth(secret=secret, audience=AUDIENCE, issuer=ISSUER)


@pytest.mark.parametrize("leeway", [1e9, -1, 301, float("nan"), float("inf")])
def test_absurd_leeway_is_refused(leeway: float) -> None:
    with pytest.raises(ValueError, match="leeway"):
        JWTAuth(secret=JWT_SECRET, audience=AUDIENCE, issuer=ISSUER, leeway=leeway)


def test_jwt_without_audience_or_issuer_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="orga_ai.proxy"):
        JWTAuth(secret=JWT_SECRET, audience=AUDIENCE, issuer=ISSUER)
        assert not caplog.records
        JWTAuth(secret=JWT_SECRET)
    assert "without audience and issuer" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="orga_ai.proxy"):
        JWTAuth(secret=JWT_SECRET, audience=AUDIENCE)
    assert "without issuer" in caplog.text


# -- Host ------------------------------------------------------------------------------------------------------------


def test_anonymous_route_answers_loopback_host_names_only(proxy: ProxyFactory) -> None:
    client = proxy(allow_anonymous=True)
    port = client.base_url.port
    rebind = {"Host": f"rebind.attacker.test:{port}", "Origin": f"http://rebind.attacker.test:{port}"}
    refused = client.get(ROUTE, headers=rebind)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "host_not_allowed"
    assert "ephemeralToken" not in refused.text and "rebind" not in refused.text
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert client.get(ROUTE, headers={"Host": host}).status_code == 200, host
    assert client.get(ROUTE, headers={"Host": ""}).status_code == 400


def test_allowed_hosts_for_an_authenticated_route(proxy: ProxyFactory) -> None:
    client = proxy(allowed_hosts=["app.example.test", "api.example.test:8443"])
    token = bearer(make_jwt())
    assert client.get(ROUTE, headers={**token, "Host": "app.example.test"}).status_code == 200
    assert client.get(ROUTE, headers={**token, "Host": "app.example.test:1234"}).status_code == 200
    assert client.get(ROUTE, headers={**token, "Host": "api.example.test:8443"}).status_code == 200
    assert client.get(ROUTE, headers={**token, "Host": "api.example.test:9999"}).status_code == 400
    assert client.get(ROUTE, headers={**token, "Host": "evil.test"}).status_code == 400
    # Without allowed_hosts an authenticated route answers any name, as before.
    assert proxy().get(ROUTE, headers={**token, "Host": "evil.test"}).status_code == 200


def test_no_response_reflects_the_host(proxy: ProxyFactory) -> None:
    client = proxy(allow_anonymous=True)
    for path in (ROUTE + "/", "/healthz/", "/nowhere", ROUTE):
        response = client.get(path, headers={"Host": "evil.test"}, follow_redirects=False)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert "evil.test" not in response.text
        assert all("evil.test" not in value for value in response.headers.values()), response.headers


def test_serve_takes_allowed_hosts() -> None:
    from orga_ai.proxy._cli import build_app
    from orga_ai.proxy._settings import resolve

    settings = resolve({"allow_anonymous": True, "allowed_host": ["demo.example.test"]}, {})
    assert build_app(settings).state.orga_proxy.allowed_hosts == {"demo.example.test"}
    anonymous = build_app(resolve({"allow_anonymous": True}, {}))
    assert anonymous.state.orga_proxy.allowed_hosts == {"localhost", "127.0.0.1", "[::1]"}


# -- malformed input is refused, never a 500 -------------------------------------------------------------------------


def test_an_unparsable_origin_is_refused_like_any_other(proxy: ProxyFactory, caplog: pytest.LogCaptureFixture) -> None:
    client = proxy()
    with caplog.at_level(logging.WARNING):
        for origin in ("http://[", "http://[::1", "https://[v1.x]"):
            assert_error(client.get(ROUTE, headers={"Origin": origin, **bearer(make_jwt())}), 403, "origin_not_allowed")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


@pytest.mark.parametrize("length", ["\u00b2", "\u0661\u0662", "\uff11", "12x", "-1", "+1"])
def test_content_length_counts_ascii_digits_only(length: str) -> None:
    # Servers refuse such a Content-Length before any app sees it: the core's own entry is what takes it through.
    core = ProxyCore(authenticate=SharedSecretAuth(SHARED))
    sent = ProxyRequest.from_pairs("POST", ROUTE, [("Content-Length", length)], client_host="127.0.0.1")
    response = core.handle_sync(sent, None)  # type: ignore[arg-type]  # refused before any upstream call
    assert response.status == 400, response.body
    assert json.loads(response.body)["error"]["code"] == "bad_request"


def test_beacon_ids_with_a_trailing_newline_are_refused(proxy: ProxyFactory) -> None:
    client = proxy(events=True)
    headers = bearer(make_jwt("beacon-user"))
    good = {"request_id": "r-1", "conversation_id": "c-1", "state": "ended"}
    assert client.post(ROUTE + "/events", headers=headers, json=good).status_code == 204
    for name in good:
        bad = {**good, name: good[name] + "\n"}
        assert_error(client.post(ROUTE + "/events", headers=headers, json=bad), 400, "bad_request")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"deadline": True}, "deadline"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"max_concurrency": 1.5}, "max_concurrency"),
        ({"max_body_bytes": -1}, "max_body_bytes"),
        ({"max_body_bytes": False}, "max_body_bytes"),
        ({"max_body_bytes": "1024"}, "max_body_bytes"),
        ({"max_header_bytes": 0}, "max_header_bytes"),
        ({"max_header_bytes": -5}, "max_header_bytes"),
        ({"max_header_bytes": 8192.0}, "max_header_bytes"),
    ],
)
def test_the_core_refuses_bools_and_out_of_range_sizes(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ProxyCore(authenticate=SharedSecretAuth(SHARED), **kwargs)  # type: ignore[arg-type]
    assert ProxyCore(authenticate=SharedSecretAuth(SHARED), max_body_bytes=0).max_body_bytes == 0


# -- deny file -------------------------------------------------------------------------------------------------------


def _denying_mallory(proxy: ProxyFactory, tmp_path: Path) -> tuple[Path, httpx.Client]:
    """A route whose deny file lists mallory, rechecked on every request."""
    deny = tmp_path / "deny.txt"
    deny.write_text("mallory\n")
    client = proxy(deny_file=str(deny))
    client.app.state.orga_proxy.kill_switch.recheck_interval = 0
    return deny, client


def test_deny_file_that_disappears_or_breaks_keeps_the_last_good_list(
    proxy: ProxyFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deny, client = _denying_mallory(proxy, tmp_path)
    mallory, alice = bearer(make_jwt("mallory")), bearer(make_jwt("alice"))
    assert client.get(ROUTE, headers=mallory).status_code == 403
    assert client.get("/readyz").status_code == 200

    deny.rename(tmp_path / "deny.txt.moved")
    with caplog.at_level(logging.ERROR, logger="orga_ai.proxy"):
        for _ in range(3):
            assert client.get(ROUTE, headers=mallory).status_code == 403  # still denied
    assert sum("deny file is missing" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR) >= 3
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["denyFile"] == "missing"

    deny.write_bytes(b"\xff\xfe not text\n")  # fails to parse: still the last good list
    assert client.get(ROUTE, headers=mallory).status_code == 403
    assert client.get("/readyz").json()["checks"]["denyFile"].startswith("unreadable")

    deny.write_text("*\n")
    assert client.get(ROUTE, headers=alice).status_code == 503
    assert client.get("/readyz").status_code == 200  # minting stopped on purpose: ready, and says so
    assert client.get("/readyz").json()["checks"]["minting"] == "stopped"


def test_deny_file_swapped_for_one_of_the_same_size_and_time_is_reloaded(proxy: ProxyFactory, tmp_path: Path) -> None:
    """A ConfigMap-style update (a new file moved in place) whose size and modification time match the old one."""
    import os

    deny, client = _denying_mallory(proxy, tmp_path)
    mallory, alice = bearer(make_jwt("mallory")), bearer(make_jwt("alice"))
    assert client.get(ROUTE, headers=mallory).status_code == 403
    assert client.get(ROUTE, headers=alice).status_code == 200

    old = deny.stat()
    swapped = tmp_path / "deny.next"
    swapped.write_text("alice  \n")  # the same 8 bytes long
    os.utime(swapped, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(swapped, deny)
    assert client.get(ROUTE, headers=alice).status_code == 403
    assert client.get(ROUTE, headers=mallory).status_code == 200


def test_deny_file_missing_at_start_up_is_refused(proxy: ProxyFactory, tmp_path: Path) -> None:
    # No last good list exists yet: starting would mint for everyone the file meant to deny.
    with pytest.raises(ValueError, match=r"absent\.txt.* is missing: fix the path"):
        proxy(deny_file=str(tmp_path / "absent.txt"))


# -- keyed fingerprints ----------------------------------------------------------------------------------------------


def _fingerprint_in_fresh_process(principal: str, env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    code = f"from orga_ai.proxy import principal_fingerprint; print(principal_fingerprint({principal!r}))"
    clean = {k: v for k, v in os.environ.items() if k != "ORGA_PROXY_FINGERPRINT_KEY"}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def test_principal_fingerprints_are_keyed_random_per_process_by_default() -> None:
    import hashlib
    import hmac

    from orga_ai import fingerprint

    a = _fingerprint_in_fresh_process("203.0.113.9", {})
    b = _fingerprint_in_fresh_process("203.0.113.9", {})
    assert a.startswith("fp:") and a != b  # nobody without the key can rebuild it, not even another run
    assert a != fingerprint("203.0.113.9")  # the unkeyed SHA-256 a dictionary attack reverses
    key = {"ORGA_PROXY_FINGERPRINT_KEY": "deployment-fingerprint-key-0123"}
    c = _fingerprint_in_fresh_process("203.0.113.9", key)
    assert c == _fingerprint_in_fresh_process("203.0.113.9", key)  # one key, every replica agrees
    expected = hmac.new(key["ORGA_PROXY_FINGERPRINT_KEY"].encode(), b"203.0.113.9", hashlib.sha256).hexdigest()
    assert c == "fp:" + expected[:16]


def test_access_log_and_deny_file_use_the_keyed_fingerprint(
    proxy: ProxyFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from orga_ai import fingerprint
    from orga_ai.proxy import principal_fingerprint

    deny = tmp_path / "deny.txt"
    deny.write_text("# nobody yet\n")
    client = proxy(deny_file=str(deny), fingerprint_key="test-fingerprint-key-0123456789")
    client.app.state.orga_proxy.kill_switch.recheck_interval = 0
    deny.write_text(principal_fingerprint("mallory") + "  # as the access log shows it\n")
    keyed = principal_fingerprint("alice")
    with caplog.at_level(logging.INFO, logger="orga_ai.proxy.access"):
        assert client.get(ROUTE, headers=bearer(make_jwt("alice"))).status_code == 200
        assert client.get(ROUTE, headers=bearer(make_jwt("mallory"))).status_code == 403
    log = caplog.text
    assert keyed in log
    assert fingerprint("alice") not in log and "alice" not in log


# -- secrets from files, not flags; anonymous ceiling ----------------------------------------------------------------


def test_secrets_come_from_files_and_flags_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orga_ai.cli import main
    from orga_ai.proxy._settings import ServeSettingsError, resolve, secrets_on_command_line

    secret_file = tmp_path / "shared"
    secret_file.write_text(SHARED + "\n")
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(JWT_SECRET)
    settings = resolve({"shared_secret_file": str(secret_file)}, {"ORGA_PROXY_JWT_SECRET_FILE": str(jwt_file)})
    assert settings["shared_secret"] == [SHARED]
    assert settings["jwt_secret"] == JWT_SECRET
    assert settings["shared_secret_file"] is None  # read once; workers get the value
    with pytest.raises(ServeSettingsError, match="not both"):
        resolve({"shared_secret": [SHARED], "shared_secret_file": str(secret_file)}, {})
    with pytest.raises(ServeSettingsError, match="cannot read"):
        resolve({"jwt_secret_file": str(tmp_path / "absent")}, {})
    assert secrets_on_command_line({"shared_secret": [SHARED], "jwt_secret": None}) == ["--shared-secret"]
    # The real command: a flag works, with a warning; the value itself is never printed.
    monkeypatch.delenv("ORGA_API_KEY", raising=False)
    assert main(["serve", "--shared-secret", SHARED]) == 2  # stops at the missing API key, after the warning
    err = capsys.readouterr().err
    assert "--shared-secret was given on the command line" in err and SHARED not in err


def test_anonymous_route_has_a_global_ceiling_by_default() -> None:
    from orga_ai.proxy._core import ANONYMOUS_GLOBAL_RATE_LIMIT

    anonymous = ProxyCore(allow_anonymous=True)
    assert ANONYMOUS_GLOBAL_RATE_LIMIT in anonymous.rate_limiter.describe().replace(" per 1 ", "/")
    assert "global none" not in anonymous.rate_limiter.describe()
    explicit = ProxyCore(allow_anonymous=True, global_rate_limit="1000/minute")
    assert "1000" in explicit.rate_limiter.describe()
    authenticated = ProxyCore(authenticate=SharedSecretAuth(SHARED))
    assert "global none" in authenticated.rate_limiter.describe()


@pytest.mark.parametrize("middleware", ["BodyLimitMiddleware", "ProxyHeadersMiddleware"])
async def test_body_limit_takes_a_non_ascii_content_length_as_no_length(middleware: str) -> None:
    # Servers refuse such a length before the app; the middleware's own ASGI entry is what takes it through.
    from orga_ai.proxy import _middleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"x" * 10, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": ROUTE, "headers": [(b"content-length", b"\xb2")]}
    await getattr(_middleware, middleware)(app, max_bytes=4096)(scope, receive, send)
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"x" * 10
