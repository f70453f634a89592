"""The HTTP layer of the real ``orga-ai serve`` process: slow and oversized heads, idle keep-alive, the connection cap,
open files.

Each test starts the command as a subprocess (uvicorn serving the app in that process), with a short
``--head-timeout``.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orga_ai.testing import RunningEmulator

from .test_serve import Replica

HEAD_TIMEOUT = 2.0
HALF_OPEN = 2000
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"
MB = 1024 * 1024


@contextlib.contextmanager
def serving(emulator: RunningEmulator, *args: str) -> Iterator[Replica]:
    replica = Replica(emulator, "--allow-anonymous", "--head-timeout", str(HEAD_TIMEOUT), *args)
    try:
        replica.wait_ready()
        yield replica
    finally:
        replica.stop()


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room in this process for 2,000 client sockets plus the suite's own descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HALF_OPEN + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-file limit ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def healthz_ms(port: int) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()
    return (time.monotonic() - started) * 1000


def tree_rss_bytes(pid: int) -> int:
    """VmRSS of a process and all its descendants (uvicorn's worker processes, when there are any)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return total


def wait_closed(socks: dict[socket.socket, float], limit: float) -> dict[socket.socket, float]:
    """Wait (at most ``limit`` seconds) until the server closes each socket; socket -> seconds after its own send."""
    closed: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + limit
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if data == b"":
                    closed[sock] = time.monotonic() - socks[sock]
                    selector.unregister(sock)
    return closed


@pytest.mark.slow
def test_two_thousand_half_sent_heads_neither_starve_healthz_nor_outlive_the_head_timeout(
    emulator: RunningEmulator, many_files: None
) -> None:
    # The head timer alone, every socket from one address (tests/adversarial holds the per-address share).
    with serving(emulator, "--max-client-connections", str(HALF_OPEN + 16)) as replica:
        baseline_ms = healthz_ms(replica.port)
        socks: dict[socket.socket, float] = {}
        try:
            for _ in range(HALF_OPEN):
                sock = socket.create_connection(("127.0.0.1", replica.port), timeout=10)
                sock.sendall(HALF_HEAD)
                socks[sock] = time.monotonic()
            during_ms = healthz_ms(replica.port)
            closed = wait_closed(socks, HEAD_TIMEOUT + 10)
            after_ms = healthz_ms(replica.port)
        finally:
            for sock in socks:
                sock.close()
    latest = max(closed.values(), default=float("inf"))
    print(
        f"\n{HALF_OPEN} half-sent heads: /healthz {baseline_ms:.1f} ms before, {during_ms:.1f} ms during, "
        f"{after_ms:.1f} ms after; {len(closed)} closed, the last {latest:.2f} s after its bytes"
    )
    assert len(closed) == HALF_OPEN  # every one closed by the server
    assert latest <= HEAD_TIMEOUT + 1
    # Measured ~2-5 ms on loopback (100 ms is the target); the failure mode is waiting for the head timeout.
    assert during_ms < HEAD_TIMEOUT * 1000 / 2


def test_oversized_head_is_refused_431_without_the_process_growing(emulator: RunningEmulator) -> None:
    with serving(emulator) as replica:
        assert replica.process.pid is not None
        big = b"a" * (12 * 1024)  # under the 16 KiB default: served
        conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
        conn.request("GET", "/healthz", headers={"X-Big": big.decode()})
        assert conn.getresponse().status == 200
        conn.close()
        rss_before = tree_rss_bytes(replica.process.pid)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as sock:
                head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: "
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    sock.sendall(head)
                    for _ in range(64):  # 64 MB, unless the server hangs up first
                        sock.sendall(b"a" * MB)
                answer = b""
                with contextlib.suppress(ConnectionResetError):
                    answer = sock.recv(4096)
            # The server answers 431 and closes; a reset may race the answer, never a 200.
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:80]
        rss_after = tree_rss_bytes(replica.process.pid)
        assert healthz_ms(replica.port) < 10_000
    assert rss_after - rss_before < 16 * MB, (rss_before, rss_after)


def test_idle_keep_alive_connection_is_closed_after_the_head_timeout(emulator: RunningEmulator) -> None:
    with serving(emulator) as replica:
        sock = socket.create_connection(("127.0.0.1", replica.port), timeout=10)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sent = time.monotonic()
            closed = wait_closed({sock: sent}, HEAD_TIMEOUT + 10)
        finally:
            sock.close()
    assert sock in closed
    assert closed[sock] <= HEAD_TIMEOUT + 1


