"""Which HTTP library the async client should run on: every candidate behind the ``AsyncTransport`` interface, side by
side, against the same local stand-in upstream.

    .venv/bin/python benchmarks/async_transport.py --calls 2000 --rounds 3

Starts the upstream stand-in (benchmarks/upstream.js, 0 ms) and, in interleaved rounds (the order flips every round),
runs each candidate in a fresh process of its own (so one library's imports and memory never count against another)
on uvloop, as ``benchmarks/inprocess.py`` does. Each does ``get_session_config``-shaped exchanges (POST
client-secrets, read the token, GET ice-config, read the JSON) through ``send(request, deadline)``:

* ``aiohttp``: the SDK's aiohttp transport (``_transports/aiohttp.py``), its own session;
* ``asyncio+httptools``: the SDK's own transport (``_transports/asyncio.py``);
* ``aiosonic``, ``httpcore``, ``pyreqwest``, ``rnet``: a thin adapter each (below), only what an exchange needs: the
  floor of each library, without the guarantees the SDK's transports add (those cost the SDK's own transports a
  little, so the comparison favours the adapters);
* ``AsyncOrgaAI`` and ``AsyncOrgaAI(aiohttp)``: the product's ``get_session_config()`` on its default transport, and
  on the aiohttp one; ``node``: ``@orga-ai/node``'s in-process ``getSessionConfig()`` (benchmarks/node/inprocess.js).

Per candidate: CPU µs per exchange (the process's CPU time, every thread, over the timed calls), wall µs per exchange
at 1 call at a time (median) and at 16 and 64 concurrent calls (elapsed time over calls), resident memory after the
run (VmRSS), and the cold import (``python -X importtime``, median of 5). Prints a table and one JSON object; figures
are medians over rounds. Nothing is asserted: a shared machine moves single figures by ±20 %.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import API_KEY, CHILD_ENV, NODE_DIR, Procs, free_port, npm_install, wait_ready  # noqa: E402

from orga_ai._protocol import Request, Response, TransportFailure  # noqa: E402

TRANSPORTS = ("aiohttp", "asyncio+httptools", "aiosonic", "httpcore", "pyreqwest", "rnet")
CLIENTS = ("AsyncOrgaAI", "AsyncOrgaAI(aiohttp)")
IMPORTS = {
    "aiohttp": "aiohttp",
    "asyncio+httptools": "orga_ai._transports.asyncio",
    "aiosonic": "aiosonic",
    "httpcore": "httpcore",
    "pyreqwest": "pyreqwest.client",
    "rnet": "rnet",
}
CONCURRENCY = (16, 64)
CAP = 256 * 1024


# -- the adapters: each library behind send(request, deadline) --------------------------------------------------------


class AiosonicTransport:
    def __init__(self) -> None:
        import aiosonic

        self._aiosonic = aiosonic
        self._client = aiosonic.HTTPClient()

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        timeouts = self._aiosonic.timeout.Timeouts(request_timeout=deadline - time.monotonic())
        response = await self._client.request(
            request.url, method=request.method, headers=dict(request.headers), data=request.content or None,
            follow=False, timeouts=timeouts,
        )
        body = await response.content()
        return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpcoreTransport:
    def __init__(self) -> None:
        import httpcore

        self._pool = httpcore.AsyncConnectionPool(max_connections=100)

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        left = deadline - time.monotonic()
        response = await self._pool.request(
            request.method, request.url, headers=list(request.headers.items()), content=request.content,
            extensions={"timeout": {"connect": left, "read": left, "write": left, "pool": left}},
        )
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        return Response(response.status, headers, response.content)

    async def aclose(self) -> None:
        await self._pool.aclose()


class PyreqwestTransport:
    def __init__(self) -> None:
        from pyreqwest.client import ClientBuilder

        self._client = ClientBuilder().follow_redirects(False).max_connections(100).build()

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        import datetime as dt

        builder = self._client.request(request.method, request.url).headers(dict(request.headers))
        if request.content:
            builder = builder.body_bytes(request.content)
        builder = builder.timeout(dt.timedelta(seconds=deadline - time.monotonic()))
        response = await builder.build().send()
        body = bytes(await response.bytes())
        return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, body)

    async def aclose(self) -> None:
        await self._client.close()


class RnetTransport:
    def __init__(self) -> None:
        import rnet

        self._rnet = rnet
        self._client = rnet.Client(allow_redirects=False)

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        method = self._rnet.Method.POST if request.method == "POST" else self._rnet.Method.GET
        kwargs: dict[str, Any] = {"headers": dict(request.headers), "timeout": max(1, int(deadline - time.monotonic()))}
        if request.content:
            kwargs["body"] = request.content
        response = await self._client.request(method, request.url, **kwargs)
        body = await response.bytes()
        headers = {k.decode().lower() if isinstance(k, bytes) else str(k).lower(): "" for k in response.headers}
        status = response.status.as_int() if hasattr(response.status, "as_int") else int(response.status)
        return Response(status, headers, body)

    async def aclose(self) -> None:
        return None


def make_transport(name: str) -> Any:
    if name == "aiohttp":
        from orga_ai._transports.aiohttp import AiohttpTransport

        return AiohttpTransport(None, base_url=os.environ["ORGA_BASE_URL"], max_response_bytes=CAP, limit=100,
                                keepalive=30.0)
    if name == "asyncio+httptools":
        from orga_ai._transports.asyncio import AsyncioTransport

        return AsyncioTransport(base_url=os.environ["ORGA_BASE_URL"], max_response_bytes=CAP, limit=100,
                                keepalive=30.0)
    return {"aiosonic": AiosonicTransport, "httpcore": HttpcoreTransport, "pyreqwest": PyreqwestTransport,
            "rnet": RnetTransport}[name]()


# -- one candidate, in its own process -----------------------------------------------------------------------------


def exchange_for(name: str) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    base = os.environ["ORGA_BASE_URL"]
    if name in CLIENTS:
        from orga_ai import AsyncOrgaAI

        kwargs: dict[str, Any] = {"api_key": API_KEY, "base_url": base}
        if name == "AsyncOrgaAI(aiohttp)":
            kwargs["transport"] = make_transport("aiohttp")
        client = AsyncOrgaAI(**kwargs)
        return client.get_session_config, client.close

    transport = make_transport(name)
    post = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", "Accept": "application/json"}

    async def send(request: Request) -> bytes:
        answer = await transport.send(request, time.monotonic() + request.timeout)
        if not isinstance(answer, Response) or answer.status != 200:
            raise RuntimeError(f"{name}: {answer!r}")
        return answer.body

    async def one() -> object:
        body = await send(Request("POST", f"{base}/v1/realtime/client-secrets", post, "token", 10.0))
        get = {"Authorization": f"Bearer {json.loads(body)['ephemeral_token']}", "Accept": "application/json"}
        return json.loads(await send(Request("GET", f"{base}/v1/realtime/ice-config", get, "ice", 10.0)))["iceServers"]

    async def close() -> None:
        await transport.aclose()

    return one, close


async def child(name: str, calls: int) -> dict[str, float]:
    one, close = exchange_for(name)
    for _ in range(calls // 10):
        await one()
    samples = []
    cpu0 = time.process_time()
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        await one()
        samples.append(time.perf_counter_ns() - t0)
    out = {"cpu_us": (time.process_time() - cpu0) / calls * 1e6, "wall1_us": statistics.median(samples) / 1000}
    for c in CONCURRENCY:
        left = calls

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        out[f"wall{c}_us"] = (time.perf_counter() - t0) / calls * 1e6
    out["rss_mb"] = _rss_mb()
    await close()
    return out


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the parent ---------------------------------------------------------------------------------------------------


def import_ms(module: str, runs: int = 5) -> float | None:
    samples = []
    for _ in range(runs + 1):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            env=CHILD_ENV, capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode:
            return None
        total = sum(
            int(parts[1].strip())
            for parts in (line.split("|") for line in done.stderr.splitlines())
            if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  ")
        )
        samples.append(total / 1000)
    return statistics.median(samples[1:])


def available(name: str) -> bool:
    try:
        importlib.import_module(IMPORTS.get(name, "orga_ai"))
    except ImportError:
        return False
    return True


def run_child(name: str, calls: int, env: dict[str, str]) -> dict[str, float] | str:
    done = subprocess.run(
        [sys.executable, __file__, "--child", name, "--calls", str(calls)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    if done.returncode:
        return (done.stderr.strip().splitlines() or ["failed"])[-1][:120]
    result: dict[str, float] = json.loads(done.stdout)
    return result


def run_node(calls: int, env: dict[str, str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["node", "inprocess.js", "--calls", str(calls), "--warmup", str(calls // 10), "--only", "sdk"]
    done = subprocess.run(cmd, cwd=NODE_DIR, env=env, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # Node's CPU includes its start-up and the warm-up calls: divided by every call it made.
    return {"wall1_us": json.loads(done.stdout)["sdk"]["median_us"], "cpu_us": cpu / (calls + calls // 10) * 1e6}


def measure(base: str, calls: int, rounds_n: int) -> dict[str, Any]:
    env = {**CHILD_ENV, "ORGA_API_KEY": API_KEY, "ORGA_BASE_URL": base}
    names = [n for n in (*TRANSPORTS, *CLIENTS) if n in CLIENTS or available(n)]
    missing = [n for n in TRANSPORTS if n not in names]
    rounds: dict[str, list[dict[str, float]]] = {n: [] for n in [*names, "node"]}
    failed: dict[str, str] = {}
    for r in range(rounds_n):
        order = list(rounds) if r % 2 == 0 else list(reversed(rounds))
        for name in order:
            if name in failed:
                continue
            result = run_node(calls, env) if name == "node" else run_child(name, calls, env)
            if isinstance(result, str):
                failed[name] = result
                continue
            rounds[name].append(result)
        print(f"round {r + 1} done", file=sys.stderr)
    table: dict[str, dict[str, float | None]] = {}
    for name, results in rounds.items():
        if not results:
            continue
        keys = results[0].keys()
        table[name] = {k: round(statistics.median(x[k] for x in results), 1) for k in keys}
        table[name]["import_ms"] = None if name in CLIENTS or name == "node" else import_ms(IMPORTS[name])
    node = table.get("node", {})
    ratios = {
        name: {
            "wall1": round(row["wall1_us"] / node["wall1_us"], 2),  # type: ignore[operator]
            "cpu": round(row["cpu_us"] / node["cpu_us"], 2),  # type: ignore[operator]
        }
        for name, row in table.items()
        if name in CLIENTS and node
    }
    return {"table": table, "ratio_to_node": ratios, "not_installed": missing, "failed": failed,
            "import_ms_orga_ai": import_ms("orga_ai"), "loadavg": os.getloadavg(), "calls": calls, "rounds": rounds_n}


def print_table(result: dict[str, Any]) -> None:
    cols = ["cpu_us", "wall1_us", "wall16_us", "wall64_us", "import_ms", "rss_mb"]
    print(f"{'candidate':24}" + "".join(f"{c:>12}" for c in cols), file=sys.stderr)
    for name, row in result["table"].items():
        cells = "".join(f"{'-' if row.get(c) is None else row[c]:>12}" for c in cols)
        print(f"{name:24}{cells}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        print(json.dumps(uvloop.run(child(args.child, args.calls))))
        return
    npm_install()
    procs = Procs(BENCH / "results")
    (BENCH / "results").mkdir(exist_ok=True)
    try:
        port = free_port()
        upstream = procs.spawn("async-transport-upstream", ["node", str(BENCH / "upstream.js"), "--port", str(port)])
        wait_ready(upstream, port, "/v1/realtime/unknown", timeout=15, want=403)
        result = measure(f"http://127.0.0.1:{port}", args.calls, args.rounds)
    finally:
        procs.stop_all()
    print_table(result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
