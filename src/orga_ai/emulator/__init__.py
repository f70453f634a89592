"""A local stand-in for Orga Cloud, for development and tests.

It enforces the real contract (API key, single-use expiring tokens, TURN REST credentials, a per-key quota) and injects
faults on demand through one knob. Run it with ``orga-ai emulator``, embed it with :func:`create_app`, or start it in
tests with :func:`orga_ai.testing.run_emulator`.

Endpoints: ``POST /v1/realtime/client-secrets``, ``GET /v1/realtime/ice-config``, ``POST /v1/realtime/calls`` (a real
aiortc peer; 501 without the ``orga-ai[webrtc]`` extra). Admin, under ``/_emulator/``: ``GET stats``,
``GET|DELETE requests``, ``GET|POST|DELETE faults``, ``GET|POST clock`` (``{"advance": seconds}``), ``POST reset``,
``GET health``.

Faults, as a JSON object in the ``X-Orga-Emulator`` header of one request, or armed for the next ``count`` requests
with ``POST /_emulator/faults {"path": "client-secrets"|"ice-config"|"calls"|"*", "count": N, ...}``::

    {"latency_ms": 200}                       delay, then the real answer (or the rest of the fault)
    {"status": 503, "retry_after": "1"}       that status, Orga's error envelope, Retry-After verbatim if given
    {"stall": true}                           no answer until the client hangs up (504 after stall_seconds)
    {"drop": true}                            headers + Content-Length, half the body, then the connection breaks
    {"body": "non_json"|"truncated"|"html"|"wrong_types"|"missing_fields"|"oversized"|"empty"}
                                              a broken body, status 200 unless "status" is given

A ``drop`` looks to an httpx client like ``httpx.RemoteProtocolError: peer closed connection without sending complete
message body``; in-process through ``httpx.ASGITransport`` the app raises :class:`EmulatedDrop`, a subclass of it.

The emulator is a development tool: its admin API has no authentication, so it binds to loopback only, answers no
cross-site request (no CORS on ``/_emulator/``) and takes POST/DELETE only with the ``X-Orga-Emulator-Admin`` header
(:data:`ADMIN_HEADER`, any value), which no web page can send to it.
Needs the ``orga-ai[emulator]`` extra.
"""

from .._extras import require_extra

require_extra("orga_ai.emulator", "emulator")

from ._app import ADMIN_HEADER, EmulatedDrop, create_app
from ._config import DEFAULT_QUOTA_PER_MINUTE, DEFAULT_TTL, DEV_API_KEY, EmulatorConfig
from ._faults import BODY_KINDS, FAULT_HEADER, FAULT_PATHS, Fault, FaultError, parse_fault
from ._turn import turn_credential, turn_credentials

__all__ = [
    "ADMIN_HEADER",
    "BODY_KINDS",
    "DEFAULT_QUOTA_PER_MINUTE",
    "DEFAULT_TTL",
    "DEV_API_KEY",
    "FAULT_HEADER",
    "FAULT_PATHS",
    "EmulatedDrop",
    "EmulatorConfig",
    "Fault",
    "FaultError",
    "create_app",
    "parse_fault",
    "turn_credential",
    "turn_credentials",
]
