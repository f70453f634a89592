"""ICE policy: which of the STUN/TURN servers Orga returned a client is handed, as pure functions (no I/O).

One :class:`IcePolicy` is shared by the SDK (``get_session_config(ice=...)``), the proxy route
(``ProxyCore(ice_policy=...)``, ``orga-ai serve --ice-*``) and every adapter. It runs after the ICE response was
validated and before the session config leaves the server. The URL grammar is RFC 7064 (``stun:``/``stuns:``) and
RFC 7065 (``turn:``/``turns:``): ``scheme ":" host [":" port] ["?transport=" ("udp" / "tcp")]``, the query on TURN
URLs only. A browser refuses the whole ``RTCPeerConnection`` when one URL of its configuration is malformed (or a TURN
URL has no credentials), so one bad entry would break every call: :func:`apply_ice_policy` drops such URLs.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ._models import IceServer, SessionConfig, turn_username_expiry

__all__ = [
    "TRANSPORTS",
    "IcePolicy",
    "IceUrl",
    "apply_ice_policy",
    "filter_ice_servers",
    "parse_ice_url",
    "turn_username_expiry",
]

Transport = Literal["udp", "tcp", "tls"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
"""The transports a URL can name: ``udp`` (``stun:``, ``turn:``), ``tcp`` (``turn:?transport=tcp``) and ``tls``
(``turns:``, ``stuns:``)."""

_DEFAULT_PORTS = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}
# RFC 3986 reg-name, restricted to what a DNS name can be: letters, digits, '-', '.', '_'.
_REG_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_\-.]{0,251}[A-Za-z0-9_])?$")
_MAX_SERVERS_LIMIT = 64


class IceUrl(NamedTuple):
    """One parsed STUN/TURN URL.

    Attributes:
        url: the URL as Orga sent it.
        scheme: ``stun``, ``stuns``, ``turn`` or ``turns`` (lower case).
        host: the host name or address (IPv6 without brackets).
        port: the explicit port, or the scheme's default (3478, or 5349 for the TLS schemes).
        transport: ``udp``, ``tcp`` or ``tls``: how a client reaches the server.
    """

    url: str
    scheme: str
    host: str
    port: int
    transport: Transport

    @property
    def is_relay(self) -> bool:
        """True for TURN (``turn:``/``turns:``): the server relays media, so the client's addresses stay hidden."""
        return self.scheme in ("turn", "turns")

    @property
    def key(self) -> tuple[str, str, int, str]:
        """What makes two URLs the same server for a browser: scheme, host (case-insensitive), port, transport."""
        return (self.scheme, self.host.lower(), self.port, self.transport)


def _valid_host(host: str) -> str | None:
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        import ipaddress  # here: the SDK's import stays light, and bracketed hosts are rare

        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    if ":" in host or not _REG_NAME.match(host):
        return None
    return host


def parse_ice_url(url: str) -> IceUrl | None:
    """``url`` parsed by the RFC 7064/7065 grammar, or None when a browser would refuse it or could not use it.

    Refused: an unknown scheme, ``//`` after the scheme, an empty or malformed host, an IPv6 address without
    brackets, a port that is not 1-65535, a query on a STUN URL, a query other than ``transport=udp|tcp``, and
    ``transport=udp`` on ``turns:`` (DTLS to a TURN server, which browsers do not speak).
    """
    try:
        return _parse_cached(url)
    except TypeError:  # not a string (an unhashable value, or one without a length): not a URL at all
        return None


# Orga hands out the same few URLs on every request: the route parses each once (results are immutable).
@functools.lru_cache(maxsize=512)
def _parse_cached(url: str) -> IceUrl | None:
    return _parse(url)


