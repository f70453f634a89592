"""orga-ai: the Python server SDK for Orga AI.

Trade your permanent API key for a short-lived session config (ephemeral token + ICE servers) that a browser or
mobile client uses to open one real-time session::

    from orga_ai import OrgaAI

    orga = OrgaAI()  # ORGA_API_KEY from the environment
    session = orga.get_session_config()
    return session.to_dict()  # {"ephemeralToken": ..., "iceServers": [...]}

The public names load on first use (PEP 562), so ``import orga_ai`` costs almost nothing: a process that only
imports the package, or holds a module-level client it has not used yet, pays for no HTTP library.
"""

from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._client import AsyncOrgaAI, OrgaAI
    from ._config import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
    from ._exceptions import (
        OrgaAIAuthenticationError,
        OrgaAIBadRequestError,
        OrgaAIConfigurationError,
        OrgaAIConnectionError,
        OrgaAIError,
        OrgaAIInvalidResponseError,
        OrgaAIPermissionError,
        OrgaAIRateLimitError,
        OrgaAIRealtimeChannelClosedError,
        OrgaAIRealtimeConnectionError,
        OrgaAIRealtimeError,
        OrgaAIRealtimeICEError,
        OrgaAIRealtimeInvalidAnswerError,
        OrgaAIRealtimeRefusedError,
        OrgaAIRealtimeTimeoutError,
        OrgaAIServerError,
        OrgaAITimeoutError,
    )
    from ._ice import IcePolicy
    from ._models import EphemeralToken, IceServer, SessionConfig
    from ._pool import PoolStats
    from ._retry import RetryBudget
    from ._secret import Secret, fingerprint

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "AsyncOrgaAI",
    "EphemeralToken",
    "IcePolicy",
    "IceServer",
    "OrgaAI",
    "OrgaAIAuthenticationError",
    "OrgaAIBadRequestError",
    "OrgaAIConfigurationError",
    "OrgaAIConnectionError",
    "OrgaAIError",
    "OrgaAIInvalidResponseError",
    "OrgaAIPermissionError",
    "OrgaAIRateLimitError",
    "OrgaAIRealtimeChannelClosedError",
    "OrgaAIRealtimeConnectionError",
    "OrgaAIRealtimeError",
    "OrgaAIRealtimeICEError",
    "OrgaAIRealtimeInvalidAnswerError",
    "OrgaAIRealtimeRefusedError",
    "OrgaAIRealtimeTimeoutError",
    "OrgaAIServerError",
    "OrgaAITimeoutError",
    "PoolStats",
    "RetryBudget",
    "Secret",
    "SessionConfig",
    "__version__",
    "fingerprint",
]

_HOMES = {
    "AsyncOrgaAI": "_client",
    "OrgaAI": "_client",
    "DEFAULT_BASE_URL": "_config",
    "DEFAULT_MAX_RETRIES": "_config",
    "DEFAULT_TIMEOUT": "_config",
    "EphemeralToken": "_models",
    "IcePolicy": "_ice",
    "IceServer": "_models",
    "SessionConfig": "_models",
    "PoolStats": "_pool",
    "RetryBudget": "_retry",
    "Secret": "_secret",
    "fingerprint": "_secret",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name, "_exceptions" if name.startswith("OrgaAI") and name.endswith("Error") else None)
    if home is None or name not in __all__:
        raise AttributeError(f"module 'orga_ai' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"orga_ai.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
