from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

ORGA = [sys.executable, "-m", "orga_ai.cli"]


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")} | env
    return subprocess.run([*ORGA, *args], env=full_env, capture_output=True, text=True, timeout=60)


def test_session_prints_the_client_json_with_the_token_masked(emulator: Any) -> None:
    result = run(["session"], ORGA_API_KEY=emulator.api_key, ORGA_BASE_URL=emulator.base_url)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ephemeralToken"].startswith("<masked fp:")
    assert data["iceServers"]
    turn = [entry for entry in data["iceServers"] if "credential" in entry]
    assert turn, "the emulator hands out TURN servers: their credentials must be masked"
    for entry in turn:  # a TURN username with its credential is the pair a relay accepts: neither in clear
        assert entry["username"].startswith("<masked fp:") and entry["credential"].startswith("<masked")
    assert "expires:" in result.stderr and "latency: token" in result.stderr
    assert emulator.api_key not in result.stdout + result.stderr


def test_session_show_token(emulator: Any) -> None:
    result = run(["session", "--show-token"], ORGA_API_KEY=emulator.api_key, ORGA_BASE_URL=emulator.base_url)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ephemeralToken"].count(".") == 2
    turn = [entry for entry in data["iceServers"] if "credential" in entry]
    assert turn and all(":" in e["username"] and not e["credential"].startswith("<masked") for e in turn)


def test_session_with_a_bad_key_exits_non_zero_with_the_typed_error(emulator: Any) -> None:
    result = run(["session"], ORGA_API_KEY="sk_orga_ai_wrong", ORGA_BASE_URL=emulator.base_url)
    assert result.returncode == 1
    assert "OrgaAIAuthenticationError" in result.stderr
    assert "sk_orga_ai_wrong" not in result.stderr


def test_session_without_a_key_names_the_variable() -> None:
    result = run(["session"])
    assert result.returncode == 1
    assert "ORGA_API_KEY" in result.stderr


def test_help_lists_every_command() -> None:
    result = run(["--help"])
    assert result.returncode == 0
    for command in ("session", "emulator", "serve", "dev"):
        assert command in result.stdout


# -- help texts: plain sentences, defaults shown, extras named ------------------------------------------------------


def help_of(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "orga_ai.cli", *args, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())  # argparse wraps lines: compare words


@pytest.mark.parametrize("command", ["serve", "doctor", "emulator", "dev"])
def test_help_is_plain_text(command: str) -> None:
    text = help_of(command)
    for markup in ("``", ":mod:", ":class:", ":func:", "`"):
        assert markup not in text, (markup, text)


def test_serve_help_shows_each_default_and_variable() -> None:
    text = help_of("serve")
    assert "Port to listen on. [env ORGA_PROXY_PORT; default 8080]" in text
    assert "[env ORGA_PROXY_RATE_LIMIT; default 10/minute]" in text
    assert "[env ORGA_PROXY_ALLOW_ANONYMOUS; default off]" in text
    assert "pip install 'orga-ai[proxy]'" in text


def test_top_level_help_names_the_extras() -> None:
    text = help_of()
    assert "(needs orga-ai[proxy] and authentication configured)" in text
    assert "(needs orga-ai[all])" in text and "(needs orga-ai[emulator])" in text
    assert "STUN/TURN checks need orga-ai[doctor]" in text
