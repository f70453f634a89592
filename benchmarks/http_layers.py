"""The attack battery of ``tests/adversarial/attacks.py`` against candidate HTTP layers, and their cost per request.

    .venv/bin/pip install hypercorn granian          # candidates (c) and (d); not dependencies of the project
    .venv/bin/python benchmarks/http_layers.py       # all four, ~6 minutes; prints two Markdown tables
    .venv/bin/python benchmarks/http_layers.py --only uvicorn --wrk-seconds 3

Each candidate serves the same minimal Starlette app (``GET /healthz`` answers 200, ``POST /echo`` reads its body)
on 127.0.0.1, in its own process, configured with its own documented hardening options:

(a) ``orga-serve``: today's ``orga-ai serve`` layer: uvicorn + httptools + ``LimitedHttpToolsProtocol``
    (``--head-timeout 10``, ``--max-header-bytes 16384``; ``--max-connections 1024`` instead of 4,096, so that
    every candidate has the same cap);
(b) ``uvicorn``: plain uvicorn + httptools (``timeout_keep_alive=5``, ``limit_concurrency=1024``);
(c) ``hypercorn``: h11 (``keep_alive_timeout=5``, ``read_timeout=10``, ``h11_max_incomplete_size=16384``);
(d) ``granian``: ASGI, HTTP/1 (``--http1-header-read-timeout 10000``, ``--backpressure 1024``,
    ``--http1-buffer-size 65536``, ``--no-ws``).

The attacks come from 127.0.0.2, the ``/healthz`` probes from 127.0.0.1; a server "held" an attack when
``/healthz`` was answered 200 within 5 s during it and (for the attacks that hold connections) it closed every
attacker connection within 13 s (its 10 s timeouts plus a margin), and for unread pipelining its RSS grew less than
30 MB. Then ``wrk`` on ``/healthz`` at 1, 16 and 64 connections: req/s, and the server's CPU µs per request (utime +
stime of its process tree from ``/proc``, over the run). Every loop is bounded in count and time; only loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.adversarial import attacks  # noqa: E402 - after the path insert
from tests.adversarial.attacks import ATTACKER, PROBE  # noqa: E402

HOST = "127.0.0.1"
CAP = 1024
TIMEOUT = 10.0
"""The head/read timeout every candidate is configured with (seconds)."""
HOLD_BOUND = TIMEOUT + 3
PROBE_BOUND = 5.0
MB = 1024 * 1024
RSS_BOUND = 30 * MB
CANDIDATES = ("orga-serve", "uvicorn", "hypercorn", "granian")
WRK_CONNECTIONS = (1, 16, 64)


# -- the app and the servers (run in the child process) ---------------------------------------------------------------


def build_app() -> Any:
    """The minimal Starlette app every candidate serves."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"bytes": len(body)})

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"]), Route("/echo", echo, methods=["POST"])])


def serve_in_this_process(name: str, port: int) -> None:
    app = build_app()
    if name in ("orga-serve", "uvicorn"):
        import uvicorn

        common: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "loop": "uvloop",
            "ws": "none",
            "lifespan": "off",
            "access_log": False,
            "log_level": "warning",
            "backlog": 1024,
        }
        if name == "orga-serve":
            from orga_ai.proxy._server import LimitedConfig, ServerLimits

            defaults = ServerLimits.defaults()
            limits = dataclasses.replace(defaults, max_connections=CAP)
            config: uvicorn.Config = LimitedConfig(app, limits=limits, server_header=False, **common)
        else:
            config = uvicorn.Config(
                app, http="httptools", timeout_keep_alive=5, limit_concurrency=CAP, server_header=False, **common
            )
        uvicorn.Server(config).run()
    elif name == "hypercorn":
        import asyncio

        import uvloop
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        hyper = Config()
        hyper.bind = [f"{HOST}:{port}"]
        hyper.keep_alive_timeout = 5.0
        hyper.read_timeout = int(TIMEOUT)
        hyper.h11_max_incomplete_size = 16384
        hyper.backlog = 1024
        hyper.accesslog = None
        hyper.loglevel = "WARNING"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(serve(app, hyper))  # type: ignore[arg-type]
    else:
        raise SystemExit(f"unknown candidate {name}")


