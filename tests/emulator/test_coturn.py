"""A real coturn, started here with use-auth-secret, accepts the emulator's TURN credentials and refuses bad ones."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orga_ai.emulator import EmulatorConfig, turn_credential
from orga_ai.testing import run_emulator
from tests.support import require_binary, run_coturn

pytestmark = pytest.mark.slow

REALM = "orga.emulator.test"


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """turnserver on a free loopback port with a fresh static-auth-secret; stopped by PID afterwards."""
    with run_coturn(tmp_path, realm=REALM) as running:
        yield {"port": running.port, "secret": running.secret, "log": running.log}


def _turn_entry(config: EmulatorConfig, clock: Any = None) -> dict[str, str]:
    with run_emulator(config, clock=clock) as running, httpx.Client(base_url=running.base_url) as client:
        headers = {"Authorization": f"Bearer {running.api_key}"}
        token = client.post("/v1/realtime/client-secrets", headers=headers).json()["ephemeral_token"]
        servers = client.get("/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token}"}).json()
    entry: dict[str, str] = servers["iceServers"][-1]
    return entry


def _allocate(port: int, username: str, credential: str) -> subprocess.Popen[str]:
    uclient = require_binary("turnutils_uclient")
    return subprocess.Popen(
        [uclient, "-y", "-c", "-n", "1", "-u", username, "-w", credential, "-p", str(port), "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_coturn_accepts_issued_credentials_and_refuses_expired_or_forged(coturn: dict[str, Any]) -> None:
    config = EmulatorConfig(turn_urls=(f"turn:127.0.0.1:{coturn['port']}?transport=udp",), turn_secret=coturn["secret"])
    issued = _turn_entry(config)
    assert issued["urls"] == [f"turn:127.0.0.1:{coturn['port']}?transport=udp"]
    # An emulator whose clock runs an hour behind issues credentials that, in coturn's real time, expired long ago.
    expired = _turn_entry(config, clock=lambda: time.time() - 3600)
    assert int(expired["username"].split(":")[0]) < time.time()
    forged_username = f"{int(time.time()) + 600}:forged"
    forged_credential = turn_credential("not-the-shared-secret", forged_username)

    # Each allocation takes a few seconds; run the three side by side.
    runs = {
        "issued": _allocate(coturn["port"], issued["username"], issued["credential"]),
        "expired": _allocate(coturn["port"], expired["username"], expired["credential"]),
        "forged": _allocate(coturn["port"], forged_username, forged_credential),
    }
    results = {}
    for name, process in runs.items():
        output, _ = process.communicate(timeout=30)
        results[name] = (process.returncode, output)

    assert results["issued"][0] == 0, results["issued"][1][-2000:]
    for name in ("expired", "forged"):
        code, output = results[name]
        assert code != 0, f"{name} credential was accepted"
        assert "Cannot complete Allocation" in output or "401" in output, output[-2000:]
    # coturn's own log says why: it refused the expired and forged users, and never the issued one.
    log = coturn["log"].read_text(errors="replace")
    refused = [line for line in log.splitlines() if "check_stun_auth" in line]
    assert any(expired["username"] in line for line in refused)
    assert any(forged_username in line for line in refused)
    assert not any(issued["username"] in line for line in refused)
