"""Every line written while the route serves a request carries that request's id (``X-Request-ID``): the SDK's
step and retry lines, the refusal line, the access line; in ``serve`` (JSON and text) and in the adapters."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from orga_ai.testing import RunningEmulator

from .test_route import ROUTE
from .test_serve import SECRET, Replica, replicas

AUTH = {"Authorization": f"Bearer {SECRET}"}


def _json_lines(replica: Replica, since: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in replica.stderr[since:] if line.strip()]


def _served(replica: Replica, since: int, request_id: str) -> list[dict[str, Any]]:
    """The ``orga_ai`` lines written since ``since``, once the access line of ``request_id`` is out (bounded wait:
    access lines are written in batches)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = _json_lines(replica, since)
        if any(line.get("event") == "orga_proxy_request" and line.get("request_id") == request_id for line in lines):
            return [line for line in lines if line["logger"].startswith("orga_ai")]
        time.sleep(0.05)
    raise AssertionError("no access line for " + request_id + ":\n" + "".join(replica.stderr[since:]))


def test_serve_json_puts_the_request_id_on_the_retry_and_refusal_lines(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, "--shared-secret", SECRET, "--log-format", "json", "--log-level", "debug") as (
        replica,
    ):
        mark = len(replica.stderr)
        emulator.arm("client-secrets", count=1, status=503)  # one 503, then the SDK's retry succeeds
        minted = httpx.get(replica.url + ROUTE, headers=AUTH, timeout=10)
        assert minted.status_code == 200, minted.text
        request_id = minted.headers["x-request-id"]
        lines = _served(replica, mark, request_id)
        assert any("retrying" in line["message"] for line in lines), lines  # the SDK's retry line is there
        assert {line["logger"] for line in lines} >= {"orga_ai", "orga_ai.proxy.access"}
        assert [line for line in lines if line.get("request_id") != request_id] == []

        mark = len(replica.stderr)
        refused = httpx.get(replica.url + ROUTE, headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert refused.status_code == 401
        refused_id = refused.headers["x-request-id"]
        lines = _served(replica, mark, refused_id)
        assert any(line["logger"] == "orga_ai.proxy.refused" for line in lines), lines
        assert [line for line in lines if line.get("request_id") != refused_id] == []
    text = "".join(replica.stderr)
    assert SECRET not in text and emulator.api_key not in text and minted.json()["ephemeralToken"] not in text


def test_serve_text_format_shows_the_request_id(emulator: RunningEmulator) -> None:
    with replicas(emulator, 1, "--shared-secret", SECRET, "--log-level", "debug") as (replica,):
        mark = len(replica.stderr)
        emulator.arm("client-secrets", count=1, status=503)
        minted = httpx.get(replica.url + ROUTE, headers={**AUTH, "X-Request-ID": "text-req-7"}, timeout=10)
        assert minted.status_code == 200, minted.text
        deadline = time.monotonic() + 10
        while '"request_id":"text-req-7"' not in "".join(replica.stderr[mark:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        sdk = [line for line in replica.stderr[mark:] if " orga_ai " in line]  # the SDK's own logger's lines
        assert any("retrying" in line for line in sdk), replica.stderr[mark:]
        assert all(" orga_ai [text-req-7] " in line for line in sdk), sdk
        started = [line for line in replica.stderr[:mark] if " orga_ai.proxy " in line]
        assert started and all("[-]" in line for line in started)  # outside a request: a dash
    assert SECRET not in "".join(replica.stderr)
