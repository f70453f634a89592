"""Which failure becomes which status, and what the caller and the log are told.

:func:`error_for` is the one mapping from an exception to a :class:`ProxyError` (status, code, generic message, log-only
detail); :func:`json_error` renders one in the proxy's envelope; :func:`redact` keeps anything shaped like a key or a
JWT out of every log line; :func:`log_refusal` says why a caller got 401/403 even when the app configured no logging.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from .._exceptions import (
    OrgaAIAuthenticationError,
    OrgaAIConfigurationError,
    OrgaAIError,
    OrgaAIPermissionError,
    OrgaAIRateLimitError,
    OrgaAIServerError,
    OrgaAITimeoutError,
)
from .._secret import fingerprint
from ._auth import AuthenticationError
from ._ratelimit import RateLimiterUnavailable
from ._request import ProxyResponse, json_bytes, new_request_id, security_headers

if sys.version_info >= (3, 11):
    AsyncTimeout: type[Exception] = TimeoutError  # asyncio's, from 3.11 on: the sync path never imports asyncio
else:  # pragma: no cover - Python 3.10
    from asyncio import TimeoutError as AsyncTimeout

__all__ = [
    "ERRORS",
    "AsyncTimeout",
    "ErrorCode",
    "ProxyError",
    "error_for",
    "error_response",
    "json_error",
    "log_refusal",
    "redact",
    "www_authenticate",
]

refusal_logger = logging.getLogger("orga_ai.proxy.refused")
# Belt and braces for the log: nothing shaped like an Orga key or a JWT survives, whatever an exception said.
_SECRET_SHAPES = re.compile(r"sk_orga_ai_[A-Za-z0-9_\-]+|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def redact(text: str) -> str:
    """``text`` with anything shaped like an API key or a JWT replaced by its fingerprint."""
    return _SECRET_SHAPES.sub(lambda m: f"<redacted {fingerprint(m.group(0))}>", text)


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One refusal of the route: its status, the sentence the caller reads, and what the docs say of it."""

    status: int
    message: str
    description: str


ERRORS: dict[str, ErrorCode] = {
    "bad_request": ErrorCode(400, "Bad request.", "Malformed request (an unreadable Content-Length, a bad body)."),
    "host_not_allowed": ErrorCode(
        400,
        "This server does not answer for that host name; add it to allowed_hosts.",
        "The Host header is not one of the allowed host names (DNS rebinding).",
    ),
    "unauthenticated": ErrorCode(401, "Log in first.", "No credentials were sent."),
    "invalid_token": ErrorCode(
        401,
        "The credentials were refused.",
        "The credentials are forged, malformed, for another audience or issuer, or use an algorithm that is not "
        "accepted.",
    ),
    "token_expired": ErrorCode(401, "The token has expired.", "The caller's JWT has expired."),
    "forbidden": ErrorCode(
        403, "Forbidden.", "The app's own login refused the caller (FastAPI: the principal dependency raised 403)."
    ),
    "origin_not_allowed": ErrorCode(
        403,
        "This origin may not call this endpoint.",
        "The browser Origin is not in the CORS allowlist (``null`` never is).",
    ),
    "header_not_allowed": ErrorCode(
        403, "A requested header is not allowed.", "A CORS preflight asked for a header the route does not accept."
    ),
    "principal_denied": ErrorCode(403, "This account may not start sessions.", "The caller is on the deny-list."),
    "not_found": ErrorCode(404, "Not found.", "No such path."),
    "method_not_allowed": ErrorCode(405, "Method not allowed.", "Only GET, POST and OPTIONS are served."),
    "body_too_large": ErrorCode(
        413, "Request body too large.", "The request carried a body over the cap (4 KiB by default)."
    ),
    "rate_limited": ErrorCode(
        429, "Too many requests; slow down.", "The caller's (or the global) rate limit is spent; see Retry-After."
    ),
    "headers_too_large": ErrorCode(431, "Request headers too large.", "The request headers are too large."),
    "internal_error": ErrorCode(500, "Internal error.", "A bug; the log has the details."),
    "proxy_misconfigured": ErrorCode(
        500,
        "The session service is misconfigured.",
        "The proxy's own Orga settings are unusable (no API key, an ICE policy that leaves no server, ...).",
    ),
    "upstream_auth_failed": ErrorCode(
        502, "The session service is misconfigured.", "Orga Cloud refused the proxy's API key: not the caller's fault."
    ),
    "upstream_error": ErrorCode(
        502, "The session service failed; try again.", "Orga Cloud failed or answered outside its contract."
    ),
    "minting_disabled": ErrorCode(
        503, "Session minting is paused; try again later.", "The kill switch has stopped all minting."
    ),
    "upstream_rate_limited": ErrorCode(
        503,
        "The session service is busy; try again shortly.",
        "Orga Cloud asked the proxy to slow down; see Retry-After.",
    ),
    "upstream_unavailable": ErrorCode(
        503,
        "The session service is unavailable; try again soon.",
        "The circuit breaker is open after repeated upstream failures; see Retry-After.",
    ),
    "overloaded": ErrorCode(
        503,
        "Too many sessions being started; try again.",
        "Too many upstream calls in flight; shed at once; see Retry-After.",
    ),
    "rate_limiter_unavailable": ErrorCode(
        503,
        "Temporarily unavailable; try again shortly.",
        "The rate-limit storage (Redis) is unreachable: fail closed.",
    ),
    "auth_unavailable": ErrorCode(
        503, "Authentication is unavailable; try again shortly.", "The identity provider's JWKS could not be fetched."
    ),
    "deadline_exceeded": ErrorCode(
        504,
        "The session service took too long to answer.",
        "No session config within the route's deadline (8 s by default).",
    ),
}
"""Every code the route answers with, in one place: each refusal takes its status and default sentence from here
(:meth:`ProxyError.of`), and the docs and the OpenAPI document list them from here."""


