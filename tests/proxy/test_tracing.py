"""OpenTelemetry on the route, recorded by the real OTel SDK's in-memory exporters: the ``orga.proxy.request`` span
(its parent from ``traceparent`` or from the framework's span), its attributes, the SDK's spans under it, the
Prometheus metrics mirrored under the same names, and no secret in an exported span. Once end to end as well:
``opentelemetry-instrument`` with the console exporter around ``orga-ai serve``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from orga_ai import OrgaAI
from orga_ai.proxy import ProxyCore, ProxyRequest
from orga_ai.testing import RunningEmulator
from tests.otel_support import Recorded, attributes, otel
from tests.support import free_port

from .conftest import JWT_SECRET, ProxyFactory, bearer, jwt_auth, make_jwt
from .test_route import ROUTE

__all__ = ["otel"]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_the_route_span_continues_the_callers_trace_and_parents_the_sdk_call(
    proxy: ProxyFactory, emulator: RunningEmulator, otel: Recorded
) -> None:
    client = proxy()
    token = make_jwt("user-7")
    response = client.get(ROUTE, headers={**bearer(token), "traceparent": TRACEPARENT})
    assert response.status_code == 200
    body = response.json()

    span = otel.one("orga.proxy.request")
    assert span.kind.name == "SERVER"
    assert f"{span.context.trace_id:032x}" == TRACE_ID and f"{span.parent.span_id:016x}" == PARENT_ID
    found = attributes(span)
    assert found["http.request.method"] == "GET" and found["url.path"] == ROUTE
    assert found["http.response.status_code"] == 200 and found["orga.outcome"] == "ok"
    assert found["orga.request_id"] == response.headers["x-request-id"]
    assert found["orga.principal.fingerprint"].startswith("fp:") and found["orga.principal.kind"] == "user"
    assert found["orga.rate_limit.decision"] == "allowed" and found["orga.rate_limit.remaining"] == 9
    assert found["orga.breaker.state"] == "closed"
    assert len(found["orga.upstream_request_ids"]) == 2
    session = otel.one("orga.session_config")
    assert session.parent.span_id == span.context.span_id
    assert found["orga.token.fingerprint"] == attributes(session)["orga.token.fingerprint"]
    # Orga Cloud never saw our trace (propagate_to_orga is off).
    calls = [call for call in emulator.requests() if "/v1/" in call["path"]]
    assert len(calls) == 2 and all(call.get("traceparent") is None for call in calls)

    exported = otel.exported_text()
    secrets = [token, JWT_SECRET, emulator.api_key, body["ephemeralToken"]]
    secrets += [s.get("credential") for s in body["iceServers"] if s.get("credential")]
    secrets += [s.get("username") for s in body["iceServers"] if s.get("username")]
    for secret in secrets:
        assert secret not in exported and secret[:12] not in exported


def test_refusals_say_why_on_the_span(proxy: ProxyFactory, otel: Recorded) -> None:
    client = proxy(rate_limit="1/minute")
    headers = bearer(make_jwt("user-8"))
    assert client.get(ROUTE, headers=headers).status_code == 200
    assert client.get(ROUTE, headers=headers).status_code == 429
    assert client.get(ROUTE).status_code == 401
    ok, limited, anonymous = sorted(otel.spans("orga.proxy.request"), key=lambda s: s.start_time)
    assert attributes(limited)["orga.rate_limit.decision"] == "rejected"
    assert attributes(limited)["orga.outcome"] == "rate_limited"
    assert attributes(limited)["orga.principal.fingerprint"] == attributes(ok)["orga.principal.fingerprint"]
    assert limited.status.status_code.name == "UNSET"  # a 4xx is the caller's, not the server's, error
    assert attributes(anonymous)["orga.rate_limit.decision"] == "not_checked"
    assert "orga.principal.fingerprint" not in attributes(anonymous)
    assert attributes(anonymous)["http.response.status_code"] == 401


def test_upstream_failures_mark_the_span_as_an_error(
    proxy: ProxyFactory, emulator: RunningEmulator, otel: Recorded
) -> None:
    client = proxy(breaker_threshold=1, breaker_cooldown=30)
    emulator.arm("client-secrets", count=1, status=500)
    headers = bearer(make_jwt("user-9"))
    assert client.get(ROUTE, headers=headers).status_code == 502
    assert client.get(ROUTE, headers=headers).status_code == 503
    failed, rejected = sorted(otel.spans("orga.proxy.request"), key=lambda s: s.start_time)
    assert failed.status.status_code.name == "ERROR" and attributes(failed)["error.type"] == "upstream_error"
    assert attributes(rejected)["orga.breaker.state"] == "open"
    assert attributes(rejected)["orga.outcome"] == "upstream_unavailable"


def test_under_a_framework_span_the_route_span_is_its_child(emulator: RunningEmulator, otel: Recorded) -> None:
    from opentelemetry import trace

    core = ProxyCore(authenticate=jwt_auth())
    request = ProxyRequest.from_pairs(
        "GET", ROUTE, [("authorization", f"Bearer {make_jwt('user-10')}"), ("traceparent", TRACEPARENT)]
    )
    tracer = trace.get_tracer("framework")
    with OrgaAI(api_key=emulator.api_key, base_url=emulator.base_url) as orga, tracer.start_as_current_span(
        "GET /api/orga-client-secrets"
    ) as framework:
        assert core.handle_sync(request, orga).status == 200
    span = otel.one("orga.proxy.request")
    assert span.kind.name == "INTERNAL" and span.parent.span_id == framework.get_span_context().span_id
    assert otel.one("orga.session_config").parent.span_id == span.context.span_id


def test_prometheus_metrics_are_mirrored_into_opentelemetry_under_the_same_names(
    proxy: ProxyFactory, otel: Recorded
) -> None:
    before = otel.total("orga_proxy_requests", outcome="ok")
    latency_before = otel.total("orga_proxy_upstream_latency_seconds", result="ok")
    client = proxy()
    assert client.get(ROUTE, headers=bearer(make_jwt("user-11"))).status_code == 200
    assert otel.total("orga_proxy_requests", outcome="ok") == before + 1
    assert otel.total("orga_proxy_upstream_latency_seconds", result="ok") == latency_before + 1
    assert 'orga_proxy_requests_total{outcome="ok"} 1.0' in client.get("/metrics").text  # Prometheus unchanged


# -- end to end: environment configuration, as opentelemetry-instrument does it ------------------------------------


def _spans_in(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (indented JSON objects, one after another)."""
    decoder, spans, index = json.JSONDecoder(), [], 0
    while (start := text.find("{", index)) != -1:
        try:
            found, index = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        if isinstance(found, dict) and "context" in found and "name" in found:
            spans.append(found)
    return spans


