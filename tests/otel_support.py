"""The OpenTelemetry SDK with in-memory exporters, installed once as the process's global providers (the API allows
one set-up per process); each test clears what the previous one recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Recorded:
    """The finished spans and the metrics the code under test reported through the OpenTelemetry API."""

    exporter: Any
    reader: Any

    def clear(self) -> None:
        self.exporter.clear()
        self.reader.get_metrics_data()  # collecting resets nothing for cumulative sums; tests compare deltas

    def spans(self, name: str | None = None) -> list[Any]:
        found = list(self.exporter.get_finished_spans())
        return [span for span in found if name is None or span.name == name]

    def one(self, name: str) -> Any:
        found = self.spans(name)
        assert len(found) == 1, [span.name for span in self.spans()]
        return found[0]

    def exported_text(self) -> str:
        """Every finished span as the JSON an exporter would send (for the secret scan)."""
        return "\n".join(span.to_json() for span in self.spans())

    def points(self, metric: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value) of each data point of ``metric`` (sums: the running total; histograms: the count)."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], float]] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for found in scope.metrics:
                    if found.name != metric:
                        continue
                    for point in found.data.data_points:
                        value = getattr(point, "value", None)
                        out.append((dict(point.attributes), value if value is not None else point.count))
        return out

    def total(self, metric: str, **attributes: Any) -> float:
        return sum(
            value
            for found, value in self.points(metric)
            if all(found.get(key) == wanted for key, wanted in attributes.items())
        )


_RECORDED: Recorded | None = None
_RECORDING = False  # only the tests that ask for the `otel` fixture record spans


def _switch_sampler() -> Any:
    """A sampler that records while a test holds the ``otel`` fixture and drops every span otherwise: the global
    provider outlives those tests, and recording the rest of the suite's traffic (the reliability suite's tens of
    thousands of calls) would weigh on its RSS and latency figures."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult

    class Switch(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return (ALWAYS_ON if _RECORDING else ALWAYS_OFF).should_sample(*args, **kwargs)

        def get_description(self) -> str:
            return "tests.otel_support.Switch"

    return Switch()


def install() -> Recorded:
    """Install (once) a TracerProvider and a MeterProvider that keep everything in memory."""
    global _RECORDED
    if _RECORDED is None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=_switch_sampler())
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _RECORDED = Recorded(exporter, reader)
    return _RECORDED


@pytest.fixture
def otel() -> Iterator[Recorded]:
    """The in-memory OpenTelemetry SDK, recording for this test only and emptied before and after it."""
    global _RECORDING
    recorded = install()
    recorded.exporter.clear()
    _RECORDING = True
    try:
        yield recorded
    finally:
        _RECORDING = False
        recorded.exporter.clear()


def attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def names(spans: Sequence[Any]) -> list[str]:
    return [span.name for span in spans]


def as_json(span: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(span.to_json())
    return result
