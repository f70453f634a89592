"""A full Orga outage must not multiply traffic: the process-wide retry budget, measured.

The budget (orga_ai._retry.RetryBudget) has no clock. Retries are bounded by ``capacity + ratio * successes``; in
an outage successes are zero, so over any window of N calls the upstream sees at most N + capacity requests, however
long the window. That makes the figure time-independent; the outage here is RELIABILITY_OUTAGE_CALLS calls per
worker (15 by default; set it to 300 for a long run: the ratio must not move).
"""

from __future__ import annotations

import asyncio
import os

from orga_ai import AsyncOrgaAI, OrgaAI, RetryBudget
from orga_ai.testing import RunningEmulator
from tests.reliability.support import Canary, Report, timed

OUTAGE_CALLS = int(os.environ.get("RELIABILITY_OUTAGE_CALLS", "15"))  # per worker: 10 async, 1 sync
TOKEN_PATH = "/v1/realtime/client-secrets"


def upstream_posts(emulator: RunningEmulator) -> int:
    return int(emulator.stats()["paths"].get(TOKEN_PATH, 0))


async def test_outage_drains_the_budget_then_recovery_refills_it(
    emulator: RunningEmulator, canary: Canary, report: Report
) -> None:
    budget = RetryBudget()  # one per process: both clients below share it
    aclient = AsyncOrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=2, retry_budget=budget)
    sclient = OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=2, retry_budget=budget)
    worst = 0.0
    try:
        emulator.arm("*", count=100_000, status=503)  # Orga fails every request, safely retryable

        # Drain: sequential calls until the budget is spent. Without a budget each call would cost 3 requests.
        drain_calls = 0
        while budget.tokens >= 1.0:
            result = await timed(lambda: aclient.get_session_config(deadline=2.0), canary)
            assert result.error is not None
            drain_calls += 1
        drain_upstream = upstream_posts(emulator)
        assert drain_upstream == drain_calls + 10  # exactly the capacity was spent on retries

        # The outage goes on: 10 async workers and one thread on the sync client, sharing the drained budget.
        # A count, not a duration: how many calls fit in some seconds depends on the machine's load.
        calls = 0

        async def async_worker() -> None:
            nonlocal calls, worst
            for _ in range(OUTAGE_CALLS):
                result = await timed(lambda: aclient.get_session_config(deadline=2.0), canary)
                assert result.error is not None
                calls += 1
                worst = max(worst, result.elapsed)

        def sync_worker() -> int:
            n = 0
            for _ in range(OUTAGE_CALLS):
                try:
                    sclient.get_session_config(deadline=2.0)
                except Exception:  # noqa: BLE001 - every call fails in an outage; we count them
                    n += 1
                    continue
            return n

        sync_done = asyncio.get_running_loop().run_in_executor(None, sync_worker)
        await asyncio.gather(*(async_worker() for _ in range(10)))
        calls += await sync_done
        outage_upstream = upstream_posts(emulator) - drain_upstream
        ratio = outage_upstream / calls
        total_ratio = (drain_upstream + outage_upstream) / (drain_calls + calls)
        report.add(
            f"retry budget: Orga 503 on every request, 11 workers x {OUTAGE_CALLS} calls (SDK, shared budget)",
            requests=drain_calls + calls,
            outcome=f"all fail; upstream/call {ratio:.3f} once drained ({total_ratio:.3f} overall)",
            worst_s=worst,
            deadline_s=2.0,
            upstream=f"{drain_upstream + outage_upstream} (drain: {drain_upstream} for {drain_calls} calls)",
        )
        assert calls == 11 * OUTAGE_CALLS
        assert ratio <= 1.2
        assert budget.tokens < 1.0

        # Recovery: successes refill the budget by 0.1 each (token + ICE: 0.2 a call), up to its capacity.
        emulator.clear_faults()
        recovery_calls = 0
        while budget.tokens < budget.capacity:
            result = await timed(lambda: aclient.get_session_config(deadline=2.0), canary)
            assert result.error is None, result.error
            canary.add_session_config(result.result)
            recovery_calls += 1
            assert recovery_calls <= 60
        before = upstream_posts(emulator)
        emulator.arm("client-secrets", count=1, status=503)
        result = await timed(lambda: sclient.get_session_config(deadline=2.0), canary)
        assert result.error is None, result.error
        canary.add_session_config(result.result)
        assert upstream_posts(emulator) - before == 2  # retried again
        report.add(
            "retry budget: Orga recovers",
            requests=recovery_calls + 1,
            outcome=f"refilled to {budget.capacity:g} after {recovery_calls} calls; a 503 is retried again",
            worst_s=None,
            deadline_s=None,
            upstream=f"{recovery_calls * 2 + 3}",
        )
    finally:
        await aclient.close()
        sclient.close()