def markdown_table() -> str:
    """The error codes as the Markdown table of ``docs/proxy.md`` ("Responses")."""
    lines = ["| Status | Code | When |", "|---|---|---|"]
    for code, entry in sorted(ERRORS.items(), key=lambda item: (item[1].status, item[0])):
        lines.append(f"| {entry.status} | `{code}` | {entry.description} |")
    return "\n".join(lines)


class ProxyError(Exception):
    """A refusal of the route, ready to become ``{"error": {"code", "message", "requestId"}}``.

    ``message`` goes to the caller and is generic; ``detail`` goes to the log only (redacted). Raise one with
    :meth:`of`, which takes the status (and the default message) from :data:`ERRORS`.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.detail = detail

    @classmethod
    def of(
        cls,
        code: str,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> ProxyError:
        """The refusal ``code`` of :data:`ERRORS` (a KeyError for a code not in the table: add it there)."""
        entry = ERRORS[code]
        return cls(entry.status, code, message or entry.message, headers=headers, detail=detail)


def error_response(
    code: str, request_id: str, message: str | None = None, headers: Mapping[str, str] | None = None
) -> ProxyResponse:
    """The response of refusal ``code``, in the proxy's envelope (a 413 from every entry point comes from here)."""
    entry = ERRORS[code]
    return json_error(entry.status, code, message or entry.message, request_id, headers)


def body_too_large(request_id: str | None = None) -> ProxyResponse:
    """The 413 of a request body over the cap, for every entry point that checks a body before the core sees it."""
    return error_response("body_too_large", request_id or new_request_id())


class _DeadlineExceeded(Exception):
    """The route's own deadline ran out before or during the upstream call."""


def _retry_after(seconds: float | None, default: int = 1) -> str:
    if seconds is None or not math.isfinite(seconds):
        return str(default)
    return str(max(1, math.ceil(seconds)))


