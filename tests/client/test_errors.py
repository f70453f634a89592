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


_TOKEN = b'{"ephemeral_token":"tok","expires_at":9999999999}'
MALFORMED = {
    # a negative chunk size: http.client passes it to a file read, which raises ValueError
    "negative chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n" + _TOKEN + b"\r\n0\r\n\r\n",
    "chunk size not hex": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + _TOKEN,
    "status line not ASCII": b"HTTP/1.1 2\xff0 OK\r\n\r\n",
    "more than 100 headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    "a 70 KB header line": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n",
    "a 70 KB trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(_TOKEN)
    + _TOKEN
    + b"\r\n0\r\nX: "
    + b"a" * 70000
    + b"\r\n\r\n",
}


class Canned:
    """A server on loopback answering every connection with the same bytes, then closing it."""

    def __init__(self, answer: bytes) -> None:
        import socket
        import threading

        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_answer_is_a_connection_error(make_client: Factory, case: str) -> None:
    server = Canned(MALFORMED[case])
    try:
        client = make_client(base_url=server.url, max_retries=0, timeout=5)
        with pytest.raises(OrgaAIConnectionError, match="connection broke"):
            await resolve(client.fetch_ephemeral_token())
    finally:
        server.close()


async def test_a_content_length_of_non_ascii_digits_is_no_untyped_error(make_client: Factory) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` a ValueError: such a length is no length (the body is read to the
    close, as http.client does) or a broken answer, never an untyped error."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \xb2\r\n\r\n" + _TOKEN
    server = Canned(answer)
    try:
        client = make_client(base_url=server.url, max_retries=0, timeout=5)
        try:
            token = await resolve(client.fetch_ephemeral_token())
        except OrgaAIConnectionError:
            pass  # aiohttp refuses the header outright
        else:
            assert token.value == "tok"
    finally:
        server.close()


async def test_a_turn_username_led_by_non_ascii_digits_carries_no_expiry(make_client: Factory) -> None:
    """A TURN REST username's expiry is ASCII digits: ``"²000000000:u"`` carries none (it was an untyped ValueError
    while building the session config)."""
    ice = b'"iceServers":[{"urls":"turn:relay.example:3478","username":"\xc2\xb2000000000:u","credential":"c"}]'
    body = _TOKEN[:-1] + b"," + ice + b"}"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    server = Canned(head + body)
    try:
        client = make_client(base_url=server.url, max_retries=0, timeout=5)
        config = await resolve(client.get_session_config())
        assert config.ice_servers[0].username == "\u00b2000000000:u"
        assert config.credentials_expire_at == config.expires_at
    finally:
        server.close()
