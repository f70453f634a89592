"""The scanner finds what it must: a leak test that cannot fail is worth nothing."""

from __future__ import annotations

import logging

from orga_ai.testing import RunningEmulator
from tests.reliability.support import CANARY_API_KEY, Canary, CanaryLogHandler


def test_scanner_finds_whole_values_and_their_first_12_characters(emulator: RunningEmulator) -> None:
    from orga_ai import OrgaAI

    local = Canary()
    with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        config = client.get_session_config()
    local.add(CANARY_API_KEY, "api key")
    local.add_session_config(config)
    token = config.ephemeral_token
    credential = next(s.credential for s in config.ice_servers if s.credential)
    signature = token.rsplit(".", 1)[1]
    assert local.find(f"Authorization: Bearer {token}") == [("token", "whole")]
    assert local.find(f"sig={signature[:12]}...") == [("token", "prefix")]
    assert local.find(f"key {CANARY_API_KEY[:12]}") == [("api key", "prefix")]
    assert ("turn credential", "whole") in local.find(f'{{"credential": "{credential}"}}')
    assert local.find("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 sk_orga_ai_ fp:0123456789") == []

    # And through the logging path the harness uses.
    seen: list[str] = []
    handler = CanaryLogHandler(seen.extend, batch=1)
    logger = logging.getLogger("orga_ai.selftest")
    logger.addHandler(handler)
    logger.propagate = False  # the planted leak must not reach the session's own scan
    try:
        logger.debug("oops %s", token[:40] + signature)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert any(local.find(text) for text in seen)
