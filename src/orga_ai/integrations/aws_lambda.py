"""AWS Lambda: the client-secrets route as a function, for API Gateway, Lambda Function URLs and ALB.

Point the function's handler at ``orga_ai.integrations.aws_lambda.handler`` and configure it with environment
variables: the policy from the same ``ORGA_PROXY_*`` variables as ``orga-ai serve`` (docs/proxy.md), the key from
``ORGA_API_KEY``, or from ``ORGA_API_KEY_SECRET_ARN`` (a Secrets Manager secret or an SSM parameter, read once per
instance with boto3, which the Lambda Python runtime ships). Or build your own handler in your own module::

    from orga_ai.integrations.aws_lambda import make_handler
    from orga_ai.proxy import JWTAuth

    handler = make_handler(
        authenticate=JWTAuth(jwks_url="https://id.example.com/.well-known/jwks.json", audience="my-app"),
        storage_uri="rediss://my-cache.example.com:6379/0",
    )

Events understood: API Gateway HTTP API (payload 2.0), REST API and HTTP API payload 1.0, Lambda Function URLs
(the 2.0 shape) and Application Load Balancer targets (with or without multi-value headers). Each answer is in
the format of the event that asked: ``multiValueHeaders`` when the event had them, ``cookies`` for 2.0,
``statusDescription`` for ALB. The request id is API Gateway's (``requestContext.requestId``), so the route's
access log and API Gateway's share it; ALB events keep the caller's ``X-Request-ID`` or take the invocation's id.

The path is served by ``ProxyCore.handle_sync``: no event loop, no ASGI layer, no aiohttp, Starlette or
``prometheus_client`` import. The handler, its policy and its SDK client are created once per instance and reused
by every warm invocation; the SDK client and the Redis connection are opened on the first invocation.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ..proxy._errors import body_too_large, error_response
from ..proxy._request import ProxyRequest, ProxyResponse, new_request_id, sane_request_id
from ._function import (
    FunctionConfigurationError,
    FunctionRoute,
    core_from_env,
    function_core,
    platform_peer,
    policy_from_env,
)

if TYPE_CHECKING:
    from .._client import OrgaAI
    from ..proxy._core import ProxyCore

__all__ = [
    "API_KEY_SECRET_ENV",
    "FunctionConfigurationError",
    "LambdaHandler",
    "UnsupportedEventError",
    "handler",  # noqa: F822 - made on first access, by __getattr__ below
    "make_handler",
    "policy_from_env",
    "resolve_aws_secret",
    "to_event_response",
    "to_proxy_request",
]

API_KEY_SECRET_ENV = "ORGA_API_KEY_SECRET_ARN"
"""The environment variable naming a Secrets Manager secret or SSM parameter (its ARN) that holds the API key."""

logger = logging.getLogger("orga_ai.proxy")

_RESPONSE_MARGIN = 0.5
"""Seconds kept from the invocation's time left for answering: the route's answer must reach the runtime in time."""
# API Gateway's ids: UUIDs (REST) or base64-like (HTTP API, "JKJaXmPLvHcESHA="): safe to echo in a header and log.
_CONTEXT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:=+/\-]{1,128}$")


class UnsupportedEventError(TypeError):
    """The handler was invoked with something other than an HTTP event of API Gateway, a Function URL or ALB."""


class _BadEvent(Exception):
    """An HTTP event whose fields have the wrong types; answered with 400."""


# -- secrets ---------------------------------------------------------------------------------------------------------


def resolve_aws_secret(arn: str) -> str:
    """The API key stored at ``arn``: a Secrets Manager secret (its string, or the ``ORGA_API_KEY`` field of a
    JSON key/value secret) or an SSM ``SecureString`` parameter. Needs boto3, imported only here.

    The function's role needs ``secretsmanager:GetSecretValue`` (or ``ssm:GetParameter``) on that ARN, and
    ``kms:Decrypt`` when a customer-managed key encrypts it.
    """
    try:
        boto3: Any = importlib.import_module("boto3")  # optional, and untyped: imported only for a secret ARN
    except ImportError:
        raise FunctionConfigurationError(
            f"{API_KEY_SECRET_ENV} needs boto3 (the Lambda Python runtime includes it; elsewhere pip install boto3), "
            "or pass secret_resolver= to make_handler"
        ) from None
    parts = arn.split(":")
    region = parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None
    if len(parts) > 5 and parts[2] == "ssm":
        ssm = boto3.client("ssm", region_name=region)
        value = ssm.get_parameter(Name=arn, WithDecryption=True)["Parameter"]["Value"]
    else:
        secrets = boto3.client("secretsmanager", region_name=region)
        value = secrets.get_secret_value(SecretId=arn)["SecretString"]
    return _key_from_secret(str(value))


def _key_from_secret(value: str) -> str:
    value = value.strip()
    if value.startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            raise FunctionConfigurationError("the API key secret is neither a key nor a JSON object") from None
        for name in ("ORGA_API_KEY", "api_key", "apiKey"):
            if isinstance(fields, dict) and isinstance(fields.get(name), str):
                return str(fields[name]).strip()
        raise FunctionConfigurationError("the API key secret is a JSON object without an ORGA_API_KEY field")
    return value


# -- events ----------------------------------------------------------------------------------------------------------


def _kind(event: Any) -> str:
    """``"v2"`` (HTTP API 2.0, Function URLs), ``"v1"`` (REST API, HTTP API 1.0) or ``"alb"``."""
    if isinstance(event, Mapping):
        context = event.get("requestContext")
        if isinstance(context, Mapping):
            if event.get("version") == "2.0" and isinstance(context.get("http"), Mapping):
                return "v2"
            if "elb" in context:
                return "alb"
        if "httpMethod" in event:
            return "v1"
    raise UnsupportedEventError(
        "not an HTTP event: this handler serves API Gateway (REST, HTTP API), Lambda Function URL and ALB events"
    )


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _BadEvent(what)
    return value


def _header_pairs(event: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(header pairs, cookie strings): multi-value headers when the event has them, else single ones."""
    pairs: list[tuple[str, str]] = []
    cookies: list[str] = []
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping) and multi:
        for name, values in multi.items():
            if not isinstance(values, list):
                raise _BadEvent("multiValueHeaders")
            for value in values:
                pairs.append((_text(name, "header name"), _text(value, "header value")))
    else:
        single = event.get("headers")
        if single is not None and not isinstance(single, Mapping):
            raise _BadEvent("headers")
        for name, value in (single or {}).items():
            pairs.append((_text(name, "header name"), _text(value, "header value")))
    kept = []
    for name, value in pairs:
        if name.lower() == "cookie":
            cookies.append(value)  # several Cookie headers join with "; ", not with the ", " of other headers
        else:
            kept.append((name, value))
    return kept, cookies


