"""``orga-ai doctor --call``: real calls after the per-server checks, relay-only then all candidates, with the
candidate type and whether media flowed each way; a relay that refuses the credentials is reported, not hidden."""

from __future__ import annotations

import json

import pytest

from orga_ai.cli import main
from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator
from tests.support import Coturn

pytestmark = pytest.mark.slow


def doctor(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[
        int, dict[str, dict[str, object]], str]:
    monkeypatch.setenv("ORGA_API_KEY", emulator.api_key)
    monkeypatch.setenv("ORGA_BASE_URL", emulator.base_url)
    code = main(["doctor", "--call", "--json", "--ice-timeout", "3"])
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads(out)["checks"] if c["group"] == "call"}
    return code, checks, out


def test_doctor_call_reports_media_and_candidate_types(
    rt_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks, out = doctor(rt_emulator, monkeypatch, capsys)
    assert code == 0, out
    relay, direct = checks["call, relay only"], checks["call, all candidates"]
    assert relay["verdict"] == direct["verdict"] == "ok"
    assert relay["data"]["candidateType"] == "relay" and direct["data"]["candidateType"] == "host"
    for check in (relay, direct):
        assert check["data"]["mediaOut"] is True and check["data"]["mediaIn"] is True
    assert "over relay" in relay["detail"]
    assert rt_emulator.stats()["calls"] == 2


def test_doctor_call_with_a_refusing_relay(
    coturn: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = EmulatorConfig(stun_urls=coturn.stun_urls(), turn_urls=(coturn.turn_urls()[0],),
                            turn_secret="not-the-secret-coturn-knows")
    with run_emulator(config) as running:
        code, checks, out = doctor(running, monkeypatch, capsys)
    relay, direct = checks["call, relay only"], checks["call, all candidates"]
    assert relay["verdict"] == "fail" and relay["blocking"] is False and relay["data"]["phase"] == "gather"
    assert "relay" in relay["advice"]
    assert direct["verdict"] == "ok"
    # The exit status is the ICE summary's (no relay path is blocking there); the calls only add evidence.
    assert code == 1, out
    blocking = [c for c in json.loads(out)["checks"] if c["verdict"] == "fail" and c["blocking"]]
    assert [c["group"] for c in blocking] == ["ice"]
    assert "not-the-secret" not in out
