"""The Starlette app: Orga's three realtime endpoints, the fault middleware and the ``/_emulator/`` admin API.

The admin API is always on and unauthenticated: the emulator is a development tool that binds to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._secret import fingerprint
from ._config import EmulatorConfig
from ._faults import (
    FAULT_HEADER,
    Fault,
    FaultError,
    fault_body,
    good_body,
    parse_fault,
    parse_fault_header,
    status_body,
)
from ._responses import (
    error_response,
    invalid_api_key_response,
    not_authenticated_response,
    validation_response,
)
from ._state import EmulatorState
from ._tokens import InvalidToken, api_key_id, decode_token, mint_token
from ._turn import turn_credentials
from ._validation import CallRequest, validate_call_body

if TYPE_CHECKING:
    from ._webrtc import CallManager

__all__ = ["ADMIN_HEADER", "EmulatedDrop", "create_app"]

logger = logging.getLogger("orga_ai.emulator")

API_PREFIX = "/v1/realtime/"
_API_PATHS = {API_PREFIX + name: name for name in ("client-secrets", "ice-config", "calls")}
_MAX_CALL_BODY = 1024 * 1024
WEBRTC_EXTRA = "orga-ai[webrtc]"


class EmulatedDrop(httpx.RemoteProtocolError):
    """Raised by the ``drop`` fault after half the body went out, so the server breaks the connection.

    Over HTTP the client sees the connection close mid-body. In-process, through ``httpx.ASGITransport``, this
    exception itself reaches the client: an ``httpx.RemoteProtocolError``, as a real broken connection would be.
    """


# --------------------------------------------------------------------------------------------------------------------
# Faults and request records


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    # One formatting per second of emulator time, as uvicorn does for its own Date header.
    return formatdate(second, usegmt=True)


class _EmulatorMiddleware:
    """Pure ASGI: stamps ``x-request-id`` on every answer, applies faults to API requests and records them."""

    def __init__(self, app: ASGIApp, *, state: EmulatorState, config: EmulatorConfig) -> None:
        self.app = app
        self.state = state
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + uuid.uuid4().hex
        generation = self.state.generation
        path: str = scope["path"]
        api_name = _API_PATHS.get(path)
        recorded = path.startswith("/v1/")
        headers = Headers(scope=scope)
        status: int | None = None
        fault: Fault | None = None

        async def send_stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                stamped = MutableHeaders(scope=message)
                stamped["x-request-id"] = request_id
                # The Date of the emulator's own clock (``POST /_emulator/clock`` moves it), as Orga's servers send
                # theirs: what clients (orga-ai doctor) measure clock skew against.
                stamped["date"] = _http_date(int(self.state.now()))
            await send(message)

        if recorded:
            self.state.begin()
        try:
            if api_name is None:
                await self.app(scope, receive, send_stamped)
                return
            try:
                raw = headers.get(FAULT_HEADER)
                fault = parse_fault_header(raw) if raw is not None else self.state.faults.take(api_name)
            except FaultError as exc:
                response = error_response(400, f"X-Orga-Emulator: {exc}", code="invalid_fault")
                await response(scope, receive, send_stamped)
                return
            if fault is None:
                await self.app(scope, receive, send_stamped)
            else:
                self.state.count("faults_applied")
                await self._apply(fault, api_name, scope, receive, send_stamped)
        except EmulatedDrop:
            raise
        except Exception:
            # Never a traceback on the wire: log it here, answer with the error envelope if nothing went out yet.
            logger.exception("emulator: unhandled error on %s %s (request id %s)", scope["method"], path, request_id)
            if status is None:
                response = error_response(500, "The server had an error while processing your request.", "server_error")
                await response(scope, receive, send_stamped)
        finally:
            if recorded:
                try:
                    self._record(scope, headers, path, status, request_id, fault, generation)
                finally:
                    self.state.end()

    def _record(
        self,
        scope: Scope,
        headers: Headers,
        path: str,
        status: int | None,
        request_id: str,
        fault: Fault | None,
        generation: int,
    ) -> None:
        bearer = None
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            bearer = fingerprint(credentials.strip())
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client") or (None, None)
        self.state.record(
            {
                "method": scope["method"],
                "path": path,
                # Names only: the legacy ?email= value is personal data and has no business in a log.
                "query_params": sorted({part.partition("=")[0] for part in query.split("&") if part}),
                "status": status,
                "request_id": request_id,
                "idempotency_key": headers.get("idempotency-key"),
                "bearer": bearer,
                "user_agent": headers.get("user-agent"),
                # Whether the caller propagated its trace (the SDK does only when told to).
                "traceparent": headers.get("traceparent"),
                # The client's port tells connections apart: tests of connection reuse count them.
                "client_port": client[1],
                "fault": fault.to_dict() if fault is not None else None,
                "time": self.state.now(),
            },
            generation,
        )

    async def _apply(self, fault: Fault, api_name: str, scope: Scope, receive: Receive, send: Send) -> None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.stall:
            try:
                await asyncio.wait_for(_wait_for_disconnect(receive), timeout=self.config.stall_seconds)
            except asyncio.TimeoutError:
                response = error_response(
                    504, "The emulator's stall fault ran past stall_seconds.", "server_error", code="emulated_fault"
                )
                await response(scope, receive, send)
            # Otherwise the client gave up: there is no one left to answer.
            return
        status = fault.status if fault.status is not None else 200
        content_type = "application/json"
        if fault.body is not None:
            body, content_type = fault_body(fault.body, api_name)
        elif fault.status is None or status < 400:
            if not fault.drop:
                # Latency alone: the real endpoint answers after the wait.
                await self.app(scope, receive, send)
                return
            body = good_body(api_name)
        else:
            body = status_body(status)
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
        ]
        if fault.retry_after is not None:
            headers.append((b"retry-after", fault.retry_after.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if fault.drop:
            # Announce the whole length, send half, then break: the client reads a body that never completes.
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise EmulatedDrop("the emulator dropped the connection mid-body (drop fault)")
        await send({"type": "http.response.body", "body": body})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# --------------------------------------------------------------------------------------------------------------------
# The realtime API


def _bearer(request: Request) -> str | Response:
    """The bearer credentials, or FastAPI ``HTTPBearer``'s 403 when there are none."""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if not scheme or not credentials:
        return not_authenticated_response()
    if scheme.lower() != "bearer":
        return not_authenticated_response("Invalid authentication credentials")
    return credentials


