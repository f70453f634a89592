"""JWKS fetching is bounded whatever callers send: one fetch at a time, at most one per interval, a timeout, and the
last good keys kept when a refresh fails (issue 11: random kids made PyJWT < 2.10 refetch on every request)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from orga_ai.proxy import JWTAuth
from orga_ai.proxy._jwks import JWKSKeys, UnknownKey
from tests.support import serve

from .conftest import AUDIENCE, ISSUER, ProxyFactory, bearer
from .test_route import ROUTE, assert_error


@dataclass
class Provider:
    """A JWKS endpoint that counts its fetches and can be slowed down or switched to other keys."""

    keys: list[dict[str, Any]]
    delay: float = 0.0
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return jwk


def rs256(key: rsa.RSAPrivateKey, kid: str) -> str:
    now = int(time.time())
    payload = {"sub": "user-rsa", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def provider(rsa_key: rsa.RSAPrivateKey) -> Iterator[Provider]:
    state = Provider(keys=[public_jwk(rsa_key, "key-1")])

    async def jwks(request: Any) -> JSONResponse:
        with state.lock:
            state.fetches += 1
        await asyncio.sleep(state.delay)
        return JSONResponse({"keys": state.keys})

    async def moved(request: Any) -> RedirectResponse:
        return RedirectResponse("/jwks.json")

    with serve(Starlette(routes=[Route("/jwks.json", jwks), Route("/moved", moved)])) as url:
        state.url = url + "/jwks.json"
        yield state


def test_random_kids_cause_one_fetch_and_valid_users_keep_being_served(
    proxy: ProxyFactory, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    client = proxy(authenticate=JWTAuth(jwks_url=provider.url, audience=AUDIENCE, issuer=ISSUER))
    assert client.get(ROUTE, headers=bearer(rs256(rsa_key, "key-1"))).status_code == 200
    provider.delay = 1.0  # a slowed provider: any fetch from now on would hold the caller for a second
    for _ in range(50):
        forged = rs256(rsa_key, kid=uuid.uuid4().hex)
        assert_error(client.get(ROUTE, headers=bearer(forged)), 401, "invalid_token")
    assert client.get(ROUTE, headers=bearer(rs256(rsa_key, "key-1"))).status_code == 200
    assert provider.fetches == 1


def test_concurrent_misses_share_one_fetch(provider: Provider, rsa_key: rsa.RSAPrivateKey) -> None:
    provider.delay = 0.3
    keys = JWKSKeys(provider.url, timeout=5)
    results: list[Any] = []

    def one() -> None:
        try:
            results.append(keys.key("key-1"))
        except Exception as exc:  # noqa: BLE001 - the outcome is what we count
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 20 and not any(isinstance(r, Exception) for r in results)
    assert provider.fetches == 1


def test_rotation_is_picked_up_after_the_interval_and_a_failed_refresh_keeps_the_keys(
    provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    now = [1000.0]
    keys = JWKSKeys(provider.url, timeout=5, lifespan=300, min_refresh_interval=30, clock=lambda: now[0])
    first = keys.key("key-1")
    provider.keys = [public_jwk(rsa_key, "key-1"), public_jwk(rsa_key, "key-2")]  # the provider rotates a key in
    with pytest.raises(UnknownKey):
        keys.key("key-2")  # within the interval: no fetch, refused at once
    assert provider.fetches == 1
    now[0] += 30
    assert keys.key("key-2") is not None
    assert provider.fetches == 2
    # Past the keys' lifespan a refresh fails (an empty set is no key set), and the last good keys still verify.
    provider.keys = []
    now[0] += 301
    assert keys.key("key-1") is not None and first is not None
    assert provider.fetches == 3
    with pytest.raises(UnknownKey):
        keys.key("key-3")


def test_a_slow_provider_is_cut_off_at_the_timeout(provider: Provider, rsa_key: rsa.RSAPrivateKey) -> None:
    provider.delay = 5.0
    keys = JWKSKeys(provider.url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(jwt.PyJWKClientConnectionError):
        keys.key("key-1")
    assert time.monotonic() - started < 4  # the timeout, not the provider, ended it


class Trickler:
    """A JWKS endpoint on loopback that sends its answer one byte every 50 ms: the head (status line and headers) or
    the body, whichever ``part`` says. Each byte comes well within any socket timeout; the whole answer never
    comes within a short fetch timeout."""

    def __init__(self, document: bytes, part: str) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(document)
        self.prompt, self.slow = (b"", head + document) if part == "head" else (head, document)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # accept() wakes up to see `stop`: closing the socket would not wake it
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/jwks.json"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.prompt)
                for byte in self.slow:
                    if self.stop.wait(0.05):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_trickling_provider_is_cut_off_at_the_timeout_for_the_whole_fetch(
    rsa_key: rsa.RSAPrivateKey, part: str
) -> None:
    """PyJWT's own timeout applies to each socket operation: a byte every 50 ms never trips it, and the ~500-byte
    answer would take about 25 s. The whole fetch gets ``timeout`` seconds."""
    trickler = Trickler(json.dumps({"keys": [public_jwk(rsa_key, "key-1")]}).encode(), part)
    try:
        keys = JWKSKeys(trickler.url, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(jwt.PyJWKClientConnectionError, match=r"longer than 0\.5 s"):
            keys.key("key-1")
        assert time.monotonic() - started < 5  # the fetch's deadline, not the trickle (~25 s), ended it
        assert keys.fetches == 1
        with pytest.raises(UnknownKey):  # within the refresh interval: no second fetch, refused at once
            keys.key("key-1")
        assert keys.fetches == 1
    finally:
        trickler.close()


@pytest.mark.parametrize(("path", "status"), [("/moved", 307), ("/nowhere", 404)])
def test_a_redirect_is_not_followed_and_an_error_status_is_named(provider: Provider, path: str, status: int) -> None:
    keys = JWKSKeys(provider.url.replace("/jwks.json", path), timeout=5)
    with pytest.raises(jwt.PyJWKClientConnectionError, match=f"HTTP {status}"):
        keys.key("key-1")
    assert provider.fetches == 0


def test_a_slow_provider_is_503_through_the_route(
    proxy: ProxyFactory, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    provider.delay = 5.0
    auth = JWTAuth(jwks_url=provider.url, audience=AUDIENCE, issuer=ISSUER, jwks_timeout=0.3)
    client = proxy(authenticate=auth)
    assert_error(client.get(ROUTE, headers=bearer(rs256(rsa_key, "key-1"))), 503, "auth_unavailable")
