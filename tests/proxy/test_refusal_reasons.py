"""Why was I refused? A 401 carries RFC 6750's challenge with the reason, the JSON message says the same in words safe
to show a user, nothing of the credential is echoed, and the reason is logged at INFO with the request id, visible on
stderr even when the app configured no logging at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orga_ai.testing import RunningEmulator
from tests.proxy.conftest import ProxyFactory, bearer, make_jwt

ROUTE = "/api/orga-client-secrets"
ROOT = Path(__file__).resolve().parents[2]
_CHALLENGE = re.compile(r'^Bearer realm="orga-client-secrets"(, error="invalid_token")?, error_description="([^"]*)"$')


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [
        (lambda: make_jwt(exp=int(time.time()) - 3600), "token_expired", "expired"),
        (lambda: make_jwt(aud="another-app"), "invalid_token", "another audience"),
        (lambda: make_jwt(iss="https://elsewhere.example/"), "invalid_token", "another issuer"),
        (lambda: make_jwt(secret="x" * 40), "invalid_token", "signature"),
        (lambda: "not-a-jwt", "invalid_token", "malformed"),
        (lambda: None, "unauthenticated", "no credentials"),
    ],
)
def test_a_401_says_why_in_the_challenge_and_the_body(
    proxy: ProxyFactory, token: object, code: str, reason: str
) -> None:
    value = token()  # type: ignore[operator]
    response = proxy().get(ROUTE, headers=bearer(value) if value else {})
    assert response.status_code == 401
    challenge = _CHALLENGE.match(response.headers["www-authenticate"])
    assert challenge, response.headers["www-authenticate"]
    assert bool(challenge.group(1)) == (code != "unauthenticated")  # RFC 6750: no error code without credentials
    message = response.json()["error"]["message"]
    assert reason in message and challenge.group(2) == message
    assert response.json()["error"]["code"] == code
    if value:
        for part in value.split("."):
            assert part not in response.text and part not in response.headers["www-authenticate"]


def test_the_reason_is_on_stderr_without_any_logging_set_up(emulator: RunningEmulator) -> None:
    token = make_jwt(aud="another-app")
    script = f"""
from orga_ai.proxy import ProxyCore, ProxyRequest
from tests.proxy.conftest import jwt_auth

core = ProxyCore(authenticate=jwt_auth())
request = ProxyRequest.from_pairs("GET", "{ROUTE}", [("authorization", "Bearer {token}"), ("x-request-id", "why-42")])
response = core.handle_sync(request, None)
print(response.status)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "401", result.stderr
    lines = [line for line in result.stderr.splitlines() if "orga_ai.proxy.refused" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("INFO ") and "another audience" in lines[0] and "request_id=why-42" in lines[0]
    for part in token.split("."):
        assert part not in result.stderr


def test_a_configured_logging_decides(proxy: ProxyFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="orga_ai.proxy.refused")
    response = proxy().get(ROUTE, headers={"X-Request-ID": "why-43"})
    assert response.status_code == 401
    found = [r.getMessage() for r in caplog.records if r.name == "orga_ai.proxy.refused"]
    assert len(found) == 1 and "unauthenticated" in found[0] and "request_id=why-43" in found[0]
