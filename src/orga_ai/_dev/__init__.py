"""``orga-ai dev``: the whole Orga flow on one machine, in one process.

It serves, side by side in one asyncio loop:

* the Orga Cloud emulator (``http://127.0.0.1:8787`` by default), unless ``ORGA_API_KEY`` is set, in which case the
  real Orga Cloud (``ORGA_BASE_URL`` or ``https://api.orga-ai.com``) is used instead;
* the proxy route ``/api/orga-client-secrets`` with anonymous access, and a demo page at ``/`` that walks through
  the client side of a session (session config, ICE gathering, ``/v1/realtime/calls``, data-channel events, echoed
  audio) on ``http://127.0.0.1:8000``.

Everything binds to loopback: the proxy lets anyone mint tokens here, and the emulator's admin API is unauthenticated.
This module only parses options; the servers are imported when the command runs, so ``orga-ai --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["DEFAULT_EMULATOR_PORT", "DEFAULT_HOST", "DEFAULT_PORT", "add_parser", "run"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
"""Port of the demo page and the proxy route."""
DEFAULT_EMULATOR_PORT = 8787
"""Port of the emulator (the same default as ``orga-ai emulator``)."""


def add_parser(subparsers: Any) -> None:
    """Register the ``dev`` subcommand on the ``orga-ai`` dispatcher."""
    parser = subparsers.add_parser(
        "dev",
        help="run the emulator, the proxy and a demo page together on loopback (needs orga-ai[all])",
        description=(
            "Serve the Orga emulator, the proxy route /api/orga-client-secrets (anonymous access) and a demo page "
            "that opens a real WebRTC session through them. With ORGA_API_KEY set, the real Orga Cloud replaces "
            "the emulator. Loopback only; Ctrl-C stops everything."
        ),
    )
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help=f"loopback address to bind (default {DEFAULT_HOST}; others are refused)")
    add("--port", type=int, default=DEFAULT_PORT,
        help=f"port of the demo page and proxy route (default {DEFAULT_PORT})")
    add("--emulator-port", type=int, default=DEFAULT_EMULATOR_PORT,
        help=f"port of the emulator (default {DEFAULT_EMULATOR_PORT}); unused with ORGA_API_KEY")
    add("--no-browser-hint", action="store_true", help="do not print the 'open this URL' hint")
    add("--ttl", type=float, default=None, help="emulator token lifetime in seconds (default 120)")
    add("--stun-url", action="append", default=None, dest="stun_urls", metavar="URL",
        help="STUN URL the emulator hands out, repeatable (default: the coturn or STUN server orga-ai dev starts)")
    add("--turn-url", action="append", default=None, dest="turn_urls", metavar="URL",
        help="TURN URL the emulator hands out, repeatable, e.g. turn:127.0.0.1:3478?transport=udp")
    add("--turn-secret", default=None,
        help="your TURN server's static-auth-secret, so the credentials the emulator mints work there")
    add("--no-coturn", action="store_true",
        help="do not start coturn even if installed: a built-in STUN responder only (no relay candidates)")
    add("--ice-relay-only", action="store_true",
        help="the proxy hands out TURN URLs only (the route's ICE policy, see docs/ice.md)")
    add("--agent-script", default=None, metavar="FILE",
        help="the emulator answers with a scripted agent instead of the echo (docs/realtime.md)")
    add("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level (default warning)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; returns the process exit code (0 after a clean stop)."""
    from ._runner import run_dev

    try:
        return run_dev(args)
    except KeyboardInterrupt:
        # Ctrl-C before the servers took over the signal (while coturn starts): everything is already cleaned up.
        return 130
