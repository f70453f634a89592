"""One policy for every entry point: the list of settings is derived from :class:`ProxyPolicy`, and each setting,
given a non-default value, must arrive in the policy of every entry point that builds one (code, ``create_app``, the
FastAPI and Flask adapters, Django's ``ORGA_PROXY``, ``orga-ai serve``'s flags and variables, the function entry
points). A setting added without reaching one of them fails here: the class of bug where the function entry points
ignored ``ORGA_PROXY_ALLOWED_HOST`` and ``serve --max-header-bytes`` could not raise the core's cap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orga_ai import IcePolicy
from orga_ai.proxy import ProxyCore, ProxyPolicy, SharedSecretAuth
from orga_ai.proxy._policy import policy_settings
from orga_ai.proxy._settings import OPTIONS, resolve

SECRET = "policy-test-secret-0123456789"
AUTH = SharedSecretAuth(SECRET)


@pytest.fixture
def deny_file(tmp_path: Path) -> str:
    path = tmp_path / "deny.txt"
    path.write_text("someone\n")
    return str(path)


def samples(deny: str) -> dict[str, tuple[Any, dict[str, str], Any]]:
    """For each setting: (the value given in code, the ``ORGA_PROXY_*`` variables that say it, what the policy
    holds then)."""
    return {
        "authenticate": (AUTH, {"ORGA_PROXY_SHARED_SECRET": SECRET}, SharedSecretAuth),
        "allow_anonymous": (True, {"ORGA_PROXY_ALLOW_ANONYMOUS": "1"}, True),
        "rate_limit": ("3/minute", {"ORGA_PROXY_RATE_LIMIT": "3/minute"}, "3/minute"),
        "global_rate_limit": ("100/hour", {"ORGA_PROXY_GLOBAL_RATE_LIMIT": "100/hour"}, "100/hour"),
        "storage_uri": ("redis://127.0.0.1:1/0", {"ORGA_PROXY_REDIS_URL": "redis://127.0.0.1:1/0"}, None),
        "cors_origins": (["https://app.example"], {"ORGA_PROXY_CORS_ORIGIN": "https://app.example"}, None),
        "trusted_proxies": (["10.0.0.0/8"], {"ORGA_PROXY_TRUSTED_PROXY": "10.0.0.0/8"}, None),
        "allowed_hosts": (["api.example"], {"ORGA_PROXY_ALLOWED_HOST": "api.example"}, None),
        "path": ("/v2/secrets", {"ORGA_PROXY_PATH": "/v2/secrets"}, None),
        "deadline": (5.0, {"ORGA_PROXY_DEADLINE": "5"}, None),
        "max_concurrency": (7, {"ORGA_PROXY_MAX_CONCURRENCY": "7"}, None),
        "max_body_bytes": (100, {"ORGA_PROXY_MAX_BODY_BYTES": "100"}, None),
        "max_header_bytes": (65536, {"ORGA_PROXY_MAX_HEADER_BYTES": "65536"}, None),
        "breaker_threshold": (3, {"ORGA_PROXY_BREAKER_THRESHOLD": "3"}, None),
        "breaker_cooldown": (2.5, {"ORGA_PROXY_BREAKER_COOLDOWN": "2.5"}, None),
        "deny_file": (deny, {"ORGA_PROXY_DENY_FILE": deny}, None),
        "ice_policy": (IcePolicy(relay_only=True), {"ORGA_PROXY_ICE_RELAY_ONLY": "1"}, None),
        "fingerprint_key": ("k" * 24, {"ORGA_PROXY_FINGERPRINT_KEY": "k" * 24}, None),
        "prefetch": (2, {"ORGA_PROXY_PREFETCH": "2"}, None),
        "events": (True, {"ORGA_PROXY_EVENTS": "1"}, None),
    }


NAMES = [name for name, _how, _default in policy_settings()]


def expected(name: str, given: Any, held: Any) -> Callable[[Any], bool]:
    if isinstance(held, type):
        return lambda value: isinstance(value, held)
    want = tuple(given) if isinstance(given, list) else given
    return lambda value: value == want


def base(name: str) -> dict[str, Any]:
    """What a policy needs besides the setting under test (authentication, unless that is the setting)."""
    return {} if name in ("authenticate", "allow_anonymous") else {"authenticate": AUTH}


def env_base(name: str) -> dict[str, str]:
    return {} if name in ("authenticate", "allow_anonymous") else {"ORGA_PROXY_SHARED_SECRET": SECRET}


@pytest.fixture(autouse=True)
def _fresh_fingerprint_key() -> Iterator[None]:
    from orga_ai.proxy._fingerprint import set_fingerprint_key

    yield
    set_fingerprint_key(None)  # the sample key must not outlive the test


def test_every_setting_has_a_sample_and_a_default_that_passes_its_own_check(deny_file: str) -> None:
    assert sorted(samples(deny_file)) == sorted(NAMES), "a new ProxyPolicy setting needs a sample here"
    ProxyPolicy(authenticate=AUTH)  # every default passes its check
    for name, how, default in policy_settings():
        if how.option is not None:
            option = next(o for o in OPTIONS if o.name == how.option)
            shown = how.option_default if how.own_default else default
            assert option.default == (list(shown) if isinstance(shown, tuple) else shown), name
            assert option.help == how.help


def _code(name: str, value: Any) -> ProxyPolicy:
    return ProxyCore(**base(name), **{name: value}).policy


def _create_app(name: str, value: Any) -> ProxyPolicy:
    from orga_ai.proxy import create_app

    app = create_app(**base(name), **{name: value})
    return app.state.orga_proxy.policy  # type: ignore[no-any-return]


def _fastapi(name: str, value: Any) -> ProxyPolicy:
    from orga_ai.integrations.fastapi import OrgaProxy

    return OrgaProxy(**base(name), **{name: value}).core.policy


def _flask(name: str, value: Any) -> ProxyPolicy:
    from orga_ai.integrations.flask import create_blueprint

    blueprint = create_blueprint(orga_options={"api_key": "sk_orga_ai_local_test"}, **base(name), **{name: value})
    try:
        return blueprint.core.policy
    finally:
        blueprint.close()


def _django(name: str, value: Any) -> ProxyPolicy:
    from orga_ai.proxy._policy import ProxyPolicy

    # What orga_ai.integrations.django builds from settings.ORGA_PROXY (its keys are the field names).
    return ProxyCore(ProxyPolicy.from_mapping({**base(name), name: value}, where="settings.ORGA_PROXY")).policy


def _serve_flags(name: str, env: dict[str, str]) -> ProxyPolicy:
    from orga_ai.proxy._cli import build_app

    app = build_app(resolve({}, {**env_base(name), **env}))
    return app.state.orga_proxy.policy  # type: ignore[no-any-return]


def _functions(name: str, env: dict[str, str]) -> ProxyPolicy:
    from orga_ai.integrations._function import policy_from_env

    return policy_from_env({**env_base(name), **env})


CODE_ENTRY_POINTS = {
    "ProxyCore": _code,
    "create_app": _create_app,
    "fastapi": _fastapi,
    "flask": _flask,
    "django": _django,
}
ENV_ENTRY_POINTS = {"serve": _serve_flags, "functions": _functions}


@pytest.mark.parametrize("entry", sorted(CODE_ENTRY_POINTS))
@pytest.mark.parametrize("name", NAMES)
def test_every_setting_given_in_code_reaches_the_policy(name: str, entry: str, deny_file: str) -> None:
    given, _env, held = samples(deny_file)[name]
    policy = CODE_ENTRY_POINTS[entry](name, given)
    assert expected(name, given, held)(getattr(policy, name)), (entry, name, getattr(policy, name))
    others = {f.name for f in dataclasses.fields(ProxyPolicy)} - {name, "authenticate", "allow_anonymous"}
    default = ProxyPolicy(authenticate=AUTH)
    for other in others:  # and nothing else moved
        assert getattr(policy, other) == getattr(default, other), (entry, name, other)


@pytest.mark.parametrize("entry", sorted(ENV_ENTRY_POINTS))
@pytest.mark.parametrize("name", NAMES)
def test_every_setting_given_as_a_variable_reaches_the_policy(name: str, entry: str, deny_file: str) -> None:
    given, env, held = samples(deny_file)[name]
    policy = ENV_ENTRY_POINTS[entry](name, env)
    assert expected(name, given, held)(getattr(policy, name)), (entry, name, getattr(policy, name))


def test_serve_max_header_bytes_reaches_the_core_and_the_http_layer() -> None:
    from orga_ai.proxy._cli import build_app
    from orga_ai.proxy._server import limits_from_settings

    settings = resolve({}, {"ORGA_PROXY_SHARED_SECRET": SECRET, "ORGA_PROXY_MAX_HEADER_BYTES": "65536"})
    assert build_app(settings).state.orga_proxy.max_header_bytes == 65536
    assert limits_from_settings(settings).max_header_bytes == 65536


def test_a_function_honours_the_allowed_host_variable() -> None:
    from orga_ai.integrations._function import FunctionRoute, function_core, policy_from_env
    from orga_ai.proxy import ProxyRequest

    env = {
        "ORGA_PROXY_SHARED_SECRET": SECRET,
        "ORGA_PROXY_ALLOWED_HOST": "api.example",
        "ORGA_PROXY_RATE_LIMIT": "none",
    }
    core = function_core(policy=policy_from_env(env))
    assert core.allowed_hosts == frozenset({"api.example"})
    route = FunctionRoute(core, orga_options={"api_key": "sk_orga_ai_local_test"})
    try:
        request = ProxyRequest.from_pairs("GET", core.policy.path, [("host", "evil.example")])
        answer = route.serve(request)
    finally:
        route.close()
    assert answer.status == 400 and b"host_not_allowed" in answer.body


def test_an_unknown_django_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"settings\.ORGA_PROXY has no setting named 'rate_limt'"):
        ProxyPolicy.from_mapping({"authenticate": AUTH, "rate_limt": "3/minute"}, where="settings.ORGA_PROXY")


def test_a_bad_value_from_the_environment_names_its_flag_and_variable() -> None:
    from orga_ai.proxy._settings import ServeSettingsError

    with pytest.raises(ServeSettingsError, match="--deadline / ORGA_PROXY_DEADLINE: deadline must be at most 60"):
        ProxyPolicy.from_env({"ORGA_PROXY_SHARED_SECRET": SECRET, "ORGA_PROXY_DEADLINE": "99"})


def test_the_policy_repr_shows_no_secret() -> None:
    policy = ProxyPolicy(
        authenticate=AUTH, storage_uri="redis://:hunter2-password@127.0.0.1:6379/0", fingerprint_key="f" * 24
    )
    text = repr(policy)
    assert "hunter2" not in text and "f" * 24 not in text and SECRET not in text
