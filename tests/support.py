"""Shared helpers of the test suite (not fixtures: those live in conftest.py files)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str) -> str:
    """Path of a system program a test needs. Locally a missing one skips the test; in CI it fails it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/install-system-deps.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def npm_project(folder: Path, package: str, *flags: str) -> Path:
    """``folder`` made a throwaway npm project with ``package`` installed from the registry (needs node and npm).

    A failed install skips the test locally (no registry here) and fails it in CI."""
    require_binary("node")
    npm = require_binary("npm")
    (folder / "package.json").write_text(f'{{"name": "{folder.name.lower()}", "private": true}}')
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *flags, package],
        cwd=folder, capture_output=True, text=True, timeout=180, check=False,
    )
    if result.returncode != 0:
        message = f"npm install {package} failed (is the npm registry reachable?):\n{result.stderr[-2000:]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return folder


def wait_in_flight(emulator: Any, count: int, *, at_least: bool = False, timeout: float = 10) -> None:
    """Until exactly ``count`` (or ``at_least`` that many) API requests are in flight at the emulator: begun, not yet
    answered and logged (``GET /_emulator/stats``). What a test waits for instead of sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        now = emulator.stats()["in_flight"]
        if now == count or (at_least and now >= count):
            return
        assert time.monotonic() < deadline, f"{now} request(s) in flight at the emulator after {timeout} s, not {count}"
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", **uvicorn_options: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn (httptools) in a thread; yields its base URL; stops it, lifespan included.

    ``uvicorn_options`` go to ``uvicorn.Config`` (``ssl_certfile``/``ssl_keyfile`` serve https)."""
    import uvicorn

    port = free_port()
    # proxy_headers=False as `orga-ai serve` does: X-Forwarded-For is the proxy core's business (--trusted-proxy),
    # and uvicorn's default would believe it from 127.0.0.1, the peer of every test.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http="httptools",
        ws="none",
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        **uvicorn_options,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        # A lifespan that refuses to start makes uvicorn exit (SystemExit(3)): that is "did not start", below.
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, name="app-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if uvicorn_options.get('ssl_certfile') else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_aiohttp(app: Any, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ``aiohttp.web.Application`` in a thread with its own event loop; yields its base URL. Its start-up
    (``cleanup_ctx``, ``on_startup``) runs before the first request, and an error there is raised here; its cleanup
    runs on the way out."""
    import asyncio

    from aiohttp import web

    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    thread = threading.Thread(target=loop.run_forever, name="aiohttp-under-test", daemon=True)
    thread.start()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()

    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def stop_process(process: Any, timeout: float = 15) -> str:
    """Terminate a ``subprocess.Popen`` started with text pipes (kill it if it lingers); returns its stdout."""
    import subprocess

    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=timeout)
    return output or ""


@contextlib.contextmanager
def serving_process(
    argv: list[str], env: dict[str, str], url: str, output: list[str], *, cwd: str | os.PathLike[str] | None = None
) -> Iterator[str]:
    """Start ``argv`` (a server listening at ``url``), wait up to 30 s until it answers HTTP, yield ``url``; stop it
    and append its combined output to ``output``. Raises RuntimeError, with that output, if it exits first."""
    import subprocess

    import httpx

    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{os.path.basename(argv[0])} exited: {process.communicate()[0]}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.options(url + "/", timeout=1)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv} did not start")
            time.sleep(0.1)
        yield url
    finally:
        output.append(stop_process(process))


@dataclass
class Coturn:
    """One running turnserver: its ports (``tls_port`` None without TLS), secret and certificate."""

    port: int
    tls_port: int | None
    secret: str
    cert: Path | None
    log: Path

    def stun_urls(self) -> tuple[str, ...]:
        return (f"stun:127.0.0.1:{self.port}",)

    def turn_urls(self, tls_port: int | None = None) -> tuple[str, ...]:
        urls = [f"turn:127.0.0.1:{self.port}?transport=udp", f"turn:127.0.0.1:{self.port}?transport=tcp"]
        port = tls_port or self.tls_port
        if port is not None:
            urls.append(f"turns:127.0.0.1:{port}?transport=tcp")
        return tuple(urls)


@contextlib.contextmanager
def run_coturn(
    directory: Path, *, tcp: bool = False, tls: bool = False, realm: str = "orga.test"
) -> Iterator[Coturn]:
    """turnserver with a TURN REST secret on free loopback ports (flags from WEBRTC_NOTES.md): UDP always, TCP and
    TLS (a self-signed certificate for 127.0.0.1) on demand; stopped by PID afterwards."""
    binary = require_binary("turnserver")
    port = free_port()
    tls_port = free_port() if tls else None
    relay_start = random.randrange(40_000, 60_000, 100)
    secret = secrets.token_urlsafe(24)
    log_path = directory / "turnserver.log"
    command = [
        binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
        f"--min-port={relay_start}", f"--max-port={relay_start + 99}", "--use-auth-secret",
        f"--static-auth-secret={secret}", f"--realm={realm}", "--no-dtls", "--no-tcp-relay",
        "--allow-loopback-peers", "--no-cli", "--fingerprint", "--log-file=stdout", "--simple-log",
        f"--pidfile={directory / 'turnserver.pid'}", f"--db={directory / 'turndb'}",
    ]
    cert = None
    if tls:
        from tests.client.test_sync_transport import make_certificate

        cert, key = make_certificate(directory)
        command += [f"--tls-listening-port={tls_port}", f"--cert={cert}", f"--pkey={key}"]
    else:
        command.append("--no-tls")
    if not tcp:
        command.append("--no-tcp")
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while "Total General servers" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "turnserver did not start"
            time.sleep(0.05)
        yield Coturn(port, tls_port, secret, cert, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()


@contextlib.contextmanager
def captured_lines(
    *names: str, level: int = logging.DEBUG, formatter: logging.Formatter | None = None
) -> Iterator[list[str]]:
    """The records the named loggers emit at ``level`` or above while the block runs, each formatted (the message
    alone unless ``formatter`` is given); the loggers' own levels are put back afterwards."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(level)
    handler.setFormatter(formatter or logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
        logger.addHandler(handler)
    try:
        yield lines
    finally:
        for logger, was in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(was)
