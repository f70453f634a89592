"""What every function entry point (AWS Lambda, Cloud Functions, the ASGI/WSGI function files) shares: the policy
read from ``ORGA_PROXY_*``, the rule on rate-limit storage, and one lazily created sync client per instance.

A function instance serves one invocation at a time and lives for many of them: everything expensive (the SDK
client and its connection, the Redis connection, the API key fetched from a secret store) is made on the first
invocation that needs it and reused by the warm ones after it. Nothing here imports Starlette, uvicorn,
``prometheus_client`` or an async HTTP library.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..proxy._clients import SyncClientHolder
from ..proxy._core import ProxyCore
from ..proxy._errors import error_response, redact
from ..proxy._metrics import NullMetrics
from ..proxy._request import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from .._client import OrgaAI
    from ..proxy._policy import ProxyPolicy

__all__ = [
    "FunctionConfigurationError",
    "FunctionRoute",
    "core_from_env",
    "function_core",
    "platform_peer",
    "policy_from_env",
    "require_installed",
]

logger = logging.getLogger("orga_ai.proxy")

_MEMORY_REFUSED = (
    "in-process (memory://) rate limits mean nothing across function instances: give a shared storage "
    "(storage_uri='redis://...', or ORGA_PROXY_REDIS_URL) or turn limits off explicitly with rate_limit=None "
    "(ORGA_PROXY_RATE_LIMIT=none)"
)


class FunctionConfigurationError(ValueError):
    """A function entry point cannot start with this configuration; the message says what to change."""


def require_installed(extra: str, *modules: str) -> None:
    """Refuse to start, in one line naming the extra, when a module the configuration needs is not installed
    (found without importing it: the import itself waits for the first invocation that uses it)."""
    from .._extras import missing_modules, not_installed

    missing = missing_modules(*modules)
    if missing:
        raise FunctionConfigurationError(f"{not_installed(missing)}: pip install 'orga-ai[{extra}]'")


def function_core(core: ProxyCore | None = None, *, extra: str = "functions", **policy: Any) -> ProxyCore:
    """The :class:`ProxyCore` of a function: ``policy`` as for :class:`ProxyCore`, with two differences.

    * ``memory://`` rate limits are refused (each instance would count alone, so the limit would grow with the
      platform's scaling): configure ``storage_uri='redis://...'`` (or ``rediss://``), or pass ``rate_limit=None``
      (and no ``global_rate_limit``) to mean "no limits".
    * Metrics record nothing (a function has no ``/metrics`` endpoint); pass ``metrics=`` to keep them.
    * A library the configuration needs and that is not installed is named at start, with ``extra``.

    Raises:
        FunctionConfigurationError: memory:// limits, or anything :class:`ProxyCore` refuses.
    """
    if core is None:
        policy.setdefault("metrics", NullMetrics())
        try:
            core = ProxyCore(**policy)
        except ValueError as exc:
            raise FunctionConfigurationError(str(exc)) from None
    if core.rate_limiter.enabled and not core.rate_limiter.distributed:
        raise FunctionConfigurationError(_MEMORY_REFUSED)
    if core.rate_limiter.enabled:
        require_installed(extra, "limits", "redis")
    return core


def policy_from_env(environ: Mapping[str, str] | None = None, *, extra: str = "functions") -> ProxyPolicy:
    """The :class:`~orga_ai.proxy.ProxyPolicy` that the ``ORGA_PROXY_*`` variables describe (the same variables and
    the same reading as ``orga-ai serve``; the listening options such as the port do not apply to a function).

    Raises:
        FunctionConfigurationError: a variable is unreadable, no authentication is configured, or a library the
            variables ask for is not installed (named with ``extra``, before anything imports it).
    """
    from ..proxy._policy import ProxyPolicy
    from ..proxy._settings import build_authenticator, resolve

    try:
        settings = resolve({}, environ)
    except ValueError as exc:
        raise FunctionConfigurationError(str(exc)) from None
    if settings["jwt_secret"] or settings["jwks_url"]:
        require_installed(extra, "jwt")
    if settings["redis_url"] and (settings["rate_limit"] is not None or settings["global_rate_limit"] is not None):
        require_installed(extra, "limits", "redis")
    try:
        authenticate = build_authenticator(settings)
        if authenticate is None and not settings["allow_anonymous"]:
            raise FunctionConfigurationError(
                "no authentication configured: set ORGA_PROXY_SHARED_SECRET, ORGA_PROXY_JWT_SECRET or "
                "ORGA_PROXY_JWKS_URL (or ORGA_PROXY_ALLOW_ANONYMOUS=1, for development only)"
            )
        return ProxyPolicy.from_settings(settings, authenticate=authenticate)
    except FunctionConfigurationError:
        raise
    except ValueError as exc:
        raise FunctionConfigurationError(str(exc)) from None


def platform_peer(pairs: list[tuple[str, str]], fallback: str | None) -> tuple[str | None, list[tuple[str, str]]]:
    """(peer, pairs) for a request that reached the function through the platform's front end (an ALB, Google's
    front end), which appends the address that connected to it to ``X-Forwarded-For``.

    That right-most hop is the peer (the front end is trusted by construction) and leaves the header; the hops left
    of it stay, believed only from the trusted proxies the policy names, as behind any other proxy. Without the
    header the peer is ``fallback`` (the TCP peer, on a local run).
    """
    forwarded = [value for name, value in pairs if name.lower() == "x-forwarded-for"]
    hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
    if not hops:
        return fallback, pairs
    peer = hops.pop()
    kept = [(name, value) for name, value in pairs if name.lower() != "x-forwarded-for"]
    if hops:
        kept.append(("x-forwarded-for", ", ".join(hops)))
    return peer, kept


def core_from_env(extra: str, environ: Mapping[str, str] | None = None) -> ProxyCore:
    """The function's :class:`ProxyCore` from the ``ORGA_PROXY_*`` variables (see :func:`policy_from_env`); a refused
    origin's 403 names ``ORGA_PROXY_CORS_ORIGIN`` as the setting to change."""
    core = function_core(extra=extra, policy=policy_from_env(environ, extra=extra))
    core.cors_setting = "ORGA_PROXY_CORS_ORIGIN"
    return core


