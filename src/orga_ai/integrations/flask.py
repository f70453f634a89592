"""Flask: the client-secrets route as a ``Blueprint``, on the synchronous client.

    from flask import Flask
    from orga_ai.integrations.flask import create_blueprint
    from orga_ai.proxy import JWTAuth

    app = Flask(__name__)
    app.register_blueprint(create_blueprint(authenticate=JWTAuth(secret=SECRET, audience="my-app", issuer=ISSUER)))

Rate limits use the ``limits`` sync storage (``memory://`` per process, or ``redis://`` shared by every worker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from ..proxy._clients import SyncClientHolder
from ..proxy._core import DEFAULT_PATH, ProxyCore, ProxyRequest, ProxyResponse, json_error, new_request_id

if TYPE_CHECKING:
    from .._client import OrgaAI

__all__ = ["OrgaBlueprint", "create_blueprint"]


def _to_flask(response: ProxyResponse) -> Response:
    out = Response(response.body, status=response.status, headers=list(response.headers.items()))
    if response.status == 204:
        out.headers.pop("Content-Type", None)
    return out


def _body_within(limit: int) -> bool:
    # A declared length is checked by the core; this catches a chunked body the server would otherwise buffer.
    if request.content_length is not None:
        return True
    seen = 0
    while chunk := request.stream.read(4096):
        seen += len(chunk)
        if seen > limit:
            return False
    return True


class OrgaBlueprint(Blueprint):
    """A ``Blueprint`` serving the proxy route; ``core`` is the policy, ``close()`` releases the SDK client."""

    core: ProxyCore
    clients: SyncClientHolder

    def close(self) -> None:
        """Close the SDK client (if this blueprint created it) and the rate-limit storage's connections."""
        self.clients.close()
        self.core.rate_limiter.close()


def create_blueprint(
    *,
    orga: OrgaAI | None = None,
    path: str = DEFAULT_PATH,
    name: str = "orga_ai_proxy",
    core: ProxyCore | None = None,
    orga_options: dict[str, Any] | None = None,
    **policy: Any,
) -> OrgaBlueprint:
    """A blueprint serving ``GET``/``POST``/``OPTIONS`` ``path`` with the proxy policy.

    Args:
        orga: the SDK client; by default one ``OrgaAI(**orga_options)`` (``ORGA_API_KEY`` from the environment) is
            made on first use.
        path: where the route is served (relative to the blueprint's ``url_prefix``, if you give one).
        core: a ready :class:`~orga_ai.proxy.ProxyCore`; otherwise ``policy`` (``authenticate=``, ``rate_limit=``,
            ``cors_origins=``, ``trusted_proxies=``, ...) builds one.
    """
    policy_core = core if core is not None else ProxyCore(**policy)
    blueprint = OrgaBlueprint(name, __name__)
    blueprint.core = policy_core
    blueprint.clients = SyncClientHolder(policy_core.metrics, orga, options=orga_options)
    policy_core.announce()

    def client_secrets() -> Response:
        if request.method == "POST" and not _body_within(policy_core.max_body_bytes):
            return _to_flask(json_error(413, "body_too_large", "Request body too large.", new_request_id()))
        proxy_request = ProxyRequest.from_pairs(
            request.method,
            request.path,
            request.headers.items(),
            cookies=request.cookies,
            client_host=request.remote_addr,
        )
        return _to_flask(policy_core.handle_sync(proxy_request, blueprint.clients.get()))

    blueprint.add_url_rule(path, "client_secrets", client_secrets, methods=["GET", "POST", "OPTIONS"])
    return blueprint
