"""GET /v1/realtime/ice-config: token checks, TURN REST credentials, expiry on the emulator clock."""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
import jwt
import pytest

from orga_ai.emulator import EmulatorConfig, turn_credential, turn_credentials
from orga_ai.testing import RunningEmulator, run_emulator

from .conftest import auth, claims, mint

PATH = "/v1/realtime/ice-config"
OTHER = "another-secret-of-at-least-32-bytes!"


def test_stun_and_turn_entries_with_turn_rest_credentials(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    response = http.get(PATH, headers=auth(token))
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    stun, turn = response.json()["iceServers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}  # no username/credential keys at all on STUN
    assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]

    token_claims = claims(token, emulator.config.jwt_secret)
    # username = "<unix expiry>:<token jti>", expiring with the token ...
    assert turn["username"] == f"{token_claims['exp']}:{token_claims['jti']}"
    # ... credential = base64(HMAC-SHA1(secret, username)), recomputed here from first principles.
    digest = hmac.new(emulator.config.turn_secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()
    assert emulator.stats()["ice_configs_served"] == 1


def test_turn_helpers_follow_the_formula() -> None:
    username, credential = turn_credentials("s3cret", expires=1_700_000_000, user_id="abc")
    assert username == "1700000000:abc"
    assert credential == base64.b64encode(hmac.new(b"s3cret", b"1700000000:abc", hashlib.sha1).digest()).decode()
    assert turn_credential("s3cret", username) == credential
    with pytest.raises(ValueError, match="may not contain"):
        turn_credentials("s3cret", expires=1, user_id="a:b")


def test_urls_and_secret_are_configurable() -> None:
    config = EmulatorConfig(
        stun_urls=("stun:stun.example.test:19302", "stun:127.0.0.1:3479"),
        turn_urls=("turn:127.0.0.1:5349?transport=tcp",),
        turn_secret="shared-with-coturn",
    )
    with run_emulator(config) as running, httpx.Client(base_url=running.base_url) as client:
        token = mint(client, running.api_key)
        stun, turn = client.get(PATH, headers=auth(token)).json()["iceServers"]
        assert stun["urls"] == ["stun:stun.example.test:19302", "stun:127.0.0.1:3479"]
        assert turn["urls"] == ["turn:127.0.0.1:5349?transport=tcp"]
        assert turn["credential"] == turn_credential("shared-with-coturn", turn["username"])


def test_no_turn_entry_without_turn_urls() -> None:
    with run_emulator(EmulatorConfig(turn_urls=())) as running, httpx.Client(base_url=running.base_url) as client:
        token = mint(client, running.api_key)
        assert client.get(PATH, headers=auth(token)).json() == {"iceServers": [{"urls": ["stun:127.0.0.1:3478"]}]}


def test_token_expires_on_the_emulator_clock(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    exp = int(str(claims(token, emulator.config.jwt_secret)["exp"]))
    now = emulator.stats()["now"]
    emulator.advance_clock(exp - now - 1)  # one second before expiry: still good
    assert http.get(PATH, headers=auth(token)).status_code == 200
    emulator.advance_clock(1)  # at exp: expired
    response = http.get(PATH, headers=auth(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"
    assert emulator.stats()["rejected"] == {"token_expired": 1}


def test_turn_credentials_expire_with_the_token_even_when_the_clock_is_injected() -> None:
    frozen = 1_800_000_000.25
    with run_emulator(clock=lambda: frozen) as running, httpx.Client(base_url=running.base_url) as client:
        token = mint(client, running.api_key)
        turn = client.get(PATH, headers=auth(token)).json()["iceServers"][1]
        assert turn["username"].startswith(f"{int(frozen + 120)}:")


@pytest.mark.parametrize(
    "bearer",
    [
        "not-a-jwt",
        "a.b.c",
        jwt.encode({"sub": "x", "api_key_id": "k", "scope": "realtime", "iat": 1, "exp": 2**40, "jti": "j"}, OTHER),
        jwt.encode({"sub": "x"}, OTHER),
    ],
)
def test_a_token_it_did_not_issue_is_401(emulator: RunningEmulator, http: httpx.Client, bearer: str) -> None:
    response = http.get(PATH, headers=auth(bearer))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert emulator.stats()["rejected"] == {"invalid_token": 1}


def test_right_secret_but_wrong_scope_is_401(emulator: RunningEmulator, http: httpx.Client) -> None:
    token = mint(http, emulator.api_key)
    forged = dict(claims(token, emulator.config.jwt_secret), scope="admin")
    response = http.get(PATH, headers=auth(jwt.encode(forged, emulator.config.jwt_secret)))
    assert response.status_code == 401


def test_the_api_key_is_not_an_ephemeral_token(emulator: RunningEmulator, http: httpx.Client) -> None:
    assert http.get(PATH, headers=auth(emulator.api_key)).status_code == 401


def test_missing_header_is_403(emulator: RunningEmulator, http: httpx.Client) -> None:
    response = http.get(PATH)
    assert response.status_code == 403
    assert response.json() == {"detail": "Not authenticated"}
