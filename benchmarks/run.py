"""``make bench``: orga-ai (Python) against the reference Node SDK ``@orga-ai/node``, side by side, in one run.

    .venv/bin/python benchmarks/run.py            # the full run (3 interleaved rounds), ~15 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # a 1-round smoke run with short phases, ~3 minutes (~5 with
                                                  # --baseline: the route phase keeps its five rounds)

What runs, in order (each server is its own process, started afresh each round, killed at the end even on Ctrl-C).
Every wrk and open-loop run against a server also records the server's own CPU time per request: the on-CPU time of
its process tree (the server and any workers, every thread; not wrk's, not the upstream's) over the run, divided by
the requests it served. On two shared cores req/s is capped by wrk and the upstream stand-in running beside the
server; CPU per request is what the server's code costs, and the targets judge it.

1. ``python -X importtime -c "import orga_ai"`` (median of 7, the first one discarded).
2. The upstream stand-in (benchmarks/upstream.js) at 0, 20 and 50 ms, and its own throughput under wrk.
3. In-process: ``get_session_config()`` of @orga-ai/node, OrgaAI (sync) and AsyncOrgaAI (async), beside the raw
   two-request floor of each HTTP library, against the 0 ms upstream.
4. The proxy route under ``wrk -t1 -c{1,16,64} --latency``: Node (Express + @orga-ai/node) against
   ``orga-ai serve`` (production defaults, anonymous access, a rate limit too high to bite), upstream 0 ms; RSS
   after the 64-connection run; and, for the profile, serve with its access log off, with its rate limiter off too,
   and a bare Starlette route over AsyncOrgaAI (16 connections only). With ``--baseline REV`` (``make bench``
   passes the build measured before issue 22's changes: "today" for its no-worse targets), that earlier build of
   ``orga-ai serve`` runs as a third contender in the same rounds (five of them, against three elsewhere: single
   rounds swing by up to ±20 % on a shared VM), so before and after are measured side by side. Then the
   instructions each build runs per request, counted by callgrind (benchmarks/instructions.py): the comparison
   that a busy machine cannot move.
5. The same at 20 ms of upstream latency, with ``orga-ai serve --prefetch`` (warm pool) too; then the pool rows
   with the open-loop generator (benchmarks/load.py) at a rate below the pool's refill capacity.
6. Reliability figures at a fixed 50 req/s with 50 ms of upstream latency: added latency of the proxy, and the
   latency of a 429 (a principal over its limit); then /healthz under 2,000 half-sent request heads (slowloris).
7. The sync transport candidates (benchmarks/sync_transport.py): httpx, urllib3 and http.client floors beside
   ``OrgaAI`` and @orga-ai/node, in-process; cold import of each library.
8. The async transport candidates (benchmarks/async_transport.py): aiohttp, the SDK's asyncio + httptools transport
   and whichever other candidates are installed (aiosonic, httpcore, pyreqwest, rnet), each in a process of its own,
   beside ``AsyncOrgaAI`` on its default and on the aiohttp transport and @orga-ai/node: CPU per exchange, wall per
   exchange at 1, 16 and 64 concurrent calls, cold import, RSS.
9. Cold start: spawn to the first 200 on the route, beside the import floor of each stack.
10. Serverless: a fresh process imports the AWS Lambda entry point and serves one API Gateway v2 event (spawn to
    response), then warm invocations in the same process, and its peak RSS; against a minimal @orga-ai/node handler
    (benchmarks/node/lambda.js), and the bare SDK call of each as the floor.

``--only route,async-transport`` runs some phases alone (raw JSON only, no report), for development; ``--help``
lists their names.

Contenders alternate within each phase, and their order flips every round; figures are medians over rounds and
ratios are paired (Python / Node within a round, then the median). Raw results go to benchmarks/results/ (ignored
by git); ``report.py`` turns them into docs/benchmarks.md and docs/benchmarks.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
NODE_DIR = BENCH / "node"
RESULTS = BENCH / "results"
ROUTE = "/api/orga-client-secrets"
API_KEY = "sk_orga_ai_benchmark_0000000000000000"
HIGH_RATE_LIMIT = "1000000/second"
INSTRUCTION_REQUESTS = 500  # the count per request is the same over 500 as over 1,000; half the time under callgrind
ROUTE_ROUNDS_WITH_BASELINE = 5  # before/after ratios need more rounds than the noise of one allows
PREFETCH = 8
POOL_RATE = 10.0  # req/s for the open-loop pool rows: half the pool's default refill ceiling of 20 mints/s
RELIABILITY_RATE = 50.0
REJECT_RATE_LIMIT = "5/second"


# Children get the environment minus PYTHONDONTWRITEBYTECODE: a deployed server has its .pyc files, and a cold start
# that recompiled the package from source on every spawn would measure the sandbox, not the product.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Procs:
    """Every child this run started; ``stop_all`` is called from ``finally``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Proc] = []

    def spawn(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Proc:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            started = time.perf_counter()
            popen = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env={**CHILD_ENV, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches any worker it forks
            )
        proc = Proc(name, popen, log_path, started)
        self.children.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        with contextlib.suppress(ValueError):
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            with contextlib.suppress(Exception):
                proc.stop(timeout=3)
        self.children.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, path: str, timeout: float = 20.0, want: int = 200) -> float:
    """Poll ``path`` until it answers ``want``; seconds since the process was spawned. Raises on timeout or exit."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if http_get(port, path, timeout=1.0) == want:
                return time.perf_counter() - proc.started_at
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{proc.name} not ready on :{port}{path} after {timeout} s:\n{proc.tail()}")


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` plus that of all its descendants (the server's workers), in KiB. Pages a forked worker
    still shares with its parent count once per process here; :func:`pss_kib` counts them once."""
    return sum(_status_kib(p, "VmRSS:") for p in _tree(pid))


def pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` and its descendants, in KiB: each page shared by n processes counts 1/n,
    so the sum over a tree is the memory it really holds (RSS summed over a parent and its forked workers counts
    their shared pages twice)."""
    total = 0
    for current in _tree(pid):
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _tree_cpu_ticks(root: int) -> int:
    """utime+stime (+ reaped children) of ``root`` and all its live descendants, in clock ticks."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        fields = stats.get(pid)
        if fields:  # fields[11:15]: utime, stime, cutime, cstime
            total += sum(int(x) for x in fields[11:15])
    return total


def _system_busy_ticks() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


class CpuWatch:
    """How much CPU processes *outside* this benchmark used meanwhile: the noise indicator of a shared machine."""

    def __init__(self) -> None:
        self.hz = os.sysconf("SC_CLK_TCK")
        self.cores = os.cpu_count() or 1
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.busy0 = _system_busy_ticks()
        self.ours0 = _tree_cpu_ticks(os.getpid())

    def read(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self.t0, 1e-6)
        busy = (_system_busy_ticks() - self.busy0) / self.hz
        ours = (_tree_cpu_ticks(os.getpid()) - self.ours0) / self.hz
        foreign = max(0.0, busy - ours)
        return {
            "wall_s": round(wall, 1),
            "ours_cpu_s": round(ours, 1),
            "foreign_cpu_s": round(foreign, 1),
            "foreign_share": round(foreign / (wall * self.cores), 3),
        }


def wait_quiet(limit: float, max_wait: float) -> dict[str, float]:
    """Wait (at most ``max_wait`` s) until other processes use under ``limit`` of the machine over 2 s."""
    deadline = time.perf_counter() + max_wait
    while True:
        watch = CpuWatch()
        time.sleep(2.0)
        seen = watch.read()
        if seen["foreign_share"] < limit or time.perf_counter() > deadline:
            return seen
        log(f"machine busy: other processes use {seen['foreign_share']:.0%} of the cores; waiting ...")


# -- tools -------------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, connections: int, duration: float, extra: Sequence[str] = ()) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s", *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()} {out.strip()}")
    result: dict[str, Any] = {"connections": connections, "duration_s": duration}
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    for q in ("50", "90", "99"):
        match = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        result[f"p{q}_ms"] = _ms(match.group(1)) if match else float("nan")
    requests = re.search(r"(\d+) requests in", out)
    result["requests"] = int(requests.group(1)) if requests else 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return result


def _tree_cpu_s(root: int) -> float:
    """On-CPU seconds of ``root`` and its live descendants, every thread of each (the server and its workers): the
    kernel's nanosecond run time per thread (``/proc/PID/task/TID/schedstat``), or clock ticks (10 ms) where the
    kernel keeps no schedstat."""
    total_ns = 0
    for pid in _tree(root):
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except FileNotFoundError:
                return _tree_cpu_ticks(root) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                continue  # the thread ended meanwhile
    return total_ns / 1e9


def with_server_cpu(
    proc: Proc, run: Callable[[], dict[str, Any]], requests: Callable[[dict[str, Any]], int]
) -> dict[str, Any]:
    """``run()``'s result plus the server's own CPU time over it (``proc``'s process tree: the server and its workers,
    not the load generator nor the upstream), per request served: robust where req/s is not, on a shared machine."""
    before = _tree_cpu_s(proc.pid)
    result = run()
    used = _tree_cpu_s(proc.pid) - before
    served = requests(result)
    result["server_cpu_s"] = round(used, 4)
    result["cpu_us_per_req"] = round(used * 1e6 / served, 1) if served else float("nan")
    return result


def wrk_cpu(proc: Proc, url: str, connections: int, duration: float) -> dict[str, Any]:
    """wrk, plus the server's CPU µs per request."""
    return with_server_cpu(proc, lambda: wrk(url, connections, duration), lambda result: int(result["requests"]))


def load(url: str, rate: float, duration: float, connections: int, warmup: float = 1.0) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "load.py"), url, "--rate", f"{rate:g}", "--duration", f"{duration:g}"]
    cmd += ["--connections", str(connections), "--warmup", f"{warmup:g}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 40, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load.py failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def load_cpu(
    proc: Proc, url: str, rate: float, duration: float, connections: int, warmup: float = 1.0
) -> dict[str, Any]:
    """The open-loop generator, plus the server's CPU µs per request (the warm-up's requests count: they were served
    inside the measured time)."""
    sent = int((warmup + duration) * rate)
    return with_server_cpu(proc, lambda: load(url, rate, duration, connections, warmup), lambda _: sent)


def run_json(cmd: Sequence[str], env: dict[str, str], timeout: float, cwd: Path = ROOT) -> dict[str, Any]:
    done = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, env={**CHILD_ENV, **env}, cwd=cwd, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:2]} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


# -- contenders --------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    procs: Procs
    quick: bool
    upstreams: dict[int, str] = field(default_factory=dict)
    orga_cli: str = ""
    python_contender: str = "orga-ai serve"
    baseline_src: str = ""
    """Source tree of an earlier orga-ai build (``--baseline``): a third contender in the 0 ms route phase."""

    def upstream_env(self, latency: int) -> dict[str, str]:
        return {"ORGA_API_KEY": API_KEY, "ORGA_BASE_URL": self.upstreams[latency]}

    def start_node(self, latency: int, name: str = "node") -> tuple[Proc, int]:
        port = free_port()
        env = {**self.upstream_env(latency), "PORT": str(port), "NODE_ENV": "production"}
        proc = self.procs.spawn(f"{name}-{latency}ms", ["node", str(NODE_DIR / "server.js")], env=env)
        return proc, port

    def start_python(
        self,
        latency: int,
        *,
        prefetch: int = 0,
        extra: Sequence[str] = (),
        name: str = "python",
        rate_limit: str = HIGH_RATE_LIMIT,
        src: str = "",
    ) -> tuple[Proc, int]:
        """The Python contender; with ``src``, ``orga-ai serve`` of that source tree (an earlier build)."""
        port = free_port()
        env = self.upstream_env(latency)
        if src:
            env["PYTHONPATH"] = src
        if src or self.python_contender == "orga-ai serve":
            cli = [sys.executable, "-m", "orga_ai.cli"] if src else [self.orga_cli]
            cmd = [*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--allow-anonymous"]
            cmd += ["--rate-limit", rate_limit, "--global-rate-limit", HIGH_RATE_LIMIT, *extra]
            if prefetch:
                cmd += ["--prefetch", str(prefetch)]
        else:
            cmd = [sys.executable, str(BENCH / "standin_proxy.py"), "--port", str(port), "--prefetch", str(prefetch)]
        proc = self.procs.spawn(f"{name}-{latency}ms", cmd, env=env)
        return proc, port

    def start_standin(self, latency: int, prefetch: int = 0) -> tuple[Proc, int]:
        port = free_port()
        cmd = [sys.executable, str(BENCH / "standin_proxy.py"), "--port", str(port), "--prefetch", str(prefetch)]
        return self.procs.spawn(f"standin-{latency}ms", cmd, env=self.upstream_env(latency)), port

    @contextlib.contextmanager
    def running(self, started: tuple[Proc, int]) -> Iterator[tuple[Proc, int]]:
        proc, port = started
        try:
            wait_ready(proc, port, ROUTE, timeout=30)
            yield proc, port
        finally:
            self.procs.stop(proc)


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}{ROUTE}"


# -- phases ------------------------------------------------------------------------------------------------------


def phase_import_time(runs: int) -> dict[str, Any]:
    samples: list[float] = []
    totals: list[float] = []
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import orga_ai"],
            env=CHILD_ENV,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        wall = (time.perf_counter() - started) * 1000
        cumulative = None
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == "orga_ai":
                cumulative = int(parts[1].strip()) / 1000
        if cumulative is None:
            raise RuntimeError("no orga_ai line in -X importtime output")
        if i:  # the first run may compile .pyc files
            samples.append(cumulative)
            totals.append(wall)
    return {"cumulative_ms": median(samples), "samples_ms": samples, "interpreter_wall_ms": median(totals)}


def phase_upstream(bench: Bench, duration: float) -> dict[str, Any]:
    base = bench.upstreams[0]
    post = BENCH / "wrk_post.lua"
    ice = wrk(f"{base}/v1/realtime/ice-config", 64, duration, ["-H", f"Authorization: Bearer {API_KEY}"])
    token = wrk(f"{base}/v1/realtime/client-secrets", 64, duration, ["-s", str(post)])
    return {"ice_config": ice, "client_secrets": token}


def phase_inprocess(bench: Bench, rounds: int, calls: int) -> list[dict[str, Any]]:
    env = bench.upstream_env(0)
    out = []
    for r in range(rounds):
        order = ["node", "python"] if r % 2 == 0 else ["python", "node"]
        row: dict[str, Any] = {}
        for who in order:
            if who == "node":
                cmd = ["node", str(NODE_DIR / "inprocess.js"), "--calls", str(calls), "--warmup", str(calls // 10)]
                row["node"] = run_json(cmd, env, timeout=180, cwd=NODE_DIR)
            else:
                cmd = [sys.executable, str(BENCH / "inprocess.py"), "--calls", str(calls), "--warmup", str(calls // 10)]
                row["python"] = run_json(cmd, env, timeout=300)
        log(
            f"  in-process round {r + 1}: node {row['node']['sdk']['median_us']:.0f} us, "
            f"sync {row['python']['sync']['median_us']:.0f} us, async {row['python']['async']['median_us']:.0f} us"
        )
        out.append(row)
    return out


def phase_floors(bench: Bench, latencies: Sequence[int], calls: int) -> dict[str, Any]:
    """The floor of two sequential upstream calls at each latency (aiohttp, kept-alive)."""
    floors = {}
    for latency in latencies:
        cmd = [sys.executable, str(BENCH / "inprocess.py"), "--only", "async_floor", "--calls", str(calls)]
        cmd += ["--warmup", "3"]
        result = run_json(cmd, bench.upstream_env(latency), timeout=120)["async_floor"]
        floors[str(latency)] = {"median_ms": result["median_us"] / 1000, "p99_ms": result["p99_us"] / 1000}
    return floors


def phase_wrk_0ms(bench: Bench, rounds: int, duration: float, warm: float) -> list[dict[str, Any]]:
    """wrk at 1, 16 and 64 connections against each contender, interleaved; with ``--baseline``, the earlier build
    of orga-ai too (``python_before``), so before and after are measured side by side in one run."""
    names = ["node", "python", *(["python_before"] if bench.baseline_src else [])]
    out = []
    for r in range(rounds):
        row: dict[str, Any] = {name: {} for name in names}
        row["rss_kib"] = {}
        row["pss_kib"] = {}
        started = {"node": bench.start_node(0), "python": bench.start_python(0)}
        if bench.baseline_src:
            started["python_before"] = bench.start_python(0, name="before", src=bench.baseline_src)
        try:
            for proc, port in started.values():
                wait_ready(proc, port, ROUTE)
            order = names if r % 2 == 0 else list(reversed(names))
            for who in order:
                wrk(url_of(started[who][1]), 16, warm)
            for c in (1, 16, 64):
                for who in order:
                    row[who][str(c)] = wrk_cpu(started[who][0], url_of(started[who][1]), c, duration)
            for who in order:
                row["rss_kib"][who] = rss_kib(started[who][0].pid)
                row["pss_kib"][who] = pss_kib(started[who][0].pid)
        finally:
            for proc, _ in started.values():
                bench.procs.stop(proc)
        log(
            "  0 ms round {}: req/s {}; server CPU µs/request {} (c=1,16,64); RSS {} MiB; PSS {} MiB".format(
                r + 1,
                " / ".join(
                    f"{who} " + "/".join(f"{row[who][c]['rps']:.0f}" for c in ("1", "16", "64")) for who in names
                ),
                " / ".join(
                    f"{who} " + "/".join(f"{row[who][c]['cpu_us_per_req']:.0f}" for c in ("1", "16", "64"))
                    for who in names
                ),
                " / ".join(str(row["rss_kib"][who] // 1024) for who in names),
                " / ".join(str(row["pss_kib"][who] // 1024) for who in names),
            )
        )
        out.append(row)
    return out


def export_baseline(rev: str) -> tuple[str, str]:
    """``git archive`` the ``src`` tree of ``rev`` under benchmarks/results; returns (source tree, short commit)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if commit.returncode != 0:
        raise RuntimeError(f"--baseline {rev}: not a commit of this clone ({commit.stderr.strip()})")
    short = commit.stdout.strip()
    dest = RESULTS / f"baseline-{short}"
    if not (dest / "src" / "orga_ai").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", short, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return str(dest / "src"), short


def phase_variants(bench: Bench, rounds: int, duration: float, warm: float) -> list[dict[str, Any]]:
    """What the product's layers cost: serve as shipped, minus its access log, minus its rate limiter, bare route."""
    variants: dict[str, Any] = {
        "serve (defaults)": lambda: bench.start_python(0, name="v-default"),
        "serve --log-level warning": lambda: bench.start_python(0, extra=["--log-level", "warning"], name="v-nolog"),
        "serve --log-level warning --rate-limit none": lambda: bench.start_python(
            0, extra=["--log-level", "warning"], rate_limit="none", name="v-nolimit"
        ),
        "bare Starlette + AsyncOrgaAI": lambda: bench.start_standin(0),
        # One service on two cores: the same route with two worker processes (metrics summed across them).
        "serve --workers 2": lambda: bench.start_python(0, extra=["--workers", "2"], name="v-workers2"),
    }
    if bench.python_contender != "orga-ai serve":
        variants = {"bare Starlette + AsyncOrgaAI": variants["bare Starlette + AsyncOrgaAI"]}
    out = []
    for r in range(rounds):
        row = {}
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            with bench.running(variants[name]()) as (proc, port):
                wrk(url_of(port), 16, warm)
                row[name] = wrk_cpu(proc, url_of(port), 16, duration)
        out.append(row)
        log("  variants round {}: {}".format(r + 1, ", ".join(f"{k} {v['rps']:.0f}" for k, v in row.items())))
    return out


def prime_pool(port: int) -> None:
    """The warm pool starts with the first call: make one, then give it time to fill."""
    http_get(port, ROUTE, timeout=5)
    time.sleep(1.0)


def phase_20ms(bench: Bench, rounds: int, duration: float, warm: float, ol_duration: float) -> list[dict[str, Any]]:
    out = []
    for r in range(rounds):
        row: dict[str, Any] = {"wrk": {"node": {}, "python": {}, "python_pool": {}}, "open_loop": {}}
        starts = {
            "node": bench.start_node(20),
            "python": bench.start_python(20),
            "python_pool": bench.start_python(20, prefetch=PREFETCH, name="python-pool"),
        }
        try:
            for proc, port in starts.values():
                wait_ready(proc, port, ROUTE)
            order = list(starts) if r % 2 == 0 else list(reversed(starts))
            for who in order:
                wrk(url_of(starts[who][1]), 16, warm)
            # Open loop first, with the pool full: the closed-loop runs below drain it on purpose.
            for c in (1, 16):
                for who in order:
                    proc, port = starts[who]
                    if who == "python_pool":
                        prime_pool(port)
                    row["open_loop"].setdefault(who, {})[str(c)] = load_cpu(
                        proc, url_of(port), POOL_RATE, ol_duration, c
                    )
            for c in (1, 16, 64):
                for who in order:
                    if who == "python_pool":
                        prime_pool(starts[who][1])
                    row["wrk"][who][str(c)] = wrk_cpu(starts[who][0], url_of(starts[who][1]), c, duration)
        finally:
            for proc, _ in starts.values():
                bench.procs.stop(proc)
        ol = row["open_loop"]
        log(
            "  20 ms round {}: wrk p50 c=1 node {:.1f} / python {:.1f} ms; open loop p50 c=16 node {:.1f} / "
            "pool {:.1f} ms".format(
                r + 1,
                row["wrk"]["node"]["1"]["p50_ms"],
                row["wrk"]["python"]["1"]["p50_ms"],
                ol["node"]["16"]["status"].get("200", {}).get("p50_ms", float("nan")),
                ol["python_pool"]["16"]["status"].get("200", {}).get("p50_ms", float("nan")),
            )
        )
        out.append(row)
    return out


def phase_reliability(bench: Bench, rounds: int, duration: float) -> list[dict[str, Any]]:
    out = []
    for r in range(rounds):
        row: dict[str, Any] = {}
        starts = {
            "python": lambda: bench.start_python(50),
            "node": lambda: bench.start_node(50),
            "python_limited": lambda: bench.start_python(50, rate_limit=REJECT_RATE_LIMIT, name="python-limited"),
        }
        names = list(starts) if r % 2 == 0 else list(reversed(starts))
        for name in names:
            with bench.running(starts[name]()) as (proc, port):
                if name == "python_limited":
                    time.sleep(1.1)  # let the readiness probe's hit leave the window
                row[name] = load_cpu(proc, url_of(port), RELIABILITY_RATE, duration, 64)
        out.append(row)
        p = row["python"]["status"].get("200", {})
        rej = row["python_limited"]["status"].get("429", {})
        log(
            f"  reliability round {r + 1}: python p99 {p.get('p99_ms', 0):.1f} ms,"
            f" 429 p99 {rej.get('p99_ms', 0):.2f} ms"
        )
    return out


SLOWLORIS_SOCKETS = 2000
SLOWLORIS_HEAD_TIMEOUT = 2.0
SLOWLORIS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"


def _healthz_ms(port: int, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        status = http_get(port, "/healthz", timeout=30)
        out.append((time.perf_counter() - started) * 1000 if status == 200 else float("inf"))
    return out


def phase_slowloris(bench: Bench, rounds: int) -> list[dict[str, Any]]:
    """/healthz latency while 2,000 sockets hold half-sent request heads open (issue 11: within 100 ms), and how
    long after its bytes the server closed the last of them (within the head timeout + 1 s)."""
    import resource
    import selectors

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOWLORIS_SOCKETS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        log(f"  slowloris: skipped, the hard open-file limit ({hard}) is below {wanted}")
        return []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    out = []
    try:
        for r in range(rounds):
            # The sockets stand for many attackers, but all come from 127.0.0.1: lift the per-address cap above them,
            # or serve would answer all but 64 with a 503 at once (and refuse /healthz too) and measure nothing.
            extra = ["--head-timeout", f"{SLOWLORIS_HEAD_TIMEOUT:g}"]
            extra += ["--max-client-connections", str(SLOWLORIS_SOCKETS + 64)]
            with bench.running(bench.start_python(0, extra=extra, name="python-slowloris")) as (_, port):
                before = _healthz_ms(port, 20)
                sent: dict[socket.socket, float] = {}
                closed: dict[socket.socket, float] = {}
                try:
                    for _ in range(SLOWLORIS_SOCKETS):
                        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                        sock.sendall(SLOWLORIS_HEAD)
                        sent[sock] = time.monotonic()
                    during = _healthz_ms(port, 20)
                    with selectors.DefaultSelector() as selector:
                        for sock in sent:
                            sock.setblocking(False)
                            selector.register(sock, selectors.EVENT_READ)
                        deadline = time.monotonic() + SLOWLORIS_HEAD_TIMEOUT + 10
                        while len(closed) < len(sent) and time.monotonic() < deadline:
                            for key, _ in selector.select(timeout=0.1):
                                sock = key.fileobj
                                assert isinstance(sock, socket.socket)
                                try:
                                    data = sock.recv(4096)
                                except OSError:
                                    data = b""
                                if not data:
                                    closed[sock] = time.monotonic() - sent[sock]
                                    selector.unregister(sock)
                finally:
                    for sock in sent:
                        sock.close()
            row = {
                "sockets": SLOWLORIS_SOCKETS,
                "head_timeout_s": SLOWLORIS_HEAD_TIMEOUT,
                "healthz_before_ms": statistics.median(before),
                "healthz_during_median_ms": statistics.median(during),
                "healthz_during_max_ms": max(during),
                "closed": len(closed),
                "last_closed_after_s": max(closed.values(), default=float("inf")),
            }
            out.append(row)
            log(
                f"  slowloris round {r + 1}: /healthz {row['healthz_before_ms']:.1f} ms before, during median"
                f" {row['healthz_during_median_ms']:.1f} ms (max {row['healthz_during_max_ms']:.1f});"
                f" {len(closed)} of {SLOWLORIS_SOCKETS} closed, the last {row['last_closed_after_s']:.2f} s after"
                " its bytes"
            )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return out


# The libraries each server stands on, imported and nothing else: the floor of its spawn-to-first-200.
STACK_FLOORS = {
    "python_stack": [
        sys.executable,
        "-c",
        "import uvicorn, httptools, uvloop, starlette.applications, prometheus_client, orga_ai._transports.asyncio",
    ],
    "node_stack": ["node", "-e", "require('express'); require('@orga-ai/node')"],
}


def phase_cold_start(bench: Bench, trials: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"node": [], "python": [], "python_stack": [], "node_stack": []}
    for t in range(trials):
        order = ["node", "python", "node_stack", "python_stack"]
        for who in order if t % 2 == 0 else reversed(order):
            if who in STACK_FLOORS:
                started = time.perf_counter()
                subprocess.run(STACK_FLOORS[who], cwd=NODE_DIR, env=CHILD_ENV, check=True, timeout=60)
                out[who].append(time.perf_counter() - started)
                continue
            proc, port = (
                bench.start_node(0, name="cold-node") if who == "node" else bench.start_python(0, name="cold-python")
            )
            try:
                out[who].append(wait_ready(proc, port, ROUTE, timeout=30))
            finally:
                bench.procs.stop(proc)
    return out


LAMBDA_EVENT = ROOT / "tests" / "fixtures" / "aws_lambda" / "apigw-http-v2.json"
LAMBDA_SECRET = "bench-shared-secret-0123456789abcdef"
# A shared secret, as a deployed function would have (anonymous access answers loopback Host names only); no rate
# limit: memory:// is refused on a function, and Redis would measure Redis.
LAMBDA_ENV = {"ORGA_PROXY_SHARED_SECRET": LAMBDA_SECRET, "ORGA_PROXY_RATE_LIMIT": "none", "BENCH_BEARER": LAMBDA_SECRET}


def invoke_fresh(cmd: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Spawn one function process; ms from spawn to its first response line, then its warm figures and peak RSS.

    The rest of stdout is read through the same buffered reader as the first line (communicate() would read the
    pipe itself and lose whatever the reader had already buffered past that line); stderr goes to a file, and a
    timer kills a child that outlives ``timeout``."""
    import tempfile
    import threading

    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        popen = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env={**CHILD_ENV, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        killer = threading.Timer(timeout, popen.kill)
        killer.start()
        try:
            assert popen.stdout is not None
            first = popen.stdout.readline()
            cold_ms = (time.perf_counter() - started) * 1000
            rest = popen.stdout.read()
            popen.wait()
        finally:
            killer.cancel()
            if popen.stdout is not None:
                popen.stdout.close()
        errors.seek(0)
        err = errors.read()
    if popen.returncode != 0 or not first:
        raise RuntimeError(f"{cmd[:2]} failed ({popen.returncode}): {err.decode(errors='replace')[-1500:]}")
    result: dict[str, Any] = json.loads(rest.decode().strip().splitlines()[-1])
    result["status"] = json.loads(first)["status"]
    result["cold_ms"] = round(cold_ms, 2)
    return result


def phase_serverless(bench: Bench, spawns: int, warm: int) -> dict[str, list[dict[str, Any]]]:
    """Lambda-style: a fresh process imports the entry point and serves one API Gateway v2 event, then warm ones.

    orga-ai's ``orga_ai.integrations.aws_lambda.handler`` (anonymous, rate limit off: a function has no shared
    in-process limiter) against a minimal @orga-ai/node handler (benchmarks/node/lambda.js); and the bare SDK
    call of each in a fresh process, the floor both handlers add to.
    """
    env = bench.upstream_env(0)
    py_env = {**env, **LAMBDA_ENV}
    event = str(LAMBDA_EVENT)
    runs: dict[str, tuple[list[str], dict[str, str], Path]] = {
        "python": ([sys.executable, str(BENCH / "lambda_invoke.py"), event, "--warm", str(warm)], py_env, ROOT),
        "node": (["node", "lambda_invoke.js", event, "--warm", str(warm)], env, NODE_DIR),
        "python_bare": (
            [sys.executable, str(BENCH / "lambda_invoke.py"), event, "--warm", str(warm), "--bare"],
            env,
            ROOT,
        ),
        "node_bare": (["node", "lambda_invoke.js", event, "--warm", str(warm), "--bare"], env, NODE_DIR),
    }
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for t in range(spawns):
        names = list(runs) if t % 2 == 0 else list(reversed(runs))
        for name in names:
            cmd, cmd_env, cwd = runs[name]
            result = invoke_fresh(cmd, cmd_env, cwd)
            if result["status"] != 200:
                raise RuntimeError(f"serverless {name}: first invocation answered {result['status']}")
            out[name].append(result)
        log(
            "  serverless spawn {}: cold {} ms".format(
                t + 1, ", ".join(f"{k} {v[-1]['cold_ms']:.0f}" for k, v in out.items())
            )
        )
    return out


# -- setup -------------------------------------------------------------------------------------------------------


def npm_install() -> None:
    marker = NODE_DIR / "node_modules" / "@orga-ai" / "node" / "package.json"
    lock = NODE_DIR / "package-lock.json"
    if marker.exists() and (NODE_DIR / "node_modules" / ".package-lock.json").stat().st_mtime >= lock.stat().st_mtime:
        return
    log("npm install in benchmarks/node ...")
    # --legacy-peer-deps: @orga-ai/node lists "node" as a peer dependency, which npm would otherwise install as a
    # package from the registry; the Node that runs the benchmark is the system one.
    subprocess.run(
        ["npm", "ci" if lock.exists() else "install", "--no-audit", "--no-fund", "--legacy-peer-deps"],
        cwd=NODE_DIR,
        check=True,
        timeout=600,
    )


def versions(bench: Bench) -> dict[str, str]:
    def cmd(args: Sequence[str]) -> str:
        try:
            done = subprocess.run(list(args), capture_output=True, text=True, timeout=20, check=False)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    def pkg(path: Path) -> str:
        try:
            return str(json.loads(path.read_text())["version"])
        except (OSError, ValueError, KeyError):
            return "?"

    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in ("orga-ai", "aiohttp", "httpx", "starlette", "uvicorn", "uvloop", "httptools", "limits"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    git = cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out["orga-ai git"] = git + (" (+ uncommitted src changes)" if dirty else "")
    out["python"] = platform.python_version()
    out["node"] = cmd(["node", "--version"])
    out["@orga-ai/node"] = pkg(NODE_DIR / "node_modules" / "@orga-ai" / "node" / "package.json")
    out["express"] = pkg(NODE_DIR / "node_modules" / "express" / "package.json")
    out["wrk"] = cmd(["wrk", "--version"]).split(" [")[0]
    out["python contender"] = bench.python_contender
    return out


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, short phases: a smoke run (~3 min)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each phase (default 3, quick 1)")
    parser.add_argument(
        "--contender",
        choices=("serve", "standin"),
        default="serve",
        help="the Python proxy: `orga-ai serve` (the product; default) or the bare Starlette stand-in",
    )
    parser.add_argument(
        "--baseline",
        default="",
        metavar="REV",
        help="also run the route phase against orga-ai serve as built at git REV (before and after in one run)",
    )
    parser.add_argument("--no-report", action="store_true", help="write the JSON only, not docs/benchmarks.*")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        help="first wait up to this many seconds for other processes to leave the cores idle (default 30; 0: no)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated phases to run alone (import,upstream,floors,inprocess,route,variants,20ms,"
        "instructions,reliability,slowloris,transport,async-transport,cold,serverless); implies --no-report",
    )
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}

    def want(phase: str) -> bool:
        return not only or phase in only

    if only:
        args.no_report = True
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    duration = 2.0 if quick else 5.0
    warm = 1.0
    calls = 300 if quick else 2000
    ol_duration = 3.0 if quick else 5.0
    rel_duration = 4.0 if quick else 6.0
    cold_trials = 2 if quick else 10
    serverless_spawns = 3 if quick else 12
    serverless_warm = 50 if quick else 300

    for tool in ("node", "npm", "wrk"):
        if shutil.which(tool) is None:
            print(f"benchmarks/run.py needs {tool} on PATH (make system-deps)", file=sys.stderr)
            return 2
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS / f"logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = Procs(log_dir)
    bench = Bench(procs, quick)
    orga_cli = Path(sys.executable).with_name("orga-ai")
    bench.orga_cli = str(orga_cli)
    if args.contender == "standin":
        bench.python_contender = "bare Starlette stand-in (NOT the product)"
    elif not (ROOT / "src" / "orga_ai" / "proxy" / "_cli.py").exists() or not orga_cli.exists():
        print("orga-ai serve is not available; run with --contender standin to develop the harness", file=sys.stderr)
        return 2

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    began = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "rounds": rounds, "started": dt.datetime.now().isoformat()}
    try:
        npm_install()
        results["versions"] = versions(bench)
        results["machine"] = machine()
        results["settings"] = {
            "wrk_duration_s": duration,
            "warmup_s": warm,
            "inprocess_calls": calls,
            "open_loop_duration_s": ol_duration,
            "pool_rate": POOL_RATE,
            "prefetch": PREFETCH,
            "reliability_rate": RELIABILITY_RATE,
            "reliability_duration_s": rel_duration,
            "reject_rate_limit": REJECT_RATE_LIMIT,
            "high_rate_limit": HIGH_RATE_LIMIT,
            "cold_trials": cold_trials,
            "serverless_spawns": serverless_spawns,
            "serverless_warm": serverless_warm,
        }
        if args.baseline and (want("route") or want("instructions")):
            try:
                bench.baseline_src, results["baseline"] = export_baseline(args.baseline)
                log(f"baseline: orga-ai serve as of {results['baseline']} in the route phase")
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                log(f"baseline skipped: {exc}")
        log(f"python contender: {bench.python_contender}; rounds {rounds}; logs in {log_dir.relative_to(ROOT)}")

        if args.wait_quiet > 0:
            results["quiet_check"] = wait_quiet(0.10, args.wait_quiet)
        noise: dict[str, dict[str, float]] = {}
        results["noise"] = noise
        whole = CpuWatch()
        watch = CpuWatch()

        def phase_done(name: str) -> None:
            noise[name] = watch.read()
            if noise[name]["foreign_share"] > 0.10:
                log(f"  note: other processes used {noise[name]['foreign_share']:.0%} of the cores during {name}")
            watch.reset()

        if want("import"):
            log("import time ...")
            results["import_time"] = phase_import_time(3 if quick else 7)
            phase_done("import time")

        for latency in (0, 20, 50):
            port = free_port()
            proc = procs.spawn(
                f"upstream-{latency}ms",
                ["node", str(BENCH / "upstream.js"), "--port", str(port), "--latency-ms", str(latency)],
            )
            wait_ready(proc, port, "/v1/realtime/unknown", timeout=15, want=403)
            bench.upstreams[latency] = f"http://127.0.0.1:{port}"

        if want("upstream"):
            log("upstream alone ...")
            results["upstream"] = phase_upstream(bench, 2.0 if quick else 3.0)
            phase_done("upstream alone")
        if want("floors"):
            log("floors (raw two sequential calls, aiohttp) at 20 and 50 ms ...")
            results["floors"] = phase_floors(bench, (20, 50), 20 if quick else 50)
            phase_done("floors")
        if want("inprocess"):
            log("in-process ...")
            results["inprocess"] = phase_inprocess(bench, rounds, calls)
            phase_done("in-process")
        if want("route"):
            log("proxy route, upstream 0 ms ...")
            route_rounds = max(rounds, ROUTE_ROUNDS_WITH_BASELINE) if bench.baseline_src else rounds
            results["wrk_0ms"] = phase_wrk_0ms(bench, route_rounds, duration, warm)
            phase_done("route 0 ms")
        if want("instructions") and bench.baseline_src and shutil.which("valgrind"):
            log("instructions per request under callgrind, now and before ...")
            sys.path.insert(0, str(BENCH))
            import instructions

            results["instructions"] = {
                "requests": INSTRUCTION_REQUESTS,
                **instructions.measure(
                    {"now": str(ROOT / "src"), "before": bench.baseline_src},
                    bench.upstreams[0],
                    INSTRUCTION_REQUESTS,
                    bench.procs,
                ),
            }
            log("  instructions per request: now {now:,}, before {before:,}".format(**results["instructions"]))
            phase_done("instructions")
        if want("variants"):
            log("per-request cost of serve's layers (16 connections, 0 ms) ...")
            results["variants"] = phase_variants(bench, rounds, duration, warm)
            phase_done("variants")
        if want("20ms"):
            log("proxy route, upstream 20 ms, pool off and on ...")
            results["lat20"] = phase_20ms(bench, rounds, duration, warm, ol_duration)
            phase_done("route 20 ms")
        if want("reliability"):
            log(f"reliability: {RELIABILITY_RATE:g} req/s open loop, upstream 50 ms ...")
            results["reliability"] = phase_reliability(bench, rounds, rel_duration)
            phase_done("reliability")
        if want("slowloris"):
            log(f"slowloris: /healthz with {SLOWLORIS_SOCKETS} half-sent heads open ...")
            results["slowloris"] = phase_slowloris(bench, rounds)
            phase_done("slowloris")
        if want("transport"):
            log("sync transport candidates, in-process (httpx, urllib3, http.client, OrgaAI, @orga-ai/node) ...")
            sys.path.insert(0, str(BENCH))
            import sync_transport

            results["sync_transport"] = sync_transport.measure(bench.upstreams[0], calls // 2, rounds)
            phase_done("sync transport")
        if want("async-transport"):
            log("async transport candidates, each in a process of its own (aiohttp, asyncio + httptools, ...) ...")
            sys.path.insert(0, str(BENCH))
            import async_transport

            results["async_transport"] = async_transport.measure(bench.upstreams[0], calls // 4, rounds)
            phase_done("async transport")
        if want("cold"):
            log("cold start ...")
            results["cold_start"] = phase_cold_start(bench, cold_trials)
            phase_done("cold start")
        if want("serverless"):
            log("serverless: Lambda-style cold start, warm invocations, peak RSS ...")
            results["serverless"] = phase_serverless(bench, serverless_spawns, serverless_warm)
            phase_done("serverless")
        noise["whole run"] = whole.read()
    except KeyboardInterrupt:
        log("interrupted: stopping every child process")
        return 130
    except Exception as exc:  # noqa: BLE001 - keep what was measured before the failure
        log(f"phase failed: {exc!r}; partial results kept")
        results["failed"] = repr(exc)
        args.no_report = True
    finally:
        procs.stop_all()
    results["elapsed_s"] = round(time.perf_counter() - began, 1)
    out = RESULTS / f"results-{stamp}{'-quick' if quick else ''}.json"
    out.write_text(json.dumps(results, indent=1))
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1))
    log(f"raw results: {out.relative_to(ROOT)} ({results['elapsed_s']:.0f} s)")
    if not args.no_report:
        sys.path.insert(0, str(BENCH))
        import report

        md, png = report.write(results, ROOT / "docs")
        log(f"wrote {md.relative_to(ROOT)} and {png.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
