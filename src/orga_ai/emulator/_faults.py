"""The fault vocabulary: one JSON object, sent in the ``X-Orga-Emulator`` header or armed via ``/_emulator/faults``.

    {"latency_ms": 200}                      wait, then answer normally (or apply the rest of the fault)
    {"status": 503, "retry_after": "1"}      answer that status with Orga's error envelope (Retry-After optional,
                                             sent verbatim)
    {"stall": true}                          answer nothing until the client gives up (bounded by stall_seconds)
    {"drop": true}                           send the headers and half the body, then break the connection
    {"body": "non_json" | "truncated" | "html" | "wrong_types" | "missing_fields" | "oversized" | "empty"}
                                             answer 200 (or ``status``) with that broken body

Keys combine: latency applies first, then stall, then drop, then status/body. Unknown keys are refused, so a typo
never silently turns a fault test into a passing one.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, cast

from ._responses import error_envelope

__all__ = [
    "BODY_KINDS",
    "FAULT_HEADER",
    "FAULT_PATHS",
    "Fault",
    "FaultError",
    "FaultQueue",
    "fault_body",
    "parse_fault",
]

FAULT_HEADER = "x-orga-emulator"
FAULT_PATHS = ("client-secrets", "ice-config", "calls", "*")
BodyKind = Literal["non_json", "truncated", "html", "wrong_types", "missing_fields", "oversized", "empty"]
BODY_KINDS: tuple[BodyKind, ...] = (
    "non_json",
    "truncated",
    "html",
    "wrong_types",
    "missing_fields",
    "oversized",
    "empty",
)
_MAX_LATENCY_MS = 120_000
# Large enough to pass any sane response cap (the SDK's is 256 KiB), small enough not to hurt a test run.
OVERSIZED_BYTES = 2 * 1024 * 1024
_FAULT_KEYS = frozenset({"latency_ms", "status", "retry_after", "stall", "drop", "body"})


class FaultError(ValueError):
    """A fault description that does not follow the vocabulary; the message says which key is wrong."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One parsed fault. Every field is optional; an empty fault changes nothing."""

    latency_ms: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    stall: bool = False
    drop: bool = False
    body: BodyKind | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fault in its wire vocabulary, without the keys left at their defaults."""
        out: dict[str, Any] = {}
        if self.latency_ms:
            out["latency_ms"] = self.latency_ms
        if self.status is not None:
            out["status"] = self.status
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.stall:
            out["stall"] = True
        if self.drop:
            out["drop"] = True
        if self.body is not None:
            out["body"] = self.body
        return out


def parse_fault(data: Any, *, extra_keys: frozenset[str] = frozenset()) -> Fault:
    """Validate one fault object (already decoded from JSON). ``extra_keys`` are skipped (``path``, ``count``)."""
    if not isinstance(data, dict):
        raise FaultError("a fault must be a JSON object")
    unknown = set(data) - _FAULT_KEYS - extra_keys
    if unknown:
        raise FaultError(f"unknown fault key(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FAULT_KEYS))}")

    latency = data.get("latency_ms", 0)
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency):
        raise FaultError("latency_ms must be a number of milliseconds")
    if not 0 <= latency <= _MAX_LATENCY_MS:
        raise FaultError(f"latency_ms must be between 0 and {_MAX_LATENCY_MS}")

    status = data.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599):
        raise FaultError("status must be an HTTP status between 200 and 599")

    retry_after = data.get("retry_after")
    if retry_after is not None:
        if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool):
            retry_after = str(retry_after)
        if not isinstance(retry_after, str) or "\r" in retry_after or "\n" in retry_after:
            raise FaultError("retry_after must be a string (sent verbatim as the Retry-After header)")

    flags: dict[str, bool] = {}
    for name in ("stall", "drop"):
        value = data.get(name, False)
        if not isinstance(value, bool):
            raise FaultError(f"{name} must be true or false")
        flags[name] = value

    body = data.get("body")
    if body is not None and body not in BODY_KINDS:
        raise FaultError(f"body must be one of: {', '.join(BODY_KINDS)}")

    return Fault(
        latency_ms=float(latency),
        status=status,
        retry_after=retry_after,
        stall=flags["stall"],
        drop=flags["drop"],
        body=cast("BodyKind | None", body),
    )


def parse_fault_header(raw: str) -> Fault:
    """Parse the ``X-Orga-Emulator`` header value."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise FaultError("the X-Orga-Emulator header must hold a JSON object") from None
    return parse_fault(data)


@dataclass(slots=True)
class _Armed:
    path: str
    remaining: int
    fault: Fault


