"""CORS for the route, framework-neutral (the function entry points have no framework): the exact-origin allowlist
(never ``*``: the route answers with credentials), patterns adopted from the host app's own CORS set-up, and the
preflight. Reading the host app's set-up is :mod:`orga_ai.integrations._cors`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ._errors import ProxyError
from ._policy import validate_origins
from ._request import ProxyRequest, ProxyResponse

__all__ = ["ALLOWED_METHODS", "METHODS", "Cors"]

ALLOWED_METHODS = ("GET", "POST")
METHODS = ", ".join(ALLOWED_METHODS)
"""The route's methods as a header value (``Allow``, ``Access-Control-Allow-Methods``)."""
_ALLOW_HEADERS = frozenset({"authorization", "content-type", "x-request-id", "traceparent", "tracestate"})
_EXPOSE_HEADERS = "X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"


def _netloc(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[" and other unparsable origins are refused like any other
        return None


class Cors:
    """The origins allowed to call cross-origin, and where a developer changes them (named in the 403)."""

    __slots__ = ("origins", "patterns", "setting")

    def __init__(self, origins: Iterable[str], setting: str = "cors_origins") -> None:
        self.origins = validate_origins(origins)
        self.patterns: tuple[re.Pattern[str], ...] = ()
        self.setting = setting  # adapters name their own

    def check(self, request: ProxyRequest) -> dict[str, str]:
        """CORS headers for an allowed cross-origin caller; raises ProxyError(403) for a refused origin."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}  # not a browser cross-origin request (same-origin GET, server-to-server, curl)
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.origins or (self.patterns and self._pattern_allows(normalized)):
            return {
                # The allowlist's spelling (an allowed origin equals an entry, or a pattern's fullmatch, once
                # normalized): never bytes the caller chose.
                "Access-Control-Allow-Origin": normalized,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": _EXPOSE_HEADERS,
                "Vary": "Origin",
            }
        host = request.headers.get("host", "").lower()
        if normalized != "null" and host and _netloc(normalized) == host:
            return {"Vary": "Origin"}  # same-origin: the browser needs no CORS headers
        raise ProxyError.of(
            "origin_not_allowed",
            f"This origin may not call this endpoint; to allow it, add it to {self.setting}.",
            detail=f"origin refused ({len(origin)} chars)",
        )

    def _pattern_allows(self, origin: str) -> bool:
        return origin != "null" and any(pattern.fullmatch(origin) for pattern in self.patterns)

    def adopt(self, origins: Iterable[str], patterns: Iterable[str] = (), *, setting: str) -> None:
        """Also allow the origins the host app's own CORS set-up allows (``setting`` names where they are written,
        for the 403 message): exact origins, and regular expressions matched against the whole origin. Wildcards are
        refused as in ``cors_origins``."""
        if isinstance(origins, str) or isinstance(patterns, str):
            raise ValueError(f"{setting}: expected a list of origins, got one string")
        self.origins = self.origins | validate_origins(origins)
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"{setting}: {pattern!r} is not a regular expression ({exc})") from None
        self.patterns = (*self.patterns, *compiled)
        self.setting = setting

    @staticmethod
    def preflight(request: ProxyRequest, cors: dict[str, str]) -> ProxyResponse:
        """The answer to ``OPTIONS``: 204, with the CORS grant when the origin is allowed and asks for a method and
        headers the route takes."""
        wanted = request.headers.get("access-control-request-method", "").upper()
        headers = {"Allow": METHODS + ", OPTIONS"}
        if cors and wanted:
            if wanted not in ALLOWED_METHODS:
                raise ProxyError.of("method_not_allowed", headers=headers)
            asked = {h.strip().lower() for h in request.headers.get("access-control-request-headers", "").split(",")}
            asked.discard("")
            if not asked <= _ALLOW_HEADERS:
                raise ProxyError.of("header_not_allowed")
            headers.update(cors)
            headers.pop("Access-Control-Expose-Headers", None)
            headers["Access-Control-Allow-Methods"] = METHODS
            if asked:
                headers["Access-Control-Allow-Headers"] = ", ".join(sorted(asked))
            headers["Access-Control-Max-Age"] = "600"
        return ProxyResponse(204, headers, b"")
