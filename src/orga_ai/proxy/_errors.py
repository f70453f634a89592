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
from ._request import ProxyResponse, json_bytes, security_headers

if sys.version_info >= (3, 11):
    AsyncTimeout: type[Exception] = TimeoutError  # asyncio's, from 3.11 on: the sync path never imports asyncio
else:  # pragma: no cover - Python 3.10
    from asyncio import TimeoutError as AsyncTimeout

__all__ = [
    "AsyncTimeout",
    "ProxyError",
    "error_for",
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


class ProxyError(Exception):
    """A refusal of the route, ready to become ``{"error": {"code", "message", "requestId"}}``.

    ``message`` goes to the caller and is generic; ``detail`` goes to the log only (redacted).
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
        return ProxyError(exc.status, exc.code, exc.message, headers=headers, detail=exc.detail)
    if isinstance(exc, RateLimiterUnavailable):
        return ProxyError(
            503,
            "rate_limiter_unavailable",
            "Temporarily unavailable; try again shortly.",
            headers={"Retry-After": "5"},
            detail=f"rate-limit storage: {exc}",
        )
    if isinstance(exc, (_DeadlineExceeded, AsyncTimeout, OrgaAITimeoutError)):
        detail = redact(str(exc)) if isinstance(exc, OrgaAIError) else "route deadline exceeded"
        return ProxyError(504, "deadline_exceeded", "The session service took too long to answer.", detail=detail)
    if isinstance(exc, OrgaAIError):
        detail = redact(f"{type(exc).__name__}: {exc.message} (status={exc.status}, request_id={exc.request_id})")
        if isinstance(exc, (OrgaAIAuthenticationError, OrgaAIPermissionError)):
            return ProxyError(502, "upstream_auth_failed", "The session service is misconfigured.", detail=detail)
        if isinstance(exc, OrgaAIRateLimitError):
            return ProxyError(
                503,
                "upstream_rate_limited",
                "The session service is busy; try again shortly.",
                headers={"Retry-After": _retry_after(exc.retry_after)},
                detail=detail,
            )
        if isinstance(exc, OrgaAIConfigurationError):
            return ProxyError(500, "proxy_misconfigured", "The session service is misconfigured.", detail=detail)
        return ProxyError(502, "upstream_error", "The session service failed; try again.", detail=detail)
    return ProxyError(500, "internal_error", "Internal error.", detail=type(exc).__name__)


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
