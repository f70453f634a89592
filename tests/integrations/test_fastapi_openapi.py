"""The route in a FastAPI app's own /openapi.json: one operation id per method, a description written for the app's
API users, and the documented responses (warnings are errors in this suite, so a duplicate operation id fails)."""

from __future__ import annotations

import warnings

import httpx
from fastapi import FastAPI

from orga_ai.integrations.fastapi import create_router
from orga_ai.proxy import SharedSecretAuth
from tests.support import serve


def test_openapi_has_one_operation_per_method_and_the_responses() -> None:
    app = FastAPI()
    app.include_router(
        create_router(authenticate=SharedSecretAuth("s" * 32), orga_options={"api_key": "sk_orga_ai_openapi_test"})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with serve(app) as url:
            document = httpx.get(url + "/openapi.json").json()
    route = document["paths"]["/api/orga-client-secrets"]
    assert set(route) == {"get", "post"}  # the preflight is not an API operation
    assert {route["get"]["operationId"], route["post"]["operationId"]} == {
        "orga_client_secrets_get",
        "orga_client_secrets_post",
    }
    for operation in route.values():
        assert "ephemeralToken" in operation["description"] and "endpoint" not in operation["description"].lower()
        assert {"200", "401", "403", "429", "503"} <= set(operation["responses"])
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(ok["required"]) == {"ephemeralToken", "iceServers"}
        refused = operation["responses"]["429"]["content"]["application/json"]["schema"]
        assert refused["properties"]["error"]["required"] == ["code", "message", "requestId"]
