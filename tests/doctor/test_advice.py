"""The doctor's advice, checked against each situation a new user meets: situation -> verdict -> advice, against real
servers on 127.0.0.1 (a stopped emulator's port, a real ``orga-ai serve``), and its output in a pipe."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from orga_ai._config import resolve_settings
from orga_ai._doctor._checks import DoctorOptions, check_network, check_route
from orga_ai._doctor._report import Check, Report
from orga_ai.testing import RunningEmulator
from tests.proxy.test_serve import Replica, replicas
from tests.support import free_port

SECRET = "doctor-advice-shared-secret-0123456789"
ORIGIN = "https://app.advice.test"


@dataclass(frozen=True)
class Situation:
    name: str
    headers: tuple[tuple[str, str], ...] = ()
    origin: str | None = None
    path: str = "/api/orga-client-secrets"
    verdict: str = "fail"
    advice_has: tuple[str, ...] = ()
    advice_lacks: tuple[str, ...] = ()


ROUTE_SITUATIONS = [
    Situation("no credentials sent", advice_has=("pass --header 'Authorization: Bearer ...'",)),
    Situation(
        "a credential sent and refused (401 invalid_token)",
        headers=(("Authorization", "Bearer not-the-secret-at-all-0000000"),),
        advice_has=("refused the credentials sent (Authorization)", "request id "),
        advice_lacks=("pass --header",),
    ),
    Situation(
        "the Origin refused (403 origin_not_allowed)",
        headers=(("Authorization", f"Bearer {SECRET}"),),
        origin="https://elsewhere.advice.test",
        advice_has=("refuses Origin https://elsewhere.advice.test", "--cors-origin / ORGA_PROXY_CORS_ORIGIN"),
        advice_lacks=("pass --header",),
    ),
    Situation(
        "a wrong path (404)",
        headers=(("Authorization", f"Bearer {SECRET}"),),
        path="/api/no-such-route",
        advice_has=("check the --route URL", "request id "),
        advice_lacks=("for this request id",),
    ),
    Situation("all good", headers=(("Authorization", f"Bearer {SECRET}"),), origin=ORIGIN, verdict="ok"),
]


@pytest.fixture(scope="module")
def route(emulator_server: RunningEmulator) -> Iterator[Replica]:
    with replicas(emulator_server, 1, "--cors-origin", ORIGIN, env={"ORGA_PROXY_SHARED_SECRET": SECRET}) as (r,):
        yield r


def status_check(report: Report) -> Check:
    [check] = [c for c in report.checks if c.group == "route" and c.name == "status"]
    return check


@pytest.mark.parametrize("situation", ROUTE_SITUATIONS, ids=lambda s: s.name)
def test_route_advice_fits_the_situation(route: Replica, situation: Situation) -> None:
    options = DoctorOptions(route=route.url + situation.path, route_headers=situation.headers,
                            origin=situation.origin, timeout=10)
    report = Report()
    asyncio.run(check_route(report, options))
    check = status_check(report)
    assert check.verdict == situation.verdict, check
    for text in situation.advice_has:
        assert text in check.advice, check.advice
    for text in situation.advice_lacks:
        assert text not in check.advice, check.advice
    if situation.verdict == "fail" and "request id" in check.advice:
        # The id printed is the one the route answered with, so its log line can be found.
        assert check.data["requestId"] and check.data["requestId"] in check.advice
    assert SECRET not in check.advice + check.detail


def test_a_stopped_emulator_is_a_refused_loopback_connection_not_a_firewall() -> None:
    port = free_port()  # nothing listens here: the emulator was stopped
    settings = resolve_settings(api_key="sk_orga_ai_local_emulator_dev_key", base_url=f"http://127.0.0.1:{port}",
                                timeout=5, max_retries=0, debug=False, default_headers=None, environ={})
    report = Report()
    assert asyncio.run(check_network(report, settings, 5)) is False
    [tcp] = [c for c in report.checks if c.name.startswith("TCP")]
    assert tcp.verdict == "fail" and tcp.blocking
    assert tcp.advice.startswith(f"nothing listens on 127.0.0.1:{port}: start the local emulator")
    assert "firewall" not in tcp.advice and "HTTPS_PROXY" not in tcp.advice


def run_doctor(
    emulator: RunningEmulator, *args: str, pipe_to: str | None = None, base_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env.update({"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": base_url or emulator.base_url})
    command = [sys.executable, "-m", "orga_ai.cli", "doctor", "--ice-timeout", "1", *args]
    if pipe_to is None:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    shell = " ".join(f"'{part}'" for part in command) + f" | {pipe_to}"
    return subprocess.run(["/bin/sh", "-c", shell], env=env, capture_output=True, text=True, timeout=60)


def test_json_marks_only_failures_as_blocking(emulator: RunningEmulator) -> None:
    done = run_doctor(emulator, "--json")
    checks = json.loads(done.stdout)["checks"]
    assert any(c["verdict"] == "ok" for c in checks)
    assert all(c["blocking"] is False for c in checks if c["verdict"] in ("ok", "skip", "warn")), checks
    stopped = run_doctor(emulator, "--json", base_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    failed = [c for c in json.loads(stopped.stdout)["checks"] if c["verdict"] == "fail"]
    assert failed and all(c["blocking"] is True for c in failed), failed


def test_doctor_into_a_closed_pipe_ends_without_a_traceback(emulator: RunningEmulator) -> None:
    done = run_doctor(emulator, pipe_to="true")  # the reader is gone before the doctor writes its first line
    assert done.stdout == ""
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_session_names_the_endpoint_it_talks_to() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env.update({"ORGA_API_KEY": "sk_orga_ai_local_emulator_dev_key", "ORGA_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    done = subprocess.run([sys.executable, "-m", "orga_ai.cli", "session"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert "Orga Cloud" not in done.stderr and f"the local endpoint {env['ORGA_BASE_URL']}" in done.stderr
