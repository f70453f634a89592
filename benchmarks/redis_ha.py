"""What the Redis rate-limit storage costs per request, and how much a Sentinel failover can over-admit.

Run: ``python benchmarks/redis_ha.py [--trials 5]`` (needs redis-server; prints JSON). Figures quoted in
docs/operations.md.

1. Cost: the route's limiter (:class:`RateLimiter`, per-principal limit only, then with a global ceiling too) against
   a local redis-server: Redis commands per request (from ``INFO commandstats``) and wall time per decision.
2. Failover: a primary, a replica and three Sentinels (tests/proxy/redis_topologies.py). 32 tasks hit one key whose
   limit is L while the primary is SIGKILLed mid-stream; hits are refused (fail closed) until Sentinel promotes the
   replica, then continue until the window is full. A moving window admits exactly L; anything above L is the
   over-admission the failover caused: hits the old primary acknowledged but had not yet sent to the replica.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from orga_ai.proxy._ratelimit import RateLimiter, RateLimiterUnavailable  # noqa: E402
from tests.proxy.redis_topologies import ask, sentinel_group  # noqa: E402
from tests.support import free_port  # noqa: E402


def _scripts(port: int) -> tuple[int, int]:
    """(calls, µs) of the script commands: one per round trip (the commands a script runs are counted apart)."""
    stats = ask(port, lambda r: r.info("commandstats"))
    found = [entry for name, entry in stats.items() if name in {"cmdstat_evalsha", "cmdstat_eval"}]
    return sum(int(e["calls"]) for e in found), sum(int(e["usec"]) for e in found)


async def cost(port: int, requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Limits that every request passes (each principal stays under 10/minute: the default), with no global ceiling
    # and with ceilings of growing size: a moving window keeps one entry per hit, and reading a window's stats for
    # the headers walks it, so the ceiling's cost grows with its size.
    for label, ceiling in (
        ("10/minute per principal", None),
        ("+ global 600/minute", "600/minute"),
        ("+ global 6000/minute", "6000/minute"),
    ):
        limiter = RateLimiter("10/minute", ceiling, storage_uri=f"redis://127.0.0.1:{port}/0", key_prefix=label)
        await limiter.hit("warm-up")
        calls, usec = _scripts(port)
        started = time.perf_counter()
        for i in range(requests):
            await limiter.hit(f"principal-{i // 5}")
        elapsed = time.perf_counter() - started
        after_calls, after_usec = _scripts(port)
        out[label] = {
            "round_trips_per_request": round((after_calls - calls) / requests, 2),
            "redis_cpu_us_per_request": round((after_usec - usec) / requests, 1),
            "wall_ms_per_request": round(elapsed / requests * 1000, 3),
        }
        await limiter.aclose()
    return out


async def failover_trial(directory: Path, limit: int) -> dict[str, Any]:
    with sentinel_group(directory) as group:
        limiter = RateLimiter(f"{limit}/minute", storage_uri=f"{group.uri}?timeout=1")
        admitted = refused = unavailable = 0
        closed_at: float | None = None
        recovered_at: float | None = None
        stop, half = asyncio.Event(), asyncio.Event()

        async def worker() -> None:
            nonlocal admitted, refused, unavailable, closed_at, recovered_at
            while not stop.is_set():
                try:
                    decision = await limiter.hit("one-principal")
                except RateLimiterUnavailable:
                    unavailable += 1
                    closed_at = closed_at or time.monotonic()
                    await asyncio.sleep(0.02)
                    continue
                assert decision is not None
                if closed_at is not None and recovered_at is None:
                    recovered_at = time.monotonic()
                if decision.allowed:
                    admitted += 1
                    if admitted >= limit // 2:
                        half.set()
                else:
                    refused += 1
                    if recovered_at is not None and refused > 200:
                        stop.set()

        tasks = [asyncio.create_task(worker()) for _ in range(32)]
        await half.wait()  # kill the primary half-way through the window, under load
        group.primary.send_signal(signal.SIGKILL)
        try:
            await asyncio.wait_for(stop.wait(), 60)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await limiter.aclose()
        return {
            "limit": limit,
            "admitted": admitted,
            # Above 0: writes lost with the old primary. Below 0: hits Redis counted whose answer was lost with the
            # connection (the caller was refused: fail closed), so the window filled with fewer admissions.
            "over_admitted": admitted - limit,
            "refused_while_failing_over": unavailable,
            "seconds_closed": round((recovered_at or 0) - (closed_at or 0), 2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            results["cost"] = asyncio.run(cost(port, args.requests))
        finally:
            server.kill()
            server.wait()
        trials = []
        for trial in range(args.trials):
            path = Path(directory) / f"trial{trial}"
            path.mkdir()
            trials.append(asyncio.run(failover_trial(path, args.limit)))
            print(json.dumps(trials[-1]), file=sys.stderr)
        results["failover"] = trials
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