def command(name: str, port: int) -> list[str]:
    if name == "granian":
        granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or "granian"
        return [
            granian,
            "--interface", "asgi", "--host", HOST, "--port", str(port), "--http", "1", "--no-ws",
            "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--backlog", "1024",
            "--backpressure", str(CAP), "--http1-header-read-timeout", str(int(TIMEOUT * 1000)),
            "--http1-buffer-size", "65536", "--log-level", "warning", "--no-access-log",
            "--working-dir", str(Path(__file__).parent), "--factory", "http_layers:build_app",
        ]  # fmt: skip
    return [sys.executable, __file__, "--serve", name, "--port", str(port)]


# -- the process tree -------------------------------------------------------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending and len(found) < 256:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return found


def tree_rss(pid: int) -> int:
    total = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_cpu_seconds(pid: int) -> float:
    ticks = 0
    for current in tree_pids(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(name: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    # A file, not a pipe: a server's warnings under attack must never block it on a full pipe.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command(name, port), env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while attacks.get(HOST, port, timeout=1.0).status != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{name} did not start:\n{log.read().decode(errors='replace')[-2000:]}")
                time.sleep(0.1)
            yield port, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the battery -------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    attack: str
    held: bool
    healthz: str
    closed: str = "—"
    rss_growth_mb: float | None = None
    notes: list[str] = field(default_factory=list)


def _healthz(port: int) -> attacks.Answer:
    return attacks.get(HOST, port, "/healthz", source=PROBE, timeout=PROBE_BOUND)


def _shown(answer: attacks.Answer) -> str:
    return f"{answer.status or 'none'} in {answer.ms:.0f} ms"


def _ok(answer: attacks.Answer) -> bool:
    return answer.status == 200 and answer.seconds < PROBE_BOUND


def _closed(held: attacks.Held, count: int) -> tuple[bool, str]:
    closed = held.wait_closed(HOLD_BOUND)
    latest = max(closed.values(), default=0.0)
    text = f"{len(closed)}/{count}" + (f", last at {latest:.1f} s" if closed else "")
    return len(closed) == count, text


def slow_heads(port: int, pid: int) -> Outcome:
    with attacks.slow_heads(HOST, port, source=ATTACKER, count=500) as held:
        count = len(held)
        health = _healthz(port)
        all_closed, text = _closed(held, count)
    return Outcome("slow heads x500", _ok(health) and all_closed, _shown(health), text)


def slow_bodies(port: int, pid: int) -> Outcome:
    with attacks.slow_bodies(HOST, port, source=ATTACKER, count=500, path="/echo") as held:
        count = len(held)
        health = _healthz(port)
        all_closed, text = _closed(held, count)
    return Outcome("slow bodies x500", _ok(health) and all_closed, _shown(health), text)


def chunked_trickle(port: int, pid: int) -> Outcome:
    result = attacks.chunked_trickle(HOST, port, source=ATTACKER, path="/echo", interval=1.0, limit=HOLD_BOUND)
    health = _healthz(port)
    closed = "never" if result.closed_after is None else f"at {result.closed_after:.1f} s"
    if result.status:
        closed += f" ({result.status})"
    return Outcome("chunked trickle 1 B/s", _ok(health) and result.closed_after is not None, _shown(health), closed)


def unread_pipeline(port: int, pid: int) -> Outcome:
    before = tree_rss(pid)
    with attacks.unread_pipeline(HOST, port, source=ATTACKER, connections=4, bytes_each=4 * MB, within=5.0) as held:
        count = len(held)
        peak = tree_rss(pid)
        health = _healthz(port)
        all_closed, text = _closed(held, count)
        peak = max(peak, tree_rss(pid))
    growth = peak - before
    outcome = Outcome("unread pipelining 4x4 MB", _ok(health) and all_closed and growth < RSS_BOUND, _shown(health))
    outcome.closed, outcome.rss_growth_mb = text, growth / MB
    outcome.notes.append(f"{held.bytes_sent / MB:.1f} MB sent")
    return outcome


def connection_flood(port: int, pid: int) -> Outcome:
    answers = []
    with attacks.connection_flood(HOST, port, source=ATTACKER, count=2000) as flood:
        for _ in range(3):
            open_now = flood.refill(within=10.0)
            answers.append(_healthz(port))
    worst = max(answers, key=lambda a: (a.status != 200, a.seconds))
    outcome = Outcome("flood from one address x2000", all(_ok(a) for a in answers), _shown(worst))
    outcome.closed = f"{open_now} held by attacker"
    return outcome


ATTACKS: tuple[Callable[[int, int], Outcome], ...] = (
    slow_heads,
    slow_bodies,
    chunked_trickle,
    unread_pipeline,
    connection_flood,
)


@dataclass
class Throughput:
    connections: int
    rps: float
    cpu_us: float


def wrk(port: int, pid: int, connections: int, seconds: float) -> Throughput:
    threads = 1 if connections == 1 else 2
    before = tree_cpu_seconds(pid)
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", f"http://{HOST}:{port}/healthz"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )  # fmt: skip
    cpu = tree_cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    return Throughput(connections, rps, cpu / max(1, requests) * 1e6)


def measure(name: str, wrk_seconds: float) -> tuple[list[Outcome], list[Throughput]]:
    outcomes: list[Outcome] = []
    with running(name) as (port, process):
        for attack in ATTACKS:
            outcomes.append(attack(port, process.pid))
            # Let the server settle (the attackers' sockets are gone) before the next one.
            deadline = time.monotonic() + 15
            while not _ok(_healthz(port)) and time.monotonic() < deadline:
                time.sleep(0.5)
    # A fresh process for the throughput: the attacks' leftovers (RSS, timers) do not tax it.
    with running(name) as (port, process):
        attacks.get(HOST, port)  # warm
        throughput = [wrk(port, process.pid, c, wrk_seconds) for c in WRK_CONNECTIONS]
    return outcomes, throughput


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", choices=CANDIDATES, help="candidates to run (repeatable)")
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    if args.serve:
        serve_in_this_process(args.serve, args.port)
        return 0
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed")
    started = time.monotonic()
    results: dict[str, tuple[list[Outcome], list[Throughput]]] = {}
    for name in args.only or CANDIDATES:
        print(f"-- {name}", file=sys.stderr, flush=True)
        try:
            results[name] = measure(name, args.wrk_seconds)
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            print(f"   {name} skipped: {exc}", file=sys.stderr)
    print("| candidate | attack | held | /healthz during (worst) | attacker connections closed ≤13 s | RSS growth |")
    print("|---|---|---|---|---|---|")
    for name, (outcomes, _) in results.items():
        for o in outcomes:
            rss = "—" if o.rss_growth_mb is None else f"{o.rss_growth_mb:.1f} MB ({', '.join(o.notes)})"
            verdict = "held" if o.held else "**not held**"
            print(f"| {name} | {o.attack} | {verdict} | {o.healthz} | {o.closed} | {rss} |")
    print()
    print("| candidate | " + " | ".join(f"req/s c={c} | CPU µs/req c={c}" for c in WRK_CONNECTIONS) + " |")
    print("|---|" + "---|---|" * len(WRK_CONNECTIONS))
    for name, (_, throughput) in results.items():
        cells = " | ".join(f"{t.rps:,.0f} | {t.cpu_us:.0f}" for t in throughput)
        print(f"| {name} | {cells} |")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
