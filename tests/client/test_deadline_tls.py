"""The sync client's attempt deadline around the TLS handshake: no connected socket is ever left to the GC.

A listener that accepts TCP and never answers the ClientHello stalls the handshake. filterwarnings=error makes a
socket closed by the garbage collector (a ResourceWarning) fail the test.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import ssl
import time
from collections.abc import Iterator

import httpcore
import pytest

from orga_ai import OrgaAI, OrgaAIError
from orga_ai._client import _attempt_deadline, _deadline_backend_class


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
    backend = _deadline_backend_class()()
    with stalled_tls_listener() as (port, _):
        stream = backend.connect_tcp("127.0.0.1", port, timeout=5)
        raw = stream.get_extra_info("socket")
        assert raw.fileno() != -1
        token = _attempt_deadline.set(time.monotonic() - 1)  # the attempt's time ran out right after connect
        try:
            with pytest.raises(httpcore.ConnectTimeout):
                stream.start_tls(ssl.create_default_context(), "localhost", timeout=5)
        finally:
            _attempt_deadline.reset(token)
        assert raw.fileno() == -1  # closed by us, not left to the garbage collector
        del stream, raw
        gc.collect()


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