def _parse(url: str) -> IceUrl | None:
    if not url or len(url) > 512 or not url.isascii() or not url.isprintable():
        return None
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or rest.startswith("/") or " " in rest:
        return None
    authority, qmark, query = rest.partition("?")
    transport: Transport = "tls" if scheme in ("stuns", "turns") else "udp"
    if qmark:
        if scheme in ("stun", "stuns"):
            return None
        name, eq, value = query.partition("=")
        value = value.lower()
        if name.lower() != "transport" or not eq or value not in ("udp", "tcp"):
            return None
        if scheme == "turns":
            if value == "udp":
                return None
        else:
            transport = "tcp" if value == "tcp" else "udp"
    if authority.startswith("["):
        end = authority.find("]")
        host_part, port_part = authority[: end + 1], authority[end + 1 :]
        if end < 0 or (port_part and not port_part.startswith(":")):
            return None
        port_text: str | None = port_part[1:] if port_part else None
    else:
        host_part, colon, port_text_raw = authority.partition(":")
        port_text = port_text_raw if colon else None
    host = _valid_host(host_part)
    if host is None:
        return None
    if port_text is None:
        port = _DEFAULT_PORTS[scheme]
    else:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    return IceUrl(url, scheme, host, port, transport)


@dataclass(frozen=True, slots=True)
class IcePolicy:
    """Which ICE servers a client is handed. Every option narrows the list; the defaults change nothing but drop
    URLs a browser would refuse.

    Attributes:
        relay_only: keep ``turn:``/``turns:`` URLs only. Use it when the client must not reveal its own addresses
            to the far end (pair it with ``iceTransportPolicy: "relay"`` in the client), or to test the relay path.
        transports: keep only URLs reached over these transports (any of ``"udp"``, ``"tcp"``, ``"tls"``; stored as
            a frozenset); None keeps all. Use it when you know your users' networks, e.g. ``{"tcp", "tls"}`` for
            corporate networks that block UDP, to spare clients the wait on servers they cannot reach.
        dedupe: drop a URL naming the same server (scheme, host, port, transport) as an earlier one, and entries
            left empty. On by default: duplicates only slow down candidate gathering.
        max_servers: hand out at most this many URLs, in Orga's order (None: no cap). Browsers gather candidates
            from every URL, and Firefox warns past four; a cap keeps gathering short when Orga lists many.
        drop_invalid: drop URLs a browser refuses or cannot use (unknown scheme, malformed host or port, bad query)
            and TURN URLs without credentials. On by default: a single such URL makes ``new RTCPeerConnection``
            throw, which fails every call.
    """

    relay_only: bool = False
    transports: Collection[str] | None = None
    dedupe: bool = True
    max_servers: int | None = None
    drop_invalid: bool = True

    def __post_init__(self) -> None:
        if self.transports is not None:
            if isinstance(self.transports, str):
                raise ValueError("transports must be a collection such as {'tcp', 'tls'}, not a string")
            chosen = frozenset(str(t).strip().lower() for t in self.transports)
            unknown = sorted(chosen - set(TRANSPORTS))
            if unknown:
                raise ValueError(f"unknown ICE transport(s) {unknown}: choose from udp, tcp, tls")
            if not chosen:
                raise ValueError("transports must name at least one of udp, tcp, tls (or be None for all)")
            object.__setattr__(self, "transports", chosen)
        if self.max_servers is not None:
            if isinstance(self.max_servers, bool) or not isinstance(self.max_servers, int):
                raise ValueError("max_servers must be a whole number or None")
            if not 1 <= self.max_servers <= _MAX_SERVERS_LIMIT:
                raise ValueError(f"max_servers must be between 1 and {_MAX_SERVERS_LIMIT}")
        for name in ("relay_only", "dedupe", "drop_invalid"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False")

    @classmethod
    def from_options(
        cls,
        *,
        relay_only: bool | None = None,
        transports: Iterable[str] | str | None = None,
        dedupe: bool | None = None,
        max_servers: int | None = None,
    ) -> IcePolicy | None:
        """The policy of the ``--ice-*`` settings (comma-separated transports allowed), or None when none is set."""
        if relay_only is None and not transports and dedupe is None and max_servers is None:
            return None
        chosen: frozenset[str] | None = None
        if transports:
            items = transports.split(",") if isinstance(transports, str) else transports
            names = [part for item in items for part in str(item).split(",")]
            chosen = frozenset(name.strip() for name in names if name.strip()) or None
        return cls(
            relay_only=bool(relay_only),
            transports=chosen,
            dedupe=True if dedupe is None else dedupe,
            max_servers=max_servers,
        )

    @classmethod
    def coerce(cls, value: IcePolicy | Mapping[str, Any] | None) -> IcePolicy | None:
        """An ``IcePolicy`` from itself, from a dict of its fields (Django settings), or None."""
        if value is None or isinstance(value, IcePolicy):
            return value
        if isinstance(value, Mapping):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - fields)
            if unknown:
                raise ValueError(f"unknown ICE policy option(s) {unknown}: choose from {sorted(fields)}")
            data = dict(value)
            if data.get("transports") is not None:
                transports = data["transports"]
                data["transports"] = frozenset(transports.split(",") if isinstance(transports, str) else transports)
            return cls(**data)
        raise ValueError(f"ice_policy must be an IcePolicy or a dict, got {type(value).__name__}")

    def describe(self) -> str:
        """A one-line summary for start-up logs."""
        parts = []
        if self.relay_only:
            parts.append("relay only")
        if self.transports is not None:
            parts.append("transports " + ",".join(t for t in TRANSPORTS if t in self.transports))
        if self.max_servers is not None:
            parts.append(f"at most {self.max_servers} URL(s)")
        if not self.dedupe:
            parts.append("no dedupe")
        if not self.drop_invalid:
            parts.append("invalid URLs kept")
        return "; ".join(parts) or "drop invalid, dedupe"


