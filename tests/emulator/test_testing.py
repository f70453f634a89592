"""orga_ai.testing: run_emulator, RunningEmulator helpers, the pytest fixtures, and its import without pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

import orga_ai.emulator
import orga_ai.testing
from orga_ai.emulator import DEV_API_KEY, EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator


def test_run_emulator_serves_on_a_free_loopback_port_and_stops() -> None:
    with run_emulator() as running:
        assert running.base_url.startswith("http://127.0.0.1:")
        assert running.api_key == DEV_API_KEY
        assert isinstance(running.config, EmulatorConfig)
        assert httpx.get(running.base_url + "/_emulator/health").status_code == 200
        url = running.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_emulator/health")


def test_two_emulators_are_independent() -> None:
    with run_emulator() as first, run_emulator() as second:
        assert first.base_url != second.base_url
        first.arm(status=500)
        assert second.stats()["faults_applied"] == 0
        response = httpx.post(second.base_url + "/v1/realtime/client-secrets",
                              headers={"Authorization": f"Bearer {DEV_API_KEY}"})
        assert response.status_code == 200


def test_non_loopback_hosts_are_refused() -> None:
    with pytest.raises(ValueError, match="loopback"), run_emulator(host="0.0.0.0"):
        pass


def test_ipv6_loopback() -> None:
    try:
        with run_emulator(host="::1") as running:
            assert running.base_url.startswith("http://[::1]:")
            assert httpx.get(running.base_url + "/_emulator/health").status_code == 200
    except OSError as exc:  # pragma: no cover - a machine without IPv6
        pytest.skip(f"no IPv6 loopback here: {exc}")


def test_fixture_starts_clean(emulator: RunningEmulator) -> None:
    # Other tests on the same session server armed faults and moved its clock; the fixture reset all of it.
    stats = emulator.stats()
    assert (stats["faults_applied"], stats["tokens_issued"], stats["clock_offset"]) == (0, 0, 0.0)
    assert emulator.requests() == []


def test_fixture_is_the_session_server(emulator: RunningEmulator, emulator_server: RunningEmulator) -> None:
    assert emulator is emulator_server


def test_importing_testing_does_not_need_pytest() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None  # as if pytest were not installed
        import orga_ai.testing
        assert not hasattr(orga_ai.testing, "emulator")
        with orga_ai.testing.run_emulator() as em:
            print(em.stats()["tokens_issued"])
        """
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_public_names_are_pinned() -> None:
    assert orga_ai.emulator.__all__ == [
        "ADMIN_HEADER",
        "BODY_KINDS",
        "DEFAULT_QUOTA_PER_MINUTE",
        "DEFAULT_TTL",
        "DEV_API_KEY",
        "FAULT_HEADER",
        "FAULT_PATHS",
        "EmulatedDrop",
        "EmulatorConfig",
        "Fault",
        "FaultError",
        "create_app",
        "parse_fault",
        "turn_credential",
        "turn_credentials",
    ]
    assert orga_ai.testing.__all__ == [
        "AsyncMockTransport",
        "MockRequest",
        "MockTransport",
        "RunningEmulator",
        "place_call",
        "run_emulator",
    ]
    for name in orga_ai.emulator.__all__:
        assert getattr(orga_ai.emulator, name).__doc__ or name.isupper(), name


def test_dev_key_is_the_documented_one() -> None:
    assert DEV_API_KEY == "sk_orga_ai_local_emulator_dev_key"
