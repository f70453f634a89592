"""``orga-ai serve`` start-up checks, in a real process: a value that cannot work is one line naming the flag and its
``ORGA_PROXY_*`` variable, and exit 2, before anything listens; never a traceback, never a server on another port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orga_ai.testing import RunningEmulator
from tests.support import free_port

from .test_route import ROUTE
from .test_serve import SECRET, Replica, replicas

ORGA_AI = str(Path(sys.executable).with_name("orga-ai"))


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    full_env.update({"ORGA_API_KEY": "sk_orga_ai_startup_checks_000000", "ORGA_BASE_URL": "http://127.0.0.1:9"})
    full_env.update(env or {})
    return subprocess.run(
        [ORGA_AI, "serve", "--allow-anonymous", *args], env=full_env, capture_output=True, text=True, timeout=30
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "uvicorn" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "70000"], {}, "--port / ORGA_PROXY_PORT must be between 1 and 65535, not 70000"),
        (["--port", "-1"], {}, "--port / ORGA_PROXY_PORT must be between 1 and 65535, not -1"),
        ([], {"ORGA_PROXY_PORT": "99999"}, "--port / ORGA_PROXY_PORT must be between 1 and 65535, not 99999"),
        (["--prefetch", "-3"], {}, "--prefetch / ORGA_PROXY_PREFETCH must be a whole number between 0 (off) and 1000"),
        (["--breaker-threshold", "-1"], {}, "--breaker-threshold / ORGA_PROXY_BREAKER_THRESHOLD must be 0 (off) or"),
        (["--log-level", "verbose"], {}, "--log-level / ORGA_PROXY_LOG_LEVEL: 'verbose' is not one of debug, info"),
        (["--host", "not-a-host.invalid"], {}, "--host / ORGA_PROXY_HOST: 'not-a-host.invalid' does not resolve"),
    ],
)
def test_an_unusable_value_is_one_line_naming_the_flag_and_its_variable(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    line = one_line(serve(*args, env=env))
    assert line.startswith("orga-ai serve: ") and expected in line, line


def test_a_deny_file_missing_at_start_up_is_refused(tmp_path: Path) -> None:
    # A typo in the path must not turn the deny list (and its `*` kill switch) off while the server mints.
    absent = tmp_path / "deny.txt"
    line = one_line(serve("--deny-file", str(absent)))
    assert "--deny-file / ORGA_PROXY_DENY_FILE" in line and str(absent) in line and "missing" in line
    line = one_line(serve(env={"ORGA_PROXY_DENY_FILE": str(absent)}))
    assert "ORGA_PROXY_DENY_FILE" in line and "missing" in line


def test_a_deny_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "deny.txt"
    broken.write_bytes(b"\xff\xfe*\n")
    line = one_line(serve("--deny-file", str(broken)))
    assert "unreadable (UnicodeDecodeError)" in line


# -- start-up warnings, on a running server --------------------------------------------------------------------------

REDIS_PASSWORD = "redis-pass-Zq81-never-logged"


def test_an_unreachable_redis_is_named_at_start_up_in_readyz_and_in_each_503_line(emulator: RunningEmulator) -> None:
    dead = free_port()  # nothing listens here
    env = {"ORGA_PROXY_SHARED_SECRET": SECRET, "ORGA_PROXY_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{dead}/0"}
    with replicas(emulator, 1, env=env) as (replica,):
        ready = httpx.get(replica.url + "/readyz", timeout=10)
        refused = httpx.get(replica.url + ROUTE, headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
        wait_for_line(replica, '"status":503')
    where = f"redis://127.0.0.1:{dead}"
    assert ready.status_code == 503
    state = ready.json()["checks"]["rateLimiter"]
    assert state.startswith(f"unavailable: {where}: ConnectionError:") and "refused" in state.lower(), state
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "rate_limiter_unavailable"
    log = "".join(replica.stderr)
    [warning] = [line for line in replica.stderr if "does not answer a PING" in line]
    assert "WARNING" in warning and "--redis-url / ORGA_PROXY_REDIS_URL" in warning and where in warning
    [access] = [line for line in replica.stderr if '"status":503' in line]
    assert f"rate-limit storage: {where}: ConnectionError" in access, access
    assert REDIS_PASSWORD not in log + ready.text + refused.text


def wait_for_line(replica: Replica, text: str, timeout: float = 10) -> None:
    """The access log is written in batches: wait (bounded) until a line with ``text`` arrived."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in replica.stderr):
        assert time.monotonic() < deadline, "".join(replica.stderr)
        time.sleep(0.05)


def test_workers_without_redis_and_anonymous_beside_credentials_are_announced(emulator: RunningEmulator) -> None:
    env = {"ORGA_PROXY_SHARED_SECRET": SECRET}
    with replicas(emulator, 1, "--workers", "2", "--allow-anonymous", env=env) as (replica,):
        pass
    log = "".join(replica.stderr)
    assert "--workers 2 without --redis-url: each worker counts its own callers" in log, log
    assert "--allow-anonymous (ORGA_PROXY_ALLOW_ANONYMOUS) is ignored: credentials are configured" in log, log
    assert SECRET not in log


def test_a_lone_worker_with_credentials_starts_without_those_warnings(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, env={"ORGA_PROXY_SHARED_SECRET": SECRET}) as (replica,):
        pass
    log = "".join(replica.stderr)
    assert "without --redis-url" not in log and "is ignored" not in log and "PING" not in log
