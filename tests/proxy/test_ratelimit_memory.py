"""The in-process (``memory://``) rate limiter: exact moving-window decisions, under threads and tasks alike."""

from __future__ import annotations

import asyncio
import threading

import pytest

from orga_ai.proxy._ratelimit import RateLimitDecision, RateLimiter, parse_rate


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def decide(limiter: RateLimiter, key: str = "k") -> RateLimitDecision:
    decision = limiter.hit_sync(key)
    assert decision is not None
    return decision


def test_exactly_n_pass_then_refused_with_headers(clock: Clock) -> None:
    limiter = RateLimiter("3/minute", clock=clock)
    seen = [decide(limiter) for _ in range(4)]
    assert [d.allowed for d in seen] == [True, True, True, False]
    assert [d.remaining for d in seen] == [2, 1, 0, 0]
    assert seen[0].headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "2", "RateLimit-Reset": "60"}
    refused = seen[3].headers()
    assert refused["RateLimit-Remaining"] == "0"
    assert refused["Retry-After"] == refused["RateLimit-Reset"] == "60"
    assert seen[3].scope == "principal"


def test_window_moves_one_hit_at_a_time(clock: Clock) -> None:
    limiter = RateLimiter("2/minute", clock=clock)
    assert decide(limiter).allowed
    clock.now += 20
    assert decide(limiter).allowed
    clock.now += 10
    refused = decide(limiter)
    assert not refused.allowed
    assert refused.reset_after == pytest.approx(30)  # the first hit leaves the window 60 s after it was made
    clock.now += 30  # the first hit has left the window; the second has not
    again = decide(limiter)
    assert again.allowed and again.remaining == 0
    assert not decide(limiter).allowed
    clock.now += 61  # everything has left the window
    assert decide(limiter).remaining == 1


def test_keys_are_independent_and_idle_keys_are_swept(clock: Clock) -> None:
    limiter = RateLimiter("1/second", clock=clock)
    assert decide(limiter, "a").allowed
    assert not decide(limiter, "a").allowed
    assert decide(limiter, "b").allowed
    clock.now += 5
    assert decide(limiter, "c").allowed  # triggers the sweep
    windows = limiter._memory[0][1]._windows
    assert set(windows) == {"c"}


def test_global_ceiling_refuses_with_its_own_numbers(clock: Clock) -> None:
    limiter = RateLimiter("5/minute", "2/minute", clock=clock)
    assert decide(limiter, "a").allowed
    assert decide(limiter, "b").allowed
    refused = decide(limiter, "c")
    assert not refused.allowed
    assert (refused.scope, refused.limit, refused.remaining) == ("global", 2, 0)
    passed = RateLimiter("5/minute", "9/minute", clock=clock).hit_sync("a")
    assert passed is not None and (passed.scope, passed.limit, passed.remaining) == ("principal", 5, 4)


def test_principal_refusal_does_not_count_against_the_ceiling(clock: Clock) -> None:
    limiter = RateLimiter("1/minute", "2/minute", clock=clock)
    assert decide(limiter, "a").allowed
    assert decide(limiter, "a").scope == "principal"  # refused by its own limit
    assert decide(limiter, "b").allowed  # the ceiling saw only one hit so far


def test_disabled_limiter_decides_nothing() -> None:
    limiter = RateLimiter(None)
    assert not limiter.enabled
    assert limiter.hit_sync("a") is None


