"""A fixed-rate (open-loop) HTTP load generator on aiohttp.

    python benchmarks/load.py http://127.0.0.1:18100/api/orga-client-secrets --rate 50 --duration 10 --connections 64

Request *i* is due at ``start + i / rate`` and is launched then whether or not earlier ones have finished, so a slow
server meets the same arrival rate a real one would (no coordinated omission). Latency runs from the launch (a
``perf_counter`` read just before the request is handed to aiohttp) to the last body byte; how late the generator
itself launched requests against their due time (timer granularity, its own CPU) is reported apart, as
``generator_late_p99_ms``, so it can be told from server latency. ``--connections`` caps the client's connections
(like wrk's ``-c``); a request finding them all busy waits, and that wait counts in its latency.

Prints one JSON object: the achieved rate, and per status code the count and latency percentiles in ms.
Importable: :func:`run_load` returns the same dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest-rank; NaN when empty."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summarize(latencies_ms: list[float]) -> dict[str, float]:
    values = sorted(latencies_ms)
    return {
        "n": len(values),
        "p50_ms": percentile(values, 0.50),
        "p90_ms": percentile(values, 0.90),
        "p99_ms": percentile(values, 0.99),
        "max_ms": values[-1] if values else float("nan"),
        "mean_ms": sum(values) / len(values) if values else float("nan"),
    }


async def run_load(
    url: str,
    *,
    rate: float,
    duration: float,
    connections: int = 64,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    warmup: float = 0.0,
) -> dict[str, Any]:
    """Send ``rate`` GET requests per second to ``url`` for ``duration`` seconds (after ``warmup`` seconds at the
    same rate whose results are dropped) and summarise the latencies per status."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, keepalive_timeout=60)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    by_status: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    total = int((warmup + duration) * rate)
    skip = int(warmup * rate)
    late: list[float] = []

    async def one(index: int, due: float) -> None:
        status: str
        launched = time.perf_counter()
        if index >= skip:
            late.append(max(0.0, loop.time() - due) * 1000)
        try:
            async with session.get(url, headers=dict(headers or {})) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            status = "error"
        if index >= skip:
            by_status.setdefault(status, []).append((time.perf_counter() - launched) * 1000)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        tasks: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        measured_end = start + total / rate
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 1)
        for task in tasks:
            task.cancel()
        elapsed = max(measured_end - (start + skip / rate), 1e-9)
    sent = total - skip
    return {
        "url": url,
        "rate": rate,
        "duration_s": duration,
        "connections": connections,
        "sent": sent,
        "achieved_rate": round(sent / elapsed, 2),
        "generator_late_p99_ms": round(percentile(sorted(late), 0.99), 3) if late else 0.0,
        "errors": errors,
        "status": {code: summarize(values) for code, values in sorted(by_status.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent first and not measured (default 1)")
    parser.add_argument("--connections", type=int, default=64, help="client connection cap (default 64)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--header", action="append", default=[], help="extra header, 'Name: value' (repeatable)")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.perf_counter()
    result = asyncio.run(
        run_load(
            args.url,
            rate=args.rate,
            duration=args.duration,
            connections=args.connections,
            timeout=args.timeout,
            headers=headers,
            warmup=args.warmup,
        )
    )
    result["wall_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
