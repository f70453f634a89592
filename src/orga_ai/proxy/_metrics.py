"""Prometheus metrics of one proxy, in its own ``CollectorRegistry`` (several apps in one process never collide).

With ``serve --workers N`` the workers share prometheus_client's multiprocess directory and ``/metrics`` sums them
(see :mod:`orga_ai.proxy._multiprocess`); separate replicas are scraped each on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from .._retry import RetryBudget
from ._multiprocess import ENV, forget_live_gauges_at_exit

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["CONTENT_TYPE", "METRICS", "CountingRetryBudget", "MetricSpec", "Metrics", "NullMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

Recorder = Callable[[float], None]
"""A counter's or gauge's ``inc``, or a histogram's ``observe``."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of the proxy: the attribute of :class:`Metrics` holding it, and what Prometheus and the
    OpenTelemetry mirror (:func:`orga_ai.proxy._tracing.mirror_metrics`) are told about it."""

    attribute: str
    kind: Literal["counter", "gauge", "histogram"]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    multiprocess_mode: str = ""
    """How the workers' values of a gauge combine under ``serve --workers N`` (ignored in one process)."""
    from_sdk: bool = False
    """Measured by the SDK (see :meth:`Metrics.observe_sdk`), which also records it into OpenTelemetry itself."""


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "requests",
        "counter",
        "orga_proxy_requests",
        "Requests to the client-secrets route, by outcome code.",
        ("outcome",),
    ),
    MetricSpec(
        "upstream_latency",
        "histogram",
        "orga_proxy_upstream_latency_seconds",
        "Time spent getting one session config from Orga Cloud (both steps, retries included).",
        ("result",),
    ),
    MetricSpec(
        "upstream_retries", "counter", "orga_proxy_upstream_retries", "Retries the SDK made towards Orga Cloud."
    ),
    MetricSpec(
        "rate_limited", "counter", "orga_proxy_rate_limited", "Requests refused by a rate limit, by scope.", ("scope",)
    ),
    MetricSpec(
        "denied", "counter", "orga_proxy_denied", "Requests refused before any upstream call, by reason.", ("reason",)
    ),
    MetricSpec("shed", "counter", "orga_proxy_shed", "Requests shed because the upstream concurrency cap was reached."),
    MetricSpec(
        "in_flight",
        "gauge",
        "orga_proxy_upstream_in_flight",
        "Upstream calls in progress.",
        multiprocess_mode="livesum",
    ),
    MetricSpec(
        "breaker_state",
        "gauge",
        "orga_proxy_circuit_open",
        "1 while the circuit breaker is open or half-open, else 0.",
        multiprocess_mode="livemax",
    ),
    MetricSpec(
        "breaker_transitions",
        "counter",
        "orga_proxy_circuit_transitions",
        "Circuit breaker state changes, by new state.",
        ("state",),
    ),
    MetricSpec(
        "breaker_rejected",
        "counter",
        "orga_proxy_circuit_rejected",
        "Requests refused fast because the circuit breaker was open.",
    ),
    # What the SDK measures of its calls for this proxy (see observe_sdk), under the names the SDK also uses for its
    # OpenTelemetry metrics.
    MetricSpec(
        "sdk_attempts",
        "counter",
        "orga_upstream_attempts",
        "HTTP attempts to Orga Cloud, by step and result.",
        ("step", "result"),
        from_sdk=True,
    ),
    MetricSpec(
        "sdk_retries",
        "counter",
        "orga_upstream_retries",
        "Attempts that were retries, by step and reason.",
        ("step", "reason"),
        from_sdk=True,
    ),
    MetricSpec(
        "sdk_rate_limited",
        "counter",
        "orga_upstream_rate_limited",
        "HTTP 429 answers from Orga Cloud, by step.",
        ("step",),
        from_sdk=True,
    ),
    MetricSpec(
        "sdk_step_latency",
        "histogram",
        "orga_upstream_step_duration_seconds",
        "Time to finish one step (token or ice), retries and backoff included, by step and result.",
        ("step", "result"),
        from_sdk=True,
    ),
    MetricSpec(
        "sdk_pool_takes",
        "counter",
        "orga_pool_takes",
        "Warm-pool lookups of the proxy's SDK client, by result.",
        ("result",),
        from_sdk=True,
    ),
)
"""Every metric of the proxy: the one list :class:`Metrics`, :class:`NullMetrics` and the OpenTelemetry mirror read."""


