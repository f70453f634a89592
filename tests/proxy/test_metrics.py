"""The proxy's Prometheus recorders (orga_ai.proxy._metrics.recorder) against prometheus_client's own methods."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from orga_ai.proxy._metrics import _LATENCY_BUCKETS, Metrics, NullMetrics, recorder

VALUES = (0.0, 0.001, 0.01, 0.0100001, 0.025, 0.3, 3.0, 16.0, 16.5, 1e9, math.inf, math.nan)


def exposition(fast: bool) -> str:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["k"], registry=registry).labels("x")
    gauge = Gauge("g", "g", registry=registry)
    histogram = Histogram("h", "h", ["k"], buckets=_LATENCY_BUCKETS, registry=registry).labels("x")
    if fast:
        observe, inc, add = recorder(histogram), recorder(counter), recorder(gauge)
        for value in VALUES:
            observe(value)
        inc(1.0)
        inc(2.5)
        add(1.0)
        add(1.0)
        add(-1.0)
    else:
        for value in VALUES:
            histogram.observe(value)
        counter.inc(1.0)
        counter.inc(2.5)
        gauge.inc(1.0)
        gauge.inc(1.0)
        gauge.dec(1.0)
    text = generate_latest(registry).decode()
    return "\n".join(line for line in text.splitlines() if "_created" not in line)  # creation timestamps differ


def test_recorders_write_what_prometheus_clients_methods_write() -> None:
    fast = exposition(True)
    assert fast == exposition(False)
    assert 'h_bucket{k="x",le="0.01"} 3.0' in fast  # a value equal to a bound is counted in that bucket
    assert 'h_bucket{k="x",le="+Inf"} 11.0' in fast  # NaN in no bucket, as prometheus_client does
    assert "c_total{k=\"x\"} 3.5" in fast and "g 1.0" in fast


def test_recorders_skip_prometheus_clients_per_call_checks_on_this_version() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["k"], registry=registry).labels("x")
    histogram = Histogram("h", "h", ["k"], registry=registry).labels("x")
    # The fast path is in use with the installed prometheus_client (else recorder falls back to the methods).
    assert recorder(counter) != counter.inc
    assert recorder(histogram) != histogram.observe


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
    assert "orga_proxy_upstream_in_flight 0.0" in text
    assert 'orga_upstream_step_duration_seconds_bucket{le="0.01",result="ok",step="token"} 1.0' in text
    assert 'orga_upstream_attempts_total{result="200",step="token"} 1.0' in text
    null = NullMetrics()
    null.record(null.requests, "ok")(1.0)
    null.in_flight_add(1.0)
    assert null.render() == b""
