"""A local stand-in for Orga Cloud, for development and tests.

It enforces the real contract (API key, single-use expiring tokens, TURN REST credentials, a per-key quota) and injects
faults on demand through one knob: the ``X-Orga-Emulator`` header or ``POST /_emulator/faults``. Run it with
``orga-ai emulator``, embed it with :func:`create_app`, or start it in tests with :func:`orga_ai.testing.run_emulator`.

The emulator is a development tool: its ``/_emulator/`` admin API has no authentication, so it binds to loopback only.
Needs the ``orga-ai[emulator]`` extra; ``/v1/realtime/calls`` also needs ``orga-ai[webrtc]`` (aiortc).
"""

from ._app import EmulatedDrop, create_app
from ._config import DEFAULT_QUOTA_PER_MINUTE, DEFAULT_TTL, DEV_API_KEY, EmulatorConfig
from ._faults import BODY_KINDS, FAULT_HEADER, FAULT_PATHS, Fault, FaultError, parse_fault
from ._turn import turn_credential, turn_credentials

__all__ = [
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
