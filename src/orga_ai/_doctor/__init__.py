"""``orga-ai doctor``: why do calls fail? Check, from this host and with this environment's settings, everything a
session needs: configuration, the network path to Orga Cloud, the API key (one token is minted), the clock, every
STUN/TURN server over every transport, and optionally your own proxy route.

Exit status 0 when a session can be set up from here, 1 when not, 2 on a usage error. ``--json`` prints the same
verdicts for machines. Secrets never appear in the output: the key and tokens as fingerprints, TURN credentials and
route headers not at all. The ICE checks need aioice (``pip install 'orga-ai[doctor]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .._cliargs import header, seconds

__all__ = ["add_parser", "run"]

DEFAULT_ICE_TIMEOUT = 5.0
"""Seconds each STUN binding or TURN allocation may take (aioice retransmits within it)."""


def add_parser(subparsers: Any) -> None:
    """Register ``orga-ai doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="check key, network, clock, STUN/TURN reachability and your route: why calls fail "
        "(STUN/TURN checks need orga-ai[doctor])",
        description=(
            "Find out why calls fail. From this host and with this environment's ORGA_* settings, check the "
            "configuration, the network path to Orga Cloud, the API key (one token is minted), the clock, every "
            "STUN/TURN server over every transport, and optionally your own proxy route. The STUN/TURN checks need "
            "pip install 'orga-ai[doctor]'."
        ),
        epilog="Mints one token (it is never printed). Exit 0: a session can be set up from this host; 1: not.",
    )
    add = parser.add_argument
    add("--json", action="store_true", help="print the verdicts as JSON (default: a table)")
    add("--timeout", type=seconds(120), default=10.0, help="seconds for each HTTP check (default 10)")
    add("--ice-timeout", type=seconds(120), default=DEFAULT_ICE_TIMEOUT,
        help=f"seconds for each STUN binding or TURN allocation (default {DEFAULT_ICE_TIMEOUT:g})")
    add("--route", metavar="URL", help="also check your own proxy route at URL (it mints one more token)")
    add("--header", dest="headers", action="append", type=header, default=[], metavar="'NAME: VALUE'",
        help="a header to send to --route, e.g. 'Authorization: Bearer ...' (repeatable; never printed)")
    add("--origin", help="send this Origin to --route and check its CORS answer (default: no Origin)")
    add("--call", action="store_true",
        help="then place real calls (relay-only, then all candidates) and check media flows each way "
        "(uses two more tokens; pip install 'orga-ai[realtime]')")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run every check and print the report; the exit status says whether a session can be set up."""
    from ._checks import DoctorOptions, run_checks

    if (args.headers or args.origin) and not args.route:
        print("orga-ai doctor: --header and --origin go with --route URL", file=sys.stderr)
        return 2
    options = DoctorOptions(timeout=args.timeout, ice_timeout=args.ice_timeout, route=args.route,
                            route_headers=tuple(args.headers), origin=args.origin, call=args.call)
    report = asyncio.run(run_checks(options))
    try:
        print(report.dumps() if args.json else report.table(), flush=True)
    except BrokenPipeError:
        # `orga-ai doctor | head`: the reader left. Point stdout at /dev/null so the exit flush does not fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return report.exit_code
