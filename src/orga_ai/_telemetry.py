"""OpenTelemetry for the SDK: spans around each call, each step and each HTTP attempt, and a few metrics, all through
``opentelemetry-api`` only.

Nothing here imports an SDK or an exporter: the application configures those (``opentelemetry-instrument``, or its own
``TracerProvider``/``MeterProvider``), and until it does the API hands out non-recording spans. Without
``opentelemetry-api`` installed, :func:`instrument` returns the flow untouched after one cached failed import.

The drivers call :func:`instrument` on each flow they run. The wrapper is a generator of the same shape as the flow
(it yields the flow's :class:`Request` and :class:`Sleep` actions and passes the outcomes back), so it watches the
sans-IO exchange without either driver knowing what it records:

    orga.session_config                 (INTERNAL; or orga.token / orga.ice for a single-step call)
    ├── orga.token                      (INTERNAL)
    │   └── POST                        (CLIENT, one per attempt: OTel HTTP client conventions + orga.*)
    └── orga.ice
        └── GET

What a span may carry is decided here, once: URLs, status codes, request ids, attempt numbers, retry reasons and the
token's fingerprint (``fp:`` + 10 hex digits of its SHA-256). Never a header, a body, a token or the key.

``traceparent`` goes to Orga Cloud only after ``configure(propagate_to_orga=True)``: a trace id is harmless, but a
third party learns nothing of our traces unless the operator says so.
"""

from __future__ import annotations

import contextvars
import os
import sys
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._protocol import Request, Response, TransportFailure
from ._secret import fingerprint

__all__ = [
    "Observer",
    "configure",
    "instrument",
    "otel_available",
    "propagate_to_orga",
    "record_pool_take",
    "reset_observer",
    "set_observer",
]

T = TypeVar("T")

INSTRUMENTATION_NAME = "orga_ai"

_FLOW_SPANS = {"session_flow": "orga.session_config", "token_flow": "orga.token", "ice_flow": "orga.ice"}
_STEP_SPANS = {"token": "orga.token", "ice": "orga.ice"}

_settings = {"propagate_to_orga": False}


def configure(*, propagate_to_orga: bool = False) -> None:
    """Process-wide telemetry settings of the SDK.

    Raises:
        OrgaAIConfigurationError: ``propagate_to_orga=True`` without ``opentelemetry-api`` installed.

    Args:
        propagate_to_orga: send the W3C ``traceparent`` (and ``tracestate``) of the current trace to Orga Cloud with
            each request. Off by default: spans and metrics are recorded either way, and nothing of the trace
            leaves your systems unless you turn this on.
    """
    if propagate_to_orga and not otel_available():
        from ._exceptions import OrgaAIConfigurationError

        raise OrgaAIConfigurationError("propagate_to_orga needs OpenTelemetry: pip install 'orga-ai[otel]'")
    _settings["propagate_to_orga"] = bool(propagate_to_orga)


def propagate_to_orga() -> bool:
    """Whether requests to Orga Cloud carry ``traceparent`` (see :func:`configure`)."""
    return _settings["propagate_to_orga"]


