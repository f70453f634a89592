"""The proxy's Prometheus metrics: the project's table (orga_ai.proxy._metrics.METRICS) against what prometheus_client
exposes, the cached recorders, and the multiprocess directory (read from PROMETHEUS_MULTIPROC_DIR alone; a process
leaving it drops its live gauges)."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

import orga_ai.proxy._metrics
import orga_ai.proxy._multiprocess
import orga_ai.proxy._tracing
from orga_ai.proxy._metrics import _LATENCY_BUCKETS, METRICS, Metrics, NullMetrics


def test_metrics_record_counts_into_the_labelled_child() -> None:
    metrics = Metrics()
    metrics.record(metrics.requests, "ok")(1.0)
    metrics.record(metrics.requests, "ok")(1.0)
    metrics.record(metrics.upstream_latency, "ok")(0.02)
    metrics.in_flight_add(1.0)
    metrics.in_flight_add(-1.0)
    metrics.observe_sdk("orga_upstream_step_duration_seconds", {"step": "token", "result": "ok"}, 0.003)
    metrics.observe_sdk("orga_upstream_attempts", {"step": "token", "result": "200"}, 1.0)
    text = metrics.render().decode()
    assert 'orga_proxy_requests_total{outcome="ok"} 2.0' in text
    assert 'orga_proxy_upstream_latency_seconds_bucket{le="0.025",result="ok"} 1.0' in text
    assert 'orga_proxy_upstream_latency_seconds_bucket{le="0.01",result="ok"} 0.0' in text
    assert "orga_proxy_upstream_in_flight 0.0" in text
    assert 'orga_upstream_step_duration_seconds_bucket{le="0.01",result="ok",step="token"} 1.0' in text
    assert 'orga_upstream_attempts_total{result="200",step="token"} 1.0' in text
    assert metrics.record(metrics.requests, "ok") is metrics.record(metrics.requests, "ok")  # resolved once
    null = NullMetrics()
    null.record(null.requests, "ok")(1.0)
    null.in_flight_add(1.0)
    assert null.render() == b""


def test_the_table_is_what_prometheus_exposes() -> None:
    # The OpenTelemetry mirror takes names, help texts and labels from METRICS, not from prometheus_client's objects.
    metrics = Metrics()
    for spec in METRICS:
        if spec.labels:
            getattr(metrics, spec.attribute).labels(*("x" for _ in spec.labels))
    families = {family.name: family for family in metrics.registry.collect()}
    assert len(families) == len(METRICS)
    for spec in METRICS:
        family = families[spec.name]
        assert (family.type, family.documentation) == (spec.kind, spec.help), spec.name
        labels = {key for sample in family.samples for key in sample.labels if key != "le"}
        assert labels == set(spec.labels), spec.name
        if spec.kind == "histogram":
            bounds = [sample.labels["le"] for sample in family.samples if sample.name.endswith("_bucket")]
            assert bounds == [*map(str, _LATENCY_BUCKETS), "+Inf"]
    assert {spec.attribute for spec in METRICS} <= set(vars(NullMetrics()))


PRIVATE = re.compile(r"\b(_value|_sum|_buckets|_upper_bounds|_name|_documentation|_labelnames|ValueClass)\b")


def test_no_private_prometheus_name_is_read() -> None:
    # prometheus-client is not upper-pinned: the proxy uses its public API only.
    for module in (orga_ai.proxy._metrics, orga_ai.proxy._multiprocess, orga_ai.proxy._tracing):
        assert PRIVATE.findall(inspect.getsource(module)) == [], module.__name__


_WORKER = """
import os, sys
from orga_ai.proxy._metrics import Metrics

metrics = Metrics()
metrics.record(metrics.requests, "ok")(1.0)
metrics.in_flight_add(1.0)  # still "in flight" when the process leaves
metrics.breaker_state.set(1.0)
print(os.getpid(), flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), 9)
"""


def _run_worker(directory: Path, how: str) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER), how], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == (0 if how == "exit" else -9), result.stderr
    return int(result.stdout.split()[0])


def _merged(directory: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_a_process_leaving_normally_drops_its_live_gauges_and_keeps_its_counts(tmp_path: Path) -> None:
    first = _run_worker(tmp_path, "exit")
    second = _run_worker(tmp_path, "exit")
    assert not any(str(pid) in name for pid in (first, second) for name in os.listdir(tmp_path) if "live" in name)
    text = _merged(tmp_path)
    assert 'orga_proxy_requests_total{outcome="ok"} 2.0' in text
    assert not re.search(r"^orga_proxy_upstream_in_flight [1-9]", text, re.MULTILINE)
    assert not re.search(r"^orga_proxy_circuit_open 1", text, re.MULTILINE)


def test_a_killed_process_leaves_its_live_gauges_behind(tmp_path: Path) -> None:
    # The documented gap (orga_ai/proxy/_multiprocess.py): uvicorn's supervisor has no hook on a worker's death.
    _run_worker(tmp_path, "kill")
    text = _merged(tmp_path)
    assert "orga_proxy_upstream_in_flight 1.0" in text
    assert "orga_proxy_circuit_open 1.0" in text


def test_metrics_read_the_directory_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_worker(tmp_path, "exit")  # another worker's count, in the directory
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert 'orga_proxy_requests_total{outcome="ok"} 1.0' in Metrics().render().decode()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert 'orga_proxy_requests_total{outcome="ok"}' not in Metrics().render().decode()
