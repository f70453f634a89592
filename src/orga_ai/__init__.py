"""orga-ai: the Python server SDK for Orga AI.

Trade your permanent API key for a short-lived session config (ephemeral token + ICE servers) that a browser or
mobile client uses to open one real-time session::

    from orga_ai import OrgaAI

    orga = OrgaAI()  # ORGA_API_KEY from the environment
    session = orga.get_session_config()
    return session.to_dict()  # {"ephemeralToken": ..., "iceServers": [...]}
"""

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
    OrgaAIServerError,
    OrgaAITimeoutError,
)
from ._models import EphemeralToken, IceServer, SessionConfig
from ._retry import RetryBudget
from ._secret import Secret, fingerprint
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "AsyncOrgaAI",
    "EphemeralToken",
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
    "OrgaAIServerError",
    "OrgaAITimeoutError",
    "RetryBudget",
    "Secret",
    "SessionConfig",
    "__version__",
    "fingerprint",
]
