"""A bare Starlette route over AsyncOrgaAI: the floor of what a Python proxy costs, without the product's layers.

    ORGA_API_KEY=... ORGA_BASE_URL=http://127.0.0.1:18001 python benchmarks/standin_proxy.py --port 18200

Not the contender of the benchmark (that is ``orga-ai serve``); run.py uses it only with ``--contender standin``, to
develop the harness, and as a reference point: the difference to ``orga-ai serve`` is what auth, rate limiting,
metrics, logging and the security headers cost per request.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orga_ai import AsyncOrgaAI


def build_app(prefetch: int) -> Starlette:
    orga = AsyncOrgaAI(prefetch=prefetch)

    async def secrets(request: Request) -> Response:
        config = await orga.get_session_config()
        return Response(json.dumps(config.to_client_json()), media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await orga.warm_up()
        yield
        await orga.close()

    return Starlette(routes=[Route("/api/orga-client-secrets", secrets)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18200)
    parser.add_argument("--prefetch", type=int, default=0)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.prefetch),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
