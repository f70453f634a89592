"""``orga-ai emulator``: serve the local Orga Cloud emulator in the foreground.

Every option has an ``ORGA_EMULATOR_*`` variable; as everywhere in orga-ai, an explicit option wins over the
variable, and the variable over the default. Repeatable options take a comma-separated list in their variable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["add_parser", "run"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
T = TypeVar("T")


def add_parser(subparsers: Any) -> None:
    """Register the ``emulator`` subcommand on the ``orga-ai`` dispatcher."""
    parser = subparsers.add_parser(
        "emulator",
        help="run a local Orga Cloud emulator: tokens, ICE config, calls, faults (needs orga-ai[emulator])",
        description=(
            "Run a local stand-in for Orga Cloud. It is a development tool: its /_emulator/ admin API "
            "(faults, clock, stats) has no authentication, so it binds to loopback unless --allow-remote."
        ),
    )
    add = parser.add_argument
    add("--host", default=None, help=f"address to bind (ORGA_EMULATOR_HOST, default {DEFAULT_HOST})")
    add("--port", type=int, default=None, help=f"port, 0 for a free one (ORGA_EMULATOR_PORT, default {DEFAULT_PORT})")
    add("--api-key", action="append", default=None, dest="api_keys", metavar="KEY",
        help="an API key to accept, repeatable (ORGA_EMULATOR_API_KEYS, default the built-in dev key)")
    add("--ttl", type=float, default=None, help="token lifetime in seconds (ORGA_EMULATOR_TTL, default 120)")
    add("--token-form", choices=("api", "howto"), default=None,
        help="token JSON: api = ephemeral_token/expires_at, howto = ephemeralToken/ttl (ORGA_EMULATOR_TOKEN_FORM)")
    add("--quota", type=int, default=None,
        help="tokens per key per minute, 0 = unlimited (ORGA_EMULATOR_QUOTA, default 600)")
    add("--stun-url", action="append", default=None, dest="stun_urls", metavar="URL",
        help="STUN URL to hand out instead of the built-in STUN server, repeatable (ORGA_EMULATOR_STUN_URLS; "
        "default: the emulator's own STUN server, on the same port number over UDP)")
    add("--turn-url", action="append", default=None, dest="turn_urls", metavar="URL",
        help="TURN URL to hand out, repeatable, e.g. your coturn's (ORGA_EMULATOR_TURN_URLS; default none); "
        "give its --turn-secret too")
    add("--turn-secret", default=None,
        help="coturn static-auth-secret signing the TURN credentials (ORGA_EMULATOR_TURN_SECRET, default random)")
    add("--no-webrtc", action="store_true", default=None,
        help="answer /v1/realtime/calls with 501 as if aiortc were missing (ORGA_EMULATOR_NO_WEBRTC)")
    add("--allow-remote", action="store_true", default=None,
        help="allow a non-loopback --host (ORGA_EMULATOR_ALLOW_REMOTE); the admin API is then open to that network")
    add("--log-level", default=None, choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level (ORGA_EMULATOR_LOG_LEVEL, default info)")
    add("--agent-script", default=None, metavar="FILE",
        help="answer calls with a scripted agent instead of the echo: transcripts, replies and a WAV or a tone "
        "per utterance (ORGA_EMULATOR_AGENT_SCRIPT; docs/realtime.md)")
    parser.set_defaults(handler=run)


def _pick(explicit: T | None, env: Mapping[str, str], name: str, convert: Callable[[str], T], default: T) -> T:
    if explicit is not None:
        return explicit
    raw = env.get("ORGA_EMULATOR_" + name, "").strip()
    if not raw:
        return default
    try:
        return convert(raw)
    except ValueError:
        raise ValueError(f"ORGA_EMULATOR_{name}={raw!r} is not valid") from None


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def _config_from(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Any, str, int, bool, str]:
    """(config, host, port, allow_remote, log_level). With neither STUN nor TURN URLs given, the config hands out
    none yet: :func:`run` adds the built-in STUN server's URL once its socket is bound."""
    from ._config import DEFAULT_QUOTA_PER_MINUTE, DEFAULT_TTL, DEV_API_KEY, EmulatorConfig

    kwargs: dict[str, Any] = {
        "api_keys": tuple(_pick(args.api_keys, env, "API_KEYS", _split, [DEV_API_KEY])),
        "ttl": _pick(args.ttl, env, "TTL", float, DEFAULT_TTL),
        "token_form": _pick(args.token_form, env, "TOKEN_FORM", str, "api"),
        "quota_per_minute": _pick(args.quota, env, "QUOTA", int, DEFAULT_QUOTA_PER_MINUTE),
        "stun_urls": tuple(_pick(args.stun_urls, env, "STUN_URLS", _split, [])),
        "turn_urls": tuple(_pick(args.turn_urls, env, "TURN_URLS", _split, [])),
        "webrtc": not _pick(args.no_webrtc, env, "NO_WEBRTC", _flag, False),
    }
    script = _pick(getattr(args, "agent_script", None), env, "AGENT_SCRIPT", str, "")
    if script:
        from ._script import load_agent_script

        kwargs["agent_script"] = load_agent_script(script)
    secret = _pick(args.turn_secret, env, "TURN_SECRET", str, "")
    if secret:
        kwargs["turn_secret"] = secret
    host = _pick(args.host, env, "HOST", str, DEFAULT_HOST)
    port = _pick(args.port, env, "PORT", int, DEFAULT_PORT)
    allow_remote = _pick(args.allow_remote, env, "ALLOW_REMOTE", _flag, False)
    log_level = _pick(args.log_level, env, "LOG_LEVEL", str, "info")
    return EmulatorConfig(**kwargs), host, port, allow_remote, log_level


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Serve until interrupted. Prints the base URL, the accepted key and an ``export`` line first."""
    from ._app import create_app
    from ._config import DEV_API_KEY
    from ._server import base_url, bind, check_host, make_server

    env = os.environ if environ is None else environ
    try:
        config, host, port, allow_remote, log_level = _config_from(args, env)
        check_host(host, allow_remote)
    except ValueError as exc:
        print(f"orga-ai emulator: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"orga-ai emulator: cannot bind {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stun_sock = None
    try:
        if not config.stun_urls and not config.turn_urls:
            # Hand out a STUN server that answers: a browser given one that does not waits out its whole gathering
            # timeout, and orga-ai doctor reports it unreachable.
            stun_sock = _bind_stun(host, sock.getsockname()[1])
            stun_url = f"stun:{_where(stun_sock)}"
            config = dataclasses.replace(config, stun_urls=(stun_url,))
            ice = f"{stun_url} (the emulator's built-in STUN server; no TURN: pass --turn-url and --turn-secret)"
        else:
            given = ", ".join((*config.stun_urls, *config.turn_urls))
            ice = f"as given: {given} (nothing of the emulator's own; they must answer for calls to connect)"
        url = base_url(sock)
        key = config.api_keys[0]
        # The built-in dev key opens nothing but this emulator, so it prints; a key the user chose does not.
        shown = key if key == DEV_API_KEY else "<the --api-key you passed>"
        print(f"Orga emulator listening on {url}", flush=True)
        more = len(config.api_keys) - 1
        print(f"  API key accepted: {shown}" + (f" (+{more} more)" if more else ""))
        print(f"  export ORGA_BASE_URL={url} ORGA_API_KEY={shown}")
        print(f"  admin: {url}/_emulator/stats, faults via the X-Orga-Emulator header or POST {url}/_emulator/faults")
        print(f"  ICE servers handed out: {ice}", flush=True)
        server = make_server(create_app(config), log_level=log_level, configure_logging=True)
        try:
            asyncio.run(_serve(server, sock, stun_sock))
        except KeyboardInterrupt:
            # uvicorn has already shut down gracefully and re-raised Ctrl-C; that is the normal way to stop.
            print("Orga emulator stopped.", file=sys.stderr)
    finally:
        sock.close()
        if stun_sock is not None:
            stun_sock.close()
    return 0


def _bind_stun(host: str, port: int) -> socket.socket:
    """The built-in STUN server's UDP socket: on the HTTP port's number when it is free over UDP, else any."""
    from ._stun import udp_socket

    address = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    if address in ("0.0.0.0", "::"):  # noqa: S104 - a URL needs an address clients can reach; loopback is one
        address = "127.0.0.1" if address == "0.0.0.0" else "::1"  # noqa: S104
    try:
        return udp_socket(address, port)
    except OSError:
        return udp_socket(address)


def _where(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(server: Any, sock: socket.socket, stun_sock: socket.socket | None) -> None:
    from ._stun import serve_stun

    if stun_sock is None:
        await server.serve(sockets=[sock])
        return
    async with serve_stun(stun_sock):
        await server.serve(sockets=[sock])
