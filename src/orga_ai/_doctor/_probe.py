"""ICE reachability from this host: a STUN binding or a TURN allocation per URL and transport, with aioice.

:func:`plan_probes` (pure) turns the ICE servers Orga returned into probes: ``stun:`` is a binding over UDP,
``turn:`` an allocation over UDP and over TCP (only the one its ``?transport=`` names, when it names one),
``turns:`` an allocation over TLS. :func:`run_probe` performs one
with the issued credentials, bounded by its own timeout. aioice (``orga-ai[doctor]``, also in ``orga-ai[webrtc]``)
speaks STUN/TURN; nothing here encodes a message by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._ice import parse_ice_url
from .._models import IceServer
from ._report import Check

__all__ = ["Probe", "plan_probes", "run_probe"]

_TRANSPORT_NAMES = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


@dataclass(frozen=True, slots=True)
class Probe:
    """One STUN binding or TURN allocation to try. ``credential`` never appears in a repr."""

    url: str
    kind: str  # "stun" | "turn"
    host: str
    port: int
    transport: str  # "udp" | "tcp" | "tls"
    username: str | None = field(default=None, repr=False)
    credential: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.url} over {_TRANSPORT_NAMES[self.transport]}"


def plan_probes(servers: Iterable[IceServer]) -> tuple[list[Probe], list[str]]:
    """The probes for ``servers`` (each server and transport once), and the URLs that cannot be probed (unusable)."""
    probes: list[Probe] = []
    unusable: list[str] = []
    seen: set[tuple[str, str, int, str, str | None]] = set()
    for server in servers:
        for url in (server.urls,) if isinstance(server.urls, str) else server.urls:
            parsed = parse_ice_url(url)
            if parsed is None or parsed.scheme == "stuns":  # stuns: no browser gathers over it
                unusable.append(url)
                continue
            if parsed.scheme == "stun":
                plan = [("stun", "udp")]
            elif parsed.scheme == "turn" and "?" in url:
                # ?transport=udp|tcp: a browser reaches this URL over that transport only.
                plan = [("turn", parsed.transport)]
            elif parsed.scheme == "turn":
                plan = [("turn", "udp"), ("turn", "tcp")]
            else:
                plan = [("turn", "tls")]
            for kind, transport in plan:
                key = (kind, parsed.host.lower(), parsed.port, transport, server.username)
                if key in seen:
                    continue
                seen.add(key)
                probes.append(Probe(url, kind, parsed.host, parsed.port, transport, server.username,
                                    server.credential))
    return probes, unusable


class _StunClient(asyncio.DatagramProtocol):
    """Just enough of a datagram protocol for aioice's ``stun.Transaction`` to run a binding over."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, Any] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        from aioice import stun

        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        transaction = self.transactions.get(message.transaction_id)
        if transaction is not None and message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            transaction.response_received(message, (addr[0], addr[1]))

    def send_stun(self, message: Any, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(bytes(message), addr)


class _Sink(asyncio.DatagramProtocol):
    """The protocol above a TURN allocation: it receives nothing, and says when the allocation is gone."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _binding(probe: Probe) -> tuple[str, float]:
    from aioice import stun

    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_StunClient, remote_addr=(probe.host, probe.port))
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transaction = stun.Transaction(request, (probe.host, probe.port), protocol)
        protocol.transactions[request.transaction_id] = transaction
        started = time.perf_counter()
        response, _ = await transaction.run()
        took = time.perf_counter() - started
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
        seen = f"; this host is seen as {mapped[0]}:{mapped[1]}" if mapped else ""
        return f"binding answered{seen}", took
    finally:
        transport.close()


async def _allocation(probe: Probe, context: ssl.SSLContext | None) -> tuple[str, float]:
    from aioice import turn

    started = time.perf_counter()
    relay, sink = await turn.create_turn_endpoint(
        _Sink,
        (probe.host, probe.port),
        probe.username,
        probe.credential,
        lifetime=60,
        ssl=context if probe.transport == "tls" else None,
        transport="udp" if probe.transport == "udp" else "tcp",
    )
    took = time.perf_counter() - started
    relayed = relay.get_extra_info("sockname")
    relay.close()  # deletes the allocation (a REFRESH with lifetime 0), then closes the socket
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(sink.closed), 2.0)
    where = f" (relayed address {relayed[0]}:{relayed[1]})" if relayed else ""
    return f"allocation granted{where}", took


def _explain(probe: Probe, exc: BaseException, timeout: float) -> tuple[str, str]:
    """(detail, advice) for a failed probe."""
    from aioice import stun

    where = f"{probe.host}:{probe.port} over {_TRANSPORT_NAMES[probe.transport]}"
    if isinstance(exc, stun.TransactionFailed):
        code = exc.response.error_code
        reason = exc.response.attributes.get("ERROR-CODE", (code, ""))[1]
        if code in (401, 438) and probe.kind == "turn":
            return (
                f"TURN credentials refused ({code} {reason}): the server does not accept the username/credential "
                "Orga issued",
                "the TURN server's shared secret (static-auth-secret) or clock differs from Orga's; if you run "
                "your own TURN server, align its secret, and check that its clock is right",
            )
        if code == 403:
            return (f"refused ({code} {reason})", "the TURN server forbids this client or peer address")
        return (f"the server answered an error ({code} {reason})", "check the STUN/TURN server's logs")
    if isinstance(exc, (stun.TransactionTimeout, asyncio.TimeoutError)):
        blocked = "UDP" if probe.transport == "udp" else "TCP"
        return (
            f"no answer from {where} within {timeout:g} s",
            f"a firewall may drop {blocked} to port {probe.port}, or the host is unreachable from here",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {probe.host}:{probe.port} not accepted: {exc.verify_message or exc.reason}",
            "the turns: server needs a certificate browsers trust, valid for the host name in the URL",
        )
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with {where} failed: {exc.reason or exc}", "check the TLS setup of the TURN server")
    if isinstance(exc, ConnectionRefusedError):
        return (f"connection refused by {where}", f"nothing listens on {where}, or a firewall rejects it")
    if isinstance(exc, OSError):
        return (f"{where}: {exc.strerror or exc}", "check the route from this host to the server")
    return (f"{where}: {type(exc).__name__}: {exc}", "check the STUN/TURN server")


async def run_probe(probe: Probe, timeout: float, context: ssl.SSLContext | None = None) -> Check:
    """Run one probe within ``timeout`` seconds; a failure is a non-blocking ``fail`` with what to do.

    ``context`` verifies ``turns:`` servers (default: the system's trust store). Build it once before running probes
    side by side: loading a CA bundle blocks the event loop, and would count in every probe's round trip.
    """
    if probe.transport == "tls" and context is None:
        context = ssl.create_default_context()
    started = time.perf_counter()
    try:
        if probe.kind == "stun":
            detail, rtt = await asyncio.wait_for(_binding(probe), timeout)
        else:
            detail, rtt = await asyncio.wait_for(_allocation(probe, context), timeout)
    except Exception as exc:  # noqa: BLE001 - every failure of a probe is reported, none stops the others
        took = time.perf_counter() - started
        detail, advice = _explain(probe, exc, timeout)
        credentials = "TURN credentials refused" in detail
        return Check("ice", probe.name, "fail", took, detail, advice, blocking=False,
                     data={"transport": probe.transport, "kind": probe.kind, "credentialsRefused": credentials})
    # The verdict's time is the STUN/TURN exchange (connection, TLS handshake and authentication round included for
    # TURN), not the allocation's deletion afterwards.
    return Check("ice", probe.name, "ok", rtt, f"{detail}; round trip {rtt * 1000:.0f} ms", blocking=False,
                 data={"transport": probe.transport, "kind": probe.kind, "roundTripMs": round(rtt * 1000, 1)})
