"""The route in a FastAPI app's own /openapi.json: one operation id per method, a description written for the app's
API users, and the documented responses (warnings are errors in this suite, so a duplicate operation id fails)."""

from __future__ import annotations

import warnings

import httpx
from fastapi import FastAPI

from orga_ai.integrations.fastapi import create_router
from orga_ai.proxy import SharedSecretAuth
from tests.support import serve

ROUTE = "/api/orga-client-secrets"


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


def test_openapi_describes_the_events_beacon() -> None:
    """``create_router(events=True)``: the beacon is an operation of the app's document (one id, its body and its
    204/400/401/403/413/429/503), like ``create_app``'s; its preflight is not; ``include_in_schema=False`` hides it."""
    from fastapi import Depends

    from orga_ai.proxy._openapi import openapi_document

    def current_user() -> str:
        return "alice"

    for route in ({"authenticate": SharedSecretAuth("s" * 32)}, {"principal": Depends(current_user)}):
        app = FastAPI()
        app.include_router(create_router(events=True, orga_options={"api_key": "sk_orga_ai_openapi_test"}, **route))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with serve(app) as url:
                document = httpx.get(url + "/openapi.json").json()
        beacon = document["paths"][ROUTE + "/events"]
        assert set(beacon) == {"post"}
        operation = beacon["post"]
        assert operation["operationId"] == "orga_session_events_post"
        assert set(operation["responses"]) == {"204", "400", "401", "403", "413", "429", "503"}
        assert "content" not in operation["responses"]["204"]
        envelope = operation["responses"]["413"]["content"]["application/json"]["schema"]
        assert envelope["properties"]["error"]["required"] == ["code", "message", "requestId"]
        assert "body_too_large" in operation["responses"]["413"]["description"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        standalone = openapi_document(ROUTE, events=True)["paths"][ROUTE + "/events"]
        assert body == standalone["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(operation["responses"]) == set(standalone["post"]["responses"])
        assert not [p for p in operation.get("parameters", ()) if p["in"] == "query"]  # the dependency adds none

    hidden = FastAPI()
    hidden.include_router(
        create_router(
            events=True,
            include_in_schema=False,
            authenticate=SharedSecretAuth("s" * 32),
            orga_options={"api_key": "sk_orga_ai_openapi_test"},
        )
    )
    with serve(hidden) as url:
        assert httpx.get(url + "/openapi.json").json().get("paths", {}) == {}
