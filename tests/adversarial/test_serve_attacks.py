"""An anonymous client against the real ``orga-ai serve`` process, with its default settings.

The attacker's sockets come from 127.0.0.2 (``attacks.ATTACKER``); the legitimate callers, whose answers each test
asserts on, from 127.0.0.1. A test shortens a timeout only to stay fast, and then passes it as a flag
(``--request-timeout 2``...). A flag this build of ``orga-ai serve`` does not know is left out, the attack still runs
against the defaults (so its figures are measured), and the test then fails naming the missing flag.
"""

from __future__ import annotations

import contextlib
import functools
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from orga_ai.testing import RunningEmulator
from tests.proxy.test_serve import ORGA_AI, Replica
from tests.proxy.test_server_limits import tree_rss_bytes

from . import attacks
from .attacks import ATTACKER, PROBE

ROUTE = "/api/orga-client-secrets"
SECRET = "adversarial-shared-secret-0123456789"
AUTH = (("Authorization", f"Bearer {SECRET}"),)
HOST = "127.0.0.1"
MB = 1024 * 1024

REQUEST_TIMEOUT = 2.0
WRITE_TIMEOUT = 2.0
MARGIN = 2.0
"""Seconds a close may come after its timeout (a loaded CI machine)."""
PROBE_BOUND = 5.0
"""Seconds a legitimate caller may wait for its answer while an attack goes on."""
ATTACK_CONNECTIONS = 2000
CAP = 1024


