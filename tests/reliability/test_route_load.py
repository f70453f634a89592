"""The route with Redis dying under it, and 10,000 route requests with one in five faulted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orga_ai.testing import RunningEmulator
from tests.reliability.support import (
    CANARY_SHARED_SECRET,
    Canary,
    Report,
    fd_census,
    other_tasks,
    rss_bytes,
    security_header_problems,
)
from tests.reliability.test_route_faults import ROUTE_PATH, TOKEN_PATH, count, route
from tests.support import free_port, require_binary

AUTH = {"Authorization": f"Bearer {CANARY_SHARED_SECRET}"}
STORAGE_TIMEOUT = 0.5  # the proxy's DEFAULT_STORAGE_TIMEOUT: socket connect/read timeout towards Redis
MB = 1024 * 1024


@contextlib.contextmanager
def redis_server(port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server on 127.0.0.1:``port`` (``extra``: more arguments, e.g. TLS ones that move it to a TLS port)."""
    binary = require_binary("redis-server")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=5)


async def _burst(session: Any, url: str, n: int) -> tuple[list[int], float, list[str]]:
    async def one() -> tuple[int, float, list[str]]:
        started = time.monotonic()
        async with session.get(url + ROUTE_PATH, headers=AUTH) as response:
            await response.read()
            return response.status, time.monotonic() - started, security_header_problems(response.headers)

    results = await asyncio.gather(*(one() for _ in range(n)))
    return [s for s, _, _ in results], max(e for _, e, _ in results), [p for _, _, ps in results for p in ps]


