"""``/healthz`` (the process is alive) and ``/readyz`` (it can serve: configuration, rate-limit storage, circuit
breaker, deny-list), framework-neutral."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ._request import ProxyResponse, json_bytes, security_headers

if TYPE_CHECKING:
    from ._core import ProxyCore

__all__ = ["health", "readiness"]

_HEALTHY = b'{"status":"ok"}'


def health() -> ProxyResponse:
    """``/healthz``: the process is alive."""
    return ProxyResponse(200, {"Content-Type": "application/json", **security_headers()}, _HEALTHY)


def readiness(core: ProxyCore, storage_ok: bool) -> ProxyResponse:
    """``/readyz``: configuration loaded, rate-limit storage answering, breaker not open, minting on."""
    breaker = core.breaker.state
    checks = {
        "config": "ok",
        "rateLimiter": "ok" if storage_ok else f"unavailable: {core.rate_limiter.problem or 'no answer'}",
        "upstream": "ok" if breaker == "closed" else f"circuit {breaker.replace('_', '-')}",
        "minting": "on" if core.kill_switch.minting_enabled else "stopped",
        # Each worker answers for its own storage connection and breaker: say which one answered.
        "worker": str(os.getpid()),
    }
    deny_problem = core.kill_switch.problem
    if deny_problem is not None:
        checks["denyFile"] = deny_problem
    last = core.last_upstream_success
    if last is not None:
        checks["lastUpstreamSuccessSecondsAgo"] = str(round(time.monotonic() - last, 1))
    ready = storage_ok and breaker != "open" and deny_problem is None
    body = json_bytes({"status": "ready" if ready else "unavailable", "checks": checks})
    return ProxyResponse(200 if ready else 503, {"Content-Type": "application/json", **security_headers()}, body)
