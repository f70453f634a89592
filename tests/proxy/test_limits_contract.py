"""The ``limits`` internals the rate limiter relies on (``orga_ai/proxy/_ratelimit.py``: ``_client`` and
``RateLimiter._clients``), checked against the installed release on real Redis servers: a ``limits`` that keeps its
Redis clients elsewhere fails here, one test per name, rather than leaking connections or answering 503 in
production. When one fails after an upgrade: find where the new release keeps the client, adjust ``_client``'s
callers, run ``tests/proxy/test_ratelimit_redis_ha.py -m slow``, then widen the ``limits`` pin in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from limits.storage import storage_from_string

from orga_ai.proxy._ratelimit import RateLimiter, RateLimiterUnavailable, storage_config
from tests.proxy.redis_topologies import Processes, _server_args, _wait, ask
from tests.support import free_port


@pytest.fixture(scope="module")
def redis_uri() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        processes = Processes(Path(directory))
        port = free_port()
        try:
            processes.start(*_server_args(port, None), name="plain")
            _wait(lambda: bool(ask(port, lambda r: r.ping())), "redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            processes.stop()


@pytest.fixture(scope="module")
def cluster_uri() -> Iterator[str]:
    """A one-node Redis Cluster holding every slot: enough for the clients to initialise, and fast to start."""
    with tempfile.TemporaryDirectory() as directory:
        processes = Processes(Path(directory))
        port = free_port()
        try:
            processes.start(
                *_server_args(port, None),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-port",  # not port + 10000, which may be taken or past 65535
                str(free_port()),
                name="node",
            )
            _wait(lambda: bool(ask(port, lambda r: r.ping())), "cluster node")
            ask(port, lambda r: r.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383))
            _wait(lambda: ask(port, lambda r: r.cluster("info"))["cluster_state"] == "ok", "a healthy cluster")
            yield f"redis+cluster://127.0.0.1:{port}"
        finally:
            processes.stop()


def sentinel_uri() -> str:
    # Sentinel clients connect on first command only: nothing needs to listen for the names to be checked.
    return f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/orga-limits"


def storages(uri: str) -> tuple[Any, Any]:
    """The sync and async ``limits`` storages the limiter builds for ``uri`` (the same options)."""
    limiter = RateLimiter("10/minute", storage_uri=uri)
    options = limiter._options()
    config = storage_config(uri)
    sync = storage_from_string(config.uri, **options)
    aio = storage_from_string("async+" + config.uri, implementation="redispy", **options)
    return sync, aio


def test_sync_storage_keeps_its_client_in_storage(redis_uri: str) -> None:
    sync, _ = storages(redis_uri)
    assert isinstance(sync.storage, redis.Redis)
    assert sync.storage.ping()
    sync.storage.close()


async def test_async_storage_keeps_its_client_in_bridge_storage(redis_uri: str) -> None:
    _, aio = storages(redis_uri)
    assert isinstance(aio.bridge.storage, redis.asyncio.Redis)
    try:
        assert await aio.bridge.storage.ping()
    finally:
        await aio.bridge.storage.aclose()


async def test_async_storage_starts_no_task(redis_uri: str) -> None:
    # aclose closes clients only: a storage that started its own task (as limits' memory storage does) would leak it.
    _, aio = storages(redis_uri)
    found = [name for name, value in vars(aio).items() if isinstance(value, asyncio.Task)]
    await aio.bridge.storage.aclose()
    assert found == []


def test_sync_sentinel_storage_keeps_primary_replica_and_sentinels() -> None:
    sync, _ = storages(sentinel_uri())
    assert isinstance(sync.storage, redis.Redis)
    assert isinstance(sync.storage_slave, redis.Redis)
    assert len(sync.sentinel.sentinels) == 2
    assert all(isinstance(client, redis.Redis) for client in sync.sentinel.sentinels)


def test_async_sentinel_storage_keeps_primary_replica_and_sentinels() -> None:
    _, aio = storages(sentinel_uri())
    assert isinstance(aio.bridge.storage, redis.asyncio.Redis)
    assert isinstance(aio.bridge.storage_replica, redis.asyncio.Redis)
    assert len(aio.bridge.sentinel.sentinels) == 2
    assert all(isinstance(client, redis.asyncio.Redis) for client in aio.bridge.sentinel.sentinels)


def test_the_limiter_reaches_every_sentinel_client_it_closes() -> None:
    limiter = RateLimiter("10/minute", storage_uri=sentinel_uri())
    limiter._sync()
    assert len(limiter._clients(limiter._sync_storage, ("storage",), ("storage_slave",), ("sentinel",))) == 4
    limiter.close()


def test_sync_cluster_storage_keeps_its_client_in_storage(cluster_uri: str) -> None:
    sync, _ = storages(cluster_uri)
    assert isinstance(sync.storage, redis.cluster.RedisCluster)
    assert sync.storage.ping()
    sync.storage.close()


async def test_async_cluster_client_is_initialised_through_bridge_storage(cluster_uri: str) -> None:
    _, aio = storages(cluster_uri)
    client = aio.bridge.storage
    assert isinstance(client, redis.asyncio.RedisCluster)
    try:
        await client.initialize()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_limits_keeping_the_cluster_client_elsewhere_is_refused_with_503_not_500(cluster_uri: str) -> None:
    limiter = RateLimiter("10/minute", storage_uri=cluster_uri)
    limiter._async()
    bridge = limiter._async_storage.bridge
    del limiter._async_storage.bridge  # as a limits that renamed it would leave the storage
    try:
        with pytest.raises(RateLimiterUnavailable, match=r"keeps no bridge\.storage on its RedisClusterStorage"):
            await limiter.hit("alice")
        assert limiter.problem is not None and "keeps no bridge.storage" in limiter.problem  # /readyz shows it
    finally:
        limiter._async_storage.bridge = bridge
        await limiter.aclose()


def test_the_limits_pin_matches_the_names_checked_here() -> None:
    # The names above were checked on limits 5.1 to 5.8; a limits 6 must pass this file before the pin moves.
    from importlib.metadata import version

    major = int(version("limits").split(".")[0])
    assert major == 5
