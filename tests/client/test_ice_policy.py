"""IcePolicy: the URL grammar (RFC 7064/7065), each option as a pure function, each option through both clients
against an emulator that lists many ICE URLs, and ``refresh_after``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from orga_ai import AsyncOrgaAI, IcePolicy, IceServer, OrgaAI, OrgaAIConfigurationError, SessionConfig
from orga_ai._ice import apply_ice_policy, filter_ice_servers, parse_ice_url
from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator

from .conftest import resolve

STUN = "stun:127.0.0.1:3478"
TURN_UDP = "turn:127.0.0.1:3478?transport=udp"
TURN_TCP = "turn:127.0.0.1:3478?transport=tcp"
TURNS = "turns:localhost:5349?transport=tcp"
# Accepted by the SDK's validation (the scheme is right) but refused by a browser's RTCPeerConnection.
BAD_PORT = "stun:127.0.0.1:99999"


def urls_of(servers: Any) -> list[str]:
    out: list[str] = []
    for server in servers:
        urls = server["urls"] if isinstance(server, dict) else server.urls
        out.extend([urls] if isinstance(urls, str) else urls)
    return out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stun:stun.example.com", ("stun", "stun.example.com", 3478, "udp")),
        ("stun:127.0.0.1:19302", ("stun", "127.0.0.1", 19302, "udp")),
        ("stuns:stun.example.com", ("stuns", "stun.example.com", 5349, "tls")),
        ("turn:t.example.com?transport=tcp", ("turn", "t.example.com", 3478, "tcp")),
        ("TURN:T.example.com:80?transport=UDP", ("turn", "T.example.com", 80, "udp")),
        ("turns:t.example.com:443?transport=tcp", ("turns", "t.example.com", 443, "tls")),
        ("turn:[2001:db8::1]:3478", ("turn", "2001:db8::1", 3478, "udp")),
    ],
)
def test_urls_browsers_accept_are_parsed(url: str, expected: tuple[str, str, int, str]) -> None:
    parsed = parse_ice_url(url)
    assert parsed is not None
    assert (parsed.scheme, parsed.host, parsed.port, parsed.transport) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://t.example.com", "stun://t.example.com", "stun:", "stun:t.example.com:0", "stun:t.example.com:65536",
        "stun:t.example.com:34a", "stun:t.example.com:", "turn:2001:db8::1", "turn:[2001:db8::1", "turn:[zz::]:1",
        "stun:t.example.com?transport=udp", "turn:t.example.com?transport=sctp", "turn:t.example.com?foo=bar",
        "turns:t.example.com?transport=udp", "turn:t example.com", "turn:t.example.com/path", "stun:-bad-.com",
    ],
)
def test_urls_browsers_refuse_are_recognised(url: str) -> None:
    assert parse_ice_url(url) is None


def test_policy_options_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown ICE transport"):
        IcePolicy(transports={"quic"})
    with pytest.raises(ValueError, match="not a string"):
        IcePolicy(transports="udp")
    with pytest.raises(ValueError, match="max_servers"):
        IcePolicy(max_servers=0)
    with pytest.raises(ValueError, match="unknown ICE policy option"):
        IcePolicy.coerce({"relay": True})
    assert IcePolicy.coerce({"transports": "tcp,tls"}) == IcePolicy(transports={"tcp", "tls"})
    assert IcePolicy.from_options() is None
    assert IcePolicy.from_options(transports=["udp,tcp"]) == IcePolicy(transports=frozenset({"udp", "tcp"}))


SERVERS = (
    IceServer((STUN, STUN, BAD_PORT)),
    IceServer(STUN),
    IceServer((TURN_UDP, TURN_TCP, TURNS), "1:u", "c"),
    IceServer((TURN_UDP,), "1:u", "c"),
    IceServer(("turn:127.0.0.1:3479",)),  # no credentials: a browser throws InvalidAccessError
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (IcePolicy(), [STUN, TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(dedupe=False), [STUN, STUN, STUN, TURN_UDP, TURN_TCP, TURNS, TURN_UDP]),
        (IcePolicy(relay_only=True), [TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(transports={"tcp", "tls"}), [TURN_TCP, TURNS]),
        (IcePolicy(transports={"udp"}), [STUN, TURN_UDP]),
        (IcePolicy(max_servers=2), [STUN, TURN_UDP]),
        (IcePolicy(drop_invalid=False, dedupe=False), [STUN, STUN, BAD_PORT, STUN, TURN_UDP, TURN_TCP, TURNS,
                                                        TURN_UDP, "turn:127.0.0.1:3479"]),
    ],
)
def test_each_option_as_a_pure_function(policy: IcePolicy, expected: list[str]) -> None:
    assert urls_of(filter_ice_servers(SERVERS, policy)) == expected


def test_entries_keep_their_form_and_credentials() -> None:
    kept = filter_ice_servers(SERVERS, IcePolicy(relay_only=True))
    assert kept == (IceServer((TURN_UDP, TURN_TCP, TURNS), "1:u", "c"),)
    single = filter_ice_servers((IceServer(STUN),), IcePolicy())
    assert single[0].urls == STUN  # a string stays a string


def test_a_policy_that_leaves_nothing_is_a_typed_error() -> None:
    config = SessionConfig("tok", (IceServer(STUN),))
    with pytest.raises(OrgaAIConfigurationError, match="left none") as caught:
        apply_ice_policy(config, IcePolicy(relay_only=True))
    assert "tok" not in str(caught.value)
    assert apply_ice_policy(config, None) is config


# -- through the SDK, both clients -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_urls() -> Iterator[RunningEmulator]:
    """An emulator listing STUN twice, a malformed port and TURN over UDP, TCP and TLS."""
    config = EmulatorConfig(stun_urls=(STUN, STUN, BAD_PORT), turn_urls=(TURN_UDP, TURN_TCP, TURNS))
    with run_emulator(config) as running:
        yield running


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, [STUN, STUN, BAD_PORT, TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(), [STUN, TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(relay_only=True), [TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(transports={"tcp", "tls"}), [TURN_TCP, TURNS]),
        (IcePolicy(max_servers=1), [STUN]),
        (IcePolicy(dedupe=False), [STUN, STUN, TURN_UDP, TURN_TCP, TURNS]),
    ],
)
async def test_each_option_through_the_sdk(
    many_urls: RunningEmulator, kind: str, policy: IcePolicy | None, expected: list[str]
) -> None:
    cls = OrgaAI if kind == "sync" else AsyncOrgaAI
    client: Any = cls(api_key=many_urls.api_key, base_url=many_urls.base_url)
    try:
        config = await resolve(client.get_session_config(ice=policy))
    finally:
        await resolve(client.close())
    assert urls_of(config.ice_servers) == expected
    turn = [s for s in config.ice_servers if s.username is not None]
    assert bool(turn) == any(url.startswith("turn") for url in expected)  # the next line checks something
    assert all(s.credential for s in turn)


async def test_relay_only_without_turn_fails_in_words(make_client: Any) -> None:
    client = make_client()
    # The default emulator lists TURN over UDP only.
    with pytest.raises(OrgaAIConfigurationError, match="left none"):
        await resolve(client.get_session_config(ice=IcePolicy(transports={"tls"})))


# -- refresh_after ---------------------------------------------------------------------------------------------------


def test_refresh_after_comes_before_the_first_expiry() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    token_expiry = now + dt.timedelta(seconds=120)
    turn_expiry = int((now + dt.timedelta(seconds=60)).timestamp())
    config = SessionConfig("tok", (IceServer(TURN_UDP, f"{turn_expiry}:user", "c"),), token_expiry)
    assert config.credentials_expire_at == dt.datetime.fromtimestamp(turn_expiry, dt.timezone.utc)
    assert config.refresh_after is not None
    margin = (dt.datetime.fromtimestamp(turn_expiry, dt.timezone.utc) - config.refresh_after).total_seconds()
    assert 10 <= margin <= 13  # a fifth of the ~60 s left

    long_lived = SessionConfig("tok", (IceServer(STUN),), now + dt.timedelta(hours=1))
    assert long_lived.refresh_after is not None
    expected = now + dt.timedelta(hours=1) - dt.timedelta(seconds=60)
    assert abs((long_lived.refresh_after - expected).total_seconds()) < 1e-3
    assert SessionConfig("tok", (IceServer(STUN),)).refresh_after is None
    json = long_lived.to_client_json()
    assert json["refreshAfter"] < json["expiresAt"]
    assert SessionConfig.from_dict(json) == long_lived


async def test_refresh_after_from_the_emulator(make_client: Any) -> None:
    config = await resolve(make_client().get_session_config())
    assert config.expires_at is not None and config.refresh_after is not None
    left = (config.expires_at - config.refresh_after).total_seconds()
    assert 20 <= left <= 25  # the emulator's 120 s lifetime: refresh ~24 s before the end
