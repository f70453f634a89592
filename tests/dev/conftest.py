"""Fixtures of the ``orga-ai dev`` tests: the real command as a subprocess, coturn, and headless Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from orga_ai.emulator import ADMIN_HEADER
from tests.support import Coturn, free_port, run_coturn

ADMIN = {ADMIN_HEADER: "1"}

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# What worked on these machines (docs: /work/shared/WEBRTC_NOTES.md): fake media devices, no outside traffic, and
# loopback candidates, without which a loopback-only path gathers nothing at all.
CHROMIUM_ARGS = [
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


@dataclass
class DevServer:
    """One running ``orga-ai dev``: its URLs, its process, and what it printed so far."""

    url: str
    emulator_url: str
    process: subprocess.Popen[str]
    log_path: Path
    exit_code: int | None = field(default=None)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def advance_clock(self, seconds: float) -> None:
        url = f"{self.emulator_url}/_emulator/clock"
        httpx.post(url, json={"advance": seconds}, timeout=5, headers=ADMIN).raise_for_status()

    def reset_emulator(self) -> None:
        httpx.post(f"{self.emulator_url}/_emulator/reset", timeout=5, headers=ADMIN).raise_for_status()

    def stop(self) -> int:
        """Ctrl-C, as a developer would: SIGINT to the whole process group, then wait. Returns the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                pytest.fail(f"orga-ai dev did not stop within {STOP_TIMEOUT} s of SIGINT:\n{self.output()}")
        self.exit_code = self.process.returncode
        return self.exit_code


def start_dev(tmp_dir: Path, *extra: str, env: dict[str, str] | None = None) -> DevServer:
    """Start ``orga-ai dev`` on free ports; returns once it printed its URL and the page answers."""
    port, emulator_port = free_port(), free_port()
    log_path = tmp_dir / f"orga-ai-dev-{port}.log"
    # The console script itself, as `make dev` runs it; `python -m orga_ai.cli` where it is not installed.
    script = Path(sys.executable).with_name("orga-ai")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "orga_ai.cli"]
    command = [
        *launcher, "dev", "--port", str(port), "--emulator-port", str(emulator_port),
        "--no-browser-hint", *extra,
    ]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    child_env.update(env or {})
    child_env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("w") as log:
        # Its own process group: the teardown signals the whole tree (uvicorn, coturn) the way a terminal's Ctrl-C does.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, env=child_env, start_new_session=True
        )
    server = DevServer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{emulator_port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while f"demo page {server.url}/" not in server.output():
        if process.poll() is not None:
            pytest.fail(f"orga-ai dev exited with {process.returncode}:\n{server.output()}")
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"orga-ai dev did not print its URL within {START_TIMEOUT} s:\n{server.output()}")
        time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """One ``orga-ai dev`` (emulator mode, its own coturn when installed) shared by the tests of this package."""
    server = start_dev(tmp_path_factory.mktemp("dev"))
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"orga-ai dev exited with {code} after SIGINT:\n{server.output()}"


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn with a TURN REST secret on free loopback ports (UDP), stopped at the end."""
    with run_coturn(tmp_path_factory.mktemp("coturn")) as running:
        yield running
