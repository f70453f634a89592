"""Fixtures of the doctor tests: real coturn processes (UDP+TCP+TLS with a self-signed certificate made here, or UDP
only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Coturn, run_coturn

__all__ = ["Coturn"]


@pytest.fixture(scope="module")
def coturn_full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn on UDP, TCP and TLS (self-signed certificate for localhost)."""
    with run_coturn(tmp_path_factory.mktemp("coturn-full"), tcp=True, tls=True) as running:
        yield running


@pytest.fixture(scope="module")
def coturn_udp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn listening on UDP only: no TCP, no TLS listener."""
    with run_coturn(tmp_path_factory.mktemp("coturn-udp"), tcp=False, tls=False) as running:
        yield running
