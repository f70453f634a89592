"""The OpenAPI 3.1 document of the proxy's route, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ._errors import ERRORS

__all__ = ["ERROR_CODES", "openapi_document"]

ERROR_CODES: dict[str, tuple[int, str]] = {code: (entry.status, entry.description) for code, entry in ERRORS.items()}
"""Each error code's status and meaning, for the docs and the OpenAPI document (the table itself: ``ERRORS``)."""


def openapi_document(path: str, *, events: bool = False) -> dict[str, Any]:
    """The OpenAPI document of the route mounted at ``path`` (with ``events``: its ``/events`` beacon too)."""
    error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    by_status: dict[int, list[str]] = {}
    for code, (status, _) in ERROR_CODES.items():
        by_status.setdefault(status, []).append(code)
    responses: dict[str, Any] = {
        "200": {
            "description": "One single-use session config. Hand it to exactly one client.",
            "headers": {
                "Cache-Control": {"schema": {"type": "string", "const": "no-store"}},
                "RateLimit-Remaining": {"schema": {"type": "integer"}},
            },
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionConfig"}}},
        }
    }
    for status, codes in sorted(by_status.items()):
        if status in (404, 405):
            continue
        responses[str(status)] = {"description": "error codes: " + ", ".join(codes), **error_ref}
    operation = {
        "summary": "Mint an Orga session config (ephemeral token + ICE servers) for the authenticated caller",
        "security": [{"bearer": []}],
        "responses": responses,
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Orga AI client-secrets proxy", "version": __version__},
        "paths": {
            path: {
                "get": {**operation, "operationId": "getClientSecrets"},
                "post": {**operation, "operationId": "postClientSecrets"},
            },
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "Configuration sane, rate-limit storage reachable, upstream breaker not open",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "IceServer": {
                    "type": "object",
                    "required": ["urls"],
                    "properties": {
                        "urls": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                        "username": {"type": "string"},
                        "credential": {"type": "string"},
                    },
                },
                "SessionConfig": {
                    "type": "object",
                    "required": ["ephemeralToken", "iceServers"],
                    "properties": {
                        "ephemeralToken": {"type": "string"},
                        "iceServers": {"type": "array", "items": {"$ref": "#/components/schemas/IceServer"}},
                        "expiresAt": {"type": "string", "format": "date-time"},
                        "refreshAfter": {
                            "type": "string",
                            "format": "date-time",
                            "description": "Fetch a fresh config after this time: before the token and the TURN "
                            "credentials expire.",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "requestId"],
                            "properties": {
                                "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                                "message": {"type": "string"},
                                "requestId": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
    }
    if events:
        refused = {str(status): {"description": "refused", **error_ref} for status in EVENT_REFUSALS}
        document["paths"][path.rstrip("/") + "/events"] = {
            "post": {
                "operationId": "postSessionEvent",
                "summary": EVENT_SUMMARY,
                "security": [{"bearer": []}],
                "requestBody": event_request_body(),
                "responses": {
                    "204": {"description": "Logged."},
                    **refused,
                },
            }
        }
    return document


EVENT_REFUSALS = (400, 401, 403, 413, 429, 503)
"""The statuses the events beacon refuses with (the error envelope)."""

EVENT_SUMMARY = "Log {request_id, conversation_id, state} to join a minted session to its Orga call"


def event_request_body() -> dict[str, Any]:
    """The beacon's request body: one small JSON object (1 KiB at most)."""
    identifier = {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["request_id", "conversation_id", "state"],
                    "properties": {
                        "request_id": identifier,
                        "conversation_id": identifier,
                        "state": {"type": "string", "pattern": "^[a-z][a-z_]{0,31}$"},
                    },
                }
            }
        },
    }


def _refusals(statuses: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    """The error envelope's responses for ``statuses``, with inline schemas, each naming its codes."""
    error = openapi_document("/")["components"]["schemas"]["Error"]
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        codes = sorted(code for code, (s, _) in ERROR_CODES.items() if s == status)
        out[status] = {
            "description": "Refused; error.code is one of: " + ", ".join(codes),
            "content": {"application/json": {"schema": error}},
        }
    return out


def route_responses() -> dict[int | str, dict[str, Any]]:
    """The route's documented responses with inline schemas, for a host app's own OpenAPI document (FastAPI):
    the 200 body and the error envelope of 401, 403, 429 and 503."""
    components = openapi_document("/")["components"]["schemas"]
    session = dict(components["SessionConfig"])
    session["properties"] = {**session["properties"], "iceServers": {"type": "array", "items": components["IceServer"]}}
    ok: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "One single-use session config for the Orga client SDK. Hand it to exactly one client.",
            "content": {"application/json": {"schema": session}},
        }
    }
    return {**ok, **_refusals((401, 403, 429, 503))}


def event_responses() -> dict[int | str, dict[str, Any]]:
    """The beacon's documented responses for a host app's own OpenAPI document (FastAPI): 204, and the error
    envelope of its refusals."""
    return {204: {"description": "Logged."}, **_refusals(EVENT_REFUSALS)}
