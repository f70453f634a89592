"""``orga-ai dev`` as a command: what it refuses, what it serves, how it stops, and the real-Orga switch."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import httpx
import pytest

from orga_ai.cli import main
from orga_ai.testing import run_emulator
from tests.dev.conftest import DevServer, start_dev
from tests.support import free_port


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])
def test_refuses_a_non_loopback_host(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "--host", host]) == 2
    assert "loopback only" in capsys.readouterr().err


def test_refuses_one_port_for_both_servers(capsys: pytest.CaptureFixture[str]) -> None:
    port = str(free_port())
    assert main(["dev", "--port", port, "--emulator-port", port]) == 2
    assert "two different ports" in capsys.readouterr().err


def test_a_busy_port_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dev", "--port", str(port), "--emulator-port", str(free_port()), "--no-coturn"]) == 1
    assert f"cannot bind 127.0.0.1:{port} (--port)" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dev", "--port", str(free_port()), "--emulator-port", str(port), "--no-coturn"]) == 1
    err = capsys.readouterr().err
    assert f"cannot bind 127.0.0.1:{port} (--emulator-port)" in err and "choose another with --emulator-port" in err


def test_serves_the_page_its_config_and_a_cors_ready_emulator(dev_server: DevServer) -> None:
    page = httpx.get(dev_server.url + "/")
    assert page.status_code == 200 and "orga-ai dev" in page.text
    # The page talks only to itself and to Orga: nothing from a CDN can load.
    assert f"connect-src 'self' {dev_server.emulator_url}" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css"):
        assert httpx.get(f"{dev_server.url}/static/{asset}").status_code == 200
    assert httpx.get(dev_server.url + "/dev/config.json").json() == {
        "orgaBaseUrl": dev_server.emulator_url,
        "emulator": True,
        "sessionEndpoint": "/api/orga-client-secrets",
    }
    # The browser calls the emulator's /v1/realtime/calls cross-origin, with a bearer token and a JSON body.
    preflight = httpx.options(
        dev_server.emulator_url + "/v1/realtime/calls",
        headers={
            "Origin": dev_server.url,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == dev_server.url
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


def test_ctrl_c_stops_every_server_and_coturn(tmp_path: Path) -> None:
    server = start_dev(tmp_path)
    coturn = re.search(r"coturn \(STUN \+ TURN\) on \S+, pid (\d+)", server.output())
    assert server.stop() == 0, server.output()
    assert server.output().rstrip().endswith("orga-ai dev: stopped")
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/")
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.emulator_url + "/_emulator/health")
    if coturn is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(int(coturn.group(1)), 0)


def test_orga_api_key_switches_to_the_real_orga_cloud(tmp_path: Path) -> None:
    # "Orga Cloud" here is a separate emulator reached through ORGA_BASE_URL, as the real one would be.
    with run_emulator() as cloud:
        server = start_dev(tmp_path, env={"ORGA_API_KEY": cloud.api_key, "ORGA_BASE_URL": cloud.base_url})
        try:
            assert f"using the real Orga Cloud at {cloud.base_url}" in server.output()
            assert "emulator (local stand-in" not in server.output()
            assert httpx.get(server.url + "/dev/config.json").json()["emulator"] is False
            session = httpx.get(server.url + "/api/orga-client-secrets")
            assert session.status_code == 200 and session.json()["ephemeralToken"]
            assert cloud.stats()["tokens_issued"] == 1
            with pytest.raises(httpx.ConnectError):
                httpx.get(server.emulator_url + "/_emulator/health")
        finally:
            assert server.stop() == 0, server.output()


async def test_builtin_stun_responder_answers_binding_requests() -> None:
    from aioice import stun

    from orga_ai._dev._ice import serve_stun, udp_socket

    loop = asyncio.get_running_loop()
    server_socket = udp_socket("127.0.0.1")
    address = server_socket.getsockname()
    received: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not received.done():
                received.set_result(data)

    try:
        async with serve_stun(server_socket):
            transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
            try:
                request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
                transport.sendto(bytes(request), address)
                response = stun.parse_message(await asyncio.wait_for(received, 5))
                client_address = transport.get_extra_info("sockname")
            finally:
                transport.close()
    finally:
        server_socket.close()
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == (client_address[0], client_address[1])


def test_the_emulator_stamps_one_date_header_from_its_clock(dev_server: DevServer) -> None:
    # The emulator's clock can be moved (clock-skew checks read Date): the server must not add a second, real one.
    response = httpx.get(dev_server.emulator_url + "/_emulator/faults")
    assert len(response.headers.get_list("date")) == 1
