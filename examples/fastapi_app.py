"""The proxy route in a FastAPI app.

    export ORGA_API_KEY=sk_orga_ai_...  APP_JWT_SECRET=<the key your app signs its JWTs with>
    uvicorn examples.fastapi_app:app --port 8000

``GET /api/orga-client-secrets`` with ``Authorization: Bearer <your app's JWT>`` returns a session config;
``GET /me`` shows the same authentication used as a dependency on a route of your own.
"""

import os

from fastapi import Depends, FastAPI

from orga_ai.integrations.fastapi import OrgaProxy
from orga_ai.proxy import JWTAuth, Principal

auth = JWTAuth(secret=os.environ["APP_JWT_SECRET"], audience="my-app", issuer="https://my-app.example/")
orga = OrgaProxy(authenticate=auth, rate_limit="10/minute", cors_origins=["http://localhost:3000"])

app = FastAPI()
app.include_router(orga.router)


@app.get("/me")
async def me(principal: Principal = Depends(orga.principal)) -> dict[str, str]:  # noqa: B008 - FastAPI's idiom
    """Who the proxy thinks the caller is."""
    return {"id": principal.id, "kind": principal.kind}
