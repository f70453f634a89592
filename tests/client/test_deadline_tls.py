"""The sync client's attempt deadline around the TLS handshake: no connected socket is ever left to the GC.

A listener that accepts TCP and never answers the ClientHello stalls the handshake. filterwarnings=error makes a
socket closed by the garbage collector (a ResourceWarning) fail the test.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import time
from collections.abc import Iterator

import pytest

from orga_ai import OrgaAI, OrgaAIError
from orga_ai._transports.stdlib import ConnectTimeout, SyncPool, _connect, reset_deadline, set_deadline


@contextlib.contextmanager
def stalled_tls_listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener on 127.0.0.1 whose connections the kernel accepts and nobody ever answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    accepted: list[socket.socket] = []
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                accepted.append(listener.accept()[0])
        for conn in accepted:
            conn.close()
        listener.close()


def test_deadline_spent_between_connect_and_tls_closes_the_connection() -> None:
    pool = SyncPool(max_idle=1, keepalive=1.0)
    with stalled_tls_listener() as (port, _):
        token = set_deadline(time.monotonic() + 5)
        try:
            raw = _connect(("127.0.0.1", port), 5)
        finally:
            reset_deadline(token)
        assert raw.fileno() != -1
        token = set_deadline(time.monotonic() - 1)  # the attempt's time ran out right after connect
        try:
            with pytest.raises(ConnectTimeout):
                pool._ssl_context().wrap_socket(raw, server_hostname="localhost")
        finally:
            reset_deadline(token)
        assert raw.fileno() == -1  # closed (handed to the TLS socket, which closed it), not left to the GC
        del raw
        gc.collect()
        pool.close()


def test_stalled_handshake_ends_within_the_deadline_and_leaves_no_socket() -> None:
    with stalled_tls_listener() as (port, _):
        client = OrgaAI(api_key="sk_orga_ai_test_key_0123456789", base_url=f"https://127.0.0.1:{port}", max_retries=0)
        try:
            started = time.monotonic()
            with pytest.raises(OrgaAIError):
                client.get_session_config(timeout=5, deadline=0.3)
            assert time.monotonic() - started < 5  # the deadline, not the per-phase timeout, ended it
        finally:
            client.close()
        gc.collect()
