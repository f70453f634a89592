"""Google Cloud Functions and Cloud Run functions: the client-secrets route as an HTTP function for
``functions-framework`` (a Flask request in, a Flask response out).

The function file (``main.py``, deployed with ``--entry-point client_secrets``) is one line::

    from orga_ai.integrations.gcp import client_secrets  # configured by ORGA_PROXY_*, ORGA_API_KEY

or, for a policy in code::

    from orga_ai.integrations.gcp import make_function
    from orga_ai.proxy import JWTAuth

    client_secrets = make_function(
        authenticate=JWTAuth(jwks_url="https://id.example.com/.well-known/jwks.json", audience="my-app"),
        storage_uri="redis://10.0.0.3:6379/0",
    )

Served by ``ProxyCore.handle_sync`` on the sync client, created on the first request and reused by the instance's
later ones. The caller's address is the hop Google's front end appended to ``X-Forwarded-For``. ``memory://``
rate limits are refused (see :func:`orga_ai.integrations._function.function_core`). Needs ``orga-ai[gcp]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._extras import require_extra

require_extra("orga_ai.integrations.gcp", "gcp", "flask")

from flask import Request, Response, request

from ..proxy._mount import refuse_stream
from ..proxy._request import ProxyRequest
from ._function import FunctionConfigurationError, FunctionRoute, core_from_env, function_core, platform_peer
from .flask import _to_flask

if TYPE_CHECKING:
    from .._client import OrgaAI
    from ..proxy._core import ProxyCore

__all__ = [
    "CloudFunction",
    "FunctionConfigurationError",
    "client_secrets",  # noqa: F822 - made on first access, by __getattr__ below
    "make_function",
]


class CloudFunction:
    """The route behind the HTTP function that :func:`make_function` returns (as its ``cloud_function``)."""

    def __init__(self, route: FunctionRoute) -> None:
        self.route = route

    @property
    def core(self) -> ProxyCore:
        return self.route.core

    def __call__(self, flask_request: Request | None = None) -> Response:
        incoming = flask_request if flask_request is not None else request
        pairs = list(incoming.headers.items())
        client_host, pairs = platform_peer(pairs, incoming.remote_addr)
        proxy_request = ProxyRequest.from_pairs(
            incoming.method, incoming.path, pairs, cookies=incoming.cookies, client_host=client_host
        )
        refused = refuse_stream(proxy_request, incoming.stream.read, self.route.core.max_body_bytes)
        return _to_flask(refused or self.route.serve(proxy_request))

    def close(self) -> None:
        """Close the SDK client and the rate-limit storage's connections."""
        self.route.close()

    def __repr__(self) -> str:
        return f"CloudFunction({self.route.core!r})"


def make_function(
    *,
    orga: OrgaAI | None = None,
    orga_options: Mapping[str, Any] | None = None,
    core: ProxyCore | None = None,
    **policy: Any,
) -> Callable[[Request], Response]:
    """An HTTP function with this policy; assign it to the name given as the entry point.

    ``functions-framework`` takes only plain functions: the route behind this one (its policy and client) is its
    ``cloud_function`` attribute, a :class:`CloudFunction`.

    Args:
        orga / orga_options: the sync client, or the arguments of the one made on the first request
            (``ORGA_API_KEY``, ``ORGA_BASE_URL``... fill the rest; mount the key from Secret Manager as
            ``ORGA_API_KEY`` with ``--set-secrets``).
        core / policy: the route's policy, as for :class:`~orga_ai.proxy.ProxyCore`; ``memory://`` rate limits are
            refused: use ``storage_uri="redis://..."`` (Memorystore) or ``rate_limit=None``.

    Raises:
        FunctionConfigurationError: the configuration cannot work (no key, memory:// limits, no authentication).
    """
    route = FunctionRoute(function_core(core, extra="gcp", **policy), orga=orga, orga_options=orga_options)
    route.core.announce()
    served = CloudFunction(route)

    def client_secrets(request: Request) -> Response:
        return served(request)

    client_secrets.cloud_function = served  # type: ignore[attr-defined]
    return client_secrets


def __getattr__(name: str) -> Any:
    # Made when main.py imports it (the instance's start), from the environment: a bad configuration fails there.
    if name == "client_secrets":
        made = make_function(core=core_from_env("gcp"))
        globals()["client_secrets"] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
