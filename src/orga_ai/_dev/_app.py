"""The dev server's ASGI app: the demo page, its ``/dev/config.json``, and the proxy route mounted beside them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI
    from .._ice import IcePolicy

__all__ = ["PROXY_PATH", "STATIC_DIR", "DevPage", "create_dev_app"]

STATIC_DIR = Path(__file__).parent / "static"
PROXY_PATH = "/api/orga-client-secrets"
# Generous for one developer reloading the page, still low enough that the page's "rate limited" message can be seen.
DEV_RATE_LIMIT = "60/minute"


@dataclass(frozen=True)
class DevPage:
    """What the demo page is told through ``/dev/config.json``.

    Attributes:
        orga_base_url: where the page sends ``POST /v1/realtime/calls`` (the emulator, or Orga Cloud).
        emulator: True when ``orga_base_url`` is the local emulator.
    """

    orga_base_url: str
    emulator: bool

    def to_json(self) -> dict[str, Any]:
        """The camelCase JSON the page reads."""
        return {"orgaBaseUrl": self.orga_base_url, "emulator": self.emulator, "sessionEndpoint": PROXY_PATH}


def _content_security_policy(orga_base_url: str) -> str:
    # The page loads nothing from elsewhere and talks only to itself and Orga: say so, so a stray CDN link or an
    # injected script fails loudly in development rather than in someone's production copy of this page.
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        f"connect-src 'self' {orga_base_url}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def create_dev_app(page: DevPage, orga: AsyncOrgaAI, *, ice_policy: IcePolicy | None = None) -> Starlette:
    """The dev app: ``/`` (demo page), ``/dev/config.json``, ``/static/*``, and the proxy at :data:`PROXY_PATH`.

    ``orga`` is the SDK client the proxy mints session configs with; the app closes it at shutdown. ``ice_policy``
    is the proxy route's ICE policy.
    """
    from ..proxy import create_app as create_proxy_app

    proxy = create_proxy_app(
        orga=orga, allow_anonymous=True, rate_limit=DEV_RATE_LIMIT, path=PROXY_PATH, ice_policy=ice_policy
    )
    csp = _content_security_policy(page.orga_base_url)
    config_body = json.dumps(page.to_json()).encode()

    async def index(request: Request) -> Response:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"},
        )

    async def dev_config(request: Request) -> Response:
        return Response(config_body, media_type="application/json", headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A mounted app's lifespan is not run by Starlette: run the proxy's here (it opens and closes its clients).
        try:
            async with proxy.router.lifespan_context(proxy):
                yield
        finally:
            await orga.close()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/dev/config.json", dev_config, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        Mount("/", proxy),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
