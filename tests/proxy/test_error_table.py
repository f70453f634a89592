"""One error table: every refusal of the route takes its status from ``ERRORS``, the docs' table is generated from it,
and the events beacon goes through the route's checks (it answered 204 to a foreign ``Host`` the route refused)."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx

from orga_ai.proxy import ERROR_CODES, create_app
from orga_ai.proxy._errors import ERRORS, markdown_table
from orga_ai.proxy._killswitch import KillSwitch
from orga_ai.testing import RunningEmulator
from tests.support import serve

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src" / "orga_ai"


def test_the_docs_table_is_the_error_table() -> None:
    assert markdown_table() in (ROOT / "docs" / "proxy.md").read_text()
    assert {code: entry.status for code, entry in ERRORS.items()} == {c: s for c, (s, _) in ERROR_CODES.items()}


def test_no_refusal_spells_its_own_status() -> None:
    """``ProxyError(403, "code", ...)`` or ``json_error(413, "body_too_large", ...)`` would be a second copy of the
    code's status and message: refusals use ``ProxyError.of``, answers ``error_response`` or ``body_too_large``
    (the Lambda entry point and the ASGI middleware each wrote their own 413)."""
    found = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "proxy" / "_errors.py":
            continue  # the table's home
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"ProxyError", "json_error"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []


def test_the_beacon_refuses_a_foreign_host_and_honours_the_kill_switch(emulator: RunningEmulator) -> None:
    kill_switch = KillSwitch()
    app = create_app(
        allow_anonymous=True,
        events=True,
        kill_switch=kill_switch,
        orga_options={"api_key": emulator.api_key, "base_url": emulator.base_url},
    )
    event = {"request_id": "req-1", "conversation_id": "conv-1", "state": "connected"}
    with serve(app) as url:
        foreign = httpx.post(url + "/api/orga-client-secrets/events", json=event, headers={"Host": "evil.example"})
        assert foreign.status_code == 400, foreign.text
        assert foreign.json()["error"]["code"] == "host_not_allowed"
        assert httpx.post(url + "/api/orga-client-secrets/events", json=event).status_code == 204
        kill_switch.disable()
        stopped = httpx.post(url + "/api/orga-client-secrets/events", json=event)
        assert stopped.status_code == 503 and stopped.json()["error"]["code"] == "minting_disabled"