@functools.cache
def known_flags() -> frozenset[str]:
    done = subprocess.run([ORGA_AI, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", done.stdout))


@dataclass
class Served:
    replica: Replica
    missing: list[str] = field(default_factory=list)
    """Flags the test asked for that this build does not have."""

    @property
    def port(self) -> int:
        return self.replica.port

    @property
    def pid(self) -> int:
        assert self.replica.process.pid is not None
        return self.replica.process.pid

    def rss(self) -> int:
        return tree_rss_bytes(self.pid)

    def assert_flags_known(self) -> None:
        assert not self.missing, f"orga-ai serve has no {', '.join(self.missing)}"


@contextlib.contextmanager
def serving(emulator: RunningEmulator, *flags: str, anonymous: bool = False) -> Iterator[Served]:
    """``orga-ai serve`` with the shared secret (from the environment, out of ``ps``) or ``--allow-anonymous``, and
    ``flags`` (each a flag and its value) the build knows."""
    given = list(flags)
    args: list[str] = []
    missing: list[str] = []
    while given:
        flag, value = given.pop(0), given.pop(0)
        if flag in known_flags():
            args += [flag, value]
        else:
            missing.append(flag)
    env = {}
    if anonymous:
        args.append("--allow-anonymous")
    else:
        env["ORGA_PROXY_SHARED_SECRET"] = SECRET
    replica = Replica(emulator, *args, env=env)
    try:
        replica.wait_ready()
        yield Served(replica, missing)
    finally:
        replica.stop()


def healthz(port: int) -> attacks.Answer:
    return attacks.get(HOST, port, "/healthz", source=PROBE, timeout=PROBE_BOUND)


def authenticated(port: int) -> attacks.Answer:
    return attacks.get(HOST, port, ROUTE, source=PROBE, headers=AUTH, timeout=PROBE_BOUND)


def report(name: str, **figures: object) -> None:
    shown = ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in figures.items()
    )
    print(f"\n[adversarial] {name}: {shown}")


def _latest(closed: dict[object, float]) -> float:
    return max(closed.values(), default=float("inf"))


# -- 1. slow bodies ---------------------------------------------------------------------------------------------------


def test_two_thousand_slow_bodies_neither_starve_legitimate_callers_nor_outlive_the_request_timeout(
    emulator: RunningEmulator, many_files: None
) -> None:
    """2,000 complete ``POST`` heads announcing 4,000 body bytes that never come, from one address, against a cap
    of 1,024 connections: /healthz and an authenticated caller are answered, and the server closes every attacker
    connection within the request timeout."""
    with (
        serving(emulator, "--max-connections", str(CAP), "--request-timeout", str(REQUEST_TIMEOUT)) as served,
        attacks.slow_bodies(HOST, served.port, source=ATTACKER, count=ATTACK_CONNECTIONS) as held,
    ):
        accepted, failed = len(held), held.failed
        health = healthz(served.port)
        caller = authenticated(served.port)
        closed = held.wait_closed(REQUEST_TIMEOUT + MARGIN)
    report(
        "slow bodies",
        connections=accepted,
        failed=failed,
        healthz_status=health.status,
        healthz_ms=health.ms,
        caller_status=caller.status,
        caller_ms=caller.ms,
        closed_in_bound=len(closed),
        latest_close_s=_latest(closed),
    )
    assert health.status == 200 and health.seconds < PROBE_BOUND, health
    assert caller.status == 200 and caller.seconds < PROBE_BOUND, caller
    assert len(closed) == accepted, f"{accepted - len(closed)} of {accepted} slow bodies still open"
    assert _latest(closed) <= REQUEST_TIMEOUT + MARGIN
    served.assert_flags_known()


def test_an_unauthenticated_post_is_refused_without_waiting_for_its_body(emulator: RunningEmulator) -> None:
    with serving(emulator) as served:
        head = attacks.head_only_post(HOST, ROUTE, content_length=4000)
        answer = attacks.exchange(HOST, served.port, head, source=ATTACKER, timeout=2.0, until_close=2.0)
    report("unauthenticated head-only POST", status=answer.status, seconds=answer.seconds, closed=answer.closed)
    assert answer.status == 401, answer
    assert answer.closed, "the connection stayed open after the 401, waiting for a body nobody will read"


# -- 2. chunked trickle -----------------------------------------------------------------------------------------------


def test_an_authenticated_chunked_trickle_is_cut_at_the_request_timeout(emulator: RunningEmulator) -> None:
    with serving(emulator, "--request-timeout", str(REQUEST_TIMEOUT)) as served:
        result = attacks.chunked_trickle(
            HOST, served.port, source=ATTACKER, headers=AUTH, interval=1.0, limit=REQUEST_TIMEOUT + MARGIN + 1
        )
    report("chunked trickle", closed_after=result.closed_after, status=result.status, chunks=result.chunks_sent)
    assert result.closed_after is not None, f"still open after {result.chunks_sent} one-byte chunks"
    assert result.closed_after <= REQUEST_TIMEOUT + MARGIN
    assert result.status in (None, 408), result
    served.assert_flags_known()


# -- 3. Expect: 100-continue ------------------------------------------------------------------------------------------


def test_an_unauthenticated_expect_100_continue_gets_no_100_but_a_refusal(emulator: RunningEmulator) -> None:
    with serving(emulator) as served:
        head = attacks.head_only_post(HOST, ROUTE, content_length=4000, headers=[("Expect", "100-continue")])
        answer = attacks.exchange(HOST, served.port, head, source=ATTACKER, timeout=2.0, until_close=2.0)
    report("unauthenticated Expect: 100-continue", status=answer.status, closed=answer.closed)
    assert answer.status != 100, "the server invited an unauthenticated body"
    assert answer.status in (401, 403), answer
    assert answer.closed


def test_an_authenticated_expect_100_continue_is_served(emulator: RunningEmulator) -> None:
    with serving(emulator) as served:
        sock = attacks.connect(HOST, served.port, source=PROBE)
        try:
            sock.sendall(
                attacks.head_only_post(HOST, ROUTE, content_length=2, headers=[*AUTH, ("Expect", "100-continue")])
            )
            sock.settimeout(1.0)
            interim = b""
            with contextlib.suppress(TimeoutError):
                interim = sock.recv(65536)  # a 100 Continue, or nothing (then the body goes anyway, as curl does)
            if interim:
                assert interim.startswith(b"HTTP/1.1 100"), interim[:80]
            sock.sendall(b"{}")
            sock.settimeout(PROBE_BOUND)
            final = sock.recv(65536)
        finally:
            attacks.abort(sock)
    assert final.startswith(b"HTTP/1.1 200"), final[:80]


# -- 4. unread pipelining ---------------------------------------------------------------------------------------------


def _pipeline_attack(emulator: RunningEmulator, connections: int, bytes_each: int) -> None:
    with serving(emulator, "--write-timeout", str(WRITE_TIMEOUT)) as served:
        before = served.rss()
        with attacks.unread_pipeline(
            HOST, served.port, source=ATTACKER, connections=connections, bytes_each=bytes_each, within=5.0
        ) as held:
            count = len(held)
            peak = served.rss()
            health = healthz(served.port)
            closed = held.wait_closed(WRITE_TIMEOUT + MARGIN)
            peak = max(peak, served.rss())
    growth = peak - before
    report(
        f"unread pipelining {connections} x {bytes_each // MB} MB",
        sent_mb=held.bytes_sent / MB,
        rss_growth_mb=growth / MB,
        healthz_status=health.status,
        healthz_ms=health.ms,
        closed_in_bound=len(closed),
        latest_close_s=_latest(closed),
    )
    assert health.status == 200 and health.seconds < PROBE_BOUND, health
    assert growth < 30 * MB, f"RSS grew {growth / MB:.1f} MB"
    assert len(closed) == count, f"{count - len(closed)} of {count} unread connections still open"
    served.assert_flags_known()


def test_two_megabytes_of_unread_pipelined_requests_are_cut_at_the_write_timeout(emulator: RunningEmulator) -> None:
    _pipeline_attack(emulator, connections=1, bytes_each=2 * MB)


def test_ten_connections_of_four_megabytes_unread_keep_the_process_bounded(emulator: RunningEmulator) -> None:
    _pipeline_attack(emulator, connections=10, bytes_each=4 * MB)


# -- 5. one client's connections --------------------------------------------------------------------------------------


def test_one_address_holding_every_connection_it_can_does_not_lock_out_the_others(
    emulator: RunningEmulator, many_files: None
) -> None:
    """127.0.0.2 opens up to 2,000 idle connections (the worker's cap is 1,024) and re-opens those the server closes;
    callers from 127.0.0.1 are still answered (the default per-address cap leaves room for them)."""
    answers: list[tuple[attacks.Answer, attacks.Answer]] = []
    held_counts: list[int] = []
    with (
        serving(emulator, "--max-connections", str(CAP)) as served,
        attacks.connection_flood(HOST, served.port, source=ATTACKER, count=ATTACK_CONNECTIONS) as flood,
    ):
        for _ in range(3):
            held_counts.append(flood.refill())
            answers.append((healthz(served.port), authenticated(served.port)))
    report(
        "connection flood",
        attacker_open=held_counts,
        opened=flood.opened,
        healthz=[(h.status, round(h.ms, 1)) for h, _ in answers],
        caller=[(c.status, round(c.ms, 1)) for _, c in answers],
    )
    for health, caller in answers:
        assert health.status == 200 and health.seconds < PROBE_BOUND, health
        assert caller.status == 200 and caller.seconds < PROBE_BOUND, caller


# -- 8. the limiter's memory ------------------------------------------------------------------------------------------

DISTINCT_CALLERS = 20_000


def _forwarded(index: int) -> bytes:
    address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
    return f"GET {ROUTE} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {address}\r\n\r\n".encode()


def test_twenty_thousand_distinct_callers_past_the_global_ceiling_leave_the_process_small(
    emulator: RunningEmulator,
) -> None:
    """Anonymous callers, told apart by the ``X-Forwarded-For`` of a trusted proxy (127.0.0.2): once the global
    ceiling is spent, every other caller is refused, and refusing them must not keep a window for each."""
    with serving(
        emulator, "--trusted-proxy", ATTACKER, "--global-rate-limit", "5/minute", "--rate-limit", "10/minute",
        anonymous=True,
    ) as served:
        # Two at a time: serve parses one request ahead of its answer, no more (test_unread_pipelining...).
        first = attacks.pipelined(HOST, served.port, [_forwarded(i) for i in range(10)], source=ATTACKER, batch=2)
        assert first[:5] == [200] * 5 and first[5:] == [429] * 5, first
        # A first 9,000 grow the allocator's arenas once and fill the bounded fingerprint caches (2 x 4,096 short
        # strings), so the figure below is what further callers cost.
        warm_up = [_forwarded(10 + i) for i in range(9000)]
        attacks.pipelined(HOST, served.port, warm_up, source=ATTACKER, batch=2, timeout=60)
        before = served.rss()
        started = time.monotonic()
        statuses = attacks.pipelined(
            HOST,
            served.port,
            [_forwarded(10_000 + i) for i in range(DISTINCT_CALLERS)],
            source=ATTACKER,
            timeout=60,
            batch=2,
        )
        seconds = time.monotonic() - started
        after = served.rss()
        health = healthz(served.port)
    growth = after - before
    report(
        "limiter memory",
        callers=DISTINCT_CALLERS,
        seconds=seconds,
        refused_429=statuses.count(429),
        rss_growth_mb=growth / MB,
        per_caller_bytes=growth / DISTINCT_CALLERS,
    )
    assert statuses.count(429) == DISTINCT_CALLERS, {s: statuses.count(s) for s in set(statuses)}
    assert health.status == 200
    assert growth < 2 * MB, f"RSS grew {growth / MB:.1f} MB for {DISTINCT_CALLERS} refused callers"


# -- 9. the other endpoints and the log -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/openapi.json", ROUTE])
def test_every_endpoint_refuses_a_foreign_host_like_the_route(path: str, emulator: RunningEmulator) -> None:
    with serving(emulator, "--allowed-host", "api.example") as served:
        foreign = attacks.get(HOST, served.port, path, source=ATTACKER, host_header="evil.example", headers=AUTH)
        own = attacks.get(HOST, served.port, "/healthz", source=PROBE, host_header="api.example")
    report(f"foreign Host on {path}", status=foreign.status)
    assert own.status == 200
    assert foreign.status == 400, (foreign.status, foreign.body[:200])


def test_websocket_upgrades_log_at_most_one_warning_and_no_install_advice(emulator: RunningEmulator) -> None:
    upgrade = (
        f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with serving(emulator) as served:
        started = len(served.replica.stderr)  # the start-up's own lines are not this test's business
        answers = [attacks.exchange(HOST, served.port, upgrade, source=ATTACKER, timeout=2.0) for _ in range(20)]
        assert healthz(served.port).status == 200
    log = served.replica.stderr[started:]  # stopped: every line it wrote has been read
    warnings = [line for line in log if "WARNING" in line]
    report("websocket upgrades", statuses=sorted({a.status for a in answers}, key=str), warning_lines=len(warnings))
    assert len(warnings) <= 1, warnings[:5]
    assert not [line for line in log if re.search(r"pip install|websocket library", line, re.IGNORECASE)]
