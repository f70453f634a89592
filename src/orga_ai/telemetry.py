"""Observability of the SDK and the proxy: OpenTelemetry settings, the JSON log formatter and the request-id filter.

Tracing and metrics go through ``opentelemetry-api`` (``pip install 'orga-ai[otel]'``): install and configure an
OpenTelemetry SDK the usual way (``opentelemetry-instrument``, or a ``TracerProvider``/``MeterProvider`` of your own)
and the SDK's calls and the proxy's requests appear in it; without one nothing is recorded and nothing is imported.
See docs/operations.md for the span tree, the attribute and metric names.
"""

from ._jsonlog import JSONFormatter
from ._logging import RequestIdFilter
from ._telemetry import configure, otel_available, propagate_to_orga

__all__ = ["JSONFormatter", "RequestIdFilter", "configure", "otel_available", "propagate_to_orga"]
