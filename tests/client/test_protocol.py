"""The sans-IO parsers and the retry policy as pure functions, including property tests of hostile input."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orga_ai import OrgaAIError, OrgaAIInvalidResponseError
from orga_ai._protocol import (
    Response,
    error_from_response,
    parse_ice_response,
    parse_token_response,
)
from orga_ai._retry import Retryability, RetryBudget, backoff, parse_retry_after, set_backoff_enabled, should_retry

NOW = dt.datetime(2025, 11, 11, 11, 34, 43, tzinfo=dt.timezone.utc)


def response(body: Any, status: int = 200, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def jwt_with(claims: dict[str, Any]) -> str:
    def seg(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg(claims)}.c2ln"


def test_api_reference_form_with_naive_utc_expiry() -> None:
    token = parse_token_response(
        response(
            {"ephemeral_token": "abc.def.ghi", "token_type": "bearer", "expires_at": "2025-11-11T11:49:43.252934"}
        ),
        now=NOW,
    )
    assert token.value == "abc.def.ghi"
    assert token.expires_at == dt.datetime(2025, 11, 11, 11, 49, 43, 252934, tzinfo=dt.timezone.utc)


def test_howto_form_with_ttl() -> None:
    token = parse_token_response(response({"ephemeralToken": "tok", "ttl": 120}), now=NOW)
    assert token.expires_at == NOW + dt.timedelta(seconds=120)


def test_expires_in() -> None:
    token = parse_token_response(response({"ephemeralToken": "tok", "expires_in": 60}), now=NOW)
    assert token.expires_at == NOW + dt.timedelta(seconds=60)


def test_expiry_falls_back_to_the_jwt_exp_claim() -> None:
    exp = int(NOW.timestamp()) + 900
    token = parse_token_response(response({"ephemeral_token": jwt_with({"exp": exp})}), now=NOW)
    assert token.expires_at == dt.datetime.fromtimestamp(exp, tz=dt.timezone.utc)


def test_unknown_expiry_is_none() -> None:
    assert parse_token_response(response({"ephemeral_token": "opaque"})).expires_at is None


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "no 'ephemeral_token'"),
        ({"ephemeral_token": 42}, "must be a string"),
        ({"ephemeral_token": ""}, "empty"),
        ({"ephemeral_token": "a b"}, "characters"),
        ({"ephemeral_token": "ok", "ttl": "120"}, "'ttl'"),
        ({"ephemeral_token": "ok", "ttl": -5}, "'ttl'"),
        ({"ephemeral_token": "ok", "ttl": True}, "'ttl'"),
        ({"ephemeral_token": "ok", "expires_at": "tomorrow"}, "'expires_at'"),
        ({"ephemeral_token": "ok", "expires_at": []}, "'expires_at'"),
        ({"ephemeral_token": "ok", "token_type": 1}, "'token_type'"),
        ([], "expected a JSON object"),
        (b"<html><body>502 Bad Gateway</body></html>", "HTML"),
        (b"not json", "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_token_bodies(body: Any, needle: str) -> None:
    with pytest.raises(OrgaAIInvalidResponseError, match=needle) as info:
        parse_token_response(response(body))
    assert info.value.step == "token"


def test_truncated_body_is_refused() -> None:
    with pytest.raises(OrgaAIInvalidResponseError, match="size limit"):
        parse_token_response(Response(200, {}, b'{"ephemeral_token": "x"', truncated=True))


@pytest.mark.parametrize(
    "payload",
    [
        {"iceServers": [{"urls": "stun:stun1.l.google.com:19302"}]},
        {"ice_servers": [{"urls": ["stun:a:1", "turn:b:3478?transport=udp"], "username": "u", "credential": "c"}]},
        [{"urls": "stun:a:1"}],
        [{"url": "stun:legacy:1"}],
    ],
)
def test_ice_shapes(payload: Any) -> None:
    servers = parse_ice_response(response(payload))
    assert servers
    for server in servers:
        out = server.to_dict()
        assert None not in out.values()


def test_ice_urls_keep_their_form() -> None:
    single, many = parse_ice_response(response({"iceServers": [{"urls": "stun:a:1"}, {"urls": ["turn:b:1"]}]}))
    assert single.to_dict() == {"urls": "stun:a:1"}
    assert many.to_dict() == {"urls": ["turn:b:1"]}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({}, "no 'iceServers'"),
        ({"iceServers": []}, "empty"),
        ({"iceServers": {}}, "must be an array"),
        ({"iceServers": ["stun:a"]}, "not an object"),
        ({"iceServers": [{}]}, "has no 'urls'"),
        ({"iceServers": [{"urls": []}]}, "'urls'"),
        ({"iceServers": [{"urls": [1]}]}, "non-empty string"),
        ({"iceServers": [{"urls": "http://x"}]}, "scheme"),
        ({"iceServers": [{"urls": "turn:x", "username": 5}]}, "'username'"),
        ({"iceServers": [{"urls": "turn:x", "credential": {}}]}, "'credential'"),
        ({"iceServers": [{"urls": "stun:x"}] * 100}, "implausibly long"),
    ],
)
def test_bad_ice_bodies(payload: Any, needle: str) -> None:
    with pytest.raises(OrgaAIInvalidResponseError, match=needle) as info:
        parse_ice_response(response(payload))
    assert info.value.step == "ice"


def test_nested_401_envelope_is_unwrapped() -> None:
    inner = json.dumps({"error": {"message": "Incorrect or inactive API key provided.", "type": "invalid_request_error",
                                  "param": None, "code": "invalid_api_key"}})
    error = error_from_response("token", response({"error": {"message": inner, "type": "invalid_request_error"}}, 401))
    assert "Incorrect or inactive API key provided." in str(error)
    assert error.code == "invalid_api_key"


def test_fastapi_detail_array() -> None:
    body = {"detail": [{"loc": ["body", "offer", "sdp"], "msg": "field required", "type": "value_error.missing"}]}
    error = error_from_response("token", response(body, 422))
    assert "body.offer.sdp: field required" in str(error)


def test_upstream_message_echoing_a_secret_is_redacted() -> None:
    key = "sk_orga_ai_live_secret_value"
    error = error_from_response("token", response({"error": {"message": f"bad key {key}"}}, 401), (key,))
    assert key not in str(error) and "[redacted]" in str(error)


# -- property tests: nothing but our typed errors, whatever Orga sends -----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
token_keys = st.sampled_from(["ephemeral_token", "ephemeralToken", "ttl", "expires_in", "expires_at", "token_type"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.dictionaries(token_keys, json_values, max_size=6)), st.binary(max_size=64))
def test_token_parser_raises_only_typed_errors(payload: Any, raw: bytes) -> None:
    for body in (json.dumps(payload).encode(), raw):
        with contextlib.suppress(OrgaAIError):
            parse_token_response(Response(200, {}, body))


ice_keys = st.sampled_from(["urls", "url", "username", "credential"])
ice_entries = st.one_of(json_values, st.dictionaries(ice_keys, json_values, max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.lists(ice_entries, max_size=4), st.fixed_dictionaries({"iceServers": json_values})))
def test_ice_parser_raises_only_typed_errors(payload: Any) -> None:
    try:
        servers = parse_ice_response(Response(200, {}, json.dumps(payload).encode()))
    except OrgaAIError:
        return
    for server in servers:
        json.dumps(server.to_dict())


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=100, max_value=599), st.binary(max_size=128), st.text(max_size=40))
def test_error_mapping_never_raises(status: int, body: bytes, retry_after: str) -> None:
    error = error_from_response("token", Response(status, {"retry-after": retry_after}, body))
    assert isinstance(error, OrgaAIError)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=80), st.integers().map(str), st.floats().map(str)))
def test_retry_after_is_none_or_a_finite_non_negative_number(value: str | None) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=10), st.none(), st.booleans()))
def test_jwt_exp_claim_of_any_type_is_safe(exp: Any) -> None:
    token = jwt_with({"exp": exp})
    result = parse_token_response(response({"ephemeral_token": token}))
    assert result.expires_at is None or result.expires_at.tzinfo is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("3", 3.0), ("2.5", 2.5), ("-4", 0.0), ("garbage", None), ("", None), (None, None),
     ("Tue, 11 Nov 2025 11:34:53 GMT", 10.0), ("Tue, 11 Nov 2025 11:00:00 GMT", 0.0), ("1e400", 31536000.0),
     ("inf", 31536000.0), ("nan", None)],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_should_retry_policy() -> None:
    common = {"attempt": 0, "max_retries": 2, "ambiguous_retries": 0}
    assert should_retry(retryability=Retryability.SAFE, idempotent=False, **common)
    assert should_retry(retryability=Retryability.AMBIGUOUS, idempotent=False, **common)
    assert not should_retry(retryability=Retryability.AMBIGUOUS, idempotent=False, attempt=1, max_retries=2,
                            ambiguous_retries=1)
    assert should_retry(retryability=Retryability.AMBIGUOUS, idempotent=True, attempt=1, max_retries=2,
                        ambiguous_retries=1)
    assert not should_retry(retryability=Retryability.NEVER, idempotent=True, **common)
    assert not should_retry(retryability=Retryability.SAFE, idempotent=True, attempt=2, max_retries=2,
                            ambiguous_retries=0)


def test_backoff_is_full_jitter_under_a_cap() -> None:
    import random

    set_backoff_enabled(True)
    rng = random.Random(7)
    for attempt in range(12):
        delay = backoff(attempt, base=0.25, cap=4.0, rng=rng)
        assert 0 <= delay <= min(4.0, 0.25 * 2**attempt)
    set_backoff_enabled(False)
    assert backoff(5) == 0.0


def test_retry_budget_spends_and_refills() -> None:
    budget = RetryBudget(capacity=2, ratio=0.5)
    assert budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()
    budget.record_success()
    assert not budget.try_spend()
    budget.record_success()
    assert budget.try_spend()


# -- the flow itself, driven without I/O: whatever Orga answers, no sleep crosses the deadline -------------------------

retry_after_values = st.one_of(
    st.none(),
    st.integers(min_value=-10, max_value=10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=30),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
)
answers = st.tuples(st.sampled_from([200, 400, 401, 408, 429, 500, 502, 503, 504]), retry_after_values)


@settings(max_examples=300, deadline=None)
@given(st.lists(answers, min_size=1, max_size=12), st.floats(min_value=0.05, max_value=30), st.integers(0, 5))
def test_flow_never_sleeps_past_the_deadline(
    script: list[tuple[int, str | None]], deadline: float, max_retries: int
) -> None:
    from orga_ai._config import resolve_settings
    from orga_ai._protocol import CallContext, Request, Sleep, session_flow

    settings = resolve_settings(
        api_key="sk_orga_ai_property", base_url="https://api.orga-ai.com", timeout=10.0,
        max_retries=max_retries, debug=False, default_headers=None, environ={},
    )
    now = [0.0]
    ctx = CallContext(settings, settings.timeout, deadline_at=deadline, clock=lambda: now[0])
    flow = session_flow(ctx)
    token_body = json.dumps({"ephemeral_token": "tok", "ttl": 60}).encode()
    ice_body = json.dumps({"iceServers": [{"urls": "stun:a:1"}]}).encode()
    answers_left = list(script)
    slept = 0.0
    outcome: Any = None
    try:
        while True:
            action = flow.send(outcome)
            if isinstance(action, Sleep):
                assert action.seconds >= 0
                slept += action.seconds
                now[0] += action.seconds
                assert now[0] <= deadline, "slept past the deadline"
                outcome = None
                continue
            assert isinstance(action, Request)
            assert 0 < action.timeout <= deadline - now[0] + 1e-9, "an attempt may outlive the deadline"
            status, retry_after = answers_left.pop(0) if answers_left else (200, None)
            body = (token_body if action.step == "token" else ice_body) if status == 200 else b"{}"
            headers = {} if retry_after is None else {"retry-after": retry_after}
            now[0] += 0.01
            outcome = Response(status, headers, body)
    except StopIteration:
        pass
    except OrgaAIError:
        pass
    assert slept <= deadline


def test_session_config_round_trips_through_the_route_json() -> None:
    from orga_ai import SessionConfig

    original = SessionConfig(
        "tok", parse_ice_response(response({"iceServers": [{"urls": "turn:x", "username": "u", "credential": "c"}]})),
        NOW,
    )
    assert SessionConfig.from_dict(original.to_client_json()) == original


@pytest.mark.parametrize(
    "data",
    [[], {"ephemeralToken": ""}, {"ephemeralToken": "t", "iceServers": []},
     {"ephemeralToken": "t", "iceServers": [{"urls": "stun:a"}], "expiresAt": "soon"},
     {"ephemeralToken": "t", "iceServers": [{"urls": "stun:a"}], "expiresAt": 5}],
)
def test_session_config_from_bad_json_is_a_typed_error(data: Any) -> None:
    from orga_ai import SessionConfig

    with pytest.raises(OrgaAIInvalidResponseError):
        SessionConfig.from_dict(data)
