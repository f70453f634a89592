"""OpenTelemetry for the route: one ``orga.proxy.request`` span per request, and the Prometheus metrics mirrored into
OpenTelemetry instruments of the same names. Through ``opentelemetry-api`` only; nothing when it is not installed.

The span is the parent of the SDK's ``orga.session_config`` (see :mod:`orga_ai._telemetry`). Its own parent is the
framework's server span when one is current (an ASGI/WSGI/Django instrumentation ran first and already read the
caller's ``traceparent``); otherwise the W3C ``traceparent`` of the incoming request, and the span is then the
``SERVER`` span itself. Attributes are set once, when the response is decided (:func:`annotate`): outcome, status,
request id, principal fingerprint, rate-limit decision, breaker state, upstream request ids, token fingerprint.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._telemetry import _api

if TYPE_CHECKING:
    from ._metrics import Metrics
    from ._request import ProxyRequest

__all__ = ["SPAN_NAME", "annotate", "current_request_span", "mirror_metrics", "request_span"]

SPAN_NAME = "orga.proxy.request"

_SPAN: contextvars.ContextVar[Any] = contextvars.ContextVar("orga_proxy_request_span", default=None)


def request_span(request: ProxyRequest) -> contextlib.AbstractContextManager[None] | None:
    """A context manager making this request's span current while the route handles it; None when there is nothing
    to record (no ``opentelemetry-api``, or no recording tracer)."""
    api = _api()
    if api is None or not api.tracing_configured():
        return None
    trace = api.trace
    if trace.get_current_span().get_span_context().is_valid:
        parent, kind = None, trace.SpanKind.INTERNAL  # the framework's span is current: nest under it
    else:
        parent, kind = api.propagate.extract(request.headers), trace.SpanKind.SERVER
    span = api.tracer.start_span(
        SPAN_NAME,
        context=parent,
        kind=kind,
        attributes={"http.request.method": request.method, "url.path": request.path},
    )
    if not span.is_recording():
        span.end()
        return None
    return _scope(api, span)


@contextlib.contextmanager
def _scope(api: Any, span: Any) -> Iterator[None]:
    from opentelemetry import context

    token = context.attach(api.trace.set_span_in_context(span))
    mark = _SPAN.set(span)
    try:
        yield
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(api.trace.Status(api.trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        _SPAN.reset(mark)
        context.detach(token)
        span.end()


def _limit_decision(outcome: str, limit_headers: dict[str, str]) -> str:
    if outcome == "rate_limited":
        return "rejected"
    if outcome == "rate_limiter_unavailable":
        return "unavailable"
    return "allowed" if limit_headers else "not_checked"


def current_request_span() -> Any:
    """The span of the request being handled in this context, or None."""
    return _SPAN.get()


def annotate(
    span: Any,
    *,
    request_id: str,
    status: int,
    outcome: str,
    principal_fingerprint: str | None,
    principal_kind: str | None,
    limit_headers: dict[str, str],
    breaker_state: str,
    upstream_ids: tuple[str | None, ...],
    token_fingerprint: str | None,
) -> None:
    """Record the decided response on the request's span."""
    attributes: dict[str, Any] = {
        "http.response.status_code": status,
        "orga.request_id": request_id,
        "orga.outcome": outcome,
        "orga.rate_limit.decision": _limit_decision(outcome, limit_headers),
        "orga.breaker.state": breaker_state,
    }
    if principal_fingerprint:
        attributes["orga.principal.fingerprint"] = principal_fingerprint
        attributes["orga.principal.kind"] = principal_kind or ""
    remaining = limit_headers.get("RateLimit-Remaining")
    if remaining is not None:
        attributes["orga.rate_limit.remaining"] = int(remaining)
    ids = [rid for rid in upstream_ids if rid]
    if ids:
        attributes["orga.upstream_request_ids"] = ids
    if token_fingerprint:
        attributes["orga.token.fingerprint"] = token_fingerprint
    if status >= 500:
        attributes["error.type"] = outcome
        span.set_status(_api().trace.Status(_api().trace.StatusCode.ERROR, outcome))  # type: ignore[union-attr]
    span.set_attributes(attributes)


# -- metrics ---------------------------------------------------------------------------------------------------------


class _Mirrored:
    """A Prometheus metric (or one of its labelled children) that also records into an OpenTelemetry instrument."""

    __slots__ = ("_attributes", "_names", "_otel", "_prom")

    def __init__(self, prom: Any, otel: Any, names: tuple[str, ...], attributes: dict[str, str] | None = None):
        self._prom, self._otel, self._names = prom, otel, names
        self._attributes = attributes or {}

    def labels(self, *values: str, **labels: str) -> _Mirrored:
        attributes = dict(zip(self._names, values, strict=False)) if values else dict(labels)
        return _Mirrored(self._prom.labels(*values, **labels), self._otel, self._names, attributes)

    def inc(self, amount: float = 1) -> None:
        self._prom.inc(amount)
        self._otel.add(amount, self._attributes)

    def dec(self, amount: float = 1) -> None:
        self._prom.dec(amount)
        self._otel.add(-amount, self._attributes)

    def set(self, value: float) -> None:
        self._prom.set(value)
        self._otel.set(value, self._attributes)

    def observe(self, value: float) -> None:
        self._prom.observe(value)
        self._otel.record(value, self._attributes)

    def __getattr__(self, name: str) -> Any:  # anything else (collect, describe...) is the Prometheus metric's
        return getattr(self._prom, name)


def mirror_metrics(metrics: Metrics) -> None:
    """Make every metric of ``metrics`` record into an OpenTelemetry instrument of the same name too, when the
    application has installed a ``MeterProvider`` (before the app is built); otherwise leave them alone."""
    api = _api()
    if api is None or not api.metrics_configured():
        return
    from ._metrics import METRICS

    meter = api.meter
    for spec in METRICS:
        if spec.from_sdk:
            continue  # the SDK records these into OpenTelemetry itself, under the same names
        otel: Any
        if spec.kind == "counter":
            otel = meter.create_counter(spec.name, description=spec.help)
        elif spec.kind == "histogram":
            otel = meter.create_histogram(spec.name, unit="s", description=spec.help)
        elif spec.attribute == "in_flight":  # a level that goes up and down
            otel = meter.create_up_down_counter(spec.name, description=spec.help)
        else:
            otel = meter.create_gauge(spec.name, description=spec.help)
        setattr(metrics, spec.attribute, _Mirrored(getattr(metrics, spec.attribute), otel, spec.labels))
