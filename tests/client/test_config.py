from __future__ import annotations

import pytest

from orga_ai import (
    DEFAULT_BASE_URL,
    AsyncOrgaAI,
    OrgaAI,
    OrgaAIConfigurationError,
    OrgaAIError,
)

KEY = "sk_orga_ai_config_test_key_123456"


@pytest.mark.parametrize("cls", [OrgaAI, AsyncOrgaAI])
def test_missing_key_names_the_variable(cls: type[OrgaAI] | type[AsyncOrgaAI]) -> None:
    with pytest.raises(OrgaAIError, match="ORGA_API_KEY") as info:
        cls()
    assert isinstance(info.value, OrgaAIConfigurationError)


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_key_is_missing(blank: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_API_KEY", blank)
    with pytest.raises(OrgaAIConfigurationError, match="ORGA_API_KEY"):
        OrgaAI()


def test_environment_fills_what_was_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_API_KEY", KEY)
    monkeypatch.setenv("ORGA_BASE_URL", "https://orga.example.test/")
    monkeypatch.setenv("ORGA_TIMEOUT", "2.5")
    monkeypatch.setenv("ORGA_MAX_RETRIES", "0")
    client = OrgaAI()
    assert client.base_url == "https://orga.example.test"
    assert client.timeout == 2.5
    assert client.max_retries == 0


def test_explicit_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_API_KEY", "sk_orga_ai_from_env")
    monkeypatch.setenv("ORGA_BASE_URL", "https://env.example.test")
    monkeypatch.setenv("ORGA_TIMEOUT", "2.5")
    monkeypatch.setenv("ORGA_MAX_RETRIES", "5")
    client = OrgaAI(api_key=KEY, base_url="https://arg.example.test", timeout=3, max_retries=1)
    assert client.base_url == "https://arg.example.test"
    assert (client.timeout, client.max_retries) == (3.0, 1)
    assert client.api_key_fingerprint == OrgaAI(api_key=KEY).api_key_fingerprint
    assert client.api_key_fingerprint != OrgaAI().api_key_fingerprint


def test_defaults() -> None:
    client = OrgaAI(api_key=KEY)
    assert (client.base_url, client.timeout, client.max_retries) == (DEFAULT_BASE_URL, 10.0, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ORGA_TIMEOUT", "soon"), ("ORGA_TIMEOUT", "-1"), ("ORGA_TIMEOUT", "nan"), ("ORGA_MAX_RETRIES", "two"),
     ("ORGA_MAX_RETRIES", "99"), ("ORGA_DEBUG", "maybe")],
)
def test_bad_environment_values_are_typed_errors(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_API_KEY", KEY)
    monkeypatch.setenv(name, value)
    with pytest.raises(OrgaAIConfigurationError):
        OrgaAI()


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), True, "10"])
def test_bad_timeout_argument(timeout: object) -> None:
    with pytest.raises(OrgaAIConfigurationError):
        OrgaAI(api_key=KEY, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "http://api.orga-ai.com", "http://10.0.0.5:8080", "http://example.test", "ftp://api.orga-ai.com",
        "api.orga-ai.com", "https://user:pw@api.orga-ai.com", "https://api.orga-ai.com/?x=1", "",
        "https://api.orga-ai.com:https", "https://api.orga-ai.com:99999", "https://gateway.example.test/gatewäy",
        "https://gateway.example.test/a b",
    ],
)
def test_unsafe_or_malformed_base_url_is_refused(url: str) -> None:
    with pytest.raises(OrgaAIConfigurationError):
        OrgaAI(api_key=KEY, base_url=url)


def test_plain_http_refusal_explains_why() -> None:
    with pytest.raises(OrgaAIConfigurationError, match="clear text"):
        OrgaAI(api_key=KEY, base_url="http://api.orga-ai.com")


