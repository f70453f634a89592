"""Prometheus metrics of one proxy, in its own ``CollectorRegistry`` (several apps in one process never collide).

With ``serve --workers N`` the workers share prometheus_client's multiprocess directory and ``/metrics`` sums them
(see :mod:`orga_ai.proxy._multiprocess`); separate replicas are scraped each on its own.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._retry import RetryBudget

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["CONTENT_TYPE", "CountingRetryBudget", "Metrics", "NullMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

Recorder = Callable[[float], None]
"""A counter's or gauge's ``inc``, or a histogram's ``observe``."""


def recorder(child: Any) -> Recorder:
    """``child.inc`` (counter, gauge) or ``child.observe`` (histogram) of a ready child, straight to its values.

    prometheus_client's own methods first check, on every call, that the metric is not a labelled parent and the
    amount not negative, then loop over the buckets in Python: about half of each call's cost, and the route makes
    eight such calls per request. A child resolved once passes those checks once, here. When this prometheus_client
    does not keep its values where 0.20 to 0.26 do, the public method is returned instead (tests/proxy/test_metrics.py
    compares both expositions).
    """
    from prometheus_client import Counter, Gauge, Histogram

    bounds = getattr(child, "_upper_bounds", None)
    public: Recorder = child.observe if bounds is not None else child.inc
    genuine = isinstance(child, (Counter, Gauge, Histogram))  # not a wrapper (the OpenTelemetry mirror)
    if not genuine:
        return public
    if bounds is not None:
        total = getattr(child, "_sum", None)
        buckets = getattr(child, "_buckets", None)
        if (
            not callable(getattr(total, "inc", None))
            or not isinstance(buckets, list)
            or len(buckets) != len(bounds)
            or not all(callable(getattr(bucket, "inc", None)) for bucket in buckets)
        ):
            return public
        add: Recorder = getattr(total, "inc")  # noqa: B009 - checked above
        incs: tuple[Recorder, ...] = tuple(bucket.inc for bucket in buckets)
        edges = tuple(bounds)  # ascending, +Inf last

        def observe(value: float) -> None:
            if value != value:  # NaN: prometheus_client counts it in no bucket
                public(value)
                return
            add(value)
            incs[bisect_left(edges, value)](1.0)  # the first bucket whose bound is >= value, as `value <= bound`

        return observe
    inc = getattr(getattr(child, "_value", None), "inc", None)
    return inc if callable(inc) else public


