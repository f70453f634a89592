"""The warm pool of AsyncOrgaAI, against the emulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orga_ai import AsyncOrgaAI, OrgaAIAuthenticationError, OrgaAIConfigurationError
from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import run_emulator


def client_for(emulator: Any, **kwargs: Any) -> AsyncOrgaAI:
    return AsyncOrgaAI(api_key=emulator.api_key, base_url=emulator.base_url, **kwargs)


def minted(emulator: Any) -> int:
    return sum(1 for r in emulator.requests() if r["path"] == "/v1/realtime/client-secrets")


async def test_pool_is_off_by_default(emulator: Any) -> None:
    async with client_for(emulator) as client:
        assert client.pool_stats is None
        await client.get_session_config()
        await asyncio.sleep(0.1)
    assert minted(emulator) == 1


async def test_warm_up_fills_the_pool_and_hits_skip_the_round_trips(emulator: Any) -> None:
    async with client_for(emulator, prefetch=3) as client:
        assert await client.warm_up(timeout=5)
        assert minted(emulator) == 3
        emulator.arm(path="*", count=100, latency_ms=400)  # any live exchange now takes >= 0.8 s
        started = time.perf_counter()
        session = await client.get_session_config()
        assert time.perf_counter() - started < 0.2
        stats = client.pool_stats
        assert stats is not None
        assert (stats.hits, stats.misses) == (1, 0)
        assert session.seconds_left() is not None
        emulator.clear_faults()


async def test_each_pooled_config_is_handed_out_once(emulator: Any) -> None:
    async with client_for(emulator, prefetch=3) as client:
        await client.warm_up(timeout=5)
        sessions = await asyncio.gather(*(client.get_session_config() for _ in range(12)))
        tokens = [s.ephemeral_token for s in sessions]
        assert len(set(tokens)) == 12
        stats = client.pool_stats
        assert stats is not None
        assert stats.hits >= 3
        assert stats.hits + stats.misses == 12


async def test_configs_past_their_share_of_life_are_discarded_not_served() -> None:
    with run_emulator(EmulatorConfig(ttl=2)) as emu:
        async with client_for(emu, prefetch=2, prefetch_min_ttl_share=0.5, prefetch_refill_rate=50) as client:
            await client.warm_up(timeout=5)
            await asyncio.sleep(1.2)  # past half of a 2 s life
            session = await client.get_session_config()
            left = session.seconds_left()
            assert left is not None
            assert left >= 1.0 - 0.2
            stats = client.pool_stats
            assert stats is not None
            assert stats.discards >= 2


async def test_auth_error_empties_the_pool_and_stops_refills_until_a_live_call_succeeds(emulator: Any) -> None:
    async with client_for(emulator, prefetch=2, prefetch_refill_rate=50) as client:
        await client.warm_up(timeout=5)
        emulator.arm(path="client-secrets", count=1000, status=401)
        await client.get_session_config()  # a hit; the refill behind it meets the 401
        for _ in range(50):
            stats = client.pool_stats
            assert stats is not None
            if stats.paused:
                break
            await asyncio.sleep(0.02)
        assert stats.paused
        assert stats.size == 0
        with pytest.raises(OrgaAIAuthenticationError):
            await client.get_session_config()
        before = minted(emulator)
        await asyncio.sleep(0.3)
        assert minted(emulator) == before, "no refills while paused"
        emulator.clear_faults()
        await client.get_session_config()  # a live call succeeds: refills resume
        assert await client.warm_up(timeout=5)
        assert not client.pool_stats.paused  # type: ignore[union-attr]


async def test_refills_respect_their_rate(emulator: Any) -> None:
    async with client_for(emulator, prefetch=20, prefetch_refill_rate=5) as client:
        await client.warm_up(timeout=1.0)
        assert minted(emulator) <= 7


async def test_close_stops_refilling_and_leaves_no_task(emulator: Any) -> None:
    client = client_for(emulator, prefetch=3)
    await client.warm_up(timeout=5)
    await client.get_session_config()
    await client.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if t.get_name().startswith("orga_ai-pool")]
    before = minted(emulator)
    await asyncio.sleep(0.2)
    assert minted(emulator) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefetch": -1},
        {"prefetch": True},
        {"prefetch": 2, "prefetch_min_ttl_share": 1.5},
        {"prefetch": 2, "prefetch_refill_rate": 0},
    ],
)
def test_bad_pool_settings_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(OrgaAIConfigurationError):
        AsyncOrgaAI(api_key="sk_orga_ai_x", **kwargs)