@pytest.mark.parametrize(
    "url", ["http://localhost:8787", "http://127.0.0.1:8787", "http://127.3.4.5", "http://[::1]:8787",
            "https://api.orga-ai.com/", "https://gateway.example.test/orga"],
)
def test_https_and_loopback_http_are_allowed(url: str) -> None:
    assert OrgaAI(api_key=KEY, base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize("header", ["Authorization", "authorization", "Idempotency-Key"])
def test_default_headers_cannot_take_over_managed_headers(header: str) -> None:
    with pytest.raises(OrgaAIConfigurationError):
        OrgaAI(api_key=KEY, default_headers={header: "x"})


@pytest.mark.parametrize(
    "headers",
    [{"X:Y": "1"}, {" X": "1"}, {"": "1"}, {"X Y": "1"}, {"X-Gateway": "s3cret\x00"}, {"X-Gateway": "s3cret€"}],
)
def test_default_headers_that_http_cannot_carry_are_refused_when_the_client_is_made(headers: dict[str, str]) -> None:
    with pytest.raises(OrgaAIConfigurationError) as info:
        OrgaAI(api_key=KEY, default_headers=headers)
    assert "s3cret" not in str(info.value)  # a header value may be a secret of its own


def test_repr_shows_a_fingerprint_not_the_key() -> None:
    for client in (OrgaAI(api_key=KEY), AsyncOrgaAI(api_key=KEY)):
        text = repr(client) + str(client)
        assert KEY not in text
        assert KEY[:12] not in text
        assert client.api_key_fingerprint in text


# -- a new user's mistakes: one true sentence each -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [OrgaAI, AsyncOrgaAI])
def test_a_key_that_is_not_a_string_is_named_as_such(cls: type[OrgaAI] | type[AsyncOrgaAI]) -> None:
    with pytest.raises(OrgaAIConfigurationError, match="api_key must be a string") as caught:
        cls(api_key=12345)  # type: ignore[arg-type]
    assert "No API key" not in str(caught.value)


@pytest.mark.parametrize("debug", ["maybe", "yes", 1])
def test_debug_takes_a_bool_as_strictly_as_orga_debug(debug: object) -> None:
    with pytest.raises(OrgaAIConfigurationError, match="debug must be True or False"):
        OrgaAI(api_key=KEY, debug=debug)  # type: ignore[arg-type]


def test_a_bad_orga_timeout_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_API_KEY", KEY)
    monkeypatch.setenv("ORGA_TIMEOUT", "-5")
    with pytest.raises(OrgaAIConfigurationError, match=r"^ORGA_TIMEOUT must be a positive"):
        OrgaAI()


# -- plain http to another host: an explicit, loud opt-in, for an emulator in another container -------------------


def test_insecure_base_url_needs_the_switch_and_is_loud_with_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator_key = "sk_orga_ai_local_emulator_dev_key"
    with pytest.raises(OrgaAIConfigurationError, match="ORGA_ALLOW_INSECURE_BASE_URL=1"):
        OrgaAI(api_key=emulator_key, base_url="http://emulator:8787")
    monkeypatch.setenv("ORGA_ALLOW_INSECURE_BASE_URL", "1")
    with caplog.at_level("WARNING", logger="orga_ai"):
        client = OrgaAI(api_key=emulator_key, base_url="http://emulator:8787")
    assert client.base_url == "http://emulator:8787"
    [warning] = [r for r in caplog.records if "ORGA_ALLOW_INSECURE_BASE_URL" in r.getMessage()]
    assert warning.levelname == "WARNING" and "CLEAR TEXT to http://emulator:8787" in warning.getMessage()
    assert emulator_key not in caplog.text
    client.close()


@pytest.mark.parametrize("key", ["sk_orga_ai_0f3a9c2d7e1b4a6c8d0e", "sk_orga_ai_prod_key_abcdef123456"])
def test_insecure_base_url_is_refused_with_a_key_that_looks_live(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_ALLOW_INSECURE_BASE_URL", "1")
    with pytest.raises(OrgaAIConfigurationError, match="the API key looks live") as caught:
        OrgaAI(api_key=key, base_url="http://emulator:8787")
    assert key not in str(caught.value)


def test_the_switch_is_read_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGA_ALLOW_INSECURE_BASE_URL", "please")
    with pytest.raises(OrgaAIConfigurationError, match="ORGA_ALLOW_INSECURE_BASE_URL must be 1/0"):
        OrgaAI(api_key=KEY, base_url="http://emulator:8787")
