"""Instructions per request of ``orga-ai serve`` on the route, counted by callgrind.

    .venv/bin/python benchmarks/instructions.py --upstream http://127.0.0.1:PORT [--src SRC ...] [--requests 1000]

Req/s on a shared 2-core machine swings by ±15 % from one round to the next; the number of instructions a server
runs per request does not: callgrind counts them, not time, so the same build gives the same figure whatever else
the machine is doing. Each build runs ``orga-ai serve`` under ``valgrind --tool=callgrind`` with instrumentation
off until warmed up (``--instr-atstart=no``), then counts ``--requests`` sequential keep-alive requests on one
connection, and divides. The builds run side by side, one per core. ``make bench`` runs it as its ``instructions``
phase, the current build against ``--baseline``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUTE = "/api/orga-client-secrets"
API_KEY = "sk_orga_ai_benchmark_0000000000000000"
HIGH_RATE_LIMIT = "1000000/second"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _requests(port: int, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(count):
            conn.request("GET", ROUTE)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the route answered {response.status}")
    finally:
        conn.close()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"orga-ai serve under callgrind exited ({proc.returncode})")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError("orga-ai serve under callgrind did not start")


def _total(out: Path) -> int:
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def count(src: str, upstream: str, requests: int, warm: int, log: Path) -> float:
    """Instructions per request of ``orga-ai serve`` from the source tree ``src``."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="orga-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", "orga_ai.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--allow-anonymous", "--rate-limit", HIGH_RATE_LIMIT, "--global-rate-limit", HIGH_RATE_LIMIT]
        env = {**os.environ, "PYTHONPATH": src, "ORGA_API_KEY": API_KEY, "ORGA_BASE_URL": upstream}
        env = {k: v for k, v in env.items() if not k.startswith("ORGA_PROXY_")}
        with log.open("wb") as sink:
            proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
            try:
                _wait_ready(proc, port, timeout=180)
                _requests(port, warm)
                subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, check=True)
                _requests(port, requests)
                subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True, check=True)
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        total = _total(out)
    if not total:
        raise RuntimeError(f"callgrind counted nothing (see {log})")
    return total / requests


def measure(sources: dict[str, str], upstream: str, requests: int, logs: Path) -> dict[str, float]:
    """Instructions per request for each named source tree, side by side."""
    warm = max(100, requests // 4)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sources)) as pool:
        futures = {
            name: pool.submit(count, src, upstream, requests, warm, logs / f"callgrind-{name}.log")
            for name, src in sources.items()
        }
        return {name: round(future.result()) for name, future in futures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the upstream stand-in's base URL")
    parser.add_argument("--src", action="append", default=[], help="NAME=SOURCE_TREE (default: now=src)")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    sources = dict(item.split("=", 1) for item in args.src) or {"now": str(root / "src")}
    print(json.dumps(measure(sources, args.upstream, args.requests, Path(tempfile.gettempdir()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
