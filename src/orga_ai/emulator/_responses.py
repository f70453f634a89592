"""Orga's wire shapes for errors: the error envelope, FastAPI's 403 and 422 forms."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

__all__ = [
    "error_envelope",
    "error_response",
    "invalid_api_key_response",
    "not_authenticated_response",
    "validation_response",
]


def error_envelope(message: str, kind: str = "invalid_request_error", *, code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, Orga's error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_response(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error envelope with its status."""
    return JSONResponse(error_envelope(message, kind, code=code), status_code=status, headers=headers)


def invalid_api_key_response() -> JSONResponse:
    """The 401 of client-secrets. The real service wraps its upstream's envelope, JSON-encoded, inside ``message``."""
    inner = json.dumps(error_envelope("Incorrect or inactive API key provided.", code="invalid_api_key"))
    return error_response(401, inner)


def not_authenticated_response(detail: str = "Not authenticated") -> JSONResponse:
    """FastAPI's ``HTTPBearer`` answer when the Authorization header is missing or not a bearer."""
    return JSONResponse({"detail": detail}, status_code=403)


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    """FastAPI's 422: ``{"detail": [{"type", "loc", "msg", "input"}, ...]}``."""
    return JSONResponse({"detail": errors}, status_code=422)
