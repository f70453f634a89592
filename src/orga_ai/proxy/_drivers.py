"""The two drivers of the flows in :mod:`._flow`: one awaits each effect a flow yields (Starlette, FastAPI,
Django-async, ``orga-ai serve``), one calls it (Flask, Django under WSGI, the function entry points). Both set the
request's id on every log line and its tracing span around the flow; neither knows which flow it drives.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._logging import current_request_id
from .._telemetry import reset_observer, set_observer
from ._flow import Authenticate, Flow, Limit, ReadBody, Upstream
from ._request import ProxyRequest, ProxyResponse
from ._tracing import request_span

if TYPE_CHECKING:
    from .._client import AsyncOrgaAI, OrgaAI
    from ._core import ProxyCore

__all__ = ["Offload", "drive_async", "drive_sync"]

Offload = Callable[[Callable[[ProxyRequest], Any], ProxyRequest], Awaitable[Any]]
"""Runs an authenticator off the event loop: Django's ``sync_to_async``, say."""


async def drive_async(
    core: ProxyCore,
    request: ProxyRequest,
    make_flow: Callable[[ProxyRequest], Flow],
    orga: AsyncOrgaAI | None,
    *,
    offload: Offload | None = None,
    read_body: Callable[[], Awaitable[Any]] | None = None,
    body: Any = True,
) -> ProxyResponse:
    """Run ``make_flow(request)`` from async code, awaiting each effect; ``read_body()`` answers the body step (else
    ``body``)."""
    span = request_span(request)
    request = core.prepare(request)
    # Every line logged while this request is served carries its id (tasks and to_thread inherit the context).
    logging_as = current_request_id.set(request.request_id)
    try:
        if span is None:
            return await _run_async(core, make_flow(request), orga, offload, read_body, body)
        with span:
            return await _run_async(core, make_flow(request), orga, offload, read_body, body)
    finally:
        current_request_id.reset(logging_as)


async def _run_async(
    core: ProxyCore,
    flow: Flow,
    orga: AsyncOrgaAI | None,
    offload: Offload | None,
    read_body: Callable[[], Awaitable[Any]] | None,
    body: Any,
) -> ProxyResponse:
    import asyncio

    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            response: ProxyResponse = stop.value
            return response
        value, error = None, None
        try:
            if isinstance(effect, Authenticate):
                value = await core.authenticate_async(effect.request, offload)
            elif isinstance(effect, Limit):
                value = await (effect.limiter or core.rate_limiter).hit(effect.key)
            elif isinstance(effect, ReadBody):
                value = body if read_body is None else await read_body()
            else:
                assert orga is not None
                value = await _upstream_async(core, effect, orga)
        except Exception as exc:  # noqa: BLE001 - handed to the flow, which maps it
            error = exc
        except asyncio.CancelledError as exc:
            # The caller went away: let the flow release what it holds, then stop.
            flow.throw(exc)
            raise


async def _upstream_async(core: ProxyCore, effect: Upstream, orga: AsyncOrgaAI) -> Any:
    import asyncio

    # The SDK keeps to its own deadline; this is the backstop should a step ever ignore it. asyncio.timeout (3.11+)
    # acts on the running task; wait_for wraps the call in a second task.
    observing = set_observer(core.metrics.observe_sdk)  # the SDK's per-step measurements into our metrics
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(effect.deadline + 0.25):
                return await orga.get_session_config(deadline=effect.deadline)
        return await asyncio.wait_for(orga.get_session_config(deadline=effect.deadline), effect.deadline + 0.25)
    finally:
        reset_observer(observing)


def drive_sync(
    core: ProxyCore,
    request: ProxyRequest,
    make_flow: Callable[[ProxyRequest], Flow],
    orga: OrgaAI | None,
    *,
    body: Any = True,
) -> ProxyResponse:
    """Run ``make_flow(request)`` from sync code (safe from many threads); ``body`` answers the body step (a sync
    adapter has read and capped the body before calling)."""
    span = request_span(request)
    request = core.prepare(request)
    logging_as = current_request_id.set(request.request_id)  # this thread's lines, until the request is served
    try:
        if span is None:
            return _run_sync(core, make_flow(request), orga, body)
        with span:
            return _run_sync(core, make_flow(request), orga, body)
    finally:
        current_request_id.reset(logging_as)


def _run_sync(core: ProxyCore, flow: Flow, orga: OrgaAI | None, body: Any) -> ProxyResponse:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            response: ProxyResponse = stop.value
            return response
        value, error = None, None
        try:
            if isinstance(effect, Authenticate):
                value = core.authenticate(effect.request)
            elif isinstance(effect, Limit):
                value = (effect.limiter or core.rate_limiter).hit_sync(effect.key)
            elif isinstance(effect, ReadBody):
                value = body
            else:
                assert orga is not None
                observing = set_observer(core.metrics.observe_sdk)
                try:
                    value = orga.get_session_config(deadline=effect.deadline)
                finally:
                    reset_observer(observing)
        except Exception as exc:  # noqa: BLE001 - handed to the flow, which maps it
            error = exc
