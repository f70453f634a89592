"""JWTAuth against a real JWKS endpoint (RS256), algorithm confusion, and an unreachable identity provider; the
SDK's warm pool passed through ``prefetch``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from orga_ai.proxy import JWTAuth
from orga_ai.testing import RunningEmulator
from tests.support import free_port

from .conftest import AUDIENCE, ISSUER, ProxyFactory, bearer, make_jwt, serve, upstream_calls
from .test_route import ROUTE, assert_error


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_url(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": "key-1", "use": "sig", "alg": "RS256"})

    async def jwks(request: Any) -> JSONResponse:
        return JSONResponse({"keys": [jwk]})

    with serve(Starlette(routes=[Route("/jwks.json", jwks)])) as url:
        yield url + "/jwks.json"


def rs256(key: rsa.RSAPrivateKey, kid: str = "key-1", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "user-rsa", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_jwks_verified_token(proxy: ProxyFactory, jwks_url: str, rsa_key: rsa.RSAPrivateKey) -> None:
    client = proxy(authenticate=JWTAuth(jwks_url=jwks_url, audience=AUDIENCE, issuer=ISSUER))
    assert client.get(ROUTE, headers=bearer(rs256(rsa_key))).status_code == 200
    assert_error(client.get(ROUTE, headers=bearer(rs256(rsa_key, aud="other"))), 401, "invalid_token")
    assert_error(client.get(ROUTE, headers=bearer(rs256(rsa_key, kid="unknown"))), 401, "invalid_token")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_error(client.get(ROUTE, headers=bearer(rs256(other))), 401, "invalid_token")


def test_algorithm_confusion_is_refused(
    proxy: ProxyFactory, jwks_url: str, rsa_key: rsa.RSAPrivateKey, emulator: RunningEmulator
) -> None:
    """An HS256 token whose HMAC key is the public key PEM: the classic RS256/HS256 confusion attack."""
    client = proxy(authenticate=JWTAuth(jwks_url=jwks_url, audience=AUDIENCE, issuer=ISSUER))
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": "key-1"}
    forged = (
        jwt.utils.base64url_encode(json.dumps(header).encode()).decode()
        + "."
        + jwt.utils.base64url_encode(
            json.dumps({"sub": "x", "aud": AUDIENCE, "iss": ISSUER, "exp": int(time.time()) + 60}).encode()
        ).decode()
    )
    import hashlib
    import hmac

    signature = hmac.new(pem, forged.encode(), hashlib.sha256).digest()
    forged += "." + jwt.utils.base64url_encode(signature).decode()
    assert_error(client.get(ROUTE, headers=bearer(forged)), 401, "invalid_token")
    assert upstream_calls(emulator) == []


def test_unreachable_jwks_is_503_not_401(proxy: ProxyFactory, rsa_key: rsa.RSAPrivateKey) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    client = proxy(authenticate=JWTAuth(jwks_url=url, audience=AUDIENCE, issuer=ISSUER))
    assert_error(client.get(ROUTE, headers=bearer(rs256(rsa_key))), 503, "auth_unavailable")


def test_prefetch_is_passed_to_the_sdk_warm_pool(proxy: ProxyFactory, emulator: RunningEmulator) -> None:
    client = proxy(prefetch=2)
    tokens = {client.get(ROUTE, headers=bearer(make_jwt())).json()["ephemeralToken"] for _ in range(3)}
    assert len(tokens) == 3  # single-use tokens: the pool never hands one out twice
    deadline = time.monotonic() + 5
    while len([c for c in upstream_calls(emulator) if c["path"].endswith("client-secrets")]) < 4:
        assert time.monotonic() < deadline, "the warm pool did not refill"
        time.sleep(0.05)
    assert httpx.get(str(client.base_url) + "/healthz").status_code == 200
