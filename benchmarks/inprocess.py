"""In-process timing of ``get_session_config()``, beside the raw two-request floor of the same HTTP library.

    ORGA_API_KEY=... ORGA_BASE_URL=http://127.0.0.1:18001 python benchmarks/inprocess.py --calls 2000

Four loops, each of sequential calls on one kept-alive client, each call timed alone:

* ``sync``: ``OrgaAI().get_session_config()`` (http.client); ``sync_floor``: the same two requests on one bare
  ``http.client.HTTPConnection`` kept alive (POST client-secrets, read the token, GET ice-config, read the JSON);
* ``async``: ``await AsyncOrgaAI().get_session_config()`` (its default transport, asyncio + httptools; uvloop);
  ``async_floor``: the same two requests with a bare ``aiohttp.ClientSession``.

Prints one JSON object {loop: {median_us, mean_us, p99_us, n}}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from orga_ai import AsyncOrgaAI, OrgaAI


def summarize(samples_ns: list[int]) -> dict[str, float]:
    values = sorted(samples_ns)
    n = len(values)
    return {
        "median_us": values[n // 2] / 1000,
        "mean_us": sum(values) / n / 1000,
        "p99_us": values[min(n - 1, int(0.99 * n))] / 1000,
        "n": n,
    }


def time_sync(fn: Callable[[], object], calls: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = [0] * calls
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return summarize(samples)


async def time_async(fn: Callable[[], Awaitable[object]], calls: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        await fn()
    samples = [0] * calls
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        await fn()
        samples[i] = clock() - t0
    return summarize(samples)


def run_sync(base: str, key: str, calls: int, warmup: int, which: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "sync" in which:
        with OrgaAI() as orga:
            out["sync"] = time_sync(orga.get_session_config, calls, warmup)
    if "sync_floor" in which:
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
        post_headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def raw() -> object:
            conn.request("POST", "/v1/realtime/client-secrets", body=b"", headers=post_headers)
            token = json.loads(conn.getresponse().read())["ephemeral_token"]
            conn.request("GET", "/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token}"})
            return json.loads(conn.getresponse().read())["iceServers"]

        try:
            out["sync_floor"] = time_sync(raw, calls, warmup)
        finally:
            conn.close()
    return out


async def run_async(base: str, key: str, calls: int, warmup: int, which: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "async" in which:
        async with AsyncOrgaAI() as orga:
            out["async"] = await time_async(orga.get_session_config, calls, warmup)
    if "async_floor" in which:
        async with aiohttp.ClientSession() as session:

            async def raw() -> object:
                async with session.post(
                    f"{base}/v1/realtime/client-secrets",
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                ) as response:
                    token = (await response.json())["ephemeral_token"]
                async with session.get(
                    f"{base}/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    return (await response.json())["iceServers"]

            out["async_floor"] = await time_async(raw, calls, warmup)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--only", default="sync,sync_floor,async,async_floor", help="comma-separated loops to run")
    args = parser.parse_args()
    base = os.environ["ORGA_BASE_URL"].rstrip("/")
    key = os.environ["ORGA_API_KEY"]
    which = set(args.only.split(","))
    result = run_sync(base, key, args.calls, args.warmup, which)
    if which & {"async", "async_floor"}:
        import uvloop

        result.update(uvloop.run(run_async(base, key, args.calls, args.warmup, which)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