def _consumed_response() -> Response:
    return error_response(401, "Ephemeral token already consumed: a token opens one session.", code="token_consumed")


def _iso_naive_utc(moment: Any) -> str:
    # Orga's expires_at: ISO 8601 with microseconds and no zone, meaning UTC.
    return str(moment.replace(tzinfo=None).isoformat(timespec="microseconds"))


class _Api:
    """Handlers of the realtime endpoints and of the admin API, over one config and one state."""

    def __init__(self, config: EmulatorConfig, state: EmulatorState) -> None:
        self.config = config
        self.state = state
        self.call_manager: CallManager | None = None

    # -- /v1/realtime --------------------------------------------------------------------------------------------------

    async def client_secrets(self, request: Request) -> Response:
        # The legacy ?email= query (still sent by @orga-ai/node 1.0.0-beta.1) and any body are accepted and ignored.
        bearer = _bearer(request)
        if isinstance(bearer, Response):
            self.state.reject("missing_auth")
            return bearer
        key = next((k for k in self.config.api_keys if hmac.compare_digest(k.encode(), bearer.encode())), None)
        if key is None:
            self.state.reject("invalid_api_key")
            return invalid_api_key_response()
        wait = self.state.take_quota(api_key_id(key), self.config.quota_per_minute)
        if wait is not None:
            self.state.reject("quota")
            return error_response(
                429,
                f"Rate limit reached: {self.config.quota_per_minute} ephemeral tokens per minute for this API key.",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"retry-after": str(max(1, math.ceil(wait)))},
            )
        minted = mint_token(key, secret=self.config.jwt_secret, now=self.state.now(), ttl=self.config.ttl)
        self.state.count("tokens_issued")
        if self.config.token_form == "howto":
            ttl = self.config.ttl
            return JSONResponse({"ephemeralToken": minted.value, "ttl": int(ttl) if float(ttl).is_integer() else ttl})
        return JSONResponse(
            {
                "ephemeral_token": minted.value,
                "token_type": "bearer",
                "expires_at": _iso_naive_utc(minted.expires_at),
            }
        )

    def _token(self, request: Request) -> tuple[str, Any] | Response:
        """The token and its claims if it may still be used, else the 403/401 to answer."""
        bearer = _bearer(request)
        if isinstance(bearer, Response):
            self.state.reject("missing_auth")
            return bearer
        try:
            claims = decode_token(bearer, secret=self.config.jwt_secret, now=self.state.now())
        except InvalidToken as exc:
            self.state.reject(exc.reason)
            return error_response(401, exc.message, code=exc.reason)
        if self.state.is_consumed(claims.jti):
            self.state.reject("token_consumed")
            return _consumed_response()
        return bearer, claims

    async def ice_config(self, request: Request) -> Response:
        checked = self._token(request)
        if isinstance(checked, Response):
            return checked
        _, claims = checked
        servers: list[dict[str, Any]] = []
        if self.config.stun_urls:
            servers.append({"urls": list(self.config.stun_urls)})
        if self.config.turn_urls:
            # The TURN credentials expire with the token they were issued for.
            username, credential = turn_credentials(self.config.turn_secret, expires=claims.exp, user_id=claims.jti)
            servers.append({"urls": list(self.config.turn_urls), "username": username, "credential": credential})
        self.state.count("ice_configs_served")
        return JSONResponse({"iceServers": servers})

    async def calls(self, request: Request) -> Response:
        checked = self._token(request)
        if isinstance(checked, Response):
            return checked
        _, claims = checked
        raw = await _read_capped(request, _MAX_CALL_BODY)
        if raw is None:
            self.state.reject("body_too_large")
            return error_response(413, f"The body is larger than {_MAX_CALL_BODY} bytes.", code="body_too_large")
        parsed = validate_call_body(raw)
        if not isinstance(parsed, CallRequest):
            self.state.reject("validation")
            return validation_response(parsed)
        manager = self._call_manager()
        if manager is None:
            self.state.reject("webrtc_unavailable")
            return error_response(
                501,
                f"WebRTC calls need the optional extra: pip install '{WEBRTC_EXTRA}' (aiortc is not available).",
                "server_error",
                code="webrtc_unavailable",
            )
        if "\nm=application " not in parsed.sdp:
            # Orga's clients always open the events data channel; an offer without one could never be a session.
            self.state.reject("bad_offer")
            return error_response(
                400, "Invalid offer: no data channel (m=application) in the SDP.", code="invalid_offer"
            )
        if not self.state.consume(claims.jti, claims.exp):
            self.state.reject("token_consumed")
            return _consumed_response()
        conversation_id = "conv_" + uuid.uuid4().hex
        try:
            sdp = await manager.answer(conversation_id, parsed)
        except ValueError as exc:
            self.state.reject("bad_offer")
            return error_response(400, f"Invalid offer: {exc}.", code="invalid_offer")
        self.state.count("calls")
        return JSONResponse({"conversation_id": conversation_id, "answer": {"sdp": sdp, "type": "answer"}})

    def _call_manager(self) -> CallManager | None:
        if self.call_manager is None and self.config.webrtc:
            try:
                from ._webrtc import CallManager
            except ImportError:
                return None
            self.call_manager = CallManager(call_seconds=self.config.call_seconds,
                                            agent_script=self.config.agent_script)
        return self.call_manager

    # -- /_emulator ----------------------------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(self, request: Request) -> Response:
        out = self.state.stats()
        out["active_calls"] = self.call_manager.active if self.call_manager is not None else 0
        return JSONResponse(out)

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear_requests()
            return JSONResponse({"cleared": True})
        return JSONResponse(self.state.requests())

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.faults.clear()
            return JSONResponse({"armed": []})
        if request.method == "POST":
            data = await _json_body(request)
            if isinstance(data, Response):
                return data
            try:
                fault = parse_fault(data, extra_keys=frozenset({"path", "count"}))
                self.state.faults.arm(str(data.get("path", "*")), data.get("count", 1), fault)
            except FaultError as exc:
                return error_response(400, str(exc), code="invalid_fault")
        return JSONResponse({"armed": self.state.faults.snapshot()})

    async def clock(self, request: Request) -> Response:
        if request.method == "POST":
            data = await _json_body(request)
            if isinstance(data, Response):
                return data
            seconds = data.get("advance") if isinstance(data, dict) else None
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
                return error_response(400, '"advance" must be a number of seconds', code="invalid_clock")
            if seconds < 0:
                return error_response(400, "the clock only moves forward", code="invalid_clock")
            self.state.advance(float(seconds))
        stats = self.state.stats()
        return JSONResponse({"offset": stats["clock_offset"], "now": stats["now"]})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        if self.call_manager is not None:
            # A fresh emulator has no calls: tests sharing one server must not inherit each other's peers.
            await self.call_manager.close_all()
        return JSONResponse({"reset": True})


