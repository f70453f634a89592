"""Test helpers: run the Orga Cloud emulator on a free port and drive its faults, clock and counters.

    from orga_ai.testing import run_emulator

    with run_emulator() as emulator:
        client = OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url)
        emulator.arm("client-secrets", status=503, retry_after="1")
        ...

With pytest, ``pytest_plugins = ["orga_ai.testing"]`` in the root ``conftest.py`` adds two fixtures: ``emulator_server``
(one emulator for the whole session) and ``emulator`` (the same emulator, reset before each test). Needs the
``orga-ai[emulator]`` extra.

To test an agent's behaviour, :func:`place_call` places a real call (against the emulator, or a real Orga base URL
and key) and returns its transcript, events and audio; the ``realtime_call`` fixture is the same bound to the
``emulator`` fixture (``orga-ai[realtime]``; see docs/realtime.md)::

    async def test_greets(realtime_call):
        result = await realtime_call(input_wav="tests/hello.wav", duration=5)
        assert result.transcript[-1][0] == "agent"

For tests without sockets, :class:`MockTransport` / :class:`AsyncMockTransport` answer from the same fault vocabulary
(``OrgaAI(api_key=mock.api_key, transport=mock)``; see ``orga_ai._transports.mock``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._extras import require_extra

require_extra("orga_ai.testing", "emulator")

import httpx

from ._transports.mock import AsyncMockTransport, MockRequest, MockTransport
from .emulator import ADMIN_HEADER, EmulatorConfig, create_app
from .emulator._server import base_url, bind, check_host, make_server

if TYPE_CHECKING:
    import os

    from .realtime._session import CallResult

__all__ = ["AsyncMockTransport", "MockRequest", "MockTransport", "RunningEmulator", "place_call", "run_emulator"]

DEFAULT_START_TIMEOUT = 10.0
"""Seconds to wait for the emulator to accept connections."""


class RunningEmulator:
    """An emulator served over HTTP: where it is, the key it accepts, and its admin API as methods.

    Attributes:
        base_url: ``http://127.0.0.1:<port>``, what ``OrgaAI(base_url=...)`` takes.
        api_key: the first configured API key (``DEV_API_KEY`` by default).
        config: the ``EmulatorConfig`` it runs with (``config.turn_secret`` signs the TURN credentials).
    """

    def __init__(self, base_url: str, config: EmulatorConfig, admin: httpx.Client) -> None:
        self.base_url = base_url
        self.api_key = config.api_keys[0]
        self.config = config
        self._admin = admin

    def __repr__(self) -> str:
        return f"RunningEmulator({self.base_url!r})"

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._admin.request(method, path, json=json)
        response.raise_for_status()
        return response.json()

    def arm(self, path: str = "*", count: int = 1, **fault: Any) -> list[dict[str, Any]]:
        """Apply ``fault`` (``status=503``, ``body="html"``, ``drop=True``...) to the next ``count`` requests to
        ``path`` (``"client-secrets"``, ``"ice-config"``, ``"calls"`` or ``"*"``). Returns the armed queue."""
        result: list[dict[str, Any]] = self._call("POST", "/_emulator/faults", {"path": path, "count": count, **fault})[
            "armed"
        ]
        return result

    def clear_faults(self) -> None:
        """Disarm every armed fault."""
        self._call("DELETE", "/_emulator/faults")

    def stats(self) -> dict[str, Any]:
        """The counters of ``GET /_emulator/stats``."""
        result: dict[str, Any] = self._call("GET", "/_emulator/stats")
        return result

    def requests(self) -> list[dict[str, Any]]:
        """The API requests received, oldest first (method, path, status, idempotency_key, bearer fingerprint...)."""
        result: list[dict[str, Any]] = self._call("GET", "/_emulator/requests")
        return result

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/_emulator/requests")

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: tokens and TURN credentials expire by it."""
        self._call("POST", "/_emulator/clock", {"advance": seconds})

    def reset(self) -> None:
        """Back to a fresh emulator: faults, counters, request log, quota, consumed tokens and clock offset."""
        self._call("POST", "/_emulator/reset")


@contextlib.contextmanager
def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
) -> Iterator[RunningEmulator]:
    """Serve a fresh emulator with uvicorn in a background thread until the block ends.

    ``port=0`` takes a free port. ``clock`` replaces ``time.time`` as the emulator's time source. The server is
    ready when the block starts, and stopped (its WebRTC peers closed) when it ends.
    """
    check_host(host, allow_remote=False)
    config = config if config is not None else EmulatorConfig()
    app = create_app(config, clock=clock)
    sock = bind(host, port)
    try:
        server = make_server(app)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="orga-ai-emulator", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + start_timeout
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("the emulator failed to start (see the uvicorn log)")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the emulator did not start within {start_timeout} s")
                time.sleep(0.01)
            url = base_url(sock)
            with httpx.Client(base_url=url, timeout=10.0, headers={ADMIN_HEADER: "1"}) as admin:
                yield RunningEmulator(url, config, admin)
        finally:
            server.should_exit = True
            thread.join(timeout=15)
    finally:
        sock.close()


async def place_call(
    base_url: str,
    api_key: str,
    *,
    duration: float = 3.0,
    input_wav: str | os.PathLike[str] | None = None,
    input_pcm: bytes | None = None,
    input_rate: int = 48000,
    output_wav: str | os.PathLike[str] | None = None,
    until: Callable[[list[Any]], bool] | None = None,
    **options: Any,
) -> CallResult:
    """Place one real call with ``api_key`` at ``base_url`` (the emulator's, or Orga's), play ``input_wav`` or
    ``input_pcm`` into it, listen ``duration`` seconds (or until ``until(events)``), and return a ``CallResult``:
    ``transcript``, ``events``, ``audio`` (48 kHz mono PCM16), timings and the candidate type. ``options`` are those
    of :func:`orga_ai.realtime.connect` (``voice=``, ``instructions=``, ``relay_only=``...)."""
    from ._client import AsyncOrgaAI
    from .realtime._session import run_call

    async with AsyncOrgaAI(api_key=api_key, base_url=base_url, max_retries=0) as orga:
        return await run_call(
            orga.realtime.connect(**options),
            duration=duration,
            input_wav=input_wav,
            input_pcm=input_pcm,
            input_rate=input_rate,
            output_wav=output_wav,
            until=until,
        )


try:
    import pytest
except ImportError:  # pragma: no cover - the fixtures only make sense under pytest
    pass
else:

    @pytest.fixture(scope="session")
    def emulator_server() -> Iterator[RunningEmulator]:
        """One emulator for the whole test session (default config, dev key)."""
        with run_emulator() as running:
            yield running

    @pytest.fixture
    def emulator(emulator_server: RunningEmulator) -> RunningEmulator:
        """The session's emulator, reset before the test: no faults, no counters, fresh quota and clock."""
        emulator_server.reset()
        return emulator_server

    @pytest.fixture
    def realtime_call(emulator: RunningEmulator) -> Callable[..., Any]:
        """``await realtime_call(input_wav=..., duration=...)``: :func:`place_call` against the ``emulator``."""

        async def call(**options: Any) -> CallResult:
            return await place_call(emulator.base_url, emulator.api_key, **options)

        return call
