"""Transports that answer from a table, like the emulator's faults, without opening a socket: for your own tests.

    from orga_ai import OrgaAI
    from orga_ai.testing import MockTransport

    mock = MockTransport()                                   # accepts DEV_API_KEY, the emulator's key
    orga = OrgaAI(api_key=mock.api_key, transport=mock)
    mock.arm("client-secrets", count=2, status=503, retry_after="0")
    config = orga.get_session_config()                       # two 503s, then a token and ICE servers
    assert [r.path for r in mock.requests] == ["client-secrets"] * 3 + ["ice-config"]

:class:`AsyncMockTransport` is the same for ``AsyncOrgaAI(transport=...)``. Both answer as the emulator does: a
single-use token for the right API key (401 otherwise), ICE servers for a token they minted (401 for any other), 404
for any other path. Faults use the emulator's vocabulary (``orga_ai.emulator``): armed with :meth:`arm` for the next
``count`` requests to a path, or sent by the client in the ``X-Orga-Emulator`` header (``default_headers``)::

    latency_ms=200                 wait (on the caller's clock: time.sleep / asyncio.sleep), then answer
    status=503, retry_after="1"    that status with Orga's error envelope
    stall=True                     no answer until the attempt's deadline: a read timeout
    drop=True                      the connection breaks after the request was sent: an ambiguous failure
    body="non_json" | "truncated" | "html" | "wrong_types" | "missing_fields" | "oversized" | "empty"

What a mock cannot tell you is how the real network behaves (TLS, proxies, keep-alive, a slow trickle): the client's
own tests run against the emulator over real sockets for that (:func:`orga_ai.testing.run_emulator`). Needs the
``orga-ai[emulator]`` extra, for the shared fault vocabulary.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .._protocol import FailureKind, Request, Response, TransportFailure
from ..emulator._config import DEFAULT_TTL, DEV_API_KEY
from ..emulator._faults import (
    FAULT_HEADER,
    FAULT_PATHS,
    Fault,
    FaultError,
    FaultQueue,
    fault_body,
    parse_fault,
    parse_fault_header,
    status_body,
)
from ..emulator._responses import error_envelope

__all__ = ["AsyncMockTransport", "MockRequest", "MockTransport"]

_JSON = {"content-type": "application/json"}
_DEFAULT_ICE: list[dict[str, Any]] = [
    {"urls": ["stun:127.0.0.1:3478"]},
    {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "mock", "credential": "mock-credential"},
]


class MockRequest(NamedTuple):
    """One request a mock received: no headers, so no key or token, is kept."""

    method: str
    path: str
    """The API path's last segment: ``client-secrets``, ``ice-config`` (or whatever else was asked for)."""
    fault: dict[str, Any]
    """The fault applied to it, in the emulator's vocabulary (empty: none)."""


class _Plan(NamedTuple):
    wait: float
    outcome: Response | TransportFailure


