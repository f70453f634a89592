"""Which transport AsyncOrgaAI runs on: its own (asyncio + httptools) by default, aiohttp without httptools or with a
caller's session. Each in a fresh interpreter against the emulator, so what gets imported is what a deployment sees."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp

from orga_ai import AsyncOrgaAI

CALL = """
import asyncio, json, sys
{block}
from orga_ai import AsyncOrgaAI

async def main():
    async with AsyncOrgaAI() as orga:
        config = await orga.get_session_config()
        transport = type(orga._connections()).__name__
    return transport, bool(config.ephemeral_token)

transport, ok = asyncio.run(main())
print(json.dumps({{"transport": transport, "ok": ok, "aiohttp": "aiohttp" in sys.modules}}))
"""

BLOCK_HTTPTOOLS = """
import importlib.abc
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "httptools":
            raise ModuleNotFoundError("No module named 'httptools'", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def _run(emulator: Any, block: str) -> dict[str, Any]:
    env = {"ORGA_API_KEY": emulator.api_key, "ORGA_BASE_URL": emulator.base_url, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", CALL.format(block=block)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning, no unclosed session or transport
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_default_is_the_own_transport_and_never_imports_aiohttp(emulator: Any) -> None:
    assert _run(emulator, "") == {"transport": "AsyncioTransport", "ok": True, "aiohttp": False}


def test_without_httptools_the_client_falls_back_to_aiohttp(emulator: Any) -> None:
    assert _run(emulator, BLOCK_HTTPTOOLS) == {"transport": "AiohttpTransport", "ok": True, "aiohttp": True}


async def test_a_callers_aiohttp_session_is_used_and_left_open(emulator: Any) -> None:
    async with aiohttp.ClientSession() as session:
        orga = AsyncOrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, http_client=session)
        await orga.get_session_config()
        assert type(orga._connections()).__name__ == "AiohttpTransport"
        before = len(emulator.requests())
        await orga.close()
        assert not session.closed
        async with session.post(f"{emulator.base_url}/v1/realtime/client-secrets") as answer:
            assert answer.status == 403  # no key: refused, but answered; the session is still the caller's
        assert len(emulator.requests()) == before + 1