class FaultQueue:
    """Faults armed through ``POST /_emulator/faults``, consumed first-in first-out by the requests they match.

    Not locked: it is used only from the server's event loop, between awaits.
    """

    def __init__(self) -> None:
        self._entries: deque[_Armed] = deque()

    def arm(self, path: str, count: int, fault: Fault) -> None:
        """Apply ``fault`` to the next ``count`` requests to ``path`` (or to any API path for ``"*"``)."""
        if path not in FAULT_PATHS:
            raise FaultError(f"path must be one of: {', '.join(FAULT_PATHS)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            raise FaultError("count must be a whole number between 1 and 100000")
        self._entries.append(_Armed(path, count, fault))

    def take(self, path: str) -> Fault | None:
        """The fault for one request to ``path``, if one is armed; it counts as used."""
        for entry in self._entries:
            if entry.path in (path, "*"):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._entries.remove(entry)
                return entry.fault
        return None

    def clear(self) -> None:
        """Disarm every fault."""
        self._entries.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        """The armed faults, oldest first, as JSON-ready dicts."""
        return [{"path": e.path, "count": e.remaining, **e.fault.to_dict()} for e in self._entries]


# --------------------------------------------------------------------------------------------------------------------
# Bodies. Plausible shapes per endpoint, so a client's parser meets the broken field where it looks for the real one.

_SAMPLE_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYXVsdCJ9.ZmF1bHQtaW5qZWN0ZWQtYnktdGhlLWVtdWxhdG9y"
_GOOD: dict[str, dict[str, Any]] = {
    "client-secrets": {
        "ephemeral_token": _SAMPLE_TOKEN,
        "token_type": "bearer",
        "expires_at": "2030-01-01T00:00:00.000000",
    },
    "ice-config": {"iceServers": [{"urls": ["stun:127.0.0.1:3478"]}]},
    "calls": {"conversation_id": "conv_fault", "answer": {"sdp": "v=0\r\n", "type": "answer"}},
}
_WRONG_TYPES: dict[str, dict[str, Any]] = {
    "client-secrets": {"ephemeral_token": 1234567890, "token_type": ["bearer"], "expires_at": {"at": "soon"}},
    "ice-config": {"iceServers": [{"urls": 3478, "username": 42, "credential": False}]},
    "calls": {"conversation_id": 42, "answer": {"sdp": ["v=0"], "type": 1}},
}
_MISSING_FIELDS: dict[str, dict[str, Any]] = {
    "client-secrets": {"token_type": "bearer", "expires_at": "2030-01-01T00:00:00.000000"},
    "ice-config": {"servers": []},
    "calls": {"conversation_id": "conv_fault"},
}
_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)
_NON_JSON = b"upstream said: OK, token issued\n"


def good_body(path: str) -> bytes:
    """A well-formed (but fake) success body for ``path``: what ``truncated`` and ``drop`` cut short."""
    return json.dumps(_GOOD.get(path, _GOOD["client-secrets"])).encode()


def fault_body(kind: BodyKind, path: str) -> tuple[bytes, str]:
    """The ``(body, content type)`` of a ``body`` fault for the API ``path`` (``client-secrets``, ...)."""
    key = path if path in _GOOD else "client-secrets"
    if kind == "html":
        return _HTML, "text/html; charset=utf-8"
    if kind == "non_json":
        # It claims to be JSON: the nastier lie, which a client must survive without trusting the header.
        return _NON_JSON, "application/json"
    if kind == "empty":
        return b"", "application/json"
    if kind == "truncated":
        whole = good_body(key)
        return whole[: len(whole) // 2], "application/json"
    if kind == "wrong_types":
        return json.dumps(_WRONG_TYPES[key]).encode(), "application/json"
    if kind == "missing_fields":
        return json.dumps(_MISSING_FIELDS[key]).encode(), "application/json"
    # oversized: valid JSON with every real field, whose only fault is its size.
    padded = dict(_GOOD[key], padding="x" * OVERSIZED_BYTES)
    return json.dumps(padded).encode(), "application/json"


def status_body(status: int) -> bytes:
    """Orga's error envelope for an injected status."""
    if status == 429:
        kind, message = "rate_limit_error", "Rate limit exceeded (injected by the emulator)."
    elif status >= 500:
        kind, message = "server_error", f"The server had an error (HTTP {status} injected by the emulator)."
    else:
        kind, message = "invalid_request_error", f"HTTP {status} injected by the emulator."
    return json.dumps(error_envelope(message, kind, code="emulated_fault")).encode()
