"""Which HTTP library the sync client should run on: every candidate's keep-alive floor, side by side, in one run.

    .venv/bin/python benchmarks/sync_transport.py --calls 1000 --rounds 3

Starts the upstream stand-in (benchmarks/upstream.js, 0 ms) and, in interleaved rounds, times sequential
``get_session_config``-shaped exchanges (POST client-secrets, read the token, GET ice-config, read the JSON) on one
kept-alive connection of each library, in one process:

* ``httpx``: a bare ``httpx.Client``;
* ``urllib3``: a bare ``urllib3.PoolManager``;
* ``http.client``: one ``http.client.HTTPConnection`` reused (the lowest floor the standard library offers);
* ``OrgaAI``: the product's ``OrgaAI().get_session_config()`` with its default transport;
* ``OrgaAI(http_client=httpx.Client())``: the product over a caller's httpx client;
* ``node``: ``@orga-ai/node``'s in-process ``getSessionConfig()`` (benchmarks/node/inprocess.js), its own process.

Also the cold import of each library (``python -X importtime``, median of 5). Prints one JSON object; figures are
medians of the per-round medians, in microseconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import API_KEY, CHILD_ENV, NODE_DIR, Procs, free_port, npm_install, wait_ready  # noqa: E402


def median_us(fn: Callable[[], object], calls: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples) / 1000


def loops(base: str) -> dict[str, Callable[[], object]]:
    import httpx
    import urllib3

    from orga_ai import OrgaAI

    post_headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    hx = httpx.Client()
    pool = urllib3.PoolManager()
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    orga = OrgaAI(api_key=API_KEY, base_url=base)
    orga_httpx = OrgaAI(api_key=API_KEY, base_url=base, http_client=httpx.Client())

    def with_httpx() -> object:
        token = hx.post(f"{base}/v1/realtime/client-secrets", headers=post_headers).json()["ephemeral_token"]
        ice = hx.get(f"{base}/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token}"})
        return ice.json()["iceServers"]

    def with_urllib3() -> object:
        answer = pool.request("POST", f"{base}/v1/realtime/client-secrets", headers=post_headers, redirect=False)
        token = json.loads(answer.data)["ephemeral_token"]
        ice = pool.request(
            "GET", f"{base}/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token}"}, redirect=False
        )
        return json.loads(ice.data)["iceServers"]

    def with_http_client() -> object:
        conn.request("POST", "/v1/realtime/client-secrets", body=b"", headers=post_headers)
        token = json.loads(conn.getresponse().read())["ephemeral_token"]
        conn.request("GET", "/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token}"})
        return json.loads(conn.getresponse().read())["iceServers"]

    return {
        "httpx": with_httpx,
        "urllib3": with_urllib3,
        "http.client": with_http_client,
        "OrgaAI": orga.get_session_config,
        "OrgaAI(http_client=httpx.Client())": orga_httpx.get_session_config,
    }


def import_ms(module: str, runs: int = 5) -> float:
    samples = []
    for _ in range(runs + 1):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            env=CHILD_ENV, capture_output=True, text=True, check=True, timeout=30,
        )
        total = 0
        for line in done.stderr.splitlines():
            parts = line.split("|")
            # top-level imports (no indentation in the module column) add up to the whole cost
            if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
                total += int(parts[1].strip())
        samples.append(total / 1000)
    return statistics.median(samples[1:])


def measure(base: str, calls: int, rounds_n: int) -> dict[str, Any]:
    """Interleaved rounds against the stand-in at ``base``; medians of the per-round medians (µs), import times."""
    candidates = loops(base)
    rounds: dict[str, list[float]] = {name: [] for name in [*candidates, "node"]}
    env = {**CHILD_ENV, "ORGA_API_KEY": API_KEY, "ORGA_BASE_URL": base}
    for r in range(rounds_n):
        names = list(rounds) if r % 2 == 0 else list(reversed(rounds))
        for name in names:
            if name == "node":
                cmd = ["node", "inprocess.js", "--calls", str(calls), "--warmup", str(calls // 10), "--only", "sdk"]
                done = subprocess.run(cmd, cwd=NODE_DIR, env=env, capture_output=True, text=True, check=True)
                rounds[name].append(json.loads(done.stdout)["sdk"]["median_us"])
            else:
                rounds[name].append(median_us(candidates[name], calls, calls // 10))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rounds.items()), file=sys.stderr)
    result: dict[str, Any] = {"median_us": {k: round(statistics.median(v), 1) for k, v in rounds.items()}}
    result["rounds_us"] = rounds
    node = result["median_us"]["node"]
    result["ratio_to_node"] = {k: round(v / node, 2) for k, v in result["median_us"].items()}
    result["import_ms"] = {m: round(import_ms(m), 1) for m in ("httpx", "urllib3", "http.client, ssl", "orga_ai")}
    result["loadavg"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    npm_install()
    procs = Procs(BENCH / "results")
    (BENCH / "results").mkdir(exist_ok=True)
    try:
        port = free_port()
        upstream = procs.spawn("transport-upstream", ["node", str(BENCH / "upstream.js"), "--port", str(port)])
        wait_ready(upstream, port, "/v1/realtime/unknown", timeout=15, want=403)
        print(json.dumps(measure(f"http://127.0.0.1:{port}", args.calls, args.rounds), indent=1))
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