def _body_size(event: Mapping[str, Any]) -> int:
    body = event.get("body")
    if body is None or body == "":
        return 0
    text = _text(body, "body")
    if event.get("isBase64Encoded"):
        try:
            return len(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise _BadEvent("body") from None
    return len(text.encode("utf-8", "surrogatepass"))


def _context_request_id(context: Mapping[str, Any]) -> str | None:
    value = context.get("requestId")
    return value if isinstance(value, str) and _CONTEXT_REQUEST_ID.match(value) else None


def _source_ip(context: Mapping[str, Any], *keys: str) -> str | None:
    node: Any = context
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) and node else None


def to_proxy_request(event: Mapping[str, Any], kind: str, invocation_id: str | None = None) -> ProxyRequest:
    """The event as the core's :class:`ProxyRequest` (raises _BadEvent for a malformed one)."""
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        context = {}
    pairs, cookies = _header_pairs(event)
    if kind == "v2":
        http = context.get("http")
        assert isinstance(http, Mapping)
        method = _text(http.get("method"), "method")
        path = _text(event.get("rawPath", http.get("path", "/")), "path")
        extra = event.get("cookies") or []
        if not isinstance(extra, list):
            raise _BadEvent("cookies")
        cookies.extend(_text(cookie, "cookie") for cookie in extra)
        client_host = _source_ip(context, "http", "sourceIp")
        request_id = _context_request_id(context)
    else:
        method = _text(event.get("httpMethod"), "method")
        path = _text(event.get("path") or "/", "path")
        if kind == "v1":
            client_host = _source_ip(context, "identity", "sourceIp")
            request_id = _context_request_id(context)
        else:
            # The load balancer appends the address that connected to it to X-Forwarded-For.
            client_host, pairs = platform_peer(pairs, None)
            request_id = None
    if cookies:
        pairs.append(("cookie", "; ".join(cookies)))
    if request_id is None:
        headers = {name.lower(): value for name, value in pairs}
        request_id = sane_request_id(headers.get("x-request-id")) or sane_request_id(invocation_id)
    return ProxyRequest.from_pairs(method, path, pairs, client_host=client_host, request_id=request_id)


