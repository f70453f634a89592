"""``orga-ai serve --workers 2``: one ``/metrics`` summing every worker, ``/readyz`` answered by each worker for
itself, and SIGTERM draining the requests in flight in every worker."""

from __future__ import annotations

import concurrent.futures
import re
import signal
from pathlib import Path

import httpx

from orga_ai.testing import RunningEmulator
from tests.support import wait_in_flight

from .test_route import ROUTE
from .test_serve import SECRET, replicas

AUTH = {"Authorization": f"Bearer {SECRET}"}
ARGS = ("--shared-secret", SECRET, "--workers", "2", "--rate-limit", "none")


def _ok_total(metrics: str) -> float:
    found = re.search(r'^orga_proxy_requests_total\{outcome="ok"\} ([0-9.e+]+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_every_scrape_sums_every_worker(emulator: RunningEmulator, tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    with replicas(emulator, 1, *ARGS, env={"PROMETHEUS_MULTIPROC_DIR": str(shared)}) as (server,):
        for _ in range(12):  # a connection each: the workers share the listening socket
            with httpx.Client(timeout=10) as client:
                assert client.get(server.url + ROUTE, headers=AUTH).status_code == 200
        # Both workers write their values there (and the parent, which validated the app once).
        pids = {int(m.group(1)) for f in shared.iterdir() if (m := re.search(r"_(\d+)\.db$", f.name))}
        assert len(pids) >= 2, sorted(f.name for f in shared.iterdir())
        for _ in range(6):  # whichever worker answers the scrape, it reports all twelve
            with httpx.Client(timeout=10) as client:
                assert _ok_total(client.get(server.url + "/metrics").text) == 12
        workers = set()
        for _ in range(6):
            with httpx.Client(timeout=10) as client:
                ready = client.get(server.url + "/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["rateLimiter"] == "ok"
            workers.add(int(ready.json()["checks"]["worker"]))
        assert workers <= pids


def test_the_managed_metrics_directory_is_removed_at_exit(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, *ARGS) as (server,):
        assert httpx.get(server.url + ROUTE, headers=AUTH, timeout=10).status_code == 200
    log = "".join(server.stderr)
    found = re.search(r"metrics aggregated in (\S+) \(removed at exit\)", log)
    assert found is not None, log
    assert not Path(found.group(1)).exists()


def test_sigterm_drains_the_requests_in_flight_in_every_worker(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, *ARGS) as (server,):
        emulator.arm("client-secrets", count=4, latency_ms=1500)

        def slow(_: int) -> int:
            with httpx.Client(timeout=15) as client:  # a connection each, so both workers get some
                return client.get(server.url + ROUTE, headers=AUTH).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            pending = [pool.submit(slow, i) for i in range(4)]
            # In flight at the upstream (in their latency), not yet answered: the request log has them only after.
            wait_in_flight(emulator, 4)
            server.process.send_signal(signal.SIGTERM)
            codes = [future.result() for future in pending]
        assert codes == [200] * 4
        assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