class FunctionRoute:
    """The policy plus one sync :class:`~orga_ai.OrgaAI`, created on the first invocation and reused after it.

    Args:
        core: the policy (see :func:`function_core`).
        orga: a ready client; by default ``OrgaAI(**orga_options)`` is made on first use.
        orga_options: arguments of that ``OrgaAI`` (``ORGA_API_KEY``, ``ORGA_BASE_URL``... fill the rest).
        api_key: called once, on first use, for the API key when ``orga_options`` has none (a secret-store lookup,
            say); a failure is answered with 500 and retried on the next invocation.
        key_hint: more ways to give the key, for the error raised when there is none.
    """

    def __init__(
        self,
        core: ProxyCore,
        *,
        orga: OrgaAI | None = None,
        orga_options: Mapping[str, Any] | None = None,
        api_key: Callable[[], str] | None = None,
        key_hint: str = "",
    ) -> None:
        self.core = core
        self._orga = orga
        self._options = dict(orga_options or {})
        self._api_key = api_key
        self._lock = threading.Lock()
        self._clients: SyncClientHolder | None = None
        if orga is None and api_key is None and not self._options.get("api_key") and not os.environ.get("ORGA_API_KEY"):
            raise FunctionConfigurationError(
                "no Orga API key: set ORGA_API_KEY (from the platform's secret store)"
                f"{key_hint} or pass orga_options={{'api_key': ...}}"
            )

    def client(self) -> OrgaAI:
        """The SDK client, created (and its key fetched) on first use."""
        clients = self._clients
        if clients is None:
            with self._lock:
                if self._clients is None:
                    options = dict(self._options)
                    if self._orga is None and self._api_key is not None and not options.get("api_key"):
                        options["api_key"] = self._api_key()
                    self._clients = SyncClientHolder(self.core.metrics, self._orga, options=options)
                clients = self._clients
        return clients.get()

    def serve(self, request: ProxyRequest, deadline: float | None = None) -> ProxyResponse:
        """Answer one request: the core's response, or a 500 envelope when the client cannot be made.

        ``deadline``: the seconds the platform still gives this invocation, when fewer than the route's deadline.
        """
        try:
            client = self.client()
        except Exception as exc:  # noqa: BLE001 - a missing key or a secret store down: answer, log, retry later
            request_id = self.core.prepare(request).request_id or ""
            logger.error("orga proxy: cannot create the Orga client: %s", redact(f"{type(exc).__name__}: {exc}"))
            return error_response("proxy_misconfigured", request_id)
        return self.core.handle_sync(request, client, deadline=deadline)

    def close(self) -> None:
        """Close the client (if this route made it) and the rate-limit storage's connections."""
        with self._lock:
            clients, self._clients = self._clients, None
        if clients is not None:
            clients.close()
        self.core.rate_limiter.close()

    def __repr__(self) -> str:
        return f"FunctionRoute({self.core!r})"