def to_event_response(response: ProxyResponse, kind: str, multi_value: bool) -> dict[str, Any]:
    """The core's response in the format the event's source expects."""
    try:
        body, encoded = response.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(response.body).decode("ascii"), True
    out: dict[str, Any] = {"statusCode": response.status}
    headers = dict(response.headers)
    set_cookie = [headers.pop(name) for name in list(headers) if name.lower() == "set-cookie"]
    if kind == "v2":
        out["headers"] = headers
        if set_cookie:
            out["cookies"] = set_cookie
    elif multi_value:
        multi = {name: [value] for name, value in headers.items()}
        if set_cookie:
            multi["Set-Cookie"] = set_cookie
        out["multiValueHeaders"] = multi
    elif kind == "v1":
        # API Gateway (REST, and HTTP API payload 1.0) merges a response's headers and multiValueHeaders: every
        # cookie goes out, whether or not the event came with multiValueHeaders.
        out["headers"] = headers
        if set_cookie:
            out["multiValueHeaders"] = {"Set-Cookie": set_cookie}
    else:
        # An ALB target group without multi-value headers takes one value per header name, from `headers` only
        # (it ignores multiValueHeaders): a second cookie cannot go out. The last one does, and the log says how to
        # send them all (enable multi-value headers on the target group).
        if set_cookie:
            headers["Set-Cookie"] = set_cookie[-1]
            if len(set_cookie) > 1:
                logger.warning(
                    "orga proxy: %d Set-Cookie headers but the ALB target group has no multi-value headers; only "
                    "the last is sent (enable multi-value headers on the target group to send them all)",
                    len(set_cookie),
                )
        out["headers"] = headers
    if kind == "alb":
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        out["statusDescription"] = f"{response.status} {phrase}".strip()
    out["body"] = body
    out["isBase64Encoded"] = encoded
    return out


# -- the handler -----------------------------------------------------------------------------------------------------