class Metrics:
    """The proxy's counters, histogram and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "orga_proxy_requests", "Requests to the client-secrets route, by outcome code.", ["outcome"], registry=r
        )
        self.upstream_latency = Histogram(
            "orga_proxy_upstream_latency_seconds",
            "Time spent getting one session config from Orga Cloud (both steps, retries included).",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_retries = Counter(
            "orga_proxy_upstream_retries", "Retries the SDK made towards Orga Cloud.", registry=r
        )
        self.rate_limited = Counter(
            "orga_proxy_rate_limited", "Requests refused by a rate limit, by scope.", ["scope"], registry=r
        )
        self.denied = Counter(
            "orga_proxy_denied", "Requests refused before any upstream call, by reason.", ["reason"], registry=r
        )
        self.shed = Counter(
            "orga_proxy_shed", "Requests shed because the upstream concurrency cap was reached.", registry=r
        )
        # multiprocess_mode: how workers' values combine under `serve --workers N` (ignored in one process).
        self.in_flight = Gauge(
            "orga_proxy_upstream_in_flight", "Upstream calls in progress.", registry=r, multiprocess_mode="livesum"
        )
        self.breaker_state = Gauge(
            "orga_proxy_circuit_open",
            "1 while the circuit breaker is open or half-open, else 0.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "orga_proxy_circuit_transitions", "Circuit breaker state changes, by new state.", ["state"], registry=r
        )
        self.breaker_rejected = Counter(
            "orga_proxy_circuit_rejected", "Requests refused fast because the circuit breaker was open.", registry=r
        )

        # What the SDK measures of its calls for this proxy (see observe_sdk), under the names the SDK also uses for
        # its OpenTelemetry metrics.
        self.sdk_attempts = Counter(
            "orga_upstream_attempts", "HTTP attempts to Orga Cloud, by step and result.", ["step", "result"], registry=r
        )
        self.sdk_retries = Counter(
            "orga_upstream_retries", "Attempts that were retries, by step and reason.", ["step", "reason"], registry=r
        )
        self.sdk_rate_limited = Counter(
            "orga_upstream_rate_limited", "HTTP 429 answers from Orga Cloud, by step.", ["step"], registry=r
        )
        self.sdk_step_latency = Histogram(
            "orga_upstream_step_duration_seconds",
            "Time to finish one step (token or ice), retries and backoff included, by step and result.",
            ["step", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sdk_pool_takes = Counter(
            "orga_pool_takes", "Warm-pool lookups of the proxy's SDK client, by result.", ["result"], registry=r
        )
        self._sdk: dict[str, Any] = {
            "orga_upstream_attempts": self.sdk_attempts,
            "orga_upstream_retries": self.sdk_retries,
            "orga_upstream_rate_limited": self.sdk_rate_limited,
            "orga_upstream_step_duration_seconds": self.sdk_step_latency,
            "orga_pool_takes": self.sdk_pool_takes,
        }
        self._sdk_children: dict[tuple[str, tuple[str, ...]], Recorder] = {}
        # Set by `serve --workers N` (see _multiprocess): /metrics then sums every worker's values.
        # Only when prometheus_client really writes there (the variable was set before its import): otherwise the
        # directory holds none of this process's values and /metrics would show nothing.
        from prometheus_client import values

        shared = getattr(values.ValueClass, "__name__", "") == "MmapedValue"
        self._multiprocess_dir = (os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None) if shared else None
        # (metric, label value) -> child: prometheus_client's labels() builds a key and takes a lock on every call.
        self._children: dict[tuple[int, str], Any] = {}
        self._recorders: dict[tuple[int, str], Recorder] = {}
        from ._tracing import mirror_metrics

        mirror_metrics(self)  # the same metrics into OpenTelemetry, when the application has a MeterProvider
        self.in_flight_add: Recorder = recorder(self.in_flight)
        """``in_flight.inc(amount)``; a negative amount is ``dec``."""

    def child(self, metric: Any, value: str) -> Any:
        """``metric.labels(value)`` for a metric with one label, looked up once per value."""
        key = (id(metric), value)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(value)
        return found

    def record(self, metric: Any, value: str) -> Recorder:
        """The :func:`recorder` of ``metric.labels(value)`` (a metric with one label), resolved once per value."""
        key = (id(metric), value)
        found = self._recorders.get(key)
        if found is None:
            found = self._recorders[key] = recorder(self.child(metric, value))
        return found

    def observe_sdk(self, metric: str, labels: dict[str, str], value: float) -> None:
        """Record one measurement the SDK reported (an :data:`orga_ai._telemetry.Observer`)."""
        key = (metric, tuple(labels.values()))
        record = self._sdk_children.get(key)
        if record is None:
            found = self._sdk.get(metric)
            if found is None:
                return
            record = self._sdk_children[key] = recorder(found.labels(**labels))
        record(value)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        from prometheus_client import generate_latest

        if self._multiprocess_dir is not None:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


class _NullMetric:
    """A counter, gauge and histogram that records nothing."""

    __slots__ = ()

    def labels(self, *values: str, **labels: str) -> _NullMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def dec(self, amount: float = 1) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, value: float) -> None:
        return None


_NULL_METRIC = _NullMetric()


class NullMetrics(Metrics):
    """Metrics that record nothing, for function entry points: a function has no ``/metrics`` to scrape (the
    platform counts invocations), and ``prometheus_client`` is never imported on their cold start."""

    def __init__(self) -> None:  # no super().__init__(): that would build a Prometheus registry
        self.registry = None  # type: ignore[assignment]
        for name in (
            "requests",
            "upstream_latency",
            "upstream_retries",
            "rate_limited",
            "denied",
            "shed",
            "in_flight",
            "breaker_state",
            "breaker_transitions",
            "breaker_rejected",
            "sdk_attempts",
            "sdk_retries",
            "sdk_rate_limited",
            "sdk_step_latency",
            "sdk_pool_takes",
        ):
            setattr(self, name, _NULL_METRIC)
        self._children = {}
        self._recorders = {}
        self.in_flight_add = _NULL_METRIC.inc

    def observe_sdk(self, metric: str, labels: dict[str, str], value: float) -> None:
        return None

    def child(self, metric: Any, value: str) -> Any:
        return _NULL_METRIC

    def record(self, metric: Any, value: str) -> Recorder:
        return _NULL_METRIC.inc

    def render(self) -> bytes:
        return b""


class CountingRetryBudget(RetryBudget):
    """The SDK's retry budget, counting each retry it grants into a metric."""

    def __init__(self, metrics: Metrics, *, capacity: float = 10.0, ratio: float = 0.1) -> None:
        super().__init__(capacity=capacity, ratio=ratio)
        self._metrics = metrics

    def try_spend(self) -> bool:
        granted = super().try_spend()
        if granted:
            self._metrics.upstream_retries.inc()
        return granted
