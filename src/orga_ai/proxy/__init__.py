"""The secure client-secrets proxy: one framework-neutral policy, served standalone or through an adapter.

    from orga_ai.proxy import JWTAuth, create_app

    app = create_app(authenticate=JWTAuth(jwks_url="https://id.example.com/.well-known/jwks.json",
                                          audience="my-app", issuer="https://id.example.com/"))

The policy (:class:`ProxyCore`) decides who may call, how much, what JSON comes back and which error becomes which
status; ``create_app`` serves it with Starlette, and ``orga_ai.integrations.{fastapi,flask,django}`` mount it in an
existing app. Needs the ``orga-ai[proxy]`` extra.

``create_app`` loads on first use (PEP 562): a function entry point that needs only the policy never imports
Starlette.
"""

from typing import TYPE_CHECKING, Any

from ._auth import AnonymousAuth, AnyOf, AuthenticationError, Authenticator, JWTAuth, Principal, SharedSecretAuth
from ._breaker import CircuitBreaker
from ._core import DEFAULT_DEADLINE, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENCY, DEFAULT_PATH, ProxyCore
from ._errors import ProxyError, error_for
from ._fingerprint import principal_fingerprint
from ._killswitch import KillSwitch
from ._metrics import Metrics
from ._policy import ProxyPolicy
from ._ratelimit import RateLimitDecision, RateLimiter, RateLimiterUnavailable
from ._request import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from ._app import create_app
    from ._openapi import ERROR_CODES

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PATH",
    "ERROR_CODES",
    "AnonymousAuth",
    "AnyOf",
    "AuthenticationError",
    "Authenticator",
    "CircuitBreaker",
    "JWTAuth",
    "KillSwitch",
    "Metrics",
    "Principal",
    "ProxyCore",
    "ProxyError",
    "ProxyPolicy",
    "ProxyRequest",
    "ProxyResponse",
    "RateLimitDecision",
    "RateLimiter",
    "RateLimiterUnavailable",
    "SharedSecretAuth",
    "create_app",
    "error_for",
    "principal_fingerprint",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: a function host imports this package for the core and needs neither.
    if name == "ERROR_CODES":
        from ._openapi import ERROR_CODES

        return ERROR_CODES
    if name == "create_app":
        from ._app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