def test_exactly_n_pass_across_threads() -> None:
    limiter = RateLimiter("250/hour")
    passed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(100):
            decision = limiter.hit_sync("shared")
            assert decision is not None
            with lock:
                passed.append(decision.allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert passed.count(True) == 250
    assert len(passed) == 800


async def test_exactly_n_pass_across_tasks_and_threads() -> None:
    limiter = RateLimiter("300/hour")

    async def one() -> bool:
        decision = await limiter.hit("shared")
        assert decision is not None
        return decision.allowed

    def from_thread() -> list[bool]:
        return [d is not None and d.allowed for d in (limiter.hit_sync("shared") for _ in range(200))]

    thread_side = asyncio.to_thread(from_thread)
    results = await asyncio.gather(thread_side, *(one() for _ in range(200)))
    threaded, tasks = results[0], results[1:]
    assert sum(threaded) + sum(tasks) == 300


async def test_async_and_sync_share_one_window(clock: Clock) -> None:
    limiter = RateLimiter("2/minute", clock=clock)
    first = await limiter.hit("k")
    assert first is not None and first.remaining == 1
    second = decide(limiter)
    assert second.allowed and second.remaining == 0
    third = await limiter.hit("k")
    assert third is not None and not third.allowed
    await limiter.aclose()
    limiter.close()


READABLE = [
    "10/minute",
    "100 per hour",
    "10/2 minutes",
    "1000000/second",
    "5/second;100/hour",
    "5/second, 100/hour | 9/day",
    "5/second:;100/hour",
    "7/Years",
    " 4 / 3 hours ",
    "3 PER 2 DAYS",
    "2/0010 months",
    "010/minute",
    "10/0minute",
]
# "\u017f", the long s, is one of [a-z] under re.IGNORECASE, and no granularity's letter
UNREADABLE = ["x", "10/fortnight", "10 minute", "/minute", "10/minutess", "10/minute;", "10/min", "10/\u017fecond", ""]


@pytest.mark.parametrize("rate", READABLE)
def test_rates_are_read_as_limits_reads_them(rate: str) -> None:
    # serve reads rates without importing limits (its start-up); the reading must stay limits.parse's.
    from limits import parse

    expected = parse(rate)
    mine = parse_rate(rate)
    assert (mine.amount, mine.get_expiry(), str(mine)) == (expected.amount, expected.get_expiry(), str(expected))
    assert mine.item() == expected  # what the Redis strategies are given


@pytest.mark.parametrize("rate", [rate for rate in READABLE if rate != "10/0minute"])
def test_memory_limiter_reads_rates_as_limits_does(rate: str) -> None:
    mine = RateLimiter(rate)
    theirs = RateLimiter(rate, storage_uri="redis://localhost:1")
    assert mine.describe().replace("memory://", "") == theirs.describe().replace("redis://", "")


@pytest.mark.parametrize("rate", UNREADABLE)
def test_rates_limits_refuses_are_refused(rate: str) -> None:
    from limits import parse

    with pytest.raises(ValueError, match=r"rate limit string|granularity"):
        parse(rate)
    with pytest.raises(ValueError, match="cannot read the rate limit"):
        parse_rate(rate)


@pytest.mark.parametrize("rate", ["x", "10/fortnight", "10 minute", "/minute"])
def test_memory_limiter_refuses_what_limits_refuses(rate: str) -> None:
    with pytest.raises(ValueError, match="cannot read the rate limit"):
        RateLimiter(rate)


def tracked(limiter: RateLimiter, scope: str = "principal") -> int:
    """How many callers a memory:// limit holds (what its memory grows with)."""
    return sum(len(windows) for _, windows, s in limiter._memory if s == scope)


def test_a_request_refused_by_the_global_ceiling_tracks_no_caller(clock: Clock) -> None:
    limiter = RateLimiter("10/minute", "5/minute", clock=clock)
    assert all(decide(limiter, f"early-{i}").allowed for i in range(5))
    assert tracked(limiter) == 5
    refused = [decide(limiter, f"flood-{i}") for i in range(10_000)]
    assert all(not d.allowed and d.scope == "global" for d in refused)
    assert tracked(limiter) == 5  # not one window for the 10,000 refused callers
    clock.now += 61
    again = decide(limiter, "early-0")
    assert again.allowed and again.remaining == 9  # the refused flood counted nothing against anyone


def test_callers_beyond_the_cap_forget_the_one_idle_longest(clock: Clock) -> None:
    limiter = RateLimiter("2/minute", clock=clock, max_callers=100)
    assert decide(limiter, "victim").allowed and decide(limiter, "victim").allowed
    assert not decide(limiter, "victim").allowed
    for i in range(99):
        decide(limiter, f"other-{i}")
    assert tracked(limiter) == 100
    assert not decide(limiter, "victim").allowed  # hit recently: the victim is the newest, not evicted
    for i in range(99, 300):
        decide(limiter, f"other-{i}")
    assert tracked(limiter) == 100  # bounded, whatever the number of callers
    assert decide(limiter, "victim").allowed  # forgotten (idle longest): its window started over
