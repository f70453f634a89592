"""EmulatorConfig validation and secrecy."""

from __future__ import annotations

from typing import Any

import pytest

from orga_ai.emulator import DEV_API_KEY, EmulatorConfig


def test_defaults() -> None:
    config = EmulatorConfig()
    assert config.api_keys == (DEV_API_KEY,)
    assert (config.ttl, config.token_form, config.quota_per_minute) == (120, "api", 600)
    assert config.stun_urls == ("stun:127.0.0.1:3478",)
    assert config.turn_urls == ("turn:127.0.0.1:3478?transport=udp",)
    assert config.turn_secret != EmulatorConfig().turn_secret  # random per config
    assert len(config.jwt_secret) >= 32


def test_repr_hides_keys_and_secrets() -> None:
    config = EmulatorConfig(api_keys=("sk_orga_ai_private",), turn_secret="turn-secret-value")
    text = repr(config)
    for secret in ("sk_orga_ai_private", "turn-secret-value", config.jwt_secret):
        assert secret not in text


def test_lists_are_coerced_to_tuples() -> None:
    config = EmulatorConfig(api_keys=["sk_orga_ai_a"], stun_urls=[])  # type: ignore[arg-type]
    assert config.api_keys == ("sk_orga_ai_a",)
    assert config.stun_urls == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_keys": ()},
        {"api_keys": ("sk_live_123",)},
        {"api_keys": ("sk_orga_ai_",)},
        {"api_keys": "sk_orga_ai_a"},
        {"api_keys": ("sk_orga_ai_a b",)},
        {"ttl": 0},
        {"ttl": float("nan")},
        {"ttl": True},
        {"token_form": "camel"},
        {"quota_per_minute": -1},
        {"quota_per_minute": 1.5},
        {"stun_urls": ("http://x",)},
        {"stun_urls": ("turn:x",)},
        {"turn_urls": ("stun:x",)},
        {"turn_secret": ""},
        {"jwt_secret": "short"},
        {"stall_seconds": 0},
        {"max_logged_requests": 0},
    ],
)
def test_invalid_values_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message; the type is the contract
        EmulatorConfig(**kwargs)
