"""POST /v1/realtime/client-secrets: key checks, both token forms, the quota, request ids."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from orga_ai import OrgaAI
from orga_ai.emulator import DEV_API_KEY, EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator

from .conftest import auth, claims

PATH = "/v1/realtime/client-secrets"


def test_api_form_token_has_orga_claims_and_naive_utc_expiry(emulator: RunningEmulator, http: httpx.Client) -> None:
    before = emulator.stats()["now"]
    response = http.post(PATH, headers=auth(emulator.api_key))
    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"ephemeral_token", "token_type", "expires_at"}
    assert body["token_type"] == "bearer"
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    assert expires_at.tzinfo is None  # naive, meaning UTC, as Orga sends it
    assert "." in body["expires_at"]  # with microseconds, as in Orga's example
    expected = dt.datetime.fromtimestamp(before + 120, tz=dt.timezone.utc).replace(tzinfo=None)
    assert abs((expires_at - expected).total_seconds()) < 5

    token = claims(body["ephemeral_token"], emulator.config.jwt_secret)
    assert set(token) == {"sub", "api_key_id", "scope", "iat", "exp", "jti"}
    assert token["exp"] == int(expires_at.replace(tzinfo=dt.timezone.utc).timestamp())
    assert isinstance(token["iat"], int)
    assert isinstance(token["exp"], int)
    assert token["exp"] - token["iat"] in (119, 120, 121)
    assert str(token["api_key_id"]).startswith("key_")
    assert DEV_API_KEY not in json.dumps(token)


def test_every_token_is_fresh(emulator: RunningEmulator, http: httpx.Client) -> None:
    first = http.post(PATH, headers=auth(emulator.api_key))
    second = http.post(PATH, headers=auth(emulator.api_key))
    assert first.json()["ephemeral_token"] != second.json()["ephemeral_token"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert emulator.stats()["tokens_issued"] == 2


def test_legacy_email_query_is_accepted_and_not_logged(emulator: RunningEmulator, http: httpx.Client) -> None:
    response = http.post(PATH, params={"email": "dev@example.com"}, headers=auth(emulator.api_key))
    assert response.status_code == 200
    [entry] = emulator.requests()
    assert entry["query_params"] == ["email"]
    assert "example.com" not in json.dumps(entry)


def test_howto_form_and_custom_ttl() -> None:
    with run_emulator(EmulatorConfig(token_form="howto", ttl=45)) as running, httpx.Client() as client:
        response = client.post(running.base_url + PATH, headers=auth(running.api_key))
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"ephemeralToken", "ttl"}
        assert body["ttl"] == 45
        token = claims(body["ephemeralToken"], running.config.jwt_secret)
        assert int(str(token["exp"])) - int(str(token["iat"])) in (44, 45, 46)


def test_several_keys_are_accepted() -> None:
    keys = ("sk_orga_ai_first", "sk_orga_ai_second")
    with run_emulator(EmulatorConfig(api_keys=keys)) as running, httpx.Client(base_url=running.base_url) as client:
        assert running.api_key == "sk_orga_ai_first"
        ids = set()
        for key in keys:
            response = client.post(PATH, headers=auth(key))
            assert response.status_code == 200
            ids.add(claims(response.json()["ephemeral_token"], running.config.jwt_secret)["api_key_id"])
        assert len(ids) == 2
        assert client.post(PATH, headers=auth(DEV_API_KEY)).status_code == 401


@pytest.mark.parametrize("key", ["sk_orga_ai_wrong", "not-even-a-key", DEV_API_KEY + "x", DEV_API_KEY[:-1]])
def test_unknown_key_gets_the_nested_401_envelope(emulator: RunningEmulator, http: httpx.Client, key: str) -> None:
    response = http.post(PATH, headers=auth(key))
    assert response.status_code == 401
    assert response.headers["x-request-id"]
    envelope = response.json()["error"]
    assert envelope["type"] == "invalid_request_error"
    assert set(envelope) == {"message", "type", "param", "code"}
    inner = json.loads(envelope["message"])["error"]
    assert inner["message"] == "Incorrect or inactive API key provided."
    assert emulator.stats()["rejected"] == {"invalid_api_key": 1}
    assert emulator.stats()["tokens_issued"] == 0


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Not authenticated"),
        ({"Authorization": ""}, "Not authenticated"),
        ({"Authorization": "Bearer"}, "Not authenticated"),
        ({"Authorization": f"Basic {DEV_API_KEY}"}, "Invalid authentication credentials"),
    ],
)
def test_missing_or_malformed_header_is_403(
    emulator: RunningEmulator, http: httpx.Client, headers: dict[str, str], detail: str
) -> None:
    response = http.post(PATH, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"detail": detail}
    assert response.headers["x-request-id"]
    assert emulator.stats()["rejected"] == {"missing_auth": 1}


def test_quota_per_key_per_minute_with_retry_after() -> None:
    other = "sk_orga_ai_other"
    config = EmulatorConfig(api_keys=(DEV_API_KEY, other), quota_per_minute=3)
    with run_emulator(config) as running, httpx.Client(base_url=running.base_url) as client:
        for _ in range(3):
            assert client.post(PATH, headers=auth(DEV_API_KEY)).status_code == 200
        limited = client.post(PATH, headers=auth(DEV_API_KEY))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"]["type"] == "rate_limit_error"
        # The quota is per key: the other key still mints.
        assert client.post(PATH, headers=auth(other)).status_code == 200
        running.advance_clock(30)
        assert client.post(PATH, headers=auth(DEV_API_KEY)).status_code == 429
        running.advance_clock(31)  # the first three fall out of the rolling minute
        assert client.post(PATH, headers=auth(DEV_API_KEY)).status_code == 200
        stats = running.stats()
        assert stats["rejected"] == {"quota": 2}
        assert stats["tokens_issued"] == 5
        assert stats["statuses"] == {"200": 5, "429": 2}
        running.reset()  # reset restores the quota
        for _ in range(3):
            assert client.post(PATH, headers=auth(DEV_API_KEY)).status_code == 200


def test_quota_zero_means_unlimited() -> None:
    with run_emulator(EmulatorConfig(quota_per_minute=0)) as running, httpx.Client(base_url=running.base_url) as c:
        assert all(c.post(PATH, headers=auth(running.api_key)).status_code == 200 for _ in range(20))


def test_wrong_method_and_unknown_path_answer_json(http: httpx.Client) -> None:
    response = http.get(PATH)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    missing = http.post("/v1/realtime/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    assert missing.headers["x-request-id"]


def test_the_sdk_gets_a_session_config(emulator: RunningEmulator) -> None:
    with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0) as orga:
        session = orga.get_session_config()
    assert session.token_request_id is not None
    assert session.token_request_id.startswith("req_")
    assert session.expires_at is not None
    assert 100 < (session.seconds_left() or 0) <= 121
    assert [server.urls for server in session.ice_servers] == [
        ("stun:127.0.0.1:3478",),
        ("turn:127.0.0.1:3478?transport=udp",),
    ]
    token_request, ice_request = emulator.requests()
    assert token_request["idempotency_key"]
    assert token_request["user_agent"].startswith("orga-ai-python/")
    assert ice_request["path"] == "/v1/realtime/ice-config"
    assert ice_request["bearer"].startswith("fp:")
