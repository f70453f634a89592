"""The leak tests' measurement: a server's lingering accepted ends are not counted, a client's open socket is."""

from __future__ import annotations

import socket

from tests.reliability.support import fd_census


def test_census_leaves_out_accepted_ends_and_counts_open_clients() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        before = fd_census()
        client = socket.create_connection(("127.0.0.1", port))
        server_end, _ = listener.accept()
        try:
            during = fd_census()
            assert during.own == before.own + 1  # the client's socket; the accepted end is the server's
            assert during.clients_to.get(port) == 1
            client.close()  # the server end stays open (CLOSE_WAIT), as when a server thread is late
            after = fd_census()
            assert after.own == before.own
            assert port not in after.clients_to
        finally:
            client.close()
            server_end.close()
    # Once the listener is gone, its port is passed explicitly.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server_end, _ = listener.accept()
    try:
        client.close()
        assert fd_census([port]).own == fd_census().own - 1
    finally:
        server_end.close()
