"""The ``orga-ai`` command line: ``session``, ``emulator``, ``serve``, ``dev``, ``doctor`` and ``call``.

Each subcommand lives beside the code it runs and registers itself through ``add_parser(subparsers)``; this module
only dispatches, so ``orga-ai --help`` stays fast and works without the optional extras installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["main"]

# (command, module that registers it, what to install when that module cannot be imported)
_SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("emulator", "orga_ai.emulator._cli", "orga-ai[emulator]"),
    ("serve", "orga_ai.proxy._cli", "orga-ai[proxy]"),
    ("dev", "orga_ai._dev", "orga-ai[all]"),
    ("doctor", "orga_ai._doctor", "orga-ai[doctor]"),
    ("call", "orga_ai.realtime._cli", "orga-ai[realtime]"),
)


_EXTRAS = {command: extra for command, _, extra in _SUBCOMMANDS}


def _mask(token: str) -> str:
    from ._secret import fingerprint

    return f"<masked {fingerprint(token)}; pass --show-token to print it>"


def _session(args: argparse.Namespace) -> int:
    from . import OrgaAI, OrgaAIError

    orga: OrgaAI | None = None
    try:
        with OrgaAI(timeout=args.timeout, base_url=args.base_url) as orga:
            started = time.perf_counter()
            token = orga.fetch_ephemeral_token()
            token_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            servers = orga.fetch_ice_servers(token)
            ice_ms = (time.perf_counter() - started) * 1000
    except OrgaAIError as exc:
        print(f"orga-ai session: {type(exc).__name__}: {_name_endpoint(str(exc), orga)}", file=sys.stderr)
        return 1
    ice = [server.to_dict() for server in servers]
    if not args.show_token:
        from ._secret import fingerprint

        for entry in ice:  # a TURN username and its credential are the pair a relay accepts: mask both
            if "username" in entry:
                entry["username"] = f"<masked {fingerprint(str(entry['username']))}>"
            if "credential" in entry:
                entry["credential"] = "<masked>"
    payload = {"ephemeralToken": token.value if args.show_token else _mask(token.value), "iceServers": ice}
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    left = token.seconds_left()
    expiry = "unknown" if token.expires_at is None else f"{token.expires_at.isoformat()} (in {left:.0f} s)"
    print(f"expires: {expiry}", file=sys.stderr)
    print(
        f"latency: token {token_ms:.1f} ms (request id {token.request_id}), ICE {ice_ms:.1f} ms",
        file=sys.stderr,
    )
    return 0


def _name_endpoint(message: str, orga: object) -> str:
    """The SDK's errors speak of "Orga Cloud"; when the base URL is another endpoint (the emulator, say), name it."""
    from ._config import DEFAULT_BASE_URL, is_loopback_host

    base_url = getattr(orga, "base_url", None)
    if not base_url or base_url.rstrip("/") == DEFAULT_BASE_URL:
        return message
    from urllib.parse import urlsplit

    local = is_loopback_host(urlsplit(base_url).hostname or "")
    where = f"the local endpoint {base_url} (ORGA_BASE_URL)" if local else f"{base_url} (ORGA_BASE_URL)"
    return message.replace("Orga Cloud", where)


def _missing_line(command: str, extra: str, error: ImportError) -> str:
    from ._extras import extra_message

    name = extra.partition("[")[2].rstrip("]")
    if error.name:
        return extra_message(f"orga-ai {command}", name, [error.name])
    return f"orga-ai {command} needs the {name} extra ({error}): pip install '{extra}'"


def _missing_extra(command: str, extra: str, error: ImportError) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        print(_missing_line(command, extra, error), file=sys.stderr)
        return 2

    return handler


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or, with ``only``, one that imports just that subcommand's module (fast start-up:
    ``orga-ai serve`` must not pay for importing the emulator or the dev server)."""
    parser = argparse.ArgumentParser(prog="orga-ai", description="Orga AI server SDK, proxy and local emulator.")
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"orga-ai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    session = sub.add_parser(
        "session",
        help="fetch one session config with ORGA_API_KEY and print it (check your key)",
        description="Fetch one session config (token + ICE servers) with the environment's ORGA_* settings.",
    )
    session.add_argument(
        "--show-token", action="store_true", help="print the token and TURN usernames and credentials in clear"
    )
    session.add_argument("--timeout", type=float, default=None, help="seconds per request (default ORGA_TIMEOUT or 10)")
    session.add_argument("--base-url", default=None, help="Orga Cloud URL (default ORGA_BASE_URL)")
    session.set_defaults(handler=_session)

    for command, module_name, extra in _SUBCOMMANDS:
        if only is not None and command != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            stub = sub.add_parser(
                command,
                help=f"(needs pip install '{extra}')",
                description=f"This command needs optional dependencies: pip install '{extra}'.",
            )
            stub.set_defaults(handler=_missing_extra(command, extra, exc), lenient=True)
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orga-ai`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    known = {command for command, _, _ in _SUBCOMMANDS} | {"session"}
    only = arguments[0] if arguments and arguments[0] in known else None
    parser = _build_parser(only)
    args, unknown = parser.parse_known_args(arguments)
    if unknown and not getattr(args, "lenient", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        result = handler(args)
    except ModuleNotFoundError as exc:
        # A subcommand imports its heavy dependencies when it runs: one of them missing is an install problem,
        # said in one line (our own modules missing would be a bug, and keeps its traceback).
        if not exc.name or exc.name.split(".")[0] == "orga_ai" or args.command not in _EXTRAS:
            raise
        print(_missing_line(args.command, _EXTRAS[args.command], exc), file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