def _keep(parsed: IceUrl, server: IceServer, policy: IcePolicy) -> bool:
    if parsed.is_relay and (server.username is None or server.credential is None) and policy.drop_invalid:
        return False  # the browser throws InvalidAccessError for a TURN URL without credentials
    if policy.relay_only and not parsed.is_relay:
        return False
    return policy.transports is None or parsed.transport in policy.transports


def filter_ice_servers(servers: Iterable[IceServer], policy: IcePolicy) -> tuple[IceServer, ...]:
    """``servers`` narrowed by ``policy``; entries left with no URL are dropped, the others keep their form."""
    out: list[IceServer] = []
    seen: set[tuple[str, str, int, str, str | None]] = set()
    budget = policy.max_servers
    for server in servers:
        urls = (server.urls,) if isinstance(server.urls, str) else tuple(server.urls)
        kept: list[str] = []
        for url in urls:
            if budget is not None and budget <= 0:
                break
            parsed = parse_ice_url(url)
            if parsed is None:
                if policy.drop_invalid or policy.relay_only or policy.transports is not None:
                    continue  # an unreadable URL has no known transport: only "keep everything" keeps it
                kept.append(url)
            elif _keep(parsed, server, policy):
                # Two TURN entries on one server with different credentials are different allocations: keep both.
                identity = (*parsed.key, server.username)
                if policy.dedupe:
                    if identity in seen:
                        continue
                    seen.add(identity)
                kept.append(url)
            else:
                continue
            if budget is not None:
                budget -= 1
        if not kept:
            continue
        if isinstance(server.urls, str) or len(kept) == len(urls):
            out.append(server)  # unchanged: the same object, no copy
        else:
            out.append(dataclasses.replace(server, urls=tuple(kept)))
    return tuple(out)


def apply_ice_policy(config: SessionConfig, policy: IcePolicy | None) -> SessionConfig:
    """``config`` with its ICE servers narrowed by ``policy`` (unchanged when ``policy`` is None).

    Raises:
        OrgaAIConfigurationError: the policy left no ICE server: the client could not connect, so no config is
            handed out (loosen the policy, or ask why Orga returned no server of the kind you require).
    """
    if policy is None:
        return config
    servers = filter_ice_servers(config.ice_servers, policy)
    before = config.ice_servers
    if len(servers) == len(before) and all(a is b for a, b in zip(servers, before, strict=True)):
        return config  # nothing dropped: no copy
    if not servers:
        from ._exceptions import OrgaAIConfigurationError

        offered = sorted({p.transport + (" relay" if p.is_relay else "") for p in _parsed(config.ice_servers)})
        raise OrgaAIConfigurationError(
            f"the ICE policy ({policy.describe()}) left none of the {len(config.ice_servers)} ICE server(s) Orga "
            f"returned (offered: {', '.join(offered) or 'no usable URL'}); loosen the policy",
            step="ice",
        )
    return dataclasses.replace(config, ice_servers=servers)


def _parsed(servers: Iterable[IceServer]) -> list[IceUrl]:
    out = []
    for server in servers:
        for url in (server.urls,) if isinstance(server.urls, str) else server.urls:
            parsed = parse_ice_url(url)
            if parsed is not None:
                out.append(parsed)
    return out
