"""The emulator's built-in STUN server: answers binding requests on a UDP socket, so the ICE server the emulator hands
out by default is one that works (``orga-ai emulator`` and ``orga-ai dev`` both serve it on loopback).

A browser given an ICE server that does not answer waits out its whole gathering timeout, and ``orga-ai doctor``
reports it unreachable: a placeholder URL is worse than a real, minimal server. This one gives host and
server-reflexive candidates only (no relay: that takes coturn, see docs/emulator.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

__all__ = ["StunResponder", "serve_stun", "udp_socket"]


def udp_socket(host: str, port: int = 0) -> socket.socket:
    """A UDP socket bound to ``host:port`` (0 picks a free port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    return sock


class StunResponder(asyncio.DatagramProtocol):
    """Answers STUN binding requests with the sender's address (RFC 5389 XOR-MAPPED-ADDRESS); ignores the rest."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport: a cast, not a check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        from aioice import stun

        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            return
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        response.add_fingerprint()
        if self.transport is not None:
            self.transport.sendto(bytes(response), addr)


@contextlib.asynccontextmanager
async def serve_stun(sock: socket.socket) -> AsyncIterator[asyncio.DatagramTransport]:
    """Serve :class:`StunResponder` on a bound UDP socket for the duration of the block."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(StunResponder, sock=sock)
    try:
        yield transport
    finally:
        transport.close()
