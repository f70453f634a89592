"""Running ``orga-ai dev``: bind the sockets, build the apps, serve them in one asyncio loop, stop on a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn

from .._config import API_KEY_ENV, is_loopback_host
from ..emulator._server import bind
from ..proxy._server import LimitedConfig, ServerLimits
from ._ice import IceSetup, serve_stun, start_coturn, stop_coturn, udp_socket

__all__ = ["run_dev"]

SHUTDOWN_GRACE = 2
"""Seconds open requests get to finish after Ctrl-C before uvicorn cancels them."""
LIFESPAN_SHUTDOWN_LIMIT = 5
"""Seconds the apps' own shutdown (closing WebRTC peers and clients) may take after a forced stop."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone: the runner owns them and stops every server at once.

    uvicorn's own handlers would be installed once per server, the last one winning, and re-raise the signal on exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:
            # uvicorn skips the app's lifespan shutdown when forced. Here that shutdown is what closes the
            # emulator's WebRTC peers and the SDK client: skipped, their tasks are cancelled by asyncio.run at the
            # very end ("Task was destroyed but it is pending!", a CancelledError traceback from the lifespan).
            # Run it anyway, bounded.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.lifespan.shutdown(), LIFESPAN_SHUTDOWN_LIMIT)


class _QuietCutOff(logging.Filter):
    """On Ctrl-C, a request still open after the grace period is cancelled by uvicorn, which then logs the
    cancellation as an error with its traceback. Here that is the expected end of a dev server: one plain line
    instead, and no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            return False
        if isinstance(record.msg, str) and record.msg.startswith("Cancel %s running task"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "orga-ai dev: cut off %s request(s) still open after the %s s grace period"
            record.args = (record.args[0] if isinstance(record.args, tuple) and record.args else "?", SHUTDOWN_GRACE)
        return True


def _server(app: Any, log_level: str, *, date_header: bool = True) -> _Server:
    # serve's HTTP-layer limits with their defaults: a slow or oversized head is cut off here too.
    config = LimitedConfig(
        app,
        limits=ServerLimits.defaults(),
        log_level=log_level,
        access_log=log_level in ("info", "debug"),
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        date_header=date_header,
    )
    return _Server(config)


def _url(host: str, port: int) -> str:
    return f"http://[{host.strip('[]')}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _announce_when_started(servers: list[tuple[str, _Server, socket.socket]], lines: list[str]) -> None:
    # The URL is printed once every server listens, so whoever reads it (a developer, a test) can use it at once.
    while not all(server.started for _, server, _ in servers):  # noqa: ASYNC110 - uvicorn has a flag, no event
        await asyncio.sleep(0.02)
    print("\n".join(lines), flush=True)


async def _serve(
    servers: list[tuple[str, _Server, socket.socket]], ready_lines: list[str], stun_socket: socket.socket | None
) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if stun_socket is not None:
            await stack.enter_async_context(serve_stun(stun_socket))
        return await _serve_http(servers, ready_lines)


async def _serve_http(servers: list[tuple[str, _Server, socket.socket]], ready_lines: list[str]) -> int:
    loop = asyncio.get_running_loop()

    signals = 0

    def stop() -> None:
        for _, server, _ in servers:
            server.should_exit = True

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop()
        if signals > 1:
            # A second Ctrl-C while shutting down means "now": skip the wait for open connections (the apps' own
            # shutdown still runs, see _Server.shutdown). Only a signal escalates: a server ending on its own
            # stops the others gracefully.
            for _, server, _ in servers:
                server.force_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    quiet = _QuietCutOff()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        tasks = {asyncio.create_task(server.serve(sockets=[sock]), name=name): (name, server)
                 for name, server, sock in servers}
        announce = asyncio.create_task(_announce_when_started(servers, ready_lines))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # One server ending on its own (a failed start-up) takes the others down with it.
        stop()
        announce.cancel()
        await asyncio.gather(announce, *tasks, return_exceptions=True)
    finally:
        uvicorn_log.removeFilter(quiet)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    failed = [name for name, server, _ in servers if not server.started]
    for name in failed:
        print(f"orga-ai dev: the {name} failed to start (see the log above)", file=sys.stderr)
    return 1 if failed else 0


def run_dev(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Serve the emulator (unless ``ORGA_API_KEY`` is set), the proxy and the demo page until interrupted."""
    from .._client import AsyncOrgaAI
    from .._exceptions import OrgaAIConfigurationError
    from .._ice import IcePolicy
    from ._app import PROXY_PATH, DevPage, create_dev_app

    env = os.environ if environ is None else environ
    if not is_loopback_host(args.host):
        print(
            f"orga-ai dev: refusing to bind {args.host!r}: the dev proxy mints tokens for anyone and the emulator's "
            "admin API is unauthenticated, so both serve loopback only",
            file=sys.stderr,
        )
        return 2
    real_orga = bool(env.get(API_KEY_ENV, "").strip())
    ports = [args.port] if real_orga else [args.port, args.emulator_port]
    if any(not 0 < port < 65536 for port in ports) or len(set(ports)) != len(ports):
        print("orga-ai dev: --port and --emulator-port must be two different ports between 1 and 65535",
              file=sys.stderr)
        return 2

    sockets: list[socket.socket] = []
    ice = IceSetup()
    try:
        try:
            for port in ports:
                # Bound here, before uvicorn starts, so a busy port is one clear line and not a traceback.
                sockets.append(bind(args.host, port))
        except OSError as exc:
            flag = ("--port", "--emulator-port")[len(sockets)]
            print(f"orga-ai dev: cannot bind {args.host}:{port} ({flag}): {exc.strerror or exc}; choose another "
                  f"with {flag}", file=sys.stderr)
            return 1
        page_url = _url(args.host, args.port)
        servers: list[tuple[str, _Server, socket.socket]] = []
        try:
            if real_orga:
                # The SDK's own rule applies: ORGA_API_KEY, and ORGA_BASE_URL if set, come from the environment.
                orga = AsyncOrgaAI()
                print(f"orga-ai dev: ORGA_API_KEY is set: using the real Orga Cloud at {orga.base_url} "
                      "(no emulator; every session is a real one)")
            else:
                from ..emulator import DEV_API_KEY, EmulatorConfig
                from ..emulator import create_app as create_emulator_app

                emulator_url = _url(args.host, args.emulator_port)
                ice = _ice_setup(args)
                config = _emulator_config(args, ice, EmulatorConfig, page_url)
                emulator_app = create_emulator_app(config)
                servers.append(("emulator", _server(emulator_app, args.log_level, date_header=False), sockets[1]))
                orga = AsyncOrgaAI(api_key=DEV_API_KEY, base_url=emulator_url)
                print(f"orga-ai dev: emulator (local stand-in for Orga Cloud) on {emulator_url}; "
                      "set ORGA_API_KEY to use the real Orga Cloud instead")
                print(f"orga-ai dev: ICE servers: {ice.description}")
        except (OrgaAIConfigurationError, ValueError) as exc:
            print(f"orga-ai dev: {exc}", file=sys.stderr)
            return 2
        ice_policy = IcePolicy(relay_only=True) if getattr(args, "ice_relay_only", False) else None
        app = create_dev_app(DevPage(orga.base_url, emulator=not real_orga), orga, ice_policy=ice_policy)
        servers.insert(0, ("demo page and proxy", _server(app, args.log_level), sockets[0]))
        lines = [
            f"orga-ai dev: proxy route {page_url}{PROXY_PATH} (anonymous access, loopback only)",
            f"orga-ai dev: demo page {page_url}/",
        ]
        if not args.no_browser_hint:
            lines.append(f"\n  Open {page_url}/ in a browser and press Start. Ctrl-C stops everything.\n")
        code = asyncio.run(_serve(servers, lines, ice.stun_socket))
        print("orga-ai dev: stopped", flush=True)
        return code
    finally:
        for sock in sockets:
            sock.close()
        if ice.stun_socket is not None:
            ice.stun_socket.close()
        if ice.coturn is not None:
            stop_coturn(ice.coturn)


