"""A/B the server CPU per request of two ``orga-ai serve`` builds, interleaved, on a shared machine.

    .venv/bin/python benchmarks/ab_serve.py --a /tmp/base/src --b src [--rounds 4] [--seconds 4] [-- serve flags]
    .venv/bin/python benchmarks/ab_serve.py --a src --b src --b-args "--log-level warning"   # one layer's cost

Each side runs ``python -m orga_ai.cli serve`` with ``PYTHONPATH`` set to its source tree, against the 0 ms
upstream stand-in; the sides alternate (order flipped each round) under ``wrk -c16``, and the script prints each
round's µs/request and the median of the paired B/A ratios. CPU per request barely moves when other processes
compete for the cores, which raw req/s does not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the harness's process helpers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="source tree of side A (holds orga_ai/)")
    parser.add_argument("--b", required=True, help="source tree of side B")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--a-args", default="", help="extra flags for side A only, one string")
    parser.add_argument("--b-args", default="", help="extra flags for side B only, one string")
    parser.add_argument("serve_args", nargs="*", help="extra flags for both serves (after --)")
    args = parser.parse_args()
    run.RESULTS.mkdir(exist_ok=True)
    procs = run.Procs(run.RESULTS)
    ratios: list[float] = []
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    try:
        port = run.free_port()
        upstream = procs.spawn("ab-upstream", ["node", str(run.BENCH / "upstream.js"), "--port", str(port)])
        run.wait_ready(upstream, port, "/", want=403)
        env_base = {"ORGA_API_KEY": run.API_KEY, "ORGA_BASE_URL": f"http://127.0.0.1:{port}"}
        for r in range(args.rounds):
            servers = {}
            for side in ("a", "b"):
                sport = run.free_port()
                src = str(Path(getattr(args, side)).resolve())
                cmd = [sys.executable, "-m", "orga_ai.cli", "serve", "--host", "127.0.0.1", "--port", str(sport)]
                cmd += ["--allow-anonymous", "--rate-limit", run.HIGH_RATE_LIMIT]
                cmd += ["--global-rate-limit", run.HIGH_RATE_LIMIT, *args.serve_args]
                cmd += getattr(args, f"{side}_args").split()
                proc = procs.spawn(f"ab-{side}", cmd, env={**env_base, "PYTHONPATH": src})
                run.wait_ready(proc, sport, run.ROUTE, timeout=30)
                servers[side] = (proc, sport)
            order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
            for side in order:
                run.wrk(run.url_of(servers[side][1]), args.connections, 1)
            got = {}
            for side in order:
                proc, sport = servers[side]
                got[side] = run.wrk_cpu(proc, run.url_of(sport), args.connections, args.seconds)
                cpu[side].append(got[side]["cpu_us_per_req"])
            for proc, _ in servers.values():
                procs.stop(proc)
            ratios.append(got["b"]["cpu_us_per_req"] / got["a"]["cpu_us_per_req"])
            print(
                f"round {r + 1}: A {got['a']['cpu_us_per_req']:.0f} us/req ({got['a']['rps']:.0f} rps, "
                f"p99 {got['a']['p99_ms']:.1f} ms), B {got['b']['cpu_us_per_req']:.0f} us/req "
                f"({got['b']['rps']:.0f} rps, p99 {got['b']['p99_ms']:.1f} ms), B/A {ratios[-1]:.3f}",
                flush=True,
            )
    finally:
        procs.stop_all()
    print(
        f"median A {statistics.median(cpu['a']):.0f} us/req, B {statistics.median(cpu['b']):.0f} us/req, "
        f"paired B/A {statistics.median(ratios):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