async def _read_capped(request: Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request) -> Any:
    raw = await _read_capped(request, 64 * 1024)
    if raw is None:
        return error_response(413, "The request body is too large.", code="body_too_large")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return error_response(400, "The request body must be JSON.", code="invalid_json")
    if not isinstance(data, dict):
        return error_response(400, "The request body must be a JSON object.", code="invalid_json")
    return data


ADMIN_PREFIX = "/_emulator/"
ADMIN_HEADER = "X-Orga-Emulator-Admin"
"""The header every state-changing admin request carries (any value). A web page cannot send a custom header to
another origin without a CORS preflight, which the admin API never approves: so no page the developer visits can arm
a fault, move the clock or reset the emulator."""


class _AdminGuard:
    """``/_emulator/*`` takes no cross-site requests: no CORS (the ``Origin`` header is hidden from the CORS layer, so
    it adds nothing and approves no preflight), a foreign ``Origin`` or ``Sec-Fetch-Site`` is refused, and POST and
    DELETE need :data:`ADMIN_HEADER`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        fetch_site = headers.get("sec-fetch-site", "none")
        problem = None
        if fetch_site not in ("none", "same-origin") or (
            origin is not None and origin.split("://", 1)[-1].rstrip("/").lower() != headers.get("host", "").lower()
        ):
            problem = "the admin API takes no cross-site requests"
        elif scope["method"] not in ("GET", "HEAD") and ADMIN_HEADER.lower() not in headers:
            problem = f"send the {ADMIN_HEADER} header (any value) with admin requests that change state"
        if problem is not None:
            await JSONResponse({"detail": problem}, status_code=403)(scope, receive, send)
            return
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"origin"]
        await self.app(scope, receive, send)


async def _http_exception(request: Request, exc: Exception) -> Response:
    # FastAPI's shape for routing errors (404, 405), which is what Orga answers for an unknown path.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(config: EmulatorConfig | None = None, *, clock: Callable[[], float] | None = None) -> Starlette:
    """A fresh emulator as an ASGI app: serve it with uvicorn, or call it in-process with ``httpx.ASGITransport``.

    Args:
        config: what it accepts and hands out (default ``EmulatorConfig()``: the dev key, 120 s tokens).
        clock: unix time source for token and TURN expiry (default ``time.time``); ``POST /_emulator/clock``
            adds an offset on top of it.

    WebRTC peers opened by ``/v1/realtime/calls`` are closed on the app's lifespan shutdown; in-process users
    who open calls should run the lifespan (for example with ``asgi-lifespan``) or rely on ``call_seconds``.
    """
    config = config if config is not None else EmulatorConfig()
    state = EmulatorState(clock if clock is not None else time.time, config.max_logged_requests)
    api = _Api(config, state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if api.call_manager is not None:
                await api.call_manager.close_all()

    routes = [
        Route(API_PREFIX + "client-secrets", api.client_secrets, methods=["POST"]),
        Route(API_PREFIX + "ice-config", api.ice_config, methods=["GET"]),
        Route(API_PREFIX + "calls", api.calls, methods=["POST"]),
        Route("/_emulator/health", api.health, methods=["GET"]),
        Route("/_emulator/stats", api.stats, methods=["GET"]),
        Route("/_emulator/requests", api.requests, methods=["GET", "DELETE"]),
        Route("/_emulator/faults", api.faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/clock", api.clock, methods=["GET", "POST"]),
        Route("/_emulator/reset", api.reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_exception})
    app.add_middleware(_EmulatorMiddleware, state=state, config=config)
    from starlette.middleware.cors import CORSMiddleware

    # Added last, so outermost: a preflight is answered before the fault middleware can spend an armed fault on it.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Orga-Emulator"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(_AdminGuard)  # outermost: before CORS can answer for /_emulator/*
    app.state.emulator_config = config
    app.state.emulator_state = state
    return app
