"""``orga-ai doctor`` against the emulator and real coturn processes: every verdict, the exit status, the route
check against a real ``orga-ai serve``, and no secret in any output (the canary scan)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp  # noqa: F401 - imported before any test sets SSL_CERT_FILE: aiohttp builds its default TLS context once
import pytest

from orga_ai import IceServer
from orga_ai._doctor._checks import route_shape_problems
from orga_ai._doctor._probe import plan_probes
from orga_ai.cli import main
from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator
from tests.proxy.test_serve import replicas
from tests.reliability.support import Canary

from .conftest import Coturn

pytestmark = pytest.mark.slow

SHARED_SECRET = "doctor-route-shared-secret-Kq3Zr8Wm5566"
ORIGIN = "https://app.doctor.test"
# Shapes that must never reach the output: a JWT (the token) and a TURN REST username or credential.
SECRET_SHAPES = re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.|\b\d{10}:[A-Za-z0-9_\-]{6,}|\b[A-Za-z0-9+/]{27}=")


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def assert_no_secrets(text: str, *known: str) -> None:
    canary = Canary()
    for value in known:
        canary.add(value, "secret")
    assert canary.find(text) == []
    assert not SECRET_SHAPES.search(text), SECRET_SHAPES.search(text)


class Run:
    """One doctor run: exit status, the JSON report, the checks by name."""

    def __init__(self, code: int, out: str) -> None:
        self.code = code
        self.out = out
        self.report: dict[str, Any] = json.loads(out)
        self.checks: dict[str, dict[str, Any]] = {c["name"]: c for c in self.report["checks"]}

    def group(self, group: str) -> list[dict[str, Any]]:
        return [c for c in self.report["checks"] if c["group"] == group]

    def probes(self) -> list[dict[str, Any]]:
        return [c for c in self.group("ice") if " over " in c["name"]]


def doctor(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    emulator: RunningEmulator,
    *args: str,
    api_key: str | None = None,
    secrets: tuple[str, ...] = (),
) -> Run:
    monkeypatch.setenv("ORGA_API_KEY", api_key or emulator.api_key)
    monkeypatch.setenv("ORGA_BASE_URL", emulator.base_url)
    capsys.readouterr()
    code = main(["doctor", "--json", "--ice-timeout", "5", *args])
    out = capsys.readouterr().out
    known = (emulator.api_key, emulator.config.turn_secret, emulator.config.jwt_secret, *secrets)
    assert_no_secrets(out, *known)
    assert_no_secrets(caplog.text, *known)
    return Run(code, out)


def emulator_for(coturn: Coturn, **kwargs: Any) -> Any:
    kwargs.setdefault("turn_secret", coturn.secret)
    return run_emulator(EmulatorConfig(stun_urls=coturn.stun_urls(), turn_urls=coturn.turn_urls(), **kwargs))


# -- pure parts ------------------------------------------------------------------------------------------------------


def test_probes_cover_each_url_and_transport_once() -> None:
    servers = (
        IceServer(("stun:h:3478", "stuns:h:5349")),
        IceServer(("turn:h:3478?transport=udp", "turn:h:3478?transport=tcp", "turns:h:5349"), "1:u", "c"),
        IceServer(("turn:h:99999",), "1:u", "c"),
    )
    probes, unusable = plan_probes(servers)
    assert [(p.kind, p.transport, p.port) for p in probes] == [
        ("stun", "udp", 3478), ("turn", "udp", 3478), ("turn", "tcp", 3478), ("turn", "tls", 5349)
    ]
    assert unusable == ["stuns:h:5349", "turn:h:99999"]
    assert "c" not in repr(probes[1]).replace("turn", "")
    # Each line names the URL a browser would use over that transport: ?transport= is honoured.
    assert [p.name for p in probes[1:3]] == ["turn:h:3478?transport=udp over UDP", "turn:h:3478?transport=tcp over TCP"]
    bare, _ = plan_probes((IceServer("turn:h:3478", "1:u", "c"), IceServer("turn:h:3478?transport=udp", "1:u", "c")))
    assert [p.name for p in bare] == ["turn:h:3478 over UDP", "turn:h:3478 over TCP"]
    alone, _ = plan_probes((IceServer("turn:h:3478?transport=udp", "1:u", "c"),))
    assert [p.name for p in alone] == ["turn:h:3478?transport=udp over UDP"]


def test_route_shape_problems_name_what_clients_refuse() -> None:
    good = {"ephemeralToken": "t", "iceServers": [{"urls": ["stun:h"]}], "expiresAt": "x"}
    assert route_shape_problems(good) == []
    problems = route_shape_problems({"ephemeral_token": "t", "iceServers": [{"urls": "turn:h", "username": None}]})
    assert "ephemeralToken is missing or not a non-empty string" in problems
    assert "ephemeral_token is snake_case" in problems and "iceServers[0].username is null" in problems


# -- against the emulator and coturn ---------------------------------------------------------------------------------


def test_all_good(
    coturn_full: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert coturn_full.cert is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn_full.cert))  # this host trusts the turns: certificate
    with emulator_for(coturn_full) as emulator:
        run = doctor(monkeypatch, capsys, caplog, emulator)
        assert run.code == 0, run.out
        probes = run.probes()
        assert sorted(p["name"].rsplit(" over ", 1)[1] for p in probes) == ["TCP", "TLS", "UDP", "UDP"]
        assert all(p["verdict"] == "ok" for p in probes), probes
        assert all("round trip" in p["detail"] for p in probes)
        summary = run.checks["summary"]
        assert summary["verdict"] == "ok" and summary["data"]["transports"] == {"udp": "ok", "tcp": "ok", "tls": "ok"}
        key = run.checks["API key accepted"]
        assert key["verdict"] == "ok" and "consumes one token" in key["detail"] and "expires" in key["detail"]
        assert run.checks["clock skew"]["verdict"] == "ok"
        assert run.checks["API key"]["verdict"] == "ok" and "fp:" in run.checks["API key"]["detail"]

        # The human table says the same, with no secret either.
        assert main(["doctor", "--ice-timeout", "5"]) == 0
        table = capsys.readouterr().out
        assert "RESULT: a session can be set up" in table and "FAIL" not in table
        assert_no_secrets(table, emulator.api_key, emulator.config.turn_secret)


def test_turns_with_a_self_signed_certificate_names_the_certificate(
    coturn_full: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with emulator_for(coturn_full) as emulator:
        run = doctor(monkeypatch, capsys, caplog, emulator)
    tls = [p for p in run.probes() if p["name"].endswith("over TLS")]
    assert len(tls) == 1 and tls[0]["verdict"] == "fail"
    assert "certificate" in tls[0]["detail"] and "self-signed" in tls[0]["detail"], tls[0]
    assert "certificate" in tls[0]["advice"]
    assert run.checks["summary"]["verdict"] == "warn"
    assert run.code == 0  # UDP and TCP work: a session can be set up


def test_forged_turn_secret_fails_naming_turn_credentials(
    coturn_full: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn_full.cert))
    with emulator_for(coturn_full, turn_secret="not-the-secret-coturn-knows") as emulator:
        run = doctor(monkeypatch, capsys, caplog, emulator)
    assert run.code == 1, run.out
    turn = [p for p in run.probes() if p["name"].startswith(("turn:", "turns:"))]
    assert len(turn) == 3 and all(p["verdict"] == "fail" for p in turn)
    assert all("TURN credentials refused (401" in p["detail"] for p in turn), turn
    summary = run.checks["summary"]
    assert summary["verdict"] == "fail" and "TURN credentials" in summary["detail"]
    stun = [p for p in run.probes() if p["name"].startswith("stun:")]
    assert stun[0]["verdict"] == "ok"  # a binding needs no credentials


def test_coturn_on_udp_only(
    coturn_udp: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support import free_port

    urls = coturn_udp.turn_urls(tls_port=free_port())  # a turns: URL on a port nothing listens on
    config = EmulatorConfig(stun_urls=coturn_udp.stun_urls(), turn_urls=urls, turn_secret=coturn_udp.secret)
    with run_emulator(config) as emulator:
        run = doctor(monkeypatch, capsys, caplog, emulator)
    verdicts = {p["name"].rsplit(" over ", 1)[1] + ":" + p["name"].split(":", 1)[0]: p["verdict"]
                for p in run.probes()}
    assert verdicts == {"UDP:stun": "ok", "UDP:turn": "ok", "TCP:turn": "fail", "TLS:turns": "fail"}
    summary = run.checks["summary"]
    assert summary["verdict"] == "warn"
    assert summary["detail"] == "UDP works; TCP fails; TLS fails"
    assert run.code == 0, run.out


def test_an_unreachable_turn_host_fails_within_its_own_timeout(
    coturn_udp: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing answers there.
    config = EmulatorConfig(stun_urls=coturn_udp.stun_urls(), turn_urls=("turn:192.0.2.1:3478?transport=udp",))
    with run_emulator(config) as emulator:
        run = doctor(monkeypatch, capsys, caplog, emulator, "--ice-timeout", "1", "--timeout", "30")
    turn = [p for p in run.probes() if p["name"].startswith("turn:")]
    assert [p["name"] for p in turn] == ["turn:192.0.2.1:3478?transport=udp over UDP"]
    assert all(p["verdict"] == "fail" and p["blocking"] is False for p in turn)
    # Each probe is bounded by its own 1 s timeout (plus scheduling slack on a busy machine), not by the run's 30 s.
    assert all(p["ms"] < 1000 + 4000 for p in turn), turn
    assert run.checks["summary"]["verdict"] == "warn" and run.code == 0


def test_clock_skew_warns_then_fails(
    coturn_full: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn_full.cert))
    with emulator_for(coturn_full) as emulator:
        emulator.advance_clock(45)
        run = doctor(monkeypatch, capsys, caplog, emulator)
        clock = run.checks["clock skew"]
        assert clock["verdict"] == "warn" and "ahead" in clock["detail"], clock
        assert 40 <= clock["data"]["skewSeconds"] <= 50  # Date has whole seconds; the request takes some time
        assert run.code == 0, run.out

        emulator.advance_clock(120)  # 165 s: past the 120 s token lifetime's margin
        run = doctor(monkeypatch, capsys, caplog, emulator)
        clock = run.checks["clock skew"]
        assert clock["verdict"] == "fail" and "lifetime" in clock["detail"] and "NTP" in clock["advice"]
        assert run.code == 1


def test_wrong_api_key(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk_orga_ai_wrong_key_for_the_doctor_0123"
    run = doctor(monkeypatch, capsys, caplog, emulator, api_key=wrong, secrets=(wrong,))
    assert run.code == 1
    key = run.checks["API key accepted"]
    assert key["verdict"] == "fail" and key["data"]["status"] == 401
    assert "refused the key fp:" in key["advice"]
    assert "clock skew" not in run.checks  # nothing after the key is checked without a token


@pytest.mark.parametrize(
    ("proxy", "verdict", "shown"),
    [
        ("http://proxyuser:Pr0xyS3cret@proxy.example.test:3128", "ok", "proxy.example.test:3128"),
        # An unescaped "/" ends the authority early: what follows is no port, and must not be shown as one.
        ("http://proxyuser:Pr0xy/S3cret@proxy.example.test:3128", "warn", "(unreadable URL)"),
    ],
)
def test_proxy_variables_are_listed_without_their_credentials(
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    caplog: pytest.LogCaptureFixture,
    proxy: str,
    verdict: str,
    shown: str,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    run = doctor(monkeypatch, capsys, caplog, emulator, "--ice-timeout", "1", secrets=("S3cret",))
    proxies = run.checks["proxy variables"]
    assert proxies["verdict"] == verdict
    assert f"HTTPS_PROXY={shown}" in proxies["detail"]
    assert "NO_PROXY=127.0.0.1,localhost" in proxies["detail"]
    assert "proxyuser" not in run.out and "Pr0xy" not in run.out
    if verdict == "warn":
        assert "percent-encode" in proxies["advice"]


def test_missing_key_and_bad_base_url_are_configuration_failures(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["checks"][0]["verdict"] == "fail" and "ORGA_API_KEY" in report["checks"][0]["detail"]
    monkeypatch.setenv("ORGA_API_KEY", "sk_orga_ai_some_key_0123456789")
    monkeypatch.setenv("ORGA_BASE_URL", "http://orga.example.com")
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    failed = [c for c in report["checks"] if c["verdict"] == "fail"]
    assert "plain http" in failed[0]["detail"]
    assert "sk_orga_ai_some_key" not in json.dumps(report)


def test_orga_over_tls_names_an_untrusted_or_expiring_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from orga_ai.emulator import DEV_API_KEY, create_app
    from tests.client.test_sync_transport import make_certificate
    from tests.support import serve

    cert, key = make_certificate(tmp_path)
    with serve(create_app(EmulatorConfig()), ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        monkeypatch.setenv("ORGA_API_KEY", DEV_API_KEY)
        monkeypatch.setenv("ORGA_BASE_URL", url)
        assert main(["doctor", "--json", "--ice-timeout", "1"]) == 1
        checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
        tls = checks["TLS 127.0.0.1"]
        assert tls["verdict"] == "fail" and "certificate not accepted" in tls["detail"], tls
        assert "SSL_CERT_FILE" in tls["advice"]
        assert "API key accepted" not in checks  # no key is sent over a connection that is not trusted

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted, but it expires within the hour
        main(["doctor", "--json", "--ice-timeout", "1"])
        checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    tls = checks["TLS 127.0.0.1"]
    assert tls["verdict"] == "warn" and "valid for 0 more days" in tls["detail"] and "expires soon" in tls["advice"]


def test_route_check_against_orga_ai_serve(
    coturn_full: Coturn, monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn_full.cert))
    with emulator_for(coturn_full) as emulator, replicas(
        emulator, 1, "--cors-origin", ORIGIN, env={"ORGA_PROXY_SHARED_SECRET": SHARED_SECRET}
    ) as (replica,):
        route = replica.url + "/api/orga-client-secrets"
        refused = doctor(monkeypatch, capsys, caplog, emulator, "--route", route, secrets=(SHARED_SECRET,))
        status = refused.group("route")[0]
        assert status["verdict"] == "fail" and "HTTP 401" in status["detail"] and "--header" in status["advice"]
        assert refused.code == 1

        run = doctor(
            monkeypatch, capsys, caplog, emulator, "--route", route,
            "--header", f"Authorization: Bearer {SHARED_SECRET}", "--origin", ORIGIN, secrets=(SHARED_SECRET,),
        )
    checks = {c["name"]: c for c in run.group("route")}
    assert {name: c["verdict"] for name, c in checks.items()} == {
        "status": "ok", "no-store": "ok", "JSON shape": "ok", "CORS": "ok"
    }, checks
    assert "Authorization" in checks["status"]["detail"]  # the header's name, never its value
    assert "refreshAfter" in checks["JSON shape"]["detail"]
    assert run.code == 0, run.out
    assert SHARED_SECRET not in "".join(replica.stderr)


def test_without_aioice_the_ice_checks_are_one_line(emulator: RunningEmulator, tmp_path: Path) -> None:
    # A fresh interpreter where importing aioice fails, as in an install without the doctor extra.
    script = "import sys; sys.modules['aioice'] = None\nfrom orga_ai.cli import main\nsys.exit(main(['doctor']))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env.update({"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": emulator.base_url})
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stdout.splitlines() if "aioice" in line]
    assert len(lines) == 1 and "pip install 'orga-ai[doctor]'" in lines[0], done.stdout
    assert done.returncode == 0, done.stdout


def test_against_a_plain_orga_ai_emulator_a_session_can_be_set_up(tmp_path: Path) -> None:
    # docs/doctor.md's recipe, as a user runs it: `orga-ai emulator`, then `orga-ai doctor` with its export line.
    from tests.emulator.test_cli import cli

    with cli() as (url, _):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
        env.update({"ORGA_API_KEY": "sk_orga_ai_local_emulator_dev_key", "ORGA_BASE_URL": url})
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "orga_ai.cli", "doctor", "--json"], env=env,
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        took = time.monotonic() - started
    run = Run(done.returncode, done.stdout)
    assert run.code == 0, run.out
    assert took < 4, took  # no probe waits out its timeout
    [probe] = run.probes()
    assert probe["verdict"] == "ok" and probe["name"] == f"stun:127.0.0.1:{url.rsplit(':', 1)[1]} over UDP"
    assert run.checks["summary"]["verdict"] == "ok"
