"""``orga-ai emulator``: what it prints, its options and ORGA_EMULATOR_* variables, and the loopback guard."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import jwt
import pytest

from orga_ai.cli import main
from orga_ai.emulator import DEV_API_KEY
from orga_ai.emulator._cli import _config_from, add_parser


@contextmanager
def cli(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Start ``orga-ai emulator`` and yield its base URL and banner; interrupt it on exit like Ctrl-C."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("ORGA_")}
    environ.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "orga_ai.cli", "emulator", "--port", "0", "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(5)]
        match = re.search(r"listening on (http://\S+)", banner[0])
        assert match, banner
        # The banner is printed before uvicorn starts serving; wait until it answers.
        for _ in range(200):
            try:
                httpx.get(match.group(1) + "/_emulator/health")
                break
            except httpx.ConnectError:
                time.sleep(0.02)
        yield match.group(1), banner
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        finally:
            if process.poll() is None:  # pragma: no cover - only when shutdown hangs
                process.kill()
                process.wait()
            assert process.stdout is not None
            assert process.stderr is not None
            errors = process.stderr.read()
            process.stdout.close()
            process.stderr.close()
    # Ctrl-C is the normal way to stop it: exit 0, no traceback.
    assert process.returncode == 0
    assert "Traceback" not in errors


def test_prints_url_dev_key_and_export_line_then_serves() -> None:
    with cli() as (url, banner):
        assert f"API key accepted: {DEV_API_KEY}" in banner[1]
        assert banner[2].strip() == f"export ORGA_BASE_URL={url} ORGA_API_KEY={DEV_API_KEY}"
        response = httpx.post(url + "/v1/realtime/client-secrets", headers={"Authorization": f"Bearer {DEV_API_KEY}"})
        assert response.status_code == 200


def test_hands_out_its_own_stun_server_by_default_and_says_so() -> None:
    with cli() as (url, banner), httpx.Client(base_url=url) as client:
        port = int(url.rsplit(":", 1)[1])
        assert banner[4].strip() == (
            f"ICE servers handed out: stun:127.0.0.1:{port} (the emulator's built-in STUN server; no TURN: pass "
            "--turn-url and --turn-secret)"
        )
        token = client.post("/v1/realtime/client-secrets", headers={"Authorization": f"Bearer {DEV_API_KEY}"})
        bearer = {"Authorization": f"Bearer {token.json()['ephemeral_token']}"}
        ice = client.get("/v1/realtime/ice-config", headers=bearer)
        assert ice.json()["iceServers"] == [{"urls": [f"stun:127.0.0.1:{port}"]}]
        # A real STUN binding request, over UDP, to the URL handed out: it answers with this socket's address.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            transaction = b"orga-ai-test"
            udp.sendto(bytes.fromhex("000100002112a442") + transaction, ("127.0.0.1", port))
            answer, _ = udp.recvfrom(2048)
        assert answer[:2] == bytes.fromhex("0101") and answer[8:20] == transaction  # a binding success response


def test_options_configure_the_emulator() -> None:
    key = "sk_orga_ai_from_the_cli"
    args = ("--api-key", key, "--ttl", "30", "--token-form", "howto", "--quota", "1",
            "--stun-url", "stun:127.0.0.1:9", "--turn-url", "turn:127.0.0.1:10", "--turn-secret", "cli-secret")
    with cli(*args) as (url, banner), httpx.Client(base_url=url) as client:
        assert key not in "".join(banner)  # a key the user chose is not printed
        token = client.post("/v1/realtime/client-secrets", headers={"Authorization": f"Bearer {key}"}).json()
        assert token["ttl"] == 30
        ice = client.get("/v1/realtime/ice-config", headers={"Authorization": f"Bearer {token['ephemeralToken']}"})
        stun, turn = ice.json()["iceServers"]
        assert (stun["urls"], turn["urls"]) == (["stun:127.0.0.1:9"], ["turn:127.0.0.1:10"])
        assert "ICE servers handed out: as given: stun:127.0.0.1:9, turn:127.0.0.1:10" in banner[4]
        limited = client.post("/v1/realtime/client-secrets", headers={"Authorization": f"Bearer {key}"})
        assert limited.status_code == 429


def test_environment_variables_configure_the_emulator() -> None:
    env = {"ORGA_EMULATOR_TTL": "15", "ORGA_EMULATOR_API_KEYS": "sk_orga_ai_env_one,sk_orga_ai_env_two"}
    with cli(env=env) as (url, _), httpx.Client(base_url=url) as client:
        response = client.post("/v1/realtime/client-secrets", headers={"Authorization": "Bearer sk_orga_ai_env_two"})
        claims = jwt.decode(response.json()["ephemeral_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] in (14, 15, 16)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["emulator", *argv])


def test_explicit_options_beat_variables_which_beat_defaults() -> None:
    env = {"ORGA_EMULATOR_TTL": "15", "ORGA_EMULATOR_PORT": "9999", "ORGA_EMULATOR_TURN_URLS": "turn:a:1, turn:b:2",
           "ORGA_EMULATOR_NO_WEBRTC": "yes"}
    config, host, port, allow_remote, _ = _config_from(_parse("--ttl", "60"), env)
    assert (config.ttl, port, host, allow_remote) == (60.0, 9999, "127.0.0.1", False)
    assert config.turn_urls == ("turn:a:1", "turn:b:2")
    assert config.webrtc is False
    config, _, port, _, _ = _config_from(_parse(), {})
    assert (config.ttl, port, config.api_keys, config.webrtc) == (120.0, 8787, (DEV_API_KEY,), True)


def test_non_loopback_host_is_refused_without_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--api-key", "sk_live_nope"], {}), ([], {"ORGA_EMULATOR_TTL": "soon"}), (["--ttl", "-1"], {})],
)
def test_bad_settings_exit_2_with_a_message(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["emulator", *argv]) == 2
    assert capsys.readouterr().err.startswith("orga-ai emulator: ")


def test_a_busy_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["emulator", "--port", str(busy.getsockname()[1])]) == 1
    assert "cannot bind" in capsys.readouterr().err
