"""Fifty calls in a row leave no task, socket or thread behind; no secret reaches a log line (DEBUG, aiortc and
aioice included), a repr or an error."""

from __future__ import annotations

import asyncio
import gc
import os
import threading

import pytest

import orga_ai.realtime as rt
from orga_ai import AsyncOrgaAI, OrgaAI, OrgaAIRealtimeRefusedError
from orga_ai.testing import RunningEmulator
from tests.support import captured_lines

pytestmark = pytest.mark.slow


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def own_threads() -> list[str]:
    """Threads other than the loop's default executor (a pool that aiohttp's and aioice's getaddrinfo calls grow up
    to its fixed maximum and keep: bounded, so not a leak)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


async def one_call(orga: AsyncOrgaAI) -> None:
    async with orga.realtime.connect() as call:
        await call.wait_for("conversation.created")
        call.send_audio(b"\1\0" * 960)


async def test_fifty_sequential_calls_leak_nothing(rt_emulator: RunningEmulator) -> None:
    async with AsyncOrgaAI(api_key=rt_emulator.api_key, base_url=rt_emulator.base_url, max_retries=0) as orga:
        await one_call(orga)  # warm-up: imports, the client's keep-alive connection
        await asyncio.sleep(0.2)
        gc.collect()
        tasks, fds, threads = len(asyncio.all_tasks()), open_fds(), own_threads()
        for _ in range(50):
            await one_call(orga)
        # The emulator closes its side asynchronously: wait (bounded) for it to report no call.
        for _ in range(100):
            if rt_emulator.stats()["active_calls"] == 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"the emulator still reports calls: {rt_emulator.stats()['active_calls']}")
        gc.collect()
        await asyncio.sleep(0.2)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert len(asyncio.all_tasks()) <= tasks, leftover
        assert open_fds() <= fds + 2, sorted(os.listdir("/proc/self/fd"))
        assert own_threads() == threads
        executor = asyncio.get_running_loop()._default_executor  # type: ignore[attr-defined]
        pool = len([t for t in threading.enumerate() if t.name.startswith("asyncio_")])
        assert executor is None or pool <= executor._max_workers
    assert rt_emulator.stats()["calls"] == 51


async def test_no_secret_in_debug_logs_reprs_or_errors(rt_emulator: RunningEmulator) -> None:
    with OrgaAI(api_key=rt_emulator.api_key, base_url=rt_emulator.base_url) as orga:
        config = orga.get_session_config()
    turn = config.ice_servers[-1]
    assert turn.username and turn.credential
    secrets = [config.ephemeral_token, turn.username, turn.credential]
    with captured_lines("orga_ai", "aiortc", "aioice") as lines:
        # Relay-only: the TURN username goes on the wire, and aioice logs its TURN traffic at DEBUG.
        async with rt.connect(config, base_url=rt_emulator.base_url, relay_only=True) as call:
            await call.wait_for("session.created")
            await call.update(instructions="Be brief.")
            shown = [repr(call), str(call), repr(call.timings), repr(call.events)]
        with pytest.raises(OrgaAIRealtimeRefusedError) as refused:
            await rt.connect(config, base_url=rt_emulator.base_url)  # the used token: 401
        shown += [str(refused.value), repr(refused.value)]
    # The TURN messages were logged (so the check below means something), with the username redacted.
    assert any("'USERNAME': '[redacted]'" in line for line in lines)
    text = "\n".join(lines + shown)
    for secret in secrets:
        assert secret not in text
