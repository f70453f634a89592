"""The request and the response as the proxy's core sees them, whatever the framework.

:class:`ProxyRequest` is what an adapter translates its framework's request into (headers lower-cased, cookies parsed
on first access); :class:`ProxyResponse` is what it sends back as is. Beside them: the request id rules, the headers
every response carries and the JSON encoder of every body. Standard library only: the function entry points import
this on their cold start.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LazyCookies",
    "ProxyRequest",
    "ProxyResponse",
    "json_bytes",
    "new_request_id",
    "parse_cookies",
    "sane_request_id",
    "security_headers",
]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # fullmatch: `$` would also match before a final newline


def json_bytes(data: Any) -> bytes:
    # orjson once the ASGI app has loaded it (create_app does); the standard library otherwise. A function host
    # encodes one small document per invocation, and importing orjson (which loads uuid and platform) would add
    # ~7 ms to its cold start.
    orjson = sys.modules.get("orjson")
    if orjson is not None:
        encoded: bytes = orjson.dumps(data)
        return encoded
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def sane_request_id(value: str | None) -> str | None:
    """The caller's ``X-Request-ID`` if it is safe to echo and log (1-128 of ``A-Za-z0-9._:-``), else None."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    """A fresh random request id: 32 hex digits (128 random bits, as uuid4().hex gave, at a third of its cost)."""
    return os.urandom(16).hex()


def security_headers() -> dict[str, str]:
    """The headers every response of the proxy carries: credentials are never cached or sniffed."""
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """What the core needs to know of an HTTP request, whatever the framework.

    Attributes:
        method: the HTTP method, upper-case.
        path: the request path.
        headers: header names lower-cased; repeated headers joined with ``", "``.
        cookies: the parsed cookies.
        client_host: the TCP peer's address (a proxy's address when behind one).
        client_ip: the caller's address after honouring ``X-Forwarded-For`` from trusted proxies (set by the core).
        request_id: the request id already chosen by a middleware, if any (else the core chooses it).
        native: the framework's own request, for authenticators that need the app's login: Django's
            ``HttpRequest`` (after the middleware ran: ``request.user``, ``request.session``), Flask's ``request``
            (called inside its request context), Starlette's ``Request``; None under ``orga-ai serve``.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str] = field(default_factory=dict)
    client_host: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    native: Any = field(default=None, compare=False)

    @classmethod
    def from_pairs(
        cls,
        method: str,
        path: str,
        header_pairs: Iterable[tuple[str, str]],
        *,
        cookies: Mapping[str, str] | None = None,
        client_host: str | None = None,
        request_id: str | None = None,
        native: Any = None,
    ) -> ProxyRequest:
        """Build a request from raw header pairs (lower-casing names, joining repeats)."""
        headers: dict[str, str] = {}
        for name, value in header_pairs:
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if cookies is None:
            cookies = LazyCookies(headers.get("cookie", ""), parse_cookies)
        return cls(method.upper(), path, headers, cookies, client_host, None, request_id, native)

    def __repr__(self) -> str:
        # Headers and cookies carry credentials: never in a repr.
        return f"ProxyRequest({self.method} {self.path}, request_id={self.request_id!r})"


class LazyCookies(Mapping[str, str]):
    """The cookies of a ``Cookie`` header, parsed on first access: most routes never read them (only a JWT cookie
    does), so most requests never pay for the parse."""

    __slots__ = ("_header", "_parse", "_parsed")

    def __init__(self, header: str, parse: Callable[[str], dict[str, str]]) -> None:
        self._header = header
        self._parse = parse
        self._parsed: dict[str, str] | None = None

    def _cookies(self) -> dict[str, str]:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = self._parse(self._header) if self._header else {}
        return parsed

    def __getitem__(self, name: str) -> str:
        return self._cookies()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cookies())

    def __len__(self) -> int:
        return len(self._cookies())

    def __repr__(self) -> str:  # values are credentials: names only
        return f"LazyCookies({sorted(self._cookies())})"


def parse_cookies(header: str) -> dict[str, str]:
    """A ``Cookie`` header as a dict (first occurrence wins)."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


@dataclass(slots=True)
class ProxyResponse:
    """A response for the adapter to send as is: status, headers (already complete) and body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def media_type(self) -> str:
        return self.headers.get("Content-Type", "application/json")

    def __repr__(self) -> str:
        return f"ProxyResponse({self.status}, {len(self.body)} bytes)"