def recorder(metric: Any, kind: str) -> Recorder:
    """The bound ``observe`` of a histogram (or one of its labelled children), else its ``inc`` (a negative amount
    of a gauge's ``inc`` is a ``dec``)."""
    return cast("Recorder", metric.observe if kind == "histogram" else metric.inc)


class Metrics:
    """The proxy's counters, histogram and gauges (:data:`METRICS`)."""

    requests: Any
    upstream_latency: Any
    upstream_retries: Any
    rate_limited: Any
    denied: Any
    shed: Any
    in_flight: Any
    breaker_state: Any
    breaker_transitions: Any
    breaker_rejected: Any
    sdk_attempts: Any
    sdk_retries: Any
    sdk_rate_limited: Any
    sdk_step_latency: Any
    sdk_pool_takes: Any

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        for spec in METRICS:
            metric: Any
            if spec.kind == "counter":
                metric = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
            elif spec.kind == "histogram":
                metric = Histogram(spec.name, spec.help, spec.labels, buckets=_LATENCY_BUCKETS, registry=self.registry)
            else:
                metric = Gauge(
                    spec.name,
                    spec.help,
                    spec.labels,
                    registry=self.registry,
                    multiprocess_mode=spec.multiprocess_mode or "all",  # type: ignore[arg-type]
                )
            setattr(self, spec.attribute, metric)
        # Set by `serve --workers N` (see _multiprocess) or by the operator, before prometheus_client is first
        # imported: every process then writes its values there, and /metrics sums them.
        self._multiprocess_dir = os.environ.get(ENV) or None
        if self._multiprocess_dir is not None:
            forget_live_gauges_at_exit(self._multiprocess_dir)
        from ._tracing import mirror_metrics

        mirror_metrics(self)  # the same metrics into OpenTelemetry, when the application has a MeterProvider
        self._kinds = {id(getattr(self, spec.attribute)): spec.kind for spec in METRICS}
        self._sdk = {spec.name: (getattr(self, spec.attribute), spec.kind) for spec in METRICS if spec.from_sdk}
        self._sdk_children: dict[tuple[str, tuple[str, ...]], Recorder] = {}
        # (metric, label value) -> child: prometheus_client's labels() builds a key and takes a lock on every call.
        self._children: dict[tuple[int, str], Any] = {}
        self._recorders: dict[tuple[int, str], Recorder] = {}
        self.in_flight_add: Recorder = self.in_flight.inc
        """``in_flight.inc(amount)``; a negative amount is ``dec``."""

    def child(self, metric: Any, value: str) -> Any:
        """``metric.labels(value)`` for a metric with one label, looked up once per value."""
        key = (id(metric), value)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(value)
        return found

    def record(self, metric: Any, value: str) -> Recorder:
        """``inc`` (``observe`` for a histogram) of ``metric.labels(value)`` (a metric with one label), resolved once
        per value."""
        key = (id(metric), value)
        found = self._recorders.get(key)
        if found is None:
            found = self._recorders[key] = recorder(self.child(metric, value), self._kinds.get(id(metric), "counter"))
        return found

    def observe_sdk(self, metric: str, labels: dict[str, str], value: float) -> None:
        """Record one measurement the SDK reported (an :data:`orga_ai._telemetry.Observer`)."""
        key = (metric, tuple(labels.values()))
        record = self._sdk_children.get(key)
        if record is None:
            found = self._sdk.get(metric)
            if found is None:
                return
            record = self._sdk_children[key] = recorder(found[0].labels(**labels), found[1])
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
        for name in (spec.attribute for spec in METRICS):
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
