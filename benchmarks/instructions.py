"""Instructions per request of ``orga-ai serve`` on the route, counted by callgrind.

    .venv/bin/python benchmarks/instructions.py --upstream http://127.0.0.1:PORT [--src NAME=SRC ...] [--requests 1000]

Req/s on a shared 2-core machine swings by up to ±20 % from one round to the next; the number of instructions a server
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
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the harness's process helpers and constants


def _requests(port: int, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(count):
            conn.request("GET", run.ROUTE)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the route answered {response.status}")
    finally:
        conn.close()


def _total(out: Path) -> int:
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def count(procs: run.Procs, name: str, src: str, upstream: str, requests: int, warm: int) -> float:
    """Instructions per request of ``orga-ai serve`` from the source tree ``src``."""
    port = run.free_port()
    with tempfile.TemporaryDirectory(prefix="orga-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", "orga_ai.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--allow-anonymous", "--rate-limit", run.HIGH_RATE_LIMIT, "--global-rate-limit", run.HIGH_RATE_LIMIT]
        env = {"PYTHONPATH": src, "ORGA_API_KEY": run.API_KEY, "ORGA_BASE_URL": upstream}
        proc = procs.spawn(f"callgrind-{name}", cmd, env=env)
        try:
            run.wait_ready(proc, port, "/healthz", timeout=180)
            _requests(port, warm)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.popen.pid)], capture_output=True, check=True)
            _requests(port, requests)
            subprocess.run(["callgrind_control", "-i", "off", str(proc.popen.pid)], capture_output=True, check=True)
        finally:
            # SIGTERM: serve shuts down and exits, and callgrind writes its counts then (slowly, under valgrind).
            proc.stop(timeout=120)
        total = _total(out)
    if not total:
        raise RuntimeError(f"callgrind counted nothing (see {proc.log_path})")
    return total / requests


def measure(sources: dict[str, str], upstream: str, requests: int, procs: run.Procs) -> dict[str, float]:
    """Instructions per request for each named source tree, side by side."""
    warm = max(100, requests // 4)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sources)) as pool:
        futures = {
            name: pool.submit(count, procs, name, src, upstream, requests, warm) for name, src in sources.items()
        }
        return {name: round(future.result()) for name, future in futures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the upstream stand-in's base URL")
    parser.add_argument("--src", action="append", default=[], help="NAME=SOURCE_TREE (default: now=src)")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    sources = dict(item.split("=", 1) for item in args.src) or {"now": str(run.ROOT / "src")}
    procs = run.Procs(Path(tempfile.mkdtemp(prefix="orga-callgrind-logs-")))
    try:
        print(json.dumps(measure(sources, args.upstream, args.requests, procs)))
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
