"""Settings that used to be accepted with surprising effects are refused at start-up, naming what to write instead;
``rate_limit=None`` is the one way to turn limits off, and says so in a warning."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from orga_ai.proxy import JWTAuth, ProxyCore, SharedSecretAuth

AUTH = SharedSecretAuth("s" * 32)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rate_limit": ""}, "pass None to turn it off"),
        ({"rate_limit": "none"}, "pass None to turn it off"),
        ({"rate_limit": "0"}, "pass None to turn it off"),
        ({"rate_limit": "0/minute"}, "would refuse every request"),
        ({"rate_limit": "10/0minute"}, "would refuse every request"),
        ({"global_rate_limit": "0/hour"}, "global_rate_limit"),
        ({"rate_limit": "0/minute", "storage_uri": "redis://127.0.0.1:1/0"}, "would refuse every request"),
        ({"rate_limit": "10/0minute", "storage_uri": "redis://127.0.0.1:1/0"}, "would refuse every request"),
        ({"cors_origins": "http://localhost:3000"}, "cors_origins=['http://localhost:3000']"),
        ({"trusted_proxies": "10.0.0.0/8"}, "trusted_proxies=['10.0.0.0/8']"),
        ({"authenticate": "tests.nowhere.hook"}, "authenticate='tests.nowhere.hook' cannot be imported"),
        ({"authenticate": 42}, "authenticate must be callable"),
    ],
)
def test_the_core_refuses(kwargs: dict[str, Any], words: str) -> None:
    kwargs.setdefault("authenticate", AUTH)
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the words are checked below
        ProxyCore(**kwargs)
    assert words in str(caught.value)


def test_a_dotted_path_is_imported_at_once() -> None:
    core = ProxyCore(authenticate="orga_ai.integrations.django.authenticated_user")
    assert callable(core.authenticate)


def test_rate_limit_none_turns_limits_off_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orga_ai.proxy")
    ProxyCore(authenticate=AUTH, rate_limit=None).announce()
    assert any("rate_limit=None" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize("url", ["http://id.example.com/jwks.json", "ftp://id.example.com/jwks", "jwks.json"])
def test_jwks_must_be_https_except_to_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="jwks_url must be an https:// URL"):
        JWTAuth(jwks_url=url)
    JWTAuth(jwks_url="http://127.0.0.1:9/jwks.json")
    JWTAuth(jwks_url="https://id.example.com/jwks.json")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://idp-user:idp-s3cret@id.example.com/jwks.json?access_token=q-t0ken", "http:// to id.example.com"),
        ("ftp://idp-user:idp-s3cret@id.example.com/jwks?access_token=q-t0ken", "ftp:// to id.example.com"),
        ("idp-s3cret:q-t0ken@id.example.com/jwks", "without a scheme and host"),
        ("//idp-user:idp-s3cret@id.example.com/jwks?access_token=q-t0ken", "without a scheme and host"),
    ],
)
def test_a_refused_jwks_url_is_named_by_scheme_and_host_without_its_secrets(url: str, named: str) -> None:
    with pytest.raises(ValueError, match="jwks_url must be an https:// URL") as caught:
        JWTAuth(jwks_url=url)
    text = str(caught.value)
    assert named in text
    for secret in ("idp-user", "idp-s3cret", "q-t0ken", "jwks"):
        assert secret not in text.replace("jwks_url", "")


def test_adapters_refuse_a_path_without_its_slash() -> None:
    from orga_ai.integrations.fastapi import create_router
    from orga_ai.integrations.flask import create_blueprint

    options = {"api_key": "sk_orga_ai_settings_test"}
    with pytest.raises(ValueError, match="must be an absolute URL path"):
        create_router(authenticate=AUTH, path="api/x", orga_options=options)
    with pytest.raises(ValueError, match="must be an absolute URL path"):
        create_blueprint(authenticate=AUTH, path="api/x", orga_options=options)


def test_flask_refuses_to_register_without_an_api_key() -> None:
    from orga_ai import OrgaAIConfigurationError
    from orga_ai.integrations.flask import create_blueprint

    with pytest.raises(OrgaAIConfigurationError, match="ORGA_API_KEY"):
        create_blueprint(authenticate=AUTH)


def start(app: Any) -> None:
    """Run the app's lifespan start-up and shutdown, as a server does before serving."""

    async def run() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(run())


def test_fastapi_refuses_to_start_without_an_api_key() -> None:
    from fastapi import FastAPI

    from orga_ai import OrgaAIConfigurationError
    from orga_ai.integrations.fastapi import create_router

    app = FastAPI()
    app.include_router(create_router(authenticate=AUTH))
    with pytest.raises(OrgaAIConfigurationError, match="ORGA_API_KEY"):
        start(app)


def test_fastapi_refuses_a_wildcard_cors_middleware_at_start_up() -> None:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    from orga_ai.integrations.fastapi import create_router

    app = FastAPI()
    app.add_middleware(CORSMiddleware, allow_origins=["*"])
    app.include_router(create_router(authenticate=AUTH, orga_options={"api_key": "sk_orga_ai_settings_test"}))
    with pytest.raises(ValueError, match=r"CORSMiddleware\(allow_origins=\['\*'\]\) lets every origin in"):
        start(app)


@pytest.mark.parametrize(("flag", "words"), [(["--workers", "0"], "--workers"), (["--rate-limit", "0"], "rate_limit")])
def test_serve_refuses(flag: list[str], words: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")} | {"ORGA_API_KEY": "sk_orga_ai_x"}
    result = subprocess.run(
        [sys.executable, "-m", "orga_ai.cli", "serve", "--allow-anonymous", "--port", "8080", *flag],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