def test_opentelemetry_instrument_with_the_console_exporter_prints_the_route_trace(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORGA_", "OTEL_"))}
    env.update(
        {
            "ORGA_API_KEY": emulator.api_key,
            "ORGA_BASE_URL": emulator.base_url,
            "ORGA_PROXY_SHARED_SECRET": "otel-e2e-shared-secret-0123456789",
            "OTEL_SERVICE_NAME": "orga-proxy-e2e",
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, so the test need not stop the server first
        }
    )
    out = (tmp_path / "stdout").open("w+")
    process = subprocess.Popen(
        [str(instrument), str(Path(sys.executable).with_name("orga-ai")), "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            assert process.poll() is None and time.monotonic() < deadline, "the instrumented serve did not start"
            time.sleep(0.1)
        headers = {"Authorization": "Bearer otel-e2e-shared-secret-0123456789", "traceparent": TRACEPARENT}
        response = httpx.get(url + ROUTE, headers=headers, timeout=15)
        assert response.status_code == 200
        names: set[str] = set()
        while time.monotonic() < deadline and not {"orga.proxy.request", "GET"} <= names:
            time.sleep(0.1)
            spans = _spans_in((tmp_path / "stdout").read_text())
            names = {span["name"] for span in spans}
        route = next(span for span in spans if span["name"] == "orga.proxy.request")
        assert route["context"]["trace_id"] == f"0x{TRACE_ID}" and route["parent_id"] == f"0x{PARENT_ID}"
        assert route["attributes"]["orga.outcome"] == "ok"
        assert route["resource"]["attributes"]["service.name"] == "orga-proxy-e2e"
        ours = [span for span in spans if span["context"]["trace_id"] == f"0x{TRACE_ID}"]
        assert {"orga.session_config", "orga.token", "orga.ice", "POST", "GET"} <= {span["name"] for span in ours}
        printed = (tmp_path / "stdout").read_text()
        assert response.json()["ephemeralToken"] not in printed and emulator.api_key not in printed
        assert re.search(r"otel-e2e-shared-secret", printed) is None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()




def _sample(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{wanted}\}} ([0-9.e+]+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_the_sdk_measurements_reach_prometheus_and_opentelemetry_once(
    proxy: ProxyFactory, emulator: RunningEmulator, otel: Recorded
) -> None:
    before = otel.total("orga_upstream_attempts", step="token", result="503")
    client = proxy(orga_options={"max_retries": 2}, prefetch=0)
    emulator.arm("client-secrets", count=1, status=503)
    assert client.get(ROUTE, headers=bearer(make_jwt("user-12"))).status_code == 200
    emulator.arm("client-secrets", count=1, status=429, retry_after="0")
    assert client.get(ROUTE, headers=bearer(make_jwt("user-13"))).status_code == 200
    metrics = client.get("/metrics").text
    assert _sample(metrics, "orga_upstream_attempts_total", step="token", result="503") == 1
    assert _sample(metrics, "orga_upstream_attempts_total", step="token", result="200") == 2
    assert _sample(metrics, "orga_upstream_attempts_total", step="ice", result="200") == 2
    assert _sample(metrics, "orga_upstream_retries_total", step="token", reason="503") == 1
    assert _sample(metrics, "orga_upstream_retries_total", step="token", reason="429") == 1
    assert _sample(metrics, "orga_upstream_rate_limited_total", step="token") == 1
    assert _sample(metrics, "orga_upstream_step_duration_seconds_count", step="ice", result="ok") == 2
    # Recorded once into OpenTelemetry (by the SDK), not a second time by the Prometheus mirror.
    assert otel.total("orga_upstream_attempts", step="token", result="503") == before + 1


def test_warm_pool_lookups_are_counted(proxy: ProxyFactory) -> None:
    client = proxy(prefetch=1)
    for user in ("user-14", "user-15", "user-16"):
        assert client.get(ROUTE, headers=bearer(make_jwt(user))).status_code == 200
    metrics = client.get("/metrics").text
    hits = _sample(metrics, "orga_pool_takes_total", result="hit")
    misses = _sample(metrics, "orga_pool_takes_total", result="miss")
    assert hits + misses == 3
