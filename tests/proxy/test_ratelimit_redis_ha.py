"""Rate limits on highly available Redis, with real processes: three ``orga-ai serve`` replicas share one exact limit
through Redis Sentinel (and stay closed, then recover, across a failover) and through a Redis Cluster."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import httpx
import pytest

from orga_ai.proxy._ratelimit import RateLimiter, RateLimiterUnavailable, StorageConfig, storage_config
from orga_ai.testing import RunningEmulator

from .conftest import AUDIENCE, ISSUER, JWT_SECRET, make_jwt
from .redis_topologies import redis_cluster, sentinel_group
from .test_route import ROUTE, assert_error
from .test_serve import replicas

LIMIT = 5
BURST = 18
# Generous Redis timeouts: on a loaded 2-core machine a cluster client's first look at its nodes can take a second.
TIMEOUT = "timeout=3"
PASSWORD = "ha-redis-password-4f1c9e"
JWT_ARGS = ("--jwt-secret", JWT_SECRET, "--jwt-audience", AUDIENCE, "--jwt-issuer", ISSUER)

pytestmark = pytest.mark.slow


def burst(urls: list[str], subject: str, count: int = BURST) -> list[int]:
    """``count`` concurrent requests of one principal, spread over the replicas; their status codes."""
    headers = {"Authorization": f"Bearer {make_jwt(subject)}"}
    start = threading.Barrier(count)
    with httpx.Client(timeout=15) as client, concurrent.futures.ThreadPoolExecutor(count) as pool:

        def hit(i: int) -> int:
            start.wait(timeout=15)
            return client.get(urls[i % len(urls)], headers=headers).status_code

        return list(pool.map(hit, range(count)))


def assert_exact(codes: list[int]) -> None:
    assert codes.count(200) == LIMIT, codes
    assert codes.count(429) == len(codes) - LIMIT, codes


# -- the URI forms ---------------------------------------------------------------------------------------------------


def test_sentinel_and_cluster_uris_become_limits_uris_with_tls_and_timeouts(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    config = storage_config(
        f"rediss+sentinel://h1:26379,h2:26379/main?password_file={secret}&ssl_ca_certs=/ca.pem", timeout=0.3
    )
    assert config.mode == "sentinel" and config.uri == "redis+sentinel://h1:26379,h2:26379/main"
    assert config.options["password"] == PASSWORD
    assert config.options["ssl"] is True and config.options["ssl_ca_certs"] == "/ca.pem"
    assert config.options["socket_timeout"] == 0.3 and config.sentinel_options["socket_connect_timeout"] == 0.3
    assert config.sentinel_options["ssl"] is True
    assert config.sentinel_options["password"] == PASSWORD  # the sentinels take the file's password, as a URI's
    assert PASSWORD not in repr(config)
    cluster = storage_config("redis+cluster://:pw@n1:7000,n2:7001")
    assert cluster.mode == "cluster" and cluster.uri == "redis+cluster://:pw@n1:7000,n2:7001"
    assert "retry_on_timeout" not in cluster.options and cluster.sentinel_options == {}
    plain = storage_config(f"redis://r:6379/2?password_file={secret}")
    assert plain.mode == "redis" and plain.uri == "redis://r:6379/2" and plain.options["password"] == PASSWORD
    assert isinstance(storage_config("memory://"), StorageConfig)
    slow = storage_config("redis+cluster://n1:7000?timeout=2.5")
    assert slow.timeout == 2.5 and slow.options["socket_timeout"] == 2.5 and slow.uri == "redis+cluster://n1:7000"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "service name"),
        ("redis+sentinel://h1,h2:26379/main", "host:port"),
        ("redis+cluster://n1:7000?ssl_ca_certs=/ca.pem", "needs TLS"),
        ("rediss+cluster://n1:7000?colour=blue", "unknown parameter"),
        ("redis+cluster://:pw@n1:7000?password_file=/x", "not both"),
        ("redis://r:6379?password_file=/nonexistent/file", "cannot read the Redis password file"),
        ("memcached://m:11211", "not memcached://"),
        ("localhost:6379", "URI"),
        ("redis://r:6379?timeout=0", "give seconds"),
        ("redis+cluster://n1:7000?timeout=soon", "give seconds"),
        # An unescaped / ? # in the password: what follows must not surface as a "port" (nor the URI be used).
        ("redis://u:pw/ss@r:6379/0", "percent-encoded"),
        ("rediss://:pw?ss@r:6379", "percent-encoded"),
        ("redis://:pw#ss@r:6379", "percent-encoded"),
        ("redis+sentinel://:pw/ss@h1:26379,h2:26379/main", "percent-encoded"),
    ],
)
def test_unusable_storage_uris_are_refused_with_the_reason(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        RateLimiter("5/minute", storage_uri=uri)
    assert "pw" not in str(caught.value).replace("password", "")


# -- Sentinel ----------------------------------------------------------------------------------------------------------


def test_replicas_share_an_exact_limit_through_sentinel_and_fail_closed_only_until_failover(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    # 3 s before the failover: the first request after the kill lands inside it even on a stalled machine.
    with sentinel_group(tmp_path, password=PASSWORD, down_after_ms=3000) as group:
        uri = f"{group.uri}?password_file={secret}&{TIMEOUT}"
        args = (*JWT_ARGS, "--rate-limit", f"{LIMIT}/minute", "--redis-url", uri)
        with replicas(emulator, 3, *args) as running:
            urls = [replica.url + ROUTE for replica in running]
            for run in range(3):
                assert_exact(burst(urls, f"sentinel-run-{run}"))
            assert_exact(burst(urls, "across-failover"))

            group.wait_replica_in_sync()
            group.kill_primary()
            # Until Sentinel promotes the replica, every replica refuses (503 with Retry-After): it never mints
            # without its limit. The first request after the kill comes well inside down-after-milliseconds (3 s).
            headers = {"Authorization": f"Bearer {make_jwt('across-failover')}"}
            refused = assert_error(httpx.get(urls[0], headers=headers, timeout=10), 503, "rate_limiter_unavailable")
            assert refused["error"]["requestId"]
            statuses: list[int] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                response = httpx.get(urls[len(statuses) % 3], headers=headers, timeout=10)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert_error(response, 503, "rate_limiter_unavailable")
                    assert int(response.headers["retry-after"]) >= 1
                    time.sleep(0.1)
                    continue
                break
            # Served again, with the window that was counted before the failover: still exhausted.
            assert statuses[-1] == 429, statuses
            assert 200 not in statuses
            group.wait_promoted()
            assert burst(urls, "across-failover", 6) == [429] * 6
            for run in range(3):
                assert_exact(burst(urls, f"after-failover-{run}"))
    for replica in running:
        log = "".join(replica.stderr)
        assert PASSWORD not in log and emulator.api_key not in log and JWT_SECRET not in log


# -- Cluster -----------------------------------------------------------------------------------------------------------


def test_replicas_share_an_exact_limit_through_a_redis_cluster(emulator: RunningEmulator, tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as uri:
        args = (*JWT_ARGS, "--rate-limit", f"{LIMIT}/minute", "--redis-url", f"{uri}?{TIMEOUT}")
        with replicas(emulator, 3, *args) as running:
            urls = [replica.url + ROUTE for replica in running]
            # Different principals land on different masters (their keys hash to different slots).
            for run in range(3):
                assert_exact(burst(urls, f"cluster-run-{run}"))
            for replica in running:
                assert httpx.get(replica.url + "/readyz", timeout=10).status_code == 200


# -- TLS ---------------------------------------------------------------------------------------------------------------


async def test_sentinel_over_tls_with_a_password_file_counts_exactly(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    with sentinel_group(tmp_path, password=PASSWORD, tls=True) as group:
        uri = f"{group.uri}&password_file={secret}&{TIMEOUT}"
        assert uri.startswith("rediss+sentinel://")
        limiter = RateLimiter(f"{LIMIT}/minute", storage_uri=uri)
        try:
            # Sequential: concurrency is the other tests' subject, and a burst of fresh TLS connections (each loading
            # its CA) is slow on a loaded machine.
            decisions = [await limiter.hit("tls-principal") for _ in range(LIMIT + 3)]
            assert [d.allowed for d in decisions if d is not None] == [True] * LIMIT + [False] * 3
            assert await limiter.check()
        finally:
            await limiter.aclose()
        sync = RateLimiter(f"{LIMIT}/minute", storage_uri=uri)
        try:
            assert sync.hit_sync("tls-principal").allowed is False  # type: ignore[union-attr]
            assert sync.hit_sync("another-principal").allowed is True  # type: ignore[union-attr]
        finally:
            sync.close()
        # Without the CA the server's certificate is not trusted: refused, never sent in clear.
        untrusted = RateLimiter(f"{LIMIT}/minute", storage_uri=group.uri.split("?")[0] + f"?{TIMEOUT}")
        try:
            with pytest.raises(RateLimiterUnavailable):
                await untrusted.hit("tls-principal")
        finally:
            await untrusted.aclose()
