"""Every failure becomes a typed error that names its step, for both clients."""

from __future__ import annotations

from typing import Any

import pytest

from orga_ai import (
    OrgaAIAuthenticationError,
    OrgaAIBadRequestError,
    OrgaAIConnectionError,
    OrgaAIError,
    OrgaAIInvalidResponseError,
    OrgaAIPermissionError,
    OrgaAIRateLimitError,
    OrgaAIServerError,
    OrgaAITimeoutError,
)

from .conftest import Factory, resolve

STATUS_CLASSES = [
    (400, OrgaAIBadRequestError),
    (401, OrgaAIAuthenticationError),
    (403, OrgaAIPermissionError),
    (404, OrgaAIBadRequestError),
    (422, OrgaAIBadRequestError),
    (429, OrgaAIRateLimitError),
    (500, OrgaAIServerError),
    (502, OrgaAIServerError),
    (503, OrgaAIServerError),
    (504, OrgaAIServerError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
@pytest.mark.parametrize("path", ["client-secrets", "ice-config"])
async def test_status_maps_to_its_class(
    make_client: Factory, emulator: Any, status: int, cls: type[OrgaAIError], path: str
) -> None:
    client = make_client(max_retries=0)
    emulator.arm(path=path, count=1, status=status)
    with pytest.raises(cls) as info:
        await resolve(client.get_session_config())
    error = info.value
    assert type(error) is cls
    assert error.status == status
    assert error.step == ("token" if path == "client-secrets" else "ice")
    assert error.request_id
    assert ("token request" if path == "client-secrets" else "ICE servers request") in str(error)
    assert str(status) in str(error)


async def test_rate_limit_error_carries_retry_after(make_client: Factory, emulator: Any) -> None:
    client = make_client(max_retries=0)
    emulator.arm(path="client-secrets", count=1, status=429, retry_after="7")
    with pytest.raises(OrgaAIRateLimitError) as info:
        await resolve(client.get_session_config())
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("body", ["non_json", "html", "wrong_types", "missing_fields", "oversized", "empty"])
@pytest.mark.parametrize("path", ["client-secrets", "ice-config"])
async def test_malformed_bodies_are_invalid_response_errors(
    make_client: Factory, emulator: Any, body: str, path: str
) -> None:
    client = make_client(max_retries=0)
    emulator.arm(path=path, count=1, body=body)
    with pytest.raises(OrgaAIInvalidResponseError) as info:
        await resolve(client.get_session_config())
    assert isinstance(info.value, OrgaAIServerError)
    assert info.value.step == ("token" if path == "client-secrets" else "ice")
    assert "invalid response" in str(info.value)


async def test_html_error_page_says_so(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, body="html")
    with pytest.raises(OrgaAIInvalidResponseError, match="HTML"):
        await resolve(make_client(max_retries=0).get_session_config())


async def test_truncated_body_is_a_typed_error(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, body="truncated")
    with pytest.raises((OrgaAIInvalidResponseError, OrgaAIConnectionError)):
        await resolve(make_client(max_retries=0).get_session_config())


async def test_dropped_connection_is_a_connection_error(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="client-secrets", count=1, drop=True)
    with pytest.raises(OrgaAIConnectionError) as info:
        await resolve(make_client(max_retries=0).get_session_config())
    assert info.value.step == "token"
    assert info.value.__cause__ is not None


async def test_refused_connection_is_a_connection_error(make_client: Factory) -> None:
    from tests.support import free_port

    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", max_retries=1)
    with pytest.raises(OrgaAIConnectionError, match="could not connect"):
        await resolve(client.get_session_config())


async def test_stall_past_the_timeout_is_a_timeout_error(make_client: Factory, emulator: Any) -> None:
    import time

    client = make_client(max_retries=0, timeout=0.5)
    emulator.arm(path="ice-config", count=1, stall=True)
    started = time.monotonic()
    with pytest.raises(OrgaAITimeoutError) as info:
        await resolve(client.get_session_config())
    assert time.monotonic() - started < 0.5 + 0.75
    assert info.value.step == "ice"


async def test_slow_but_within_timeout_succeeds(make_client: Factory, emulator: Any) -> None:
    emulator.arm(path="*", count=2, latency_ms=150)
    session = await resolve(make_client(timeout=2).get_session_config())
    assert session.ephemeral_token


async def test_fetch_ice_servers_rejects_an_empty_token(make_client: Factory, emulator: Any) -> None:
    with pytest.raises(OrgaAIError):
        await resolve(make_client().fetch_ice_servers(""))
    assert emulator.requests() == []


async def test_redirects_are_not_followed_with_the_key(make_client: Factory) -> None:
    """A 307 to another host must not carry the Authorization header there."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{target.server_address[1]}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    redirect = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, redirect)]
    for thread in threads:
        thread.start()
    try:
        client = make_client(base_url=f"http://127.0.0.1:{redirect.server_address[1]}", max_retries=0)
        with pytest.raises(OrgaAIError):
            await resolve(client.get_session_config())
        assert seen == []
    finally:
        for server in (target, redirect):
            server.shutdown()
            server.server_close()
