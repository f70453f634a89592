"""Profile ``orga-ai serve`` under wrk with py-spy, and print where its CPU goes per request.

    .venv/bin/pip install py-spy            # not a project dependency
    .venv/bin/python benchmarks/profile_serve.py [--connections 16] [--seconds 8] [-- extra serve flags]

Starts the upstream stand-in (0 ms) and ``orga-ai serve`` as run.py does, loads the route with wrk, samples the
server with ``py-spy record --format raw`` meanwhile, and prints the inclusive and self share of the top frames,
grouped by function. The raw stacks stay in benchmarks/results/ for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the harness's process helpers


def aggregate(raw: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.rsplit(":", 1)[0] for f in stack.split(";")]  # drop line numbers: group by function
        if any("_flusher" in frame for frame in frames):
            continue  # the access log's flush thread, asleep between batches (py-spy does not always see it idle)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples", "--- inclusive"]
    out += [f"{100 * v / total:5.1f}% {k}" for k, v in inclusive.most_common(top)]
    out += ["--- self"]
    out += [f"{100 * v / total:5.1f}% {k}" for k, v in own.most_common(top // 2)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("serve_args", nargs="*", help="extra flags for orga-ai serve (after --)")
    args = parser.parse_args()
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists() and shutil.which("py-spy") is None:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    spy = str(py_spy) if py_spy.exists() else "py-spy"
    run.RESULTS.mkdir(exist_ok=True)
    procs = run.Procs(run.RESULTS)
    bench = run.Bench(procs, quick=True)
    bench.orga_cli = str(Path(sys.executable).with_name("orga-ai"))
    raw = run.RESULTS / f"profile-{time.strftime('%Y%m%d-%H%M%S')}.raw"
    try:
        port = run.free_port()
        upstream = procs.spawn("profile-upstream", ["node", str(run.BENCH / "upstream.js"), "--port", str(port)])
        run.wait_ready(upstream, port, "/", want=403)
        bench.upstreams[0] = f"http://127.0.0.1:{port}"
        with bench.running(bench.start_python(0, extra=args.serve_args, name="profile-serve")) as (proc, sport):
            run.wrk(run.url_of(sport), args.connections, 1)
            cmd = [spy, "record", "-p", str(proc.pid), "-r", "250", "-d", f"{args.seconds:g}", "-f", "raw"]
            spy_proc = subprocess.Popen([*cmd, "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            result = run.wrk_cpu(proc, run.url_of(sport), args.connections, args.seconds - 1)
            spy_proc.wait(timeout=args.seconds + 30)
    finally:
        procs.stop_all()
    print(f"under py-spy: {result['rps']:.0f} req/s, server CPU {result['cpu_us_per_req']:.0f} us/request")
    print(aggregate(raw, args.top))
    print(f"raw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