class _Api:
    """The pieces of ``opentelemetry-api`` in use, imported once."""

    def __init__(self) -> None:
        from opentelemetry import metrics, propagate, trace

        from ._version import __version__

        self.trace = trace
        self.propagate = propagate
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)
        self.meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__)
        self.metrics_api = metrics
        self.client = trace.SpanKind.CLIENT
        self.error = trace.Status(trace.StatusCode.ERROR)
        self.attempts = self.meter.create_counter(
            "orga_upstream_attempts", unit="{attempt}", description="HTTP attempts to Orga Cloud, by step and result."
        )
        self.retries = self.meter.create_counter(
            "orga_upstream_retries", unit="{retry}", description="Attempts that were retries, by step and reason."
        )
        self.rate_limited = self.meter.create_counter(
            "orga_upstream_rate_limited", unit="{response}", description="HTTP 429 answers from Orga Cloud, by step."
        )
        self.step_latency = self.meter.create_histogram(
            "orga_upstream_step_duration_seconds",
            unit="s",
            description="Time to finish one step (token or ice), retries and backoff included, by step and result.",
        )
        self.pool_takes = self.meter.create_counter(
            "orga_pool_takes", unit="{take}", description="Warm-pool lookups of AsyncOrgaAI, by result (hit/miss)."
        )
        self.instruments: dict[str, Any] = {
            "orga_upstream_attempts": self.attempts,
            "orga_upstream_retries": self.retries,
            "orga_upstream_rate_limited": self.rate_limited,
            "orga_upstream_step_duration_seconds": self.step_latency,
            "orga_pool_takes": self.pool_takes,
        }

    def tracing_configured(self) -> bool:
        # The same for traces: the API's global provider is a proxy until the application sets one.
        name = type(self.trace.get_tracer_provider()).__name__
        return name not in {"ProxyTracerProvider", "NoOpTracerProvider"}

    def metrics_configured(self) -> bool:
        # Until the application installs a MeterProvider the API's global is a proxy (or a no-op): recording into it
        # costs time for nothing. Checked per call so a provider installed after import is picked up.
        name = type(self.metrics_api.get_meter_provider()).__name__
        return name not in {"_ProxyMeterProvider", "NoOpMeterProvider"}


_API: _Api | None = None
_API_MISSING = False
_PROVIDER_ENV = frozenset({"OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"})
# Read once: a launcher sets these before the process starts, and a lookup of a missing variable costs several µs
# (os.environ raises and catches KeyError), on every SDK call.
_PROVIDER_IN_ENV = any(name in os.environ for name in _PROVIDER_ENV)


def _api(*, load: bool = False) -> _Api | None:
    """The API once loaded; None without ``opentelemetry-api``. Without ``load``, also None (and nothing imported)
    until the application has imported ``opentelemetry`` itself or names a provider in the environment: only then
    can a tracer or meter provider be configured, so until then there is nothing to record into, and importing the
    API (tens of ms) would only lengthen a cold start. Checked per call: telemetry set up later is picked up."""
    global _API, _API_MISSING
    if _API is None and not _API_MISSING:
        if not load and not _PROVIDER_IN_ENV and "opentelemetry" not in sys.modules:
            return None
        try:
            _API = _Api()
        except ImportError:
            _API_MISSING = True
    return _API


def otel_available() -> bool:
    """Whether ``opentelemetry-api`` is importable (``pip install 'orga-ai[otel]'``)."""
    return _api(load=True) is not None


def record_pool_take(hit: bool) -> None:
    """Count one warm-pool lookup (``orga_pool_takes``)."""
    labels = {"result": "hit" if hit else "miss"}
    observer = _OBSERVER.get()
    if observer is not None:
        observer("orga_pool_takes", labels, 1.0)
    api = _api()
    if api is not None and api.metrics_configured():
        api.pool_takes.add(1, labels)


