"""Conventions users bring from other SDKs: ``status_code`` on errors, ``with_options()`` copies that share the
connections, and no "Unclosed client session" at exit from a module-level AsyncOrgaAI that is never closed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orga_ai import OrgaAIAuthenticationError, OrgaAIConfigurationError, OrgaAIServerError
from orga_ai.testing import RunningEmulator

from .conftest import Factory, resolve

ROOT = Path(__file__).resolve().parents[2]


async def test_errors_carry_status_code_and_status(make_client: Factory) -> None:
    client = make_client(api_key="sk_orga_ai_wrong_key")
    with pytest.raises(OrgaAIAuthenticationError) as caught:
        await resolve(client.get_session_config())
    assert caught.value.status_code == 401 and caught.value.status == 401
    assert "status_code=401" in repr(caught.value)


async def test_with_options_is_a_copy_on_the_same_connections(make_client: Factory, emulator: RunningEmulator) -> None:
    orga = make_client(timeout=10.0, max_retries=2)
    await resolve(orga.get_session_config())
    quick = orga.with_options(timeout=2.5, max_retries=0)
    assert (quick.timeout, quick.max_retries) == (2.5, 0)
    assert (orga.timeout, orga.max_retries) == (10.0, 2)
    assert type(quick) is type(orga) and quick.api_key_fingerprint == orga.api_key_fingerprint
    await resolve(quick.get_session_config())
    await resolve(orga.with_options(timeout=3).fetch_ephemeral_token())
    ports = {entry["client_port"] for entry in emulator.requests()}
    assert len(emulator.requests()) == 5
    assert len(ports) == 1, ports  # one kept-alive connection served the original and both copies
    emulator.arm("client-secrets", count=1, status=503)
    with pytest.raises(OrgaAIServerError) as caught:
        await resolve(quick.fetch_ephemeral_token())
    assert getattr(caught.value, "status_code", None) == 503  # max_retries=0 on the copy: no second attempt


async def test_with_options_refuses_bad_values(make_client: Factory) -> None:
    orga = make_client()
    for bad in ({"timeout": 0}, {"timeout": -1.0}, {"max_retries": -1}, {"max_retries": 1.5}, {"max_retries": True}):
        with pytest.raises(OrgaAIConfigurationError):
            orga.with_options(**bad)


async def test_closing_a_copy_closes_the_shared_connections(make_client: Factory) -> None:
    orga = make_client()
    copy = orga.with_options(timeout=5)
    await resolve(copy.get_session_config())
    await resolve(copy.close())
    with pytest.raises(Exception, match="closed"):
        await resolve(orga.get_session_config())


def _run(code: str, emulator: RunningEmulator) -> subprocess.CompletedProcess[str]:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env |= {"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": emulator.base_url}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    # -X dev shows every ResourceWarning and asyncio's exception-handler messages, as a careful user would see them.
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_module_level_async_client_never_closed_leaves_no_warning(emulator: RunningEmulator) -> None:
    result = _run(
        "import asyncio\n"
        "from orga_ai import AsyncOrgaAI\n"
        "orga = AsyncOrgaAI()\n"
        "async def main():\n"
        "    await orga.get_session_config()\n"
        "asyncio.run(main())\n"
        "print('done')\n",
        emulator,
    )
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert "Unclosed" not in result.stderr and "ResourceWarning" not in result.stderr, result.stderr


def test_the_check_above_would_see_an_unclosed_session(emulator: RunningEmulator) -> None:
    """Control: the same shape with a bare aiohttp session does print the warning the test above looks for."""
    result = _run(
        "import asyncio, aiohttp, os\n"
        "async def main():\n"
        "    global session\n"
        "    session = aiohttp.ClientSession()\n"
        "    async with session.get(os.environ['ORGA_BASE_URL'] + '/healthz') as response:\n"
        "        await response.read()\n"
        "asyncio.run(main())\n",
        emulator,
    )
    assert "Unclosed client session" in result.stderr, result.stderr
