"""Which name the caller used and who the caller is: the ``Host`` allowlist (against DNS rebinding) and the client's
address behind trusted reverse proxies (``X-Forwarded-For``), as Starlette's ``TrustedHostMiddleware`` and uvicorn's
proxy headers do, framework-neutral so the function entry points have them too."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ._errors import ProxyError
from ._request import ProxyRequest

__all__ = ["Hosts", "host_name"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _hop_address(hop: str) -> str | None:
    """The address of one ``X-Forwarded-For`` hop, written ``ip``, ``ip:port``, ``[v6]`` or ``[v6]:port`` (proxies
    differ); None when it is none of these."""
    if hop.startswith("["):
        inner, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        hop = inner
    elif hop.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        host, _, port = hop.partition(":")
        if not port.isdigit():
            return None
        hop = host
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def _valid_port(port: str) -> bool:
    return port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536


def host_name(host: str) -> str | None:
    """The name in a lower-cased ``Host`` header, or None unless the header is ``name``, ``name:port``, ``[v6]`` or
    ``[v6]:port`` with a port of 1-65535 (``[::1]evil.example`` and ``localhost:x`` are not loopback)."""
    if host.startswith("["):
        end = host.find("]") + 1
        if not end:
            return None
        rest = host[end:]
        if rest and not (rest[0] == ":" and _valid_port(rest[1:])):
            return None
        return host[:end]
    name, colon, port = host.partition(":")  # an unbracketed IPv6 address leaves ":..." as its port: refused
    if colon and not _valid_port(port):
        return None
    return name.rstrip(".") or None


class Hosts:
    """The ``Host`` names a route answers (empty: any) and the proxies whose ``X-Forwarded-For`` it believes."""

    __slots__ = ("allowed", "trusted")

    def __init__(self, allowed: Iterable[str], trusted: tuple[Network, ...]) -> None:
        self.allowed = frozenset(h.strip().lower().rstrip(".") for h in allowed if h.strip())
        self.trusted = trusted

    def allows(self, host: str) -> bool:
        """Whether a ``Host`` header names this server: one of the allowed names (by name, or by name and port), or
        anything when there is no allowlist."""
        if not self.allowed:
            return True
        host = host.strip().lower()
        name = host_name(host)
        return name is not None and (name in self.allowed or host in self.allowed)

    def check(self, request: ProxyRequest) -> None:
        """ProxyError(400) unless the request's ``Host`` is allowed."""
        host = request.headers.get("host", "")
        if not self.allows(host):
            raise ProxyError.of("host_not_allowed", detail=f"host refused ({len(host)} chars)")

    def client_ip(self, request: ProxyRequest) -> str | None:
        """The caller's address: the TCP peer, or, when the peer is a trusted proxy, the right-most address of
        ``X-Forwarded-For`` that is not itself a trusted proxy."""
        peer = request.client_host
        if not self.trusted or peer is None or not self.is_trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        client = peer
        for written in reversed(hops):
            hop = _hop_address(written)
            if hop is None:
                break  # a garbled hop: trust nothing further left of it
            client = hop
            if not self.is_trusted(hop):
                break
        return client

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)
