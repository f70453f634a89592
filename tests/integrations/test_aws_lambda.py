"""AWS Lambda: real event documents of each source (tests/fixtures/aws_lambda) through the public handler, in front of
the emulator; the default handler in a fresh process (what it imports); and AWS's own runtime interface client
driving the handler over a local stand-in of the Lambda Runtime API."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orga_ai.integrations.aws_lambda import (
    FunctionConfigurationError,
    LambdaHandler,
    UnsupportedEventError,
    make_handler,
)
from orga_ai.proxy import ProxyError, ProxyRequest, SharedSecretAuth
from orga_ai.testing import RunningEmulator
from tests.integrations.conftest import FUNCTION_SECRET, scan_answer
from tests.integrations.lambda_runtime_api import RuntimeAPI
from tests.reliability.support import Canary
from tests.support import free_port, stop_process

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aws_lambda"
EVENTS = ("apigw-http-v2", "function-url", "apigw-rest-v1", "apigw-http-v1", "alb", "alb-multivalue")
SRC = Path(__file__).resolve().parents[2] / "src"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def with_header(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """``event`` with one more header, written where that kind of event carries headers."""
    event = copy.deepcopy(event)
    if isinstance(event.get("multiValueHeaders"), dict):
        event["multiValueHeaders"][name] = [value]
    if "multiValueHeaders" not in event or isinstance(event.get("headers"), dict):
        event.setdefault("headers", {})
        event["headers"][name if event.get("version") != "2.0" else name.lower()] = value
    return event


def authorized(name: str) -> dict[str, Any]:
    return with_header(load(name), "Authorization", f"Bearer {FUNCTION_SECRET}")


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    if "multiValueHeaders" in response:
        return {name.lower(): values[-1] for name, values in response["multiValueHeaders"].items()}
    return {name.lower(): value for name, value in response["headers"].items()}


def lambda_handler(emulator: RunningEmulator, **policy: Any) -> LambdaHandler:
    policy.setdefault("authenticate", SharedSecretAuth(FUNCTION_SECRET))
    policy.setdefault("rate_limit", None)
    options = {"api_key": emulator.api_key, "base_url": emulator.base_url, "max_retries": 0}
    return make_handler(orga_options=options, **policy)


class FakeContext:
    """The attributes of Lambda's context object the handler reads (the runtime's own is used in the ric test)."""

    aws_request_id = "8f5d3c52-0c2e-4b8e-9a51-3e1f2b7c6d90"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.mark.parametrize("name", EVENTS)
def test_each_event_kind_mints_a_session_and_answers_in_its_own_format(
    name: str, emulator: RunningEmulator, leak_canary: Canary
) -> None:
    handler = lambda_handler(emulator)
    event = authorized(name)
    try:
        response = handler(event, FakeContext())
    finally:
        handler.close()
    scan_answer(leak_canary, json.dumps(response))
    assert response["statusCode"] == 200, response
    assert response["isBase64Encoded"] is False
    body = json.loads(response["body"])
    assert {"ephemeralToken", "iceServers"} <= set(body)
    headers = headers_of(response)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    # Multi-value headers exactly when the event used them; 2.0 never has them; ALB needs a status line.
    assert ("multiValueHeaders" in response) == (name in {"apigw-rest-v1", "apigw-http-v1", "alb-multivalue"})
    assert ("headers" in response) == ("multiValueHeaders" not in response)
    assert ("statusDescription" in response) == name.startswith("alb")
    if name.startswith("alb"):
        assert response["statusDescription"] == "200 OK"
        # ALB events carry no request id of their own: the invocation's is used.
        assert headers["x-request-id"] == FakeContext.aws_request_id
    else:
        assert headers["x-request-id"] == event["requestContext"]["requestId"]
    assert len(emulator.requests()) == 2


def test_the_client_is_made_once_and_reused_by_warm_invocations(emulator: RunningEmulator, leak_canary: Canary) -> None:
    handler = lambda_handler(emulator)
    try:
        first = handler.route.client()
        for name in EVENTS:
            response = handler(authorized(name), FakeContext())
            scan_answer(leak_canary, json.dumps(response))
            assert response["statusCode"] == 200
        assert handler.route.client() is first
    finally:
        handler.close()


def test_refusals_keep_the_event_format_and_the_envelope(emulator: RunningEmulator, leak_canary: Canary) -> None:
    handler = lambda_handler(emulator)
    try:
        for name in EVENTS:
            event = load(name)
            response = handler(event, FakeContext())
            scan_answer(leak_canary, json.dumps(response))
            assert response["statusCode"] == 401, (name, response)
            headers = headers_of(response)
            assert headers["www-authenticate"].startswith("Bearer")
            error = json.loads(response["body"])["error"]
            assert error["code"] == "unauthenticated"
            assert error["requestId"] == headers["x-request-id"]
            if name.startswith("alb"):
                assert response["statusDescription"] == "401 Unauthorized"
        assert emulator.requests() == []
    finally:
        handler.close()


def test_preflight_from_an_allowed_origin(emulator: RunningEmulator, leak_canary: Canary) -> None:
    origin = "https://app.example.com"
    handler = lambda_handler(emulator, cors_origins=[origin])
    try:
        for name in ("apigw-http-v2", "apigw-rest-v1", "alb-multivalue"):
            event = load(name)
            if name == "apigw-http-v2":
                event["requestContext"]["http"]["method"] = "OPTIONS"
            else:
                event["httpMethod"] = "OPTIONS"
            event = with_header(event, "Origin", origin)
            event = with_header(event, "Access-Control-Request-Method", "POST")
            event = with_header(event, "Access-Control-Request-Headers", "authorization")
            response = handler(event, FakeContext())
            scan_answer(leak_canary, json.dumps(response))
            assert response["statusCode"] == 204, (name, response)
            assert response["body"] == ""
            headers = headers_of(response)
            assert headers["access-control-allow-origin"] == origin
            assert headers["access-control-allow-headers"] == "authorization"
            assert "content-type" not in headers
            # And the real request from that origin carries the CORS answer.
            real = with_header(authorized(name), "Origin", origin)
            answer = handler(real, FakeContext())
            assert answer["statusCode"] == 200
            assert headers_of(answer)["access-control-allow-origin"] == origin
            scan_answer(leak_canary, json.dumps(answer))
    finally:
        handler.close()


def test_what_the_authenticator_sees(emulator: RunningEmulator, leak_canary: Canary) -> None:
    seen: list[ProxyRequest] = []

    def authenticate(request: ProxyRequest) -> str:
        seen.append(request)
        return "user-1"

    handler = lambda_handler(emulator, authenticate=authenticate)
    trusting = lambda_handler(emulator, authenticate=authenticate, trusted_proxies=["198.51.100.0/24"])
    try:
        for name in EVENTS:
            assert handler(load(name), FakeContext())["statusCode"] == 200
        assert trusting(load("alb-multivalue"), FakeContext())["statusCode"] == 200
    finally:
        handler.close()
        trusting.close()
    by_name = dict(zip((*EVENTS, "alb-trusting"), seen, strict=True))
    assert by_name["apigw-http-v2"].client_ip == "203.0.113.7"
    assert by_name["function-url"].client_ip == "198.51.100.23"
    assert by_name["apigw-rest-v1"].client_ip == "192.0.2.44"
    assert by_name["apigw-http-v1"].client_ip == "192.0.2.90"
    # ALB: the hop the load balancer appended is the peer; what the caller wrote left of it is not believed...
    assert by_name["alb"].client_ip == "198.51.100.77"
    assert by_name["alb-multivalue"].client_ip == "198.51.100.77"
    # ...unless that peer is a proxy the policy trusts.
    assert by_name["alb-trusting"].client_ip == "203.0.113.200"
    # Cookies: 2.0's cookies field, 1.0's header, ALB's repeated header, all parsed the same way.
    for name in ("apigw-http-v2", "apigw-rest-v1", "alb-multivalue"):
        assert dict(by_name[name].cookies) == {"theme": "dark", "session_hint": "abc123"}, name
    assert dict(by_name["alb"].cookies) == {"theme": "dark"}
    assert by_name["apigw-http-v2"].method == "POST"
    assert by_name["apigw-rest-v1"].path == "/api/orga-client-secrets"
    assert by_name["apigw-rest-v1"].request_id == "d54e54f5-0202-11e7-83ea-8d40733c326f"


def test_bodies(emulator: RunningEmulator, leak_canary: Canary) -> None:
    handler = lambda_handler(emulator)
    try:
        small = authorized("apigw-http-v1")  # a base64 "{}" body
        assert handler(small, FakeContext())["statusCode"] == 200
        large = copy.deepcopy(small)
        large["body"] = base64.b64encode(b"x" * 5000).decode()
        large["headers"].pop("Content-Length")
        large["multiValueHeaders"].pop("Content-Length")
        response = handler(large, FakeContext())
        assert response["statusCode"] == 413
        assert json.loads(response["body"])["error"]["code"] == "body_too_large"
        garbled = copy.deepcopy(small)
        garbled["body"] = "not base64!"
        response = handler(garbled, FakeContext())
        assert response["statusCode"] == 400
        assert "multiValueHeaders" in response
        plain = authorized("apigw-http-v2")
        plain["body"] = "y" * 5000
        assert handler(plain, FakeContext())["statusCode"] == 413
        for answer in (response,):
            scan_answer(leak_canary, json.dumps(answer))
    finally:
        handler.close()


def test_malformed_and_foreign_events(emulator: RunningEmulator, leak_canary: Canary) -> None:
    handler = lambda_handler(emulator)
    try:
        with pytest.raises(UnsupportedEventError, match="not an HTTP event"):
            handler({"Records": [{"eventSource": "aws:sqs"}]}, FakeContext())
        with pytest.raises(UnsupportedEventError):
            handler("GET /", FakeContext())
        bad = authorized("apigw-rest-v1")
        bad["multiValueHeaders"]["Accept"] = "application/json"  # a string where a list belongs
        response = handler(bad, FakeContext())
        assert response["statusCode"] == 400
        assert json.loads(response["body"])["error"]["code"] == "bad_request"
        v2 = authorized("apigw-http-v2")
        v2["cookies"] = "theme=dark"
        assert handler(v2, FakeContext())["statusCode"] == 400
        nulls = authorized("apigw-rest-v1")
        nulls["multiValueHeaders"] = None
        nulls["headers"] = {"Authorization": f"Bearer {FUNCTION_SECRET}"}
        assert handler(nulls, FakeContext())["statusCode"] == 200
    finally:
        handler.close()


def test_upstream_failure_is_mapped(emulator: RunningEmulator, leak_canary: Canary) -> None:
    handler = lambda_handler(emulator)
    try:
        emulator.arm("client-secrets", status=503)
        response = handler(authorized("apigw-http-v2"), FakeContext())
        scan_answer(leak_canary, json.dumps(response))
        assert response["statusCode"] == 502
        assert json.loads(response["body"])["error"]["code"] == "upstream_error"
    finally:
        handler.close()


def test_the_route_answers_within_the_functions_time_left(
    emulator: RunningEmulator, leak_canary: Canary, caplog: pytest.LogCaptureFixture
) -> None:
    """With less time left than the route's deadline (a 3 s default Lambda timeout, say), a slow Orga costs a 504
    envelope inside the invocation instead of the platform killing it; the short timeout is said once."""
    handler = lambda_handler(emulator)
    try:
        with caplog.at_level("WARNING", logger="orga_ai.proxy"):
            fast = handler(authorized("apigw-http-v2"), FakeContext(remaining_ms=3000))
            assert fast["statusCode"] == 200
            emulator.arm("client-secrets", latency_ms=5000)
            slow = handler(authorized("apigw-rest-v1"), FakeContext(remaining_ms=1500))
            scan_answer(leak_canary, json.dumps(slow))
            assert slow["statusCode"] == 504
            assert json.loads(slow["body"])["error"]["code"] == "deadline_exceeded"
            # With the time the route needs, no cap and no warning.
            assert handler(authorized("alb"), FakeContext(remaining_ms=30_000))["statusCode"] == 200
    finally:
        handler.close()
    warnings = [r.getMessage() for r in caplog.records if "function's timeout" in r.getMessage()]
    assert len(warnings) == 1 and "at least 10 s" in warnings[0], warnings


# -- configuration ---------------------------------------------------------------------------------------------------


def test_memory_limits_are_refused_unless_limits_are_turned_off(emulator: RunningEmulator) -> None:
    options = {"api_key": emulator.api_key, "base_url": emulator.base_url}
    auth = SharedSecretAuth(FUNCTION_SECRET)
    with pytest.raises(FunctionConfigurationError, match=r"memory://.*rate_limit=None"):
        make_handler(orga_options=options, authenticate=auth)
    with pytest.raises(FunctionConfigurationError, match="memory://"):
        make_handler(orga_options=options, authenticate=auth, rate_limit=None, global_rate_limit="100/minute")
    make_handler(orga_options=options, authenticate=auth, rate_limit=None).close()
    # A Redis URL is accepted without connecting: the connection is made by the first invocation.
    make_handler(orga_options=options, authenticate=auth, storage_uri="redis://127.0.0.1:1/0").close()


def test_a_missing_library_is_named_with_its_extra() -> None:
    from orga_ai.integrations._function import require_installed

    require_installed("aws-lambda", "json")
    with pytest.raises(FunctionConfigurationError) as missing:
        require_installed("aws-lambda", "json", "orga_ai_no_such_module")
    assert str(missing.value) == "orga_ai_no_such_module is not installed: pip install 'orga-ai[aws-lambda]'"


def test_configuration_errors_are_one_clear_line(emulator: RunningEmulator) -> None:
    auth = SharedSecretAuth(FUNCTION_SECRET)
    with pytest.raises(FunctionConfigurationError, match=r"no Orga API key.*ORGA_API_KEY_SECRET_ARN"):
        make_handler(authenticate=auth, rate_limit=None)
    with pytest.raises(FunctionConfigurationError, match="authentication"):
        make_handler(orga_options={"api_key": emulator.api_key}, rate_limit=None)


def test_the_key_comes_from_the_secret_resolver_once(emulator: RunningEmulator, leak_canary: Canary) -> None:
    calls: list[str] = []
    failures = [RuntimeError("secrets manager is down")]
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orga/api-key-AbCdEf"

    def resolver(requested: str) -> str:
        calls.append(requested)
        if failures:
            raise failures.pop()
        return json.dumps({"ORGA_API_KEY": emulator.api_key})

    from orga_ai.integrations.aws_lambda import _key_from_secret

    handler = make_handler(
        orga_options={"base_url": emulator.base_url, "max_retries": 0},
        api_key_secret=arn,
        secret_resolver=lambda requested: _key_from_secret(resolver(requested)),
        authenticate=SharedSecretAuth(FUNCTION_SECRET),
        rate_limit=None,
    )
    try:
        down = handler(authorized("apigw-http-v2"), FakeContext())
        assert down["statusCode"] == 500
        assert json.loads(down["body"])["error"]["code"] == "proxy_misconfigured"
        for _ in range(3):
            response = handler(authorized("apigw-http-v2"), FakeContext())
            scan_answer(leak_canary, json.dumps(response))
            assert response["statusCode"] == 200
        assert calls == [arn, arn]
    finally:
        handler.close()


def test_the_secret_arn_comes_from_the_environment(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, leak_canary: Canary
) -> None:
    arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/orga/api-key"
    monkeypatch.setenv("ORGA_API_KEY_SECRET_ARN", arn)
    asked: list[str] = []
    handler = make_handler(
        orga_options={"base_url": emulator.base_url},
        secret_resolver=lambda requested: asked.append(requested) or emulator.api_key,
        authenticate=SharedSecretAuth(FUNCTION_SECRET),
        rate_limit=None,
    )
    try:
        assert handler(authorized("alb"), FakeContext())["statusCode"] == 200
        assert asked == [arn]
    finally:
        handler.close()


def test_without_boto3_the_default_resolver_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["boto3"] = None  # as if not installed
        from orga_ai.integrations.aws_lambda import resolve_aws_secret
        try:
            resolve_aws_secret("arn:aws:secretsmanager:eu-west-1:123456789012:secret:orga")
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith("FunctionConfigurationError ORGA_API_KEY_SECRET_ARN needs boto3"), out
    assert "pip install boto3" in out


# -- the default handler, in a fresh process -------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


NEVER_ON_THE_LAMBDA_PATH = (
    "asyncio",
    "aiohttp",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "limits",
    "redis",
    "jwt",  # the function is configured with a shared secret: PyJWT stays unloaded
    "flask",
    "httpx",  # the sync client runs on http.client
    "orjson",  # ~7 ms of a cold start (it loads uuid and platform) for two small documents
    "argparse",  # the CLI's, not the function's
    "opentelemetry",  # installed here, but the function configured no provider: nothing to record into
    "uuid",  # and the platform module it loads: ~6 ms; a principal id is checked as a UUID without it
    "shutil",  # serve --workers' metrics directory only
)


def test_the_default_handler_imports_nothing_it_does_not_use(emulator: RunningEmulator, tmp_path: Path) -> None:
    """The Lambda path: a fresh interpreter imports the module, gets ``handler`` and serves one event; then
    nothing of the async stack, the server or the metrics is in ``sys.modules``."""
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(authorized("apigw-http-v2")))
    code = textwrap.dedent(
        f"""
        import json, sys
        from orga_ai.integrations.aws_lambda import handler
        response = handler(json.load(open({str(event_file)!r})), None)
        loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({NEVER_ON_THE_LAMBDA_PATH!r}))
        servers = json.loads(response["body"])["iceServers"]
        urls = sum(len(s["urls"]) if isinstance(s["urls"], list) else 1 for s in servers)
        print(json.dumps({{"status": response["statusCode"], "loaded": loaded, "urls": urls}}))
        """
    )
    env = _env(
        ORGA_API_KEY=emulator.api_key,
        ORGA_BASE_URL=emulator.base_url,
        ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET,
        ORGA_PROXY_RATE_LIMIT="none",
        ORGA_PROXY_ICE_MAX_SERVERS="1",  # every ORGA_PROXY_* setting of the policy applies to the function
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    canary = Canary()
    canary.add(emulator.api_key, "api key")
    canary.add(FUNCTION_SECRET, "shared secret")
    canary.scan(result.stderr, "stderr")
    assert not canary.hits
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": 200, "loaded": [], "urls": 1}


def test_the_default_handler_refuses_a_bad_configuration_at_import(tmp_path: Path) -> None:
    code = "from orga_ai.integrations.aws_lambda import handler"
    env = _env(ORGA_API_KEY="sk_orga_ai_test_key", ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "FunctionConfigurationError: in-process (memory://) rate limits mean nothing" in result.stderr
    assert "sk_orga_ai_test_key" not in result.stderr and FUNCTION_SECRET not in result.stderr


# -- AWS's runtime interface client over a local Runtime API ---------------------------------------------------------


def _ric(runtime: RuntimeAPI, **env: str) -> subprocess.Popen[str]:
    """``python -m awslambdaric orga_ai.integrations.aws_lambda.handler``: the bootstrap of a container image."""
    pytest.importorskip("awslambdaric")
    return subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "orga_ai.integrations.aws_lambda.handler"],
        env=_env(
            AWS_LAMBDA_RUNTIME_API=runtime.address,
            AWS_LAMBDA_FUNCTION_NAME="orga-client-secrets",
            AWS_LAMBDA_LOG_LEVEL="DEBUG",
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_runtime_interface_client_drives_the_handler(emulator: RunningEmulator) -> None:
    canary = Canary()
    canary.add(emulator.api_key, "api key")
    canary.add(FUNCTION_SECRET, "shared secret")
    with RuntimeAPI() as runtime:
        process = _ric(
            runtime,
            ORGA_API_KEY=emulator.api_key,
            ORGA_BASE_URL=emulator.base_url,
            ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET,
            ORGA_PROXY_RATE_LIMIT="none",
        )
        try:
            for name in EVENTS:
                request_id = runtime.invoke(authorized(name))
                posted = runtime.next_posted()
                assert (posted.kind, posted.request_id) == ("response", request_id), posted
                scan_answer(canary, json.dumps(posted.body))
                assert posted.body["statusCode"] == 200, posted.body
                assert "ephemeralToken" in json.loads(posted.body["body"])
                if name.startswith("alb"):
                    # The runtime's context object gives the invocation id: the request id of an ALB event.
                    assert headers_of(posted.body)["x-request-id"] == request_id
            refused = runtime.invoke(load("apigw-http-v2"))
            posted = runtime.next_posted()
            assert (posted.kind, posted.request_id, posted.body["statusCode"]) == ("response", refused, 401)
            foreign = runtime.invoke({"Records": []})
            posted = runtime.next_posted()
            assert (posted.kind, posted.request_id) == ("error", foreign)
            assert posted.body["errorType"] == "UnsupportedEventError"
            scan_answer(canary, json.dumps(posted.body), "error")
            # Still serving after an error: the same warm instance answers the next event.
            again = runtime.invoke(authorized("function-url"))
            posted = runtime.next_posted()
            assert (posted.request_id, posted.body["statusCode"]) == (again, 200)
            scan_answer(canary, json.dumps(posted.body))
        finally:
            output = stop_process(process)
    assert runtime.posted.empty()
    # The runtime's log (DEBUG, where the access lines and the SDK's debug lines go) holds no secret.
    assert "orga_proxy_request" in output
    canary.scan(output, "runtime log")
    assert not canary.hits, [(hit.label, hit.source) for hit in canary.hits]
    # One client for every invocation: the emulator saw one mint per successful event.
    assert len([r for r in emulator.requests() if "client-secrets" in r["path"]]) == len(EVENTS) + 1


def test_a_bad_configuration_is_an_init_error(emulator: RunningEmulator) -> None:
    with RuntimeAPI() as runtime:
        process = _ric(runtime, ORGA_API_KEY=emulator.api_key, ORGA_PROXY_SHARED_SECRET=FUNCTION_SECRET)
        try:
            posted = runtime.next_posted()
            assert process.wait(timeout=30) == 1
        finally:
            output = stop_process(process)
    assert posted.kind == "init-error"
    assert posted.body["errorType"] == "FunctionConfigurationError"
    assert posted.body["errorMessage"].startswith("in-process (memory://) rate limits mean nothing")
    assert emulator.api_key not in json.dumps(posted.body) + output
    assert FUNCTION_SECRET not in json.dumps(posted.body) + output


# -- rate limits in Redis --------------------------------------------------------------------------------------------


def _instance_connections(port: int) -> int:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as probe:
        clients = probe.client_list()
        return len([c for c in clients if c.get("cmd") != "client|list"])


def test_redis_limits_are_shared_by_instances_over_one_reused_connection_each(
    emulator: RunningEmulator, leak_canary: Canary
) -> None:
    from tests.reliability.test_route_load import redis_server

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    # Two handlers with the same configuration: two instances of one function, as the platform scales it out.
    instances = [lambda_handler(emulator, rate_limit="3/minute", storage_uri=url) for _ in range(2)]
    try:
        with redis_server(port) as server:
            codes = []
            for i in range(6):
                response = instances[i % 2](authorized("apigw-http-v2"), FakeContext())
                scan_answer(leak_canary, json.dumps(response))
                codes.append(response["statusCode"])
            assert codes == [200, 200, 200, 429, 429, 429]
            refused = headers_of(response)
            assert refused["ratelimit-remaining"] == "0" and int(refused["retry-after"]) >= 1
            assert _instance_connections(port) == 2
            for i in range(4):
                instances[i % 2](authorized("apigw-rest-v1"), FakeContext())
            assert _instance_connections(port) == 2  # warm invocations reuse each instance's connection

            # Redis gone: fail closed, in the event's format, without hanging the invocation.
            server.kill()
            server.wait(timeout=10)
            down = instances[0](authorized("apigw-rest-v1"), FakeContext())
            assert down["statusCode"] == 503
            assert json.loads(down["body"])["error"]["code"] == "rate_limiter_unavailable"
            assert down["multiValueHeaders"]["Retry-After"] == ["5"]
        # Redis back (a new, empty one on the same address): the same warm instance reconnects by itself.
        with redis_server(port):
            back = instances[0](authorized("apigw-http-v2"), FakeContext())
            scan_answer(leak_canary, json.dumps(back))
            assert back["statusCode"] == 200
    finally:
        for instance in instances:
            instance.close()


def test_rediss_is_accepted_as_shared_storage(emulator: RunningEmulator) -> None:
    options = {"api_key": emulator.api_key, "base_url": emulator.base_url}
    handler = make_handler(
        orga_options=options,
        authenticate=SharedSecretAuth(FUNCTION_SECRET),
        storage_uri="rediss://cache.example.com:6380/0",
        global_rate_limit="600/minute",
    )
    assert handler.core.rate_limiter.distributed
    handler.close()


def test_the_example_function_file(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/aws_lambda/function/app.py (the policy in code) loads and serves: an event without a JWT is refused
    before the rate limiter, so the example's Redis is never asked."""
    import importlib.util

    for name, value in {
        "ORGA_API_KEY": emulator.api_key,
        "ORGA_BASE_URL": emulator.base_url,
        "ORGA_PROXY_JWKS_URL": "https://id.example.com/.well-known/jwks.json",
        "ORGA_PROXY_JWT_AUDIENCE": "my-app",
        "ORGA_PROXY_JWT_ISSUER": "https://id.example.com/",
        "ORGA_PROXY_REDIS_URL": "redis://127.0.0.1:1/0",
        "ORGA_PROXY_CORS_ORIGIN": "https://app.example.com",
    }.items():
        monkeypatch.setenv(name, value)
    path = Path(__file__).resolve().parents[2] / "examples/aws_lambda/function/app.py"
    spec = importlib.util.spec_from_file_location("lambda_example_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: LambdaHandler = module.handler
    try:
        response = handler(load("apigw-http-v2"), FakeContext())
        assert response["statusCode"] == 401
        assert handler.core.rate_limiter.distributed
    finally:
        handler.close()


def test_a_body_that_is_not_text_is_answered_in_base64() -> None:
    from orga_ai.integrations.aws_lambda import to_event_response
    from orga_ai.proxy import ProxyResponse

    for kind, multi in (("v2", False), ("v1", True), ("alb", False)):
        out = to_event_response(
            ProxyResponse(200, {"Content-Type": "application/octet-stream"}, b"\xff\x00"), kind, multi
        )
        assert out["isBase64Encoded"] is True
        assert base64.b64decode(out["body"]) == b"\xff\x00"
        text = to_event_response(ProxyResponse(200, {"Set-Cookie": "a=b"}, b"{}"), kind, multi)
        assert (text["isBase64Encoded"], text["body"]) == (False, "{}")
        if kind == "v2":
            assert text["cookies"] == ["a=b"] and "Set-Cookie" not in text["headers"]
        elif multi:
            assert text["multiValueHeaders"]["Set-Cookie"] == ["a=b"]
        else:
            assert text["headers"]["Set-Cookie"] == "a=b"


COOKIES = ["seen=1; Path=/; HttpOnly", "theme=dark; Path=/"]


def refuse_with_two_cookies(request: ProxyRequest) -> str:
    """An authenticator answering with two cookies (names differing in case: one dict carries both)."""
    raise ProxyError(403, "forbidden", "No.", headers={"Set-Cookie": COOKIES[0], "set-cookie": COOKIES[1]})


@pytest.mark.parametrize("name", [*EVENTS, "apigw-rest-v1 without multiValueHeaders"])
def test_every_set_cookie_goes_out_as_each_event_format_allows(
    emulator: RunningEmulator, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = load(name.split()[0])
    if "without" in name:
        del event["multiValueHeaders"]
    handler = lambda_handler(emulator, authenticate=refuse_with_two_cookies)
    try:
        response = handler(event, FakeContext())
    finally:
        handler.close()
    assert response["statusCode"] == 403
    single = {key.lower(): value for key, value in response.get("headers", {}).items()}
    multi = {key.lower(): values for key, values in response.get("multiValueHeaders", {}).items()}
    if event.get("version") == "2.0":
        assert response["cookies"] == COOKIES
        assert "set-cookie" not in single
    elif name == "alb":
        # One value per header name without multi-value headers (AWS ignores multiValueHeaders then): the last, and
        # a warning that says how to send them all.
        assert single["set-cookie"] == COOKIES[-1] and "multiValueHeaders" not in response
        assert any("multi-value headers" in r.getMessage() for r in caplog.records)
    else:  # REST / payload 1.0 (API Gateway merges headers and multiValueHeaders) and ALB with multi-value headers
        assert multi["set-cookie"] == COOKIES
        assert "set-cookie" not in single
    assert emulator.requests() == []


def test_rediss_limits_over_tls_with_certificate_verification(
    emulator: RunningEmulator, leak_canary: Canary, tmp_path: Path
) -> None:
    from tests.client.test_sync_transport import make_certificate
    from tests.reliability.test_route_load import redis_server

    cert, key = make_certificate(tmp_path)  # self-signed: the certificate is its own CA
    ca = cert
    port = free_port()
    tls = ("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    tls += ("--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")
    verified = lambda_handler(
        emulator, rate_limit="2/minute", storage_uri=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    )
    # Without the CA the server's certificate is not trusted: the limiter fails closed rather than skip verification.
    untrusted = lambda_handler(emulator, rate_limit="2/minute", storage_uri=f"rediss://127.0.0.1:{port}/0")
    try:
        with redis_server(port, "--port", "0", *tls):  # TLS only, on the port the helper waits for
            codes = [verified(authorized("apigw-http-v2"), FakeContext())["statusCode"] for _ in range(3)]
            assert codes == [200, 200, 429]
            refused = untrusted(authorized("apigw-http-v2"), FakeContext())
            scan_answer(leak_canary, json.dumps(refused))
            assert refused["statusCode"] == 503
            assert json.loads(refused["body"])["error"]["code"] == "rate_limiter_unavailable"
    finally:
        verified.close()
        untrusted.close()
