"""The aiortc and aioice internals ``orga_ai.realtime`` reads (``realtime/_call.py``), checked against the installed
releases: a release that moves one fails here, not as a silent ``None`` candidate type in ``orga-ai call``."""

from __future__ import annotations

import pytest

pytest.importorskip("aiortc")


def test_aiortc_parses_ice_urls_as_the_client_expects() -> None:
    from aiortc.rtcicetransport import parse_stun_turn_uri

    assert parse_stun_turn_uri("turn:127.0.0.1:3478?transport=udp")["scheme"] == "turn"
    with pytest.raises(ValueError):  # noqa: PT011 - aiortc raises a bare ValueError
        parse_stun_turn_uri("http://not-ice")


def test_the_ice_transport_keeps_its_connection_and_its_nominated_pairs() -> None:
    from aioice import Connection
    from aiortc import RTCIceGatherer, RTCIceTransport

    transport = RTCIceTransport(RTCIceGatherer())
    assert isinstance(transport._connection, Connection)
    assert isinstance(transport._connection._nominated, dict)