def test_server_limits_are_validated(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from orga_ai.cli import main

    monkeypatch.setenv("ORGA_API_KEY", "sk_orga_ai_test_key_0123456789")
    for flag, value in (("--head-timeout", "0"), ("--max-header-bytes", "100"), ("--max-connections", "0")):
        assert main(["serve", "--allow-anonymous", flag, value]) == 2
        assert flag in capsys.readouterr().err


def test_body_shorter_than_its_content_length_logs_no_traceback(emulator: RunningEmulator) -> None:
    with serving(emulator, "--log-level", "debug") as replica:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as sock:
                sock.sendall(
                    b"POST /api/orga-client-secrets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
                    b"0123456789"
                )
        deadline = time.monotonic() + 10
        while sum("client went away" in line for line in replica.stderr) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert healthz_ms(replica.port) < 10_000
    log = "".join(replica.stderr)
    assert log.count("client went away") == 3
    assert "Traceback" not in log and " ERROR " not in log


def test_connection_cap_fits_the_open_file_limit() -> None:
    import subprocess
    import sys

    code = """
import resource
from orga_ai.proxy._server import _fit_descriptor_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 8192))
print(_fit_descriptor_limit(4096), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
print(_fit_descriptor_limit(4096), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"the hard open-file limit ({hard}) is below 8192")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    raised, lowered = done.stdout.split("\n")[:2]
    assert raised == "4096 4352"  # the soft limit raised so 4,096 connections fit beside 256 other descriptors
    assert lowered == "768 1024"  # a hard limit of 1,024: the cap comes down instead, with a warning
    assert "does not fit the open-file limit" in done.stderr


def recv_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or 10 s of silence)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_head_trickled_a_byte_at_a_time_and_a_silent_connection_are_both_cut_at_the_head_timeout(
    emulator: RunningEmulator,
) -> None:
    # A timer that restarted at every byte (or stopped at the first one) would let the trickle live forever.
    with serving(emulator) as replica:
        silent = socket.create_connection(("127.0.0.1", replica.port), timeout=10)
        trickle = socket.create_connection(("127.0.0.1", replica.port), timeout=10)
        opened = time.monotonic()
        try:
            sent = 0
            while time.monotonic() - opened < HEAD_TIMEOUT + 2:
                try:
                    trickle.sendall(HALF_HEAD[sent % len(HALF_HEAD) : sent % len(HALF_HEAD) + 1])
                except (ConnectionResetError, BrokenPipeError):
                    break
                sent += 1
                time.sleep(0.25)
            closed = wait_closed({silent: opened, trickle: opened}, HEAD_TIMEOUT + 10)
        finally:
            silent.close()
            trickle.close()
    assert set(closed) == {silent, trickle}
    assert max(closed.values()) <= HEAD_TIMEOUT + 1


def test_the_head_cap_counts_each_head_only_not_a_body_nor_earlier_requests(emulator: RunningEmulator) -> None:
    body = b'{"pad": "%s"}' % (b"x" * (64 * 1024))  # four times the head cap, in the same write as its head
    post = (
        b"POST /api/orga-client-secrets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    with serving(emulator, "--max-body-bytes", str(128 * 1024)) as replica:
        with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as sock:
            sock.sendall(post)
            assert recv_all(sock).startswith(b"HTTP/1.1 200")
        # Three heads of 12 KiB on one keep-alive connection: 36 KiB in all, each under the 16 KiB cap.
        conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/healthz", headers={"X-Pad": "p" * 12 * 1024})
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                assert not response.will_close
        finally:
            conn.close()


def test_connections_beyond_the_cap_are_answered_503_and_closed(emulator: RunningEmulator) -> None:
    cap = 3
    with serving(emulator, "--max-connections", str(cap)) as replica:
        held = [socket.create_connection(("127.0.0.1", replica.port), timeout=10) for _ in range(cap)]
        try:
            with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as extra:
                answer = recv_all(extra)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
            assert b"connection: close" in answer.lower()
        finally:
            for sock in held:
                sock.close()
        # Once the held connections are gone (the server notices within the bound), requests are served again.
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                status = int(recv_all(sock).split(b" ", 2)[1] or 0)
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200
    assert sum("--max-connections cap" in line for line in replica.stderr) == 1