class LambdaHandler:
    """A Lambda handler serving the route: call it with ``(event, context)``; ``route`` is the policy and client."""

    def __init__(self, route: FunctionRoute) -> None:
        self.route = route
        self._checked_budget = False

    @property
    def core(self) -> ProxyCore:
        return self.route.core

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        kind = _kind(event)
        multi_value = kind != "v2" and "multiValueHeaders" in event
        core = self.route.core
        invocation_id = getattr(context, "aws_request_id", None)
        budget = self._budget(context)
        try:
            request = to_proxy_request(event, kind, invocation_id if isinstance(invocation_id, str) else None)
            if _body_size(event) > core.max_body_bytes:
                response = body_too_large(_id(request))
            else:
                response = self.route.serve(request, budget)
        except _BadEvent as exc:
            logger.warning("orga proxy: malformed %s event (%s)", kind, exc)
            response = error_response("bad_request", new_request_id(), "Malformed request.")
        return to_event_response(response, kind, multi_value)

    def _budget(self, context: Any) -> float | None:
        """The seconds this invocation may take when the function's time left is shorter than the route's deadline
        (so the caller gets a 504 envelope, not the platform's timeout), else None. Said once in the log."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return None
        try:
            left = int(remaining()) / 1000 - _RESPONSE_MARGIN
        except (TypeError, ValueError):
            return None
        deadline = self.route.core.deadline
        if left >= deadline:
            return None
        if not self._checked_budget:
            self._checked_budget = True
            logger.warning(
                "orga proxy: the function's timeout leaves %.1f s, less than the route's deadline (%.1f s): the route "
                "answers 504 within the time left; give the function a timeout of at least %.0f s",
                max(left, 0.0),
                deadline,
                math.ceil(deadline + 2),
            )
        return max(left, 0.0)

    def close(self) -> None:
        """Close the SDK client and the rate-limit storage (tests; Lambda itself just freezes the instance)."""
        self.route.close()

    def __repr__(self) -> str:
        return f"LambdaHandler({self.route.core!r})"


def _id(request: ProxyRequest) -> str:
    return request.request_id or sane_request_id(request.headers.get("x-request-id")) or new_request_id()


def make_handler(
    *,
    orga: OrgaAI | None = None,
    orga_options: Mapping[str, Any] | None = None,
    api_key_secret: str | None = None,
    secret_resolver: Callable[[str], str] | None = None,
    core: ProxyCore | None = None,
    **policy: Any,
) -> LambdaHandler:
    """A Lambda handler with this policy; assign it to a module-level name and point the function at it.

    Args:
        orga: a ready sync client; by default ``OrgaAI(**orga_options)`` is created on the first invocation and
            reused by the warm ones (``ORGA_API_KEY``, ``ORGA_BASE_URL``... fill what the options leave out).
        api_key_secret: the ARN of a Secrets Manager secret or SSM parameter holding the API key (default
            ``ORGA_API_KEY_SECRET_ARN`` when ``ORGA_API_KEY`` is not set), fetched once per instance.
        secret_resolver: how to fetch it: ``(arn) -> key`` (default :func:`resolve_aws_secret`, with boto3). A
            failure answers 500 ``proxy_misconfigured`` and is retried on the next invocation.
        core / policy: the route's policy, as for :class:`~orga_ai.proxy.ProxyCore` (``authenticate=``,
            ``rate_limit=``, ``storage_uri=``, ``cors_origins=``...). ``memory://`` rate limits are refused: use
            ``storage_uri="redis://..."`` or ``rate_limit=None``.

    Raises:
        FunctionConfigurationError: the configuration cannot work (no key, memory:// limits, no authentication).
    """
    options = dict(orga_options or {})
    if api_key_secret is None and orga is None and not options.get("api_key") and not os.environ.get("ORGA_API_KEY"):
        api_key_secret = os.environ.get(API_KEY_SECRET_ENV) or None
    key: Callable[[], str] | None = None
    if api_key_secret:
        arn, resolver = api_key_secret, secret_resolver or resolve_aws_secret
        key = lambda: resolver(arn)  # noqa: E731 - a closure over the ARN, called once
    hint = f", {API_KEY_SECRET_ENV}=<secret ARN>,"
    route = FunctionRoute(
        function_core(core, extra="aws-lambda", **policy), orga=orga, orga_options=options, api_key=key, key_hint=hint
    )
    route.core.announce()
    return LambdaHandler(route)


def handler_from_env() -> LambdaHandler:
    """The handler that ``ORGA_PROXY_*``, ``ORGA_API_KEY`` / ``ORGA_API_KEY_SECRET_ARN`` describe."""
    return make_handler(core=core_from_env("aws-lambda"))


def __getattr__(name: str) -> Any:
    # ``handler`` is made on first access (when the Lambda runtime loads it, during the instance's init), so that
    # importing this module for make_handler reads no environment, and a bad configuration fails the init.
    if name == "handler":
        made = handler_from_env()
        globals()["handler"] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