def instrument(flow: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
    """``flow``, watched: spans and metrics for its steps and attempts. Returns ``flow`` itself when there is
    nothing to record into (no ``opentelemetry-api``, or neither a recording tracer nor a meter provider, and no
    :func:`observing` observer)."""
    observer = _OBSERVER.get()
    api = _api()
    if api is None:
        return flow if observer is None else _observed(flow, observer)
    metrics = api.metrics_configured()
    if not metrics and not api.tracing_configured() and not _settings["propagate_to_orga"]:
        return flow if observer is None else _observed(flow, observer)
    name = _FLOW_SPANS.get(getattr(flow, "__name__", ""), "orga.call")
    root = api.tracer.start_span(name)
    if not root.is_recording() and not metrics and observer is None and not _settings["propagate_to_orga"]:
        root.end()
        return flow
    return _traced(flow, api, root, name, metrics, observer)


Observer = Callable[[str, dict[str, str], float], None]
"""Receives what the SDK measured: ``(metric name, labels, value)`` with the names of the OpenTelemetry metrics."""

_OBSERVER: contextvars.ContextVar[Observer | None] = contextvars.ContextVar("orga_ai_observer", default=None)


def set_observer(observer: Observer | None) -> contextvars.Token[Observer | None]:
    """Send the measurements of the SDK calls made in this context to ``observer`` too (the proxy's Prometheus
    metrics use it); undo with :func:`reset_observer`."""
    return _OBSERVER.set(observer)


def reset_observer(token: contextvars.Token[Observer | None]) -> None:
    _OBSERVER.reset(token)


def _observed(flow: Generator[Any, Any, T], observer: Observer) -> Generator[Any, Any, T]:
    """The metrics of :func:`_traced` alone, for an observer without OpenTelemetry: per attempt only the step, the
    status or failure kind and the clock (the route pays this on every call, so nothing more)."""
    step: str | None = None
    started = 0.0
    reason: str | None = None
    outcome: Any = None
    try:
        while True:
            try:
                action = flow.send(outcome)
            except StopIteration as stop:
                if step is not None:
                    observer(_STEP_SECONDS, {"step": step, "result": "ok"}, time.perf_counter() - started)
                result: T = stop.value
                return result
            if not isinstance(action, Request):
                outcome = yield action
                continue
            if action.step != step:
                if step is not None:
                    observer(_STEP_SECONDS, {"step": step, "result": "ok"}, time.perf_counter() - started)
                step, started, reason = action.step, time.perf_counter(), None
            elif reason is not None:
                observer("orga_upstream_retries", {"step": step, "reason": reason}, 1.0)
            outcome = yield action
            if isinstance(outcome, Response):
                label = str(outcome.status)
                reason = label if outcome.status >= 400 else None
                if outcome.status == 429:
                    observer("orga_upstream_rate_limited", {"step": step}, 1.0)
            else:
                label = reason = outcome.kind.value if isinstance(outcome, TransportFailure) else "none"
            observer("orga_upstream_attempts", {"step": step, "result": label}, 1.0)
    except GeneratorExit:
        raise
    except BaseException:
        if step is not None:
            observer(_STEP_SECONDS, {"step": step, "result": "error"}, time.perf_counter() - started)
        raise
    finally:
        flow.close()


_STEP_SECONDS = "orga_upstream_step_duration_seconds"


class _NullSpan:
    """A span for when only metrics are recorded: takes everything, keeps nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Any) -> None:
        return None

    def set_status(self, status: Any) -> None:
        return None

    def end(self) -> None:
        return None


_NULL_SPAN = _NullSpan()


def _outcome_attributes(outcome: Any) -> tuple[dict[str, Any], str | None]:
    """The attempt span's attributes for an outcome, and the retry reason it would give (None for a success)."""
    if isinstance(outcome, Response):
        attributes: dict[str, Any] = {"http.response.status_code": outcome.status}
        if outcome.request_id:
            attributes["orga.upstream_request_id"] = outcome.request_id
        if outcome.status >= 400:
            attributes["error.type"] = str(outcome.status)
            return attributes, str(outcome.status)
        return attributes, None
    if isinstance(outcome, TransportFailure):
        kind = outcome.kind.value
        return {"error.type": kind}, kind
    return {}, None


def _bearer_fingerprint(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    return fingerprint(value[7:]) if value.startswith("Bearer ") and len(value) > 7 else None


def _result_fingerprint(result: Any) -> str | None:
    for attribute in ("token_fingerprint", "fingerprint"):
        value = getattr(result, attribute, None)
        if isinstance(value, str):
            return value
    return None


def _traced(
    flow: Generator[Any, Any, T],
    api: _Api | None,
    root: Any,
    name: str,
    otel_metrics: bool,
    observer: Observer | None,
) -> Generator[Any, Any, T]:
    trace = api.trace if api is not None else None
    root_context = trace.set_span_in_context(root) if trace is not None else None
    metrics = otel_metrics or observer is not None

    def record(metric: str, labels: dict[str, str], value: float = 1.0) -> None:
        if otel_metrics and api is not None:
            instrument = api.instruments[metric]
            if metric.endswith("_seconds"):
                instrument.record(value, labels)
            else:
                instrument.add(value, labels)
        if observer is not None:
            observer(metric, labels, value)

    step: str | None = None
    step_span: Any = None
    step_context: Any = None
    step_started = 0.0
    attempt = 0
    reason: str | None = None
    outcome: Any = None

    def close_step(result: str) -> None:
        nonlocal step_span
        if step is not None and metrics:
            seconds = time.perf_counter() - step_started
            record("orga_upstream_step_duration_seconds", {"step": step, "result": result}, seconds)
        if step_span is not None and step_span is not root:
            step_span.end()
        step_span = None

    try:
        while True:
            try:
                action = flow.send(outcome)
            except StopIteration as stop:
                result: T = stop.value
                close_step("ok")
                token_fp = _result_fingerprint(result)
                if token_fp is not None:
                    root.set_attribute("orga.token.fingerprint", token_fp)
                return result
            if not isinstance(action, Request):
                outcome = yield action  # a Sleep between attempts
                continue
            if action.step != step:
                if step_span is not None and step == "token" and action.step == "ice":
                    token_fp = _bearer_fingerprint(action)  # the token just minted, now the ICE request's bearer
                    if token_fp is not None:
                        step_span.set_attribute("orga.token.fingerprint", token_fp)
                close_step("ok")
                step, attempt, reason, step_started = action.step, 0, None, time.perf_counter()
                step_name = _STEP_SPANS.get(step, f"orga.{step}")
                if api is None:
                    step_span = _NULL_SPAN
                elif step_name == name:
                    step_span = root
                else:
                    step_span = api.tracer.start_span(step_name, context=root_context)
                step_span.set_attribute("orga.step", step)
                step_context = trace.set_span_in_context(step_span) if trace is not None else None
                if step == "ice":
                    token_fp = _bearer_fingerprint(action)
                    if token_fp is not None:
                        step_span.set_attribute("orga.token.fingerprint", token_fp)
            attempt += 1
            url = urlsplit(action.url)
            attributes: dict[str, Any] = {
                "http.request.method": action.method,
                "server.address": url.hostname or "",
                "server.port": url.port or (443 if url.scheme == "https" else 80),
                "url.full": f"{url.scheme}://{url.netloc}{url.path}",
                "orga.step": step,
                "orga.attempt": attempt,
            }
            if reason is not None:
                attributes["orga.retry_reason"] = reason
                if metrics:
                    record("orga_upstream_retries", {"step": step, "reason": reason})
            if api is None:
                span: Any = _NULL_SPAN
            else:
                span = api.tracer.start_span(
                    action.method, context=step_context, kind=api.client, attributes=attributes
                )
            if _settings["propagate_to_orga"] and api is not None and trace is not None:
                carrier: dict[str, str] = {}
                api.propagate.inject(carrier, context=trace.set_span_in_context(span))
                if carrier:
                    action = action._replace(headers={**action.headers, **carrier})
            outcome = None  # what the finally below reports if the driver closes the flow mid-attempt
            try:
                outcome = yield action
            finally:
                found, reason = _outcome_attributes(outcome)
                span.set_attributes(found)
                if reason is not None and api is not None:
                    span.set_status(api.error)
                span.end()
                if metrics:
                    result_label = str(found.get("http.response.status_code") or found.get("error.type") or "none")
                    record("orga_upstream_attempts", {"step": step, "result": result_label})
                    if found.get("http.response.status_code") == 429:
                        record("orga_upstream_rate_limited", {"step": step})
    except GeneratorExit:
        close_step("cancelled")
        raise
    except BaseException as exc:
        error_type = type(exc).__name__
        for failed in (step_span, root):
            if failed is not None and trace is not None:
                failed.set_attribute("error.type", error_type)
                failed.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
        close_step("error")
        raise
    finally:
        root.end()
        flow.close()
