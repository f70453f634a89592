"""``orga-ai serve``: the standalone proxy, under uvicorn with its limits (see :mod:`orga_ai.proxy._server`).

Every flag also comes from an ``ORGA_PROXY_*`` variable (see :mod:`orga_ai.proxy._settings` and docs/proxy.md).
Authentication is required: with neither a shared secret, a JWT secret, a JWKS URL nor ``--allow-anonymous``, the
command refuses to start and says how to configure one. SIGTERM stops accepting connections and lets in-flight
requests finish (up to ``--graceful-timeout``, by default the route's deadline plus 2 s) before exiting.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._logging import RequestIdFilter
from ._settings import (
    OPTIONS,
    ServeSettingsError,
    add_arguments,
    build_authenticator,
    resolve,
    secrets_on_command_line,
)

if TYPE_CHECKING:
    import argparse

    from starlette.applications import Starlette


__all__ = ["add_parser", "app_from_env", "build_app", "build_authenticator", "run"]

def build_app(settings: Mapping[str, Any]) -> Starlette:
    """The proxy app the settings describe. Raises ServeSettingsError (or ValueError) when they are unusable."""
    from ._app import create_app
    from ._policy import ProxyPolicy

    app = create_app(ProxyPolicy.from_settings(settings))
    app.state.orga_proxy.cors_setting = "--cors-origin (ORGA_PROXY_CORS_ORIGIN)"
    return app


class _BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches: when ``capacity`` lines are waiting, or ``interval``
    seconds after the first one waited, whichever comes first, and at :meth:`flush` (logging's exit hook and the
    app's shutdown call it).

    The access log writes one line per request; written one by one, each line is a ``write(2)`` on stderr, which
    cost the route 100-200 µs of CPU per request (docs/proxy.md).
    """

    def __init__(self, stream: Any, *, capacity: int = 256, interval: float = 0.1) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._capacity = capacity
        self._interval = interval
        self._wake = threading.Event()
        self._thread_started = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise into the caller
            self.handleError(record)
            return
        self.emit_line(line)

    def emit_line(self, line: str) -> None:
        """Queue a finished line. The route's access log calls it directly when this handler, without formatter or
        filters, is the only one on its logger: the line is then already all it would write."""
        with self.lock:  # type: ignore[union-attr] # logging's handle() holds it around emit(); held here too
            pending = self._pending
            if not pending:
                self._schedule_flush()
            pending.append(line)
            if len(pending) >= self._capacity:
                self.flush()

    def _schedule_flush(self) -> None:
        # On the server's event loop, a timer there (a thread of our own, even asleep, measured ~30 µs of CPU per
        # request more); from any other thread, the flush thread, started on first use.
        import asyncio  # here: importing this module (for build_authenticator, say) must not load asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if not self._thread_started:
                self._thread_started = True
                threading.Thread(target=self._flusher, name="orga-ai-log-flush", daemon=True).start()
            self._wake.set()
        else:
            loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending, self._pending = self._pending, []
            if pending and self.stream is not None:
                try:
                    self.stream.write("\n".join(pending) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # a closed or broken stderr: the lines are lost, the server is not
                    pass

    def _flusher(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self._interval)
            self._wake.clear()
            self.flush()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send the ``orga_ai`` logs to stderr: access lines as bare JSON (written in batches, see
    :class:`_BufferedStreamHandler`), the rest with a timestamp and level, at once. ``log_format="json"``: every
    line one JSON object (:class:`orga_ai.telemetry.JSONFormatter`)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ServeSettingsError(f"unknown log level {level!r}")
    if log_format not in {"text", "json"}:
        raise ServeSettingsError(f"unknown log format {log_format!r}: give text or json")
    root = logging.getLogger("orga_ai")
    root.setLevel(numeric)
    if not any(getattr(h, "name", None) == "orga_ai.serve" for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name("orga_ai.serve")
        handler.addFilter(RequestIdFilter())  # the id of the request being served, on each line written meanwhile
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
        handler.addFilter(lambda record: record.name != "orga_ai.proxy.access")
        root.addHandler(handler)
        root.propagate = False
        # The access line is already the whole message: its own handler, on its own logger, skips the formatter's
        # work and the other handler's filter.
        access = _BufferedStreamHandler(sys.stderr)
        access.set_name("orga_ai.serve.access")
        access_logger = logging.getLogger("orga_ai.proxy.access")
        access_logger.addHandler(access)
        access_logger.propagate = False
        if log_format == "json":
            from .._jsonlog import JSONFormatter

            for json_handler in (handler, access):
                json_handler.setFormatter(JSONFormatter())


def app_from_env() -> Starlette:
    """The app factory of multi-worker mode: each worker rebuilds the app from ``ORGA_PROXY_*``."""
    settings = resolve(None)
    configure_logging(settings["log_level"], settings["log_format"])
    return build_app(settings)


def _check_host(host: str) -> None:
    """Refuse a ``--host`` that does not resolve to an address, before uvicorn reports it as a bare errno."""
    import socket

    try:
        socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ServeSettingsError(
            f"--host / {_HOST_ENV}: {host!r} does not resolve to an address of this machine ({reason})"
        ) from None


_HOST_ENV = "ORGA_PROXY_HOST"


def _check_deny_file(path: str | None) -> None:
    """Refuse a ``--deny-file`` that does not exist or cannot be read at start-up, naming the flag."""
    from ._killswitch import KillSwitch

    if path:
        try:
            KillSwitch(path)
        except ValueError as exc:
            raise ServeSettingsError(f"--deny-file / ORGA_PROXY_DENY_FILE: {exc}") from None


def _start_up_warnings(settings: Mapping[str, Any], app: Starlette) -> None:
    """Say at start-up what would otherwise only show as odd behaviour later: a storage that does not answer, limits
    that multiply with the workers, an option that another one overrides."""
    log = logging.getLogger("orga_ai.proxy")
    core = app.state.orga_proxy
    limiter = core.rate_limiter
    problem = limiter.check_sync()
    limiter.close()  # the workers open their own connections
    if problem:
        log.warning(
            "orga proxy: the rate-limit storage (--redis-url / ORGA_PROXY_REDIS_URL) does not answer a PING: %s; "
            "every request is refused with 503 and /readyz answers 503 until it does",
            problem,
        )
    if settings["workers"] > 1 and limiter.enabled and not limiter.distributed:
        log.warning(
            "orga proxy: --workers %d without --redis-url: each worker counts its own callers, so every limit is "
            "up to %d times what --rate-limit / --global-rate-limit say; set --redis-url (ORGA_PROXY_REDIS_URL) to "
            "share one count",
            settings["workers"],
            settings["workers"],
        )
    if settings["allow_anonymous"] and build_authenticator(settings) is not None:
        log.warning(
            "orga proxy: --allow-anonymous (ORGA_PROXY_ALLOW_ANONYMOUS) is ignored: credentials are configured, so "
            "every caller must present one; remove one of the two"
        )


def _check_api_key() -> None:
    from .._client import AsyncOrgaAI

    AsyncOrgaAI()  # validates ORGA_API_KEY / ORGA_BASE_URL; opens no socket


def run(args: argparse.Namespace) -> int:
    """Run the proxy until SIGINT/SIGTERM; 2 when the configuration is unusable."""
    # Start-up creates tens of thousands of long-lived objects (modules, classes, functions) and little garbage: the
    # cyclic collector would walk them dozens of times for nothing, some 6 % of the start-up. It is off until the
    # server starts, and what start-up made is frozen then: no collection scans it again.
    # The price: start-up's own garbage cycles (~300 KiB: import-time helpers, the validation build) stay frozen, once;
    # collecting them first would cost as much time as the collector's pause saved.
    gc.disable()
    try:
        return _run(args)
    finally:
        gc.enable()


def _run(args: argparse.Namespace) -> int:
    from .._exceptions import OrgaAIConfigurationError
    from ._clients import preload_transport
    from ._multiprocess import prepare_shared_metrics

    try:
        # The server, checked first so a missing extra is one line, not a traceback.
        from ._server import limits_from_settings, serve_forever
    except ImportError as exc:
        print(f"orga-ai serve needs optional dependencies: pip install 'orga-ai[proxy]' ({exc})", file=sys.stderr)
        return 2
    try:
        settings = resolve(args)
        _check_host(settings["host"])
        configure_logging(settings["log_level"], settings["log_format"])
        for flag in secrets_on_command_line(args):
            logging.getLogger("orga_ai.proxy").warning(
                "orga proxy: %s was given on the command line, where every local user can read it (ps, /proc); "
                "use its ORGA_PROXY_* variable or %s-file",
                flag,
                flag,
            )
        prepare_shared_metrics(settings["workers"])  # before the first build imports prometheus_client
        _check_deny_file(settings["deny_file"])
        app = build_app(settings)  # validated here; one worker serves it, more rebuild it from the environment
        limits_from_settings(settings)
        _check_api_key()
        _start_up_warnings(settings, app)
    except ServeSettingsError as exc:
        print(f"{exc}" if str(exc).startswith("orga-ai serve") else f"orga-ai serve: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OrgaAIConfigurationError) as exc:
        print(f"orga-ai serve: {exc}", file=sys.stderr)
        return 2
    graceful = settings["graceful_timeout"]
    if graceful is None:
        graceful = settings["deadline"] + 2
    # At start-up, so no first caller waits for it.
    preload_transport()
    gc.freeze()
    gc.enable()
    return 0 if serve_forever(settings, graceful, app) else 1


def add_parser(subparsers: Any) -> None:
    """Register ``orga-ai serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="run the secure client-secrets proxy (needs orga-ai[proxy] and authentication configured)",
        description=(
            "Run the standalone client-secrets proxy: it authenticates your callers, rate-limits them and trades "
            "ORGA_API_KEY for short-lived session credentials. It refuses to start without authentication "
            "(a shared secret, JWTs or, for local development, --allow-anonymous). Needs pip install "
            "'orga-ai[proxy]'."
        ),
        epilog=f"Each flag also reads an environment variable ({OPTIONS[0].env}, ...); the flag wins. "
        "See docs/proxy.md.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
