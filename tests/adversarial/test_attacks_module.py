"""The attack module's own guarantees: loopback only, bounded counts and bytes, and a close seen without reading."""

from __future__ import annotations

import socket

import pytest

from . import attacks


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1", "8.8.8.8", "::1"])
def test_only_loopback_targets_and_sources_are_accepted(address: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        attacks.check_loopback(address)
    with pytest.raises(ValueError, match="not a loopback address"):
        attacks.connect("127.0.0.1", 9, source="10.0.0.1")
    attacks.check_loopback("127.0.0.1", attacks.ATTACKER, "127.255.255.254")


def test_counts_and_bytes_are_bounded() -> None:
    with pytest.raises(ValueError, match="count"):
        attacks.open_held("127.0.0.1", 9, count=attacks.MAX_SOCKETS + 1)
    with pytest.raises(ValueError, match="bytes_each"):
        attacks.unread_pipeline("127.0.0.1", 9, bytes_each=attacks.MAX_BYTES_PER_SOCKET + 1)


def test_a_close_by_the_peer_is_seen_without_reading_its_unread_bytes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        held = attacks.open_held("127.0.0.1", port, source=attacks.ATTACKER, count=2)
        try:
            assert len(held) == 2 and held.open_count() == 2
            accepted, peer = server.accept()
            assert peer[0] == attacks.ATTACKER
            accepted.sendall(b"unread bytes")
            accepted.close()
            closed = held.wait_closed(2.0)
            assert len(closed) == 1 and held.open_count() == 1
        finally:
            held.close()
