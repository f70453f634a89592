"""The STUN/TURN side of ``orga-ai dev``: a coturn child process when one is installed, else a built-in STUN responder.

Orga always hands out ICE servers, and the SDK refuses an empty list, so the emulator must list at least one; and a
browser given an ICE server that does not answer waits out its whole gathering timeout. So the dev server runs one
that answers, on loopback: coturn (STUN and TURN, with the emulator minting TURN REST credentials for its secret),
or, without coturn, a minimal STUN binding responder (host and server-reflexive candidates only).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

from ..emulator._stun import serve_stun, udp_socket

__all__ = ["IceSetup", "serve_stun", "start_coturn", "stop_coturn", "udp_socket"]

COTURN_START_TIMEOUT = 3.0
"""Seconds coturn gets to start listening, per try, before the dev server tries again or gives up on it."""
COTURN_START_ATTEMPTS = 3
_COTURN_RELAY_PORTS = 100


@dataclass
class IceSetup:
    """The ICE servers the emulator hands out, and what runs them.

    Attributes:
        stun_urls / turn_urls / turn_secret: passed to ``EmulatorConfig``.
        description: one line for the console.
        coturn: the coturn child process, if one was started.
        stun_socket: the bound UDP socket of the built-in STUN responder, if that is used instead.
    """

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = field(default=None, repr=False)
    description: str = ""
    coturn: subprocess.Popen[bytes] | None = None
    stun_socket: socket.socket | None = None


def _free_udp_port(host: str) -> int:
    with udp_socket(host) as sock:
        return int(sock.getsockname()[1])


def _udp_port_answers(host: str, port: int) -> bool:
    # A STUN binding request with a fixed transaction id: any answer means the server is up.
    request = bytes.fromhex("000100002112a442") + b"orga-ai-dev!"
    with udp_socket(host) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, (host.strip("[]"), port))
            sock.recvfrom(2048)
        except OSError:
            return False
    return True


def start_coturn(host: str, *, verbose: bool = False) -> IceSetup | None:
    """Start coturn on a free loopback port with a random REST-API secret; None when coturn is not installed, or
    when it did not start in :data:`COTURN_START_ATTEMPTS` tries.

    Each try takes fresh ports: a port is found free and only then bound by coturn (UDP and TCP, and the next port
    for its RFC 5780 alternate address), so another process may take one in between and coturn exits."""
    binary = shutil.which("turnserver")
    if binary is None:
        return None
    for _ in range(COTURN_START_ATTEMPTS):
        started = _try_coturn(binary, host, verbose)
        if started is not None:
            return started
    return None


def _try_coturn(binary: str, host: str, verbose: bool) -> IceSetup | None:
    port = _free_udp_port(host)
    relay_low = 49152 + secrets.randbelow(16000 - _COTURN_RELAY_PORTS)
    secret = secrets.token_urlsafe(24)
    args = [
        binary, "-n", f"--listening-ip={host}", f"--relay-ip={host}", f"--listening-port={port}",
        f"--min-port={relay_low}", f"--max-port={relay_low + _COTURN_RELAY_PORTS}",
        "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=orga-ai-dev",
        "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli", "--fingerprint",
        # The browser and the emulator's peer both sit on 127.0.0.1: without this coturn answers 403 Forbidden IP.
        "--allow-loopback-peers",
        "--log-file=stdout", "--simple-log",
    ]
    output = None if verbose else subprocess.DEVNULL
    process = subprocess.Popen(args, stdout=output, stderr=output, stdin=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + COTURN_START_TIMEOUT
    while not _udp_port_answers(host, port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_coturn(process)
            return None
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return IceSetup(
        stun_urls=(f"stun:{where}",),
        turn_urls=(f"turn:{where}?transport=udp",),
        turn_secret=secret,
        description=f"coturn (STUN + TURN) on {where}, pid {process.pid}",
        coturn=process,
    )


def stop_coturn(process: subprocess.Popen[bytes]) -> None:
    """Stop a coturn child: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
