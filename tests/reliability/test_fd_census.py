"""The leak tests' measurement: a server's lingering accepted ends are not counted, a client's open socket is.

The census counts every descriptor of the process, so the checks run in a fresh interpreter: in the suite's own
process a thread left by an earlier test (a server, a keep-alive client) may open a socket between two censuses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.reliability.support import fd_census

ROOT = Path(__file__).resolve().parents[2]


def test_census_leaves_out_accepted_ends_and_counts_open_clients() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", "from tests.reliability.test_fd_census import census_checks; census_checks()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def census_checks() -> None:
    """The census against sockets whose ends are known; run alone in its own interpreter."""
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