@pytest.mark.slow
async def test_redis_down_fails_closed_fast_and_recovers(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    import aiohttp

    port = free_port()
    with redis_server(port) as redis, route(emulator.base_url, emulator.api_key, rate_limit="10000/minute",
                                            storage_uri=f"redis://127.0.0.1:{port}", deadline=2.0) as url:
        async with aiohttp.ClientSession() as session:
            # The route's first Redis connections are opened by this burst; on a loaded machine one of them may
            # outlast the storage timeout and fail closed (correctly): what is checked here is the steady state.
            for _ in range(20):
                up, _, problems = await _burst(session, url, 20)
                if set(up) == {200}:
                    break
                await asyncio.sleep(0.1)
            assert set(up) == {200} and not problems

            redis.send_signal(signal.SIGSTOP)  # a hung Redis: connections accepted, nothing answered
            before = count(emulator, TOKEN_PATH)
            hung, worst_hung, problems = await _burst(session, url, 20)
            hung_upstream = count(emulator, TOKEN_PATH) - before
            report.add("route: Redis hung (SIGSTOP), fail closed", requests=20,
                       outcome=f"HTTP {sorted(set(hung))}", worst_s=worst_hung,
                       deadline_s=STORAGE_TIMEOUT, upstream=hung_upstream)
            assert set(hung) == {503} and not problems
            assert hung_upstream == 0
            # Bounded by the Redis socket timeout (plus the limiter's backstop of 4 timeouts), never the deadline.
            assert worst_hung <= 4 * STORAGE_TIMEOUT + 0.1 + 0.25

            redis.send_signal(signal.SIGCONT)
            redis.kill()
            redis.wait(timeout=5)
            before = count(emulator, TOKEN_PATH)
            down, worst_down, problems = await _burst(session, url, 20)
            down_upstream = count(emulator, TOKEN_PATH) - before
            report.add("route: Redis killed, fail closed", requests=20, outcome=f"HTTP {sorted(set(down))}",
                       worst_s=worst_down, deadline_s=STORAGE_TIMEOUT, upstream=down_upstream)
            assert set(down) == {503} and not problems
            assert down_upstream == 0
            assert worst_down <= STORAGE_TIMEOUT + 0.25

            with redis_server(port):
                recovered: list[int] = []
                for _ in range(20):  # the client reconnects on its own; give it a few tries
                    recovered, _, problems = await _burst(session, url, 5)
                    if set(recovered) == {200}:
                        break
                    await asyncio.sleep(0.1)
                report.add("route: Redis back", requests=5, outcome=f"HTTP {sorted(set(recovered))}", worst_s=None,
                           deadline_s=None, upstream=5)
                assert set(recovered) == {200}


ROUTE_REQUESTS = 10_000
FAULTS: list[dict[str, Any]] = [{"status": 500}, {"drop": True}, {"body": "html"}, {"stall": True},
                                {"status": 503, "retry_after": "0"}]


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~60 s on a quiet machine; several times that when its two cores are shared
async def test_ten_thousand_route_requests_one_in_five_faulted_leak_nothing(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    import aiohttp

    gc.collect()
    before = fd_census()
    stack = contextlib.ExitStack()
    # One healthy route, and one route per fault whose SDK client sends the emulator's fault header on every
    # upstream request: one route request in five goes to a faulted one.
    # The healthy route has room (its 200s are counted exactly, and a loaded machine must not turn one into a 504);
    # the faulted routes run on a tight deadline, which is what their worst latency is checked against.
    healthy = stack.enter_context(route(emulator.base_url, emulator.api_key, deadline=20.0,
                                        orga_options={"timeout": 10.0}))
    faulted = [
        stack.enter_context(route(emulator.base_url, emulator.api_key, deadline=2.0, breaker_threshold=0,
                                  orga_options={"default_headers": {"X-Orga-Emulator": json.dumps(f)},
                                                "timeout": 0.5, "max_retries": 1}))
        for f in FAULTS
    ]
    statuses: dict[int, int] = {}
    rss: dict[int, int] = {}
    worst = 0.0
    bad_headers = 0
    with stack:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
            next_request = 0

            async def worker() -> None:
                nonlocal next_request, worst, bad_headers
                while next_request < ROUTE_REQUESTS:
                    n = next_request
                    next_request += 1
                    url = faulted[n // 5 % len(faulted)] if n % 5 == 4 else healthy
                    started = time.monotonic()
                    async with session.get(url + ROUTE_PATH, headers=AUTH) as response:
                        body = await response.read()
                        if response.status == 200:
                            canary.add_session_config(json.loads(body))
                        elif n % 50 == 4:
                            canary.scan(body.decode(), "error body")
                        bad_headers += bool(security_header_problems(response.headers))
                    if n % 5 == 4:
                        worst = max(worst, time.monotonic() - started)
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if (n + 1) % 1000 == 0:
                        rss[n + 1] = rss_bytes()

            await asyncio.gather(*(worker() for _ in range(40)))
            async with session.get(healthy + "/metrics") as response:
                canary.scan(await response.text(), "metrics")
    await asyncio.sleep(0.1)  # aiohttp closes transports on the next loop iteration
    gc.collect()
    # The routes' servers have stopped; their accepted ends are not this client's to close.
    after = fd_census(int(url.rsplit(":", 1)[1]) for url in (healthy, *faulted))
    pending = other_tasks()
    growth = rss[ROUTE_REQUESTS] - rss[2000]
    faulted_count = ROUTE_REQUESTS // 5
    report.add(
        f"route: {ROUTE_REQUESTS:,} requests, 20 % faulted, 40 concurrent",
        requests=ROUTE_REQUESTS,
        outcome=f"{dict(sorted(statuses.items()))}; fds {before.own}->{after.own}; RSS +{growth / MB:.1f} MB; "
        f"{len(pending)} tasks",
        worst_s=worst,
        deadline_s=2.0,
        upstream=count(emulator, TOKEN_PATH),
    )
    assert statuses.get(200, 0) == ROUTE_REQUESTS - faulted_count
    assert sum(v for k, v in statuses.items() if k >= 500) == faulted_count
    assert bad_headers == 0
    assert worst <= 2.0 + 1.0  # slack: a loaded loop answers late, never a retry past the deadline
    assert abs(after.own - before.own) <= 5
    assert all(after.clients_to.get(port, 0) <= n for port, n in before.clients_to.items()), after.clients_to
    assert set(after.clients_to) <= set(before.clients_to), after.clients_to
    assert not pending
    assert growth <= 10 * MB
