"""Both clients under a long run with one call in five faulted: nothing may pile up.

Measured: open file descriptors (back to the baseline +-5 once the clients are closed, not counting the emulator's
own ends of its connections, which it closes on its own thread and schedule; and not one client-side socket to the
emulator left), pooled connections still
checked out (none), asyncio tasks still pending (none), RSS growth between the second and the last thousand calls
(<= 10 MB). filterwarnings=error turns any ResourceWarning (an unclosed socket or session) into a failure.
"""

from __future__ import annotations

import asyncio
import gc
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from orga_ai import AsyncOrgaAI, OrgaAI
from orga_ai.testing import RunningEmulator
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.support import Canary, FdCensus, Report, fd_census, other_tasks, rss_bytes, timed, timed_sync

# One call in five goes to a client whose every request carries one of these faults (the emulator's header knob),
# or through the fault proxy's reset-after-send.
FAULTS: list[dict[str, Any]] = [
    {"status": 500},
    {"status": 503, "retry_after": "0"},
    {"drop": True},
    {"body": "html"},
    {"stall": True},
]
CALLS = 3000
# Faulted calls run on tight limits: that they end by their deadline is what is checked. Healthy calls get room, so
# that a loaded machine (CI's two cores shared with the emulator thread) cannot turn a healthy call into a failure:
# their success is counted exactly. The slack covers the event loop or a thread being scheduled late, not a retry.
FAULTED_LIMITS: dict[str, float] = {"timeout": 0.5, "deadline": 1.5}
HEALTHY_LIMITS: dict[str, float] = {"timeout": 10.0, "deadline": 20.0}
DEADLINE_SLACK = 1.0
CONCURRENCY = 20
MB = 1024 * 1024


def _port(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None
    return port


def assert_no_client_left(before: FdCensus, after: FdCensus, ports: list[int]) -> None:
    """No more client sockets to the servers these clients used than before them. Only those servers: a thread an
    earlier test left behind may open a connection to another in-process server meanwhile."""
    for port in ports:
        assert after.clients_to.get(port, 0) <= before.clients_to.get(port, 0), (port, after.clients_to)


def _fault_header(fault: dict[str, Any]) -> dict[str, str]:
    return {"X-Orga-Emulator": json.dumps(fault)}


@pytest.mark.slow
async def test_async_client_long_run_leaks_nothing(emulator: RunningEmulator, canary: Canary, report: Report) -> None:
    gc.collect()
    before = fd_census()
    with FaultProxy(emulator.base_url, on_secret=canary.on_secret) as fault_proxy:
        fault_proxy.set("reset_after_send")
        options: dict[str, Any] = {"api_key": emulator.api_key, "max_retries": 1}
        healthy = AsyncOrgaAI(base_url=emulator.base_url, **options)
        faulty = [AsyncOrgaAI(base_url=emulator.base_url, default_headers=_fault_header(f), **options) for f in FAULTS]
        faulty.append(AsyncOrgaAI(base_url=fault_proxy.url, **options))
        clients = [healthy, *faulty]
        rss: dict[int, int] = {}
        worst = 0.0
        ok = failed = 0
        next_call = 0

        async def worker() -> None:
            nonlocal next_call, worst, ok, failed
            while next_call < CALLS:
                n = next_call
                next_call += 1
                faulted = n % 5 == 4
                client = faulty[n // 5 % len(faulty)] if faulted else healthy
                limits = FAULTED_LIMITS if faulted else HEALTHY_LIMITS
                result = await timed(lambda c=client, kw=limits: c.get_session_config(**kw), canary)
                if faulted:
                    worst = max(worst, result.elapsed)
                if result.error is None:
                    ok += 1
                    canary.add_session_config(result.result)
                else:
                    failed += 1
                if (n + 1) % 1000 == 0:
                    rss[n + 1] = rss_bytes()

        try:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            # Connections still held by an attempt: the default transport counts them (in_use).
            checked_out = sum(c._transport.in_use for c in clients if c._transport is not None)  # type: ignore[attr-defined]
        finally:
            for client in clients:
                await client.close()
        await asyncio.sleep(0.1)  # asyncio closes transports on the next loop iteration
        proxy_port = fault_proxy.port
    gc.collect()
    after = fd_census([proxy_port])
    pending = other_tasks()
    growth = rss[CALLS] - rss[2000]
    report.add(
        f"SDK async: {CALLS} calls, 20 % faulted, {CONCURRENCY} concurrent",
        requests=CALLS,
        outcome=f"{ok} ok, {failed} failed; fds {before.own}->{after.own}; RSS +{growth / MB:.1f} MB; "
        f"{checked_out} checked out; {len(pending)} tasks",
        worst_s=worst,
        deadline_s=1.5,
        upstream="-",
    )
    assert failed == CALLS // 5
    assert worst <= FAULTED_LIMITS["deadline"] + DEADLINE_SLACK
    assert abs(after.own - before.own) <= 5
    assert_no_client_left(before, after, [_port(emulator.base_url), proxy_port])
    assert checked_out == 0
    assert not pending
    assert growth <= 10 * MB


@pytest.mark.slow
async def test_sync_client_long_run_leaks_nothing(emulator: RunningEmulator, canary: Canary, report: Report) -> None:
    calls = 2000
    gc.collect()
    before = fd_census()
    options: dict[str, Any] = {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 1}
    healthy = OrgaAI(**options)
    faulty = [OrgaAI(default_headers=_fault_header(f), **options) for f in FAULTS]
    rss: dict[int, int] = {}
    results: list[tuple[bool, float]] = []

    def one(n: int) -> tuple[bool, float]:
        faulted = n % 5 == 4
        client = faulty[n // 5 % len(faulty)] if faulted else healthy
        limits = FAULTED_LIMITS if faulted else HEALTHY_LIMITS
        result = timed_sync(lambda: client.get_session_config(**limits), canary)
        if result.error is None:
            canary.add_session_config(result.result)
        if (n + 1) % 500 == 0:
            rss[n + 1] = rss_bytes()
        return result.error is None, result.elapsed if faulted else 0.0

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(calls)))
        # The standard library pool: every connection these clients still have open to the emulator must be back in
        # it, idle (the emulator's admin client keeps its own: counted in `before`).
        idle = sum(
            len(conns)
            for c in [healthy, *faulty]
            if c._transport is not None
            for conns in c._transport._pool._idle.values()  # type: ignore[attr-defined]
        )
        port = _port(emulator.base_url)
        busy = fd_census().clients_to.get(port, 0) - before.clients_to.get(port, 0) - idle
    finally:
        for client in [healthy, *faulty]:
            client.close()
    gc.collect()
    after = fd_census()  # OrgaAI.close() closes its sockets before it returns: no wait
    ok = sum(1 for good, _ in results if good)
    worst = max(elapsed for _, elapsed in results)
    growth = rss[calls] - rss[1000]
    report.add(
        f"SDK sync: {calls} calls, 20 % faulted, 8 threads",
        requests=calls,
        outcome=f"{ok} ok, {calls - ok} failed; fds {before.own}->{after.own}; RSS +{growth / MB:.1f} MB; "
        f"{busy} checked out",
        worst_s=worst,
        deadline_s=1.5,
        upstream="-",
    )
    assert calls - ok == calls // 5
    assert worst <= FAULTED_LIMITS["deadline"] + DEADLINE_SLACK
    assert abs(after.own - before.own) <= 5
    assert_no_client_left(before, after, [_port(emulator.base_url)])
    assert busy == 0
    assert growth <= 10 * MB