def _ice_setup(args: argparse.Namespace) -> IceSetup:
    if args.stun_urls or args.turn_urls:
        urls = ", ".join([*(args.stun_urls or ()), *(args.turn_urls or ())])
        warning = "" if args.turn_secret or not args.turn_urls else "; no --turn-secret, so TURN will refuse them"
        return IceSetup(tuple(args.stun_urls or ()), tuple(args.turn_urls or ()), args.turn_secret,
                        description=f"as given ({urls}){warning}")
    # ICE URLs and coturn want an address, not a name.
    address = "127.0.0.1" if args.host.lower() == "localhost" else args.host.strip("[]")
    if not args.no_coturn:
        started = start_coturn(address, verbose=args.log_level in ("info", "debug"))
        if started is not None:
            return started
    sock = udp_socket(address)
    where = f"[{address}]:{sock.getsockname()[1]}" if ":" in address else f"{address}:{sock.getsockname()[1]}"
    if args.no_coturn:
        why = "--no-coturn"
    elif shutil.which("turnserver") is None:
        why = "install coturn for relay candidates"
    else:
        why = "coturn did not start; --log-level info shows its output"
    return IceSetup(
        stun_urls=(f"stun:{where}",),
        description=f"built-in STUN responder on {where} (no TURN: {why})",
        stun_socket=sock,
    )


def _emulator_config(args: argparse.Namespace, ice: IceSetup, config_class: Any, page_url: str) -> Any:
    # The emulator's default STUN/TURN URLs point at a port nothing listens on here, and a browser given an
    # unreachable ICE server waits out its whole gathering timeout: hand out only servers that answer.
    # The page calls the emulator's /v1/realtime/calls cross-origin, as Orga's client SDKs do; allow exactly the
    # page's origin, under both names of the loopback host it may be opened with.
    origins = sorted({page_url, page_url.replace("127.0.0.1", "localhost"), page_url.replace("localhost", "127.0.0.1")})
    kwargs: dict[str, Any] = {"stun_urls": ice.stun_urls, "turn_urls": ice.turn_urls, "cors_origins": origins}
    if args.ttl is not None:
        kwargs["ttl"] = args.ttl
    if ice.turn_secret:
        kwargs["turn_secret"] = ice.turn_secret
    if getattr(args, "agent_script", None):
        from ..emulator._script import load_agent_script

        kwargs["agent_script"] = load_agent_script(args.agent_script)
    return config_class(**kwargs)
