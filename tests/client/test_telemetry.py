"""OpenTelemetry from the SDK, recorded by the real OTel SDK's in-memory exporters: the span tree of a call, the HTTP
client attributes of each attempt, retries, errors, ``traceparent`` propagation (off unless asked), metrics, and no
secret in any exported span."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from orga_ai import OrgaAIAuthenticationError
from orga_ai.telemetry import configure
from orga_ai.testing import RunningEmulator
from tests.otel_support import Recorded, attributes, otel

from .conftest import Factory, resolve

__all__ = ["otel"]


@pytest.fixture
def propagating() -> Iterator[None]:
    configure(propagate_to_orga=True)
    yield
    configure(propagate_to_orga=False)


def _api_calls(emulator: RunningEmulator) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if "/v1/" in str(r.get("path", ""))]


async def test_a_session_config_is_one_tree_of_steps_and_attempts(
    make_client: Factory, emulator: RunningEmulator, otel: Recorded
) -> None:
    emulator.arm("client-secrets", count=1, status=503)
    client = make_client(max_retries=2)
    config = await resolve(client.get_session_config())

    root = otel.one("orga.session_config")
    token, ice = otel.one("orga.token"), otel.one("orga.ice")
    posts, gets = otel.spans("POST"), otel.spans("GET")
    assert len(posts) == 2 and len(gets) == 1
    assert root.parent is None
    assert token.parent.span_id == root.context.span_id and ice.parent.span_id == root.context.span_id
    assert all(p.parent.span_id == token.context.span_id for p in posts)
    assert gets[0].parent.span_id == ice.context.span_id
    assert {s.context.trace_id for s in otel.spans()} == {root.context.trace_id}
    assert all(s.kind.name == "CLIENT" for s in posts + gets)

    first, second = sorted(posts, key=lambda s: attributes(s)["orga.attempt"])
    host = emulator.base_url.split("//")[1].split(":")[0]
    assert attributes(first) == {
        "http.request.method": "POST",
        "server.address": host,
        "server.port": int(emulator.base_url.rsplit(":", 1)[1].split("/")[0]),
        "url.full": f"{emulator.base_url.rstrip('/')}/v1/realtime/client-secrets",
        "orga.step": "token",
        "orga.attempt": 1,
        "http.response.status_code": 503,
        "error.type": "503",
        "orga.upstream_request_id": attributes(first)["orga.upstream_request_id"],
    }
    assert first.status.status_code.name == "ERROR"
    assert attributes(second)["orga.attempt"] == 2 and attributes(second)["orga.retry_reason"] == "503"
    assert attributes(second)["http.response.status_code"] == 200 and "error.type" not in attributes(second)
    assert attributes(second)["orga.upstream_request_id"] == config.token_request_id
    assert attributes(gets[0])["orga.upstream_request_id"] == config.ice_request_id

    for span in (root, token, ice):
        assert attributes(span)["orga.token.fingerprint"] == config.token_fingerprint
    # Never a secret in what an exporter would send: the key, the token, TURN credentials.
    exported = otel.exported_text()
    secrets = [emulator.api_key, config.ephemeral_token]
    secrets += [s.credential for s in config.ice_servers if s.credential]
    secrets += [s.username for s in config.ice_servers if s.username]
    for secret in secrets:
        assert secret not in exported and secret[:12] not in exported


async def test_a_failed_call_marks_its_step_and_the_call_as_errors(
    make_client: Factory, emulator: RunningEmulator, otel: Recorded
) -> None:
    emulator.arm("client-secrets", count=1, status=401)
    with pytest.raises(OrgaAIAuthenticationError):
        await resolve(make_client().get_session_config())
    root, token = otel.one("orga.session_config"), otel.one("orga.token")
    for span in (root, token):
        assert span.status.status_code.name == "ERROR"
        assert attributes(span)["error.type"] == "OrgaAIAuthenticationError"
    assert attributes(otel.one("POST"))["error.type"] == "401"
    assert otel.spans("orga.ice") == [] and emulator.api_key not in otel.exported_text()


async def test_single_step_calls_are_their_own_root(
    make_client: Factory, emulator: RunningEmulator, otel: Recorded
) -> None:
    client = make_client()
    token = await resolve(client.fetch_ephemeral_token())
    await resolve(client.fetch_ice_servers(token))
    roots = [s for s in otel.spans() if s.parent is None]
    assert [s.name for s in roots] == ["orga.token", "orga.ice"]
    assert attributes(roots[0])["orga.token.fingerprint"] == token.fingerprint
    assert attributes(roots[1])["orga.token.fingerprint"] == token.fingerprint


async def test_traceparent_reaches_orga_only_when_propagation_is_on(
    make_client: Factory, emulator: RunningEmulator, otel: Recorded
) -> None:
    from opentelemetry import trace

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("app-handler"):
        await resolve(make_client().get_session_config())
    assert [call["traceparent"] for call in _api_calls(emulator)] == [None, None]
    # The app's span is the parent of the call when one is current.
    assert otel.one("orga.session_config").parent.span_id == otel.one("app-handler").context.span_id


async def test_propagation_sends_the_attempt_span_as_parent(
    make_client: Factory, emulator: RunningEmulator, otel: Recorded, propagating: None
) -> None:
    await resolve(make_client().get_session_config())
    sent = [call["traceparent"].rsplit("-", 1)[0] for call in _api_calls(emulator)]  # without the flags
    attempts = sorted(otel.spans("POST") + otel.spans("GET"), key=lambda s: s.start_time)
    assert sent == [f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}" for s in attempts]


async def test_metrics_count_attempts_retries_and_429s_by_step(
    make_client: Factory, emulator: RunningEmulator, otel: Recorded
) -> None:
    before = {
        "retries": otel.total("orga_upstream_retries", step="token", reason="429"),
        "limited": otel.total("orga_upstream_rate_limited", step="token"),
        "ok": otel.total("orga_upstream_attempts", step="ice", result="200"),
        "steps": otel.total("orga_upstream_step_duration_seconds", step="token", result="ok"),
    }
    emulator.arm("client-secrets", count=1, status=429, retry_after="0")
    await resolve(make_client(max_retries=2).get_session_config())
    assert otel.total("orga_upstream_retries", step="token", reason="429") == before["retries"] + 1
    assert otel.total("orga_upstream_rate_limited", step="token") == before["limited"] + 1
    assert otel.total("orga_upstream_attempts", step="ice", result="200") == before["ok"] + 1
    assert otel.total("orga_upstream_step_duration_seconds", step="token", result="ok") == before["steps"] + 1


def test_without_opentelemetry_or_without_a_provider_the_flow_runs_unwatched() -> None:
    # Fresh interpreters: one where the API cannot be imported, one with the API but no SDK configured.
    script = """
import sys
{block}
from orga_ai._telemetry import instrument, otel_available
def flow():
    yield None
generator = flow()
assert instrument(generator) is generator
print(otel_available(), 'opentelemetry.sdk' in sys.modules)
from orga_ai import OrgaAIConfigurationError
from orga_ai.telemetry import configure
try:
    configure(propagate_to_orga=True)
except OrgaAIConfigurationError as exc:
    print("refused:", "pip install 'orga-ai[otel]'" in str(exc))
"""
    missing = script.format(block="sys.modules['opentelemetry'] = None")
    bare = script.format(block="")
    outputs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        for code in (missing, bare)
    ]
    assert outputs == [["False", "False", "refused:", "True"], ["True", "False"]]
