"""Through each adapter (FastAPI on the event loop, Flask and Django in request threads): every ``orga_ai`` line
written while a request is served carries its ``X-Request-ID``, with :class:`orga_ai.telemetry.JSONFormatter`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orga_ai.telemetry import JSONFormatter
from tests.proxy.conftest import bearer, make_jwt
from tests.proxy.test_route import ROUTE
from tests.support import captured_lines

from .conftest import MountFactory


@pytest.fixture
def orga_lines() -> Iterator[list[str]]:
    with captured_lines("orga_ai", formatter=JSONFormatter()) as lines:
        yield lines


def _since(lines: list[str], mark: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines[mark:]]


def test_every_line_of_a_request_carries_its_id(mount: MountFactory, orga_lines: list[str]) -> None:
    mounted = mount()
    mark = len(orga_lines)
    minted = httpx.get(mounted.url + ROUTE, headers={**bearer(make_jwt()), "X-Request-ID": "adapter-req-1"})
    assert minted.status_code == 200, minted.text
    lines = _since(orga_lines, mark)  # the access line is written before the answer goes out
    assert {line["logger"] for line in lines} >= {"orga_ai", "orga_ai.proxy.access"}, lines  # SDK steps included
    assert [line for line in lines if line.get("request_id") != "adapter-req-1"] == []

    mark = len(orga_lines)
    refused = httpx.get(mounted.url + ROUTE, headers=bearer(make_jwt(aud="other")))
    assert refused.status_code == 401
    lines = _since(orga_lines, mark)
    assert any(line["logger"] == "orga_ai.proxy.refused" for line in lines), lines
    assert [line for line in lines if line.get("request_id") != refused.headers["x-request-id"]] == []

    # Outside a request, a line has no request id; an explicit one is kept.
    logging.getLogger("orga_ai").info("between requests")
    logging.getLogger("orga_ai").info("tagged", extra={"request_id": "explicit-9"})
    between, tagged = _since(orga_lines, len(orga_lines) - 2)
    assert "request_id" not in between and tagged["request_id"] == "explicit-9"