class _MockCore:
    """What both mocks share: the table, the tokens minted, the requests seen. Decides an answer; never sleeps."""

    def __init__(self, api_key: str, ttl: float, ice_servers: list[dict[str, Any]] | None) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.api_key = api_key
        self._ttl = ttl
        self._ice = json.dumps({"iceServers": ice_servers if ice_servers is not None else _DEFAULT_ICE}).encode()
        self._faults = FaultQueue()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.requests: list[MockRequest] = []

    def arm(self, path: str = "*", count: int = 1, **fault: Any) -> None:
        """Apply ``fault`` (``status=503``, ``stall=True``...) to the next ``count`` requests to ``path``
        (``"client-secrets"``, ``"ice-config"`` or ``"*"``). An unknown key raises ``FaultError``."""
        parsed = parse_fault(fault)
        with self._lock:
            self._faults.arm(path, count, parsed)

    def clear(self) -> None:
        """Disarm every fault and forget the requests seen (minted tokens stay valid)."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def plan(self, request: Request, deadline: float) -> _Plan:
        path = urlsplit(request.url).path.rstrip("/").rsplit("/", 1)[-1]
        started = deadline - request.timeout
        raw = next((v for k, v in request.headers.items() if k.lower() == FAULT_HEADER), None)
        try:
            fault = parse_fault_header(raw) if raw is not None else None
        except FaultError as exc:
            return _Plan(0.0, _error(400, str(exc)))
        with self._lock:
            if fault is None:
                fault = (self._faults.take(path) if path in FAULT_PATHS else None) or Fault()
            self.requests.append(MockRequest(request.method, path, fault.to_dict()))
            wait = fault.latency_ms / 1000
            left = deadline - time.monotonic()
            if fault.stall or wait >= left:
                failure = TransportFailure(FailureKind.READ_TIMEOUT, "TimeoutError: no answer in time (mock)", None)
                return _Plan(max(left, 0.0), failure._replace(elapsed=request.timeout))
            if fault.drop:
                broke = ConnectionResetError("the connection broke mid-answer (mock drop fault)")
                return _Plan(wait, TransportFailure(FailureKind.BROKEN, f"ConnectionResetError: {broke}", broke, wait))
            answer = self._answer(request, path, fault)
        return _Plan(wait, answer._replace(elapsed=time.monotonic() + wait - started))

    def _answer(self, request: Request, path: str, fault: Fault) -> Response:
        if fault.body is not None:
            body, kind = fault_body(fault.body, path)
            return Response(fault.status or 200, {"content-type": kind, "content-length": str(len(body))}, body)
        if fault.status is not None:
            headers = dict(_JSON)
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            return Response(fault.status, headers, status_body(fault.status))
        bearer = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        bearer = bearer[7:] if bearer[:7].lower() == "bearer " else ""
        if path == "client-secrets" and request.method == "POST":
            if not secrets.compare_digest(bearer.encode(), self.api_key.encode()):
                inner = json.dumps(error_envelope("Incorrect or inactive API key provided.", code="invalid_api_key"))
                return _error(401, inner)
            token = "mock_" + secrets.token_urlsafe(24)
            self._tokens.add(token)
            expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self._ttl)
            minted = {"ephemeral_token": token, "token_type": "bearer", "expires_at": expires.isoformat()}
            return Response(200, dict(_JSON), json.dumps(minted).encode())
        if path == "ice-config" and request.method == "GET":
            if bearer not in self._tokens:
                return _error(401, "Invalid or expired ephemeral token.")
            self._tokens.discard(bearer)  # single use, as Orga's
            return Response(200, dict(_JSON), self._ice)
        return _error(404, "Not Found")


def _error(status: int, message: str) -> Response:
    return Response(status, dict(_JSON), json.dumps(error_envelope(message)).encode())


class MockTransport(_MockCore):
    """A :class:`~orga_ai._transports.base.SyncTransport` answering from a fault table; see the module docstring.

    Args:
        api_key: the key it accepts; default the emulator's ``DEV_API_KEY``.
        ttl: seconds a minted token lives; default the emulator's.
        ice_servers: the ``iceServers`` it hands out (a list of dicts); default a STUN and a TURN server.
    """

    def __init__(
        self, *, api_key: str = DEV_API_KEY, ttl: float = DEFAULT_TTL, ice_servers: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(api_key, ttl, ice_servers)

    def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        plan = self.plan(request, deadline)
        if plan.wait > 0:
            time.sleep(plan.wait)
        return plan.outcome

    def close(self) -> None:
        """Nothing to release."""


class AsyncMockTransport(_MockCore):
    """The same as :class:`MockTransport`, for ``AsyncOrgaAI(transport=...)``: waits with ``asyncio.sleep``."""

    def __init__(
        self, *, api_key: str = DEV_API_KEY, ttl: float = DEFAULT_TTL, ice_servers: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(api_key, ttl, ice_servers)

    def prepare(self) -> None:
        """Nothing to set up."""

    async def send(self, request: Request, deadline: float) -> Response | TransportFailure:
        plan = self.plan(request, deadline)
        if plan.wait > 0:
            await asyncio.sleep(plan.wait)
        return plan.outcome

    async def aclose(self) -> None:
        """Nothing to release."""