def error_for(exc: BaseException) -> ProxyError:
    """The one mapping from an exception to the status and code the caller sees.

    Orga refusing *our* key is 502 (not the caller's fault), Orga rate-limiting us is 503 with ``Retry-After``, a
    timeout is 504, any other upstream failure 502; anything unexpected is a bare 500.
    """
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, AuthenticationError):
        headers = {"WWW-Authenticate": www_authenticate(exc)} if exc.status == 401 else {}
        if exc.status == 503:
            headers["Retry-After"] = "5"
        entry = ERRORS.get(exc.code)
        status = entry.status if entry is not None else exc.status
        return ProxyError(status, exc.code, exc.message, headers=headers, detail=exc.detail)
    if isinstance(exc, RateLimiterUnavailable):
        return ProxyError.of(
            "rate_limiter_unavailable", headers={"Retry-After": "5"}, detail=f"rate-limit storage: {exc}"
        )
    if isinstance(exc, (_DeadlineExceeded, AsyncTimeout, OrgaAITimeoutError)):
        detail = redact(str(exc)) if isinstance(exc, OrgaAIError) else "route deadline exceeded"
        return ProxyError.of("deadline_exceeded", detail=detail)
    if isinstance(exc, OrgaAIError):
        detail = redact(f"{type(exc).__name__}: {exc.message} (status={exc.status}, request_id={exc.request_id})")
        if isinstance(exc, (OrgaAIAuthenticationError, OrgaAIPermissionError)):
            return ProxyError.of("upstream_auth_failed", detail=detail)
        if isinstance(exc, OrgaAIRateLimitError):
            headers = {"Retry-After": _retry_after(exc.retry_after)}
            return ProxyError.of("upstream_rate_limited", headers=headers, detail=detail)
        if isinstance(exc, OrgaAIConfigurationError):
            return ProxyError.of("proxy_misconfigured", detail=detail)
        return ProxyError.of("upstream_error", detail=detail)
    return ProxyError.of("internal_error", detail=type(exc).__name__)


def www_authenticate(exc: AuthenticationError) -> str:
    """The RFC 6750 challenge of a 401: ``error="invalid_token"`` when a token was sent and refused, and the same
    reason as the JSON message in ``error_description`` (fixed sentences, so nothing of a credential is echoed)."""
    description = exc.message.replace("\\", "").replace('"', "'")
    description = description.encode("ascii", "replace").decode("ascii")
    challenge = 'Bearer realm="orga-client-secrets"'
    if exc.code in ("invalid_token", "token_expired"):
        challenge += ', error="invalid_token"'
    return f'{challenge}, error_description="{description}"'


def json_error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: Mapping[str, str] | None = None,
) -> ProxyResponse:
    """An error response in the proxy's envelope, with the security headers."""
    out = {"Content-Type": "application/json", **security_headers(), "X-Request-ID": request_id}
    out.update(headers or {})
    body = json_bytes({"error": {"code": code, "message": message, "requestId": request_id}})
    return ProxyResponse(status, out, body)


def _is_upstream_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says Orga is failing (opens the breaker), as opposed to refusing or to a caller's error."""
    return isinstance(exc, (OrgaAIServerError, _DeadlineExceeded, AsyncTimeout))


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last-resort handler does)."""

    def emit(self, record: logging.LogRecord) -> None:
        # A closed stderr loses the line, not the request.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(self.format(record) + "\n")


_refusal_fallback = _StderrHandler()
_refusal_fallback.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))


def log_refusal(problem: ProxyError, request_id: str) -> None:
    """Why a caller got 401/403, at INFO on ``orga_ai.proxy.refused``, with the request id.

    An app that configured logging decides as usual. One that configured none (no handler anywhere) would never
    see an INFO line - Python's last-resort handler shows warnings only - so the line then goes to stderr anyway:
    "why was I refused?" must not depend on logging set-up.
    """
    detail = f" ({redact(problem.detail)})" if problem.detail else ""
    message = f"refused {problem.status} {problem.code}: {problem.message}{detail} request_id={request_id}"
    if refusal_logger.isEnabledFor(logging.INFO):
        refusal_logger.info("orga proxy: %s", message)
    elif not _logging_configured():
        record = refusal_logger.makeRecord(
            refusal_logger.name, logging.INFO, __file__, 0, "orga proxy: %s", (message,), None
        )
        _refusal_fallback.handle(record)


def _logging_configured() -> bool:
    logger: logging.Logger | None = refusal_logger
    while logger is not None:
        if logger.handlers:
            return True
        logger = logger.parent if logger.propagate else None
    return False
