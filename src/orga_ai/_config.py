"""Defaults, environment variables and validation of the client settings.

The rule, written once: an explicit argument always wins; an ``ORGA_*`` environment variable fills only an argument
that was not given (left as ``None``); the built-in default fills the rest.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._exceptions import OrgaAIConfigurationError
from ._secret import Secret
from ._version import __version__

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_TIMEOUT",
    "INSECURE_BASE_URL_ENV",
    "USER_AGENT",
    "Settings",
    "is_loopback_host",
    "key_looks_live",
    "resolve_settings",
]

DEFAULT_BASE_URL = "https://api.orga-ai.com"
DEFAULT_TIMEOUT = 10.0
"""Seconds for each request to Orga Cloud, as Orga documents."""
DEFAULT_MAX_RETRIES = 2
"""Retries after the first attempt of each step."""
DEFAULT_MAX_RETRY_AFTER = 10.0
"""A ``Retry-After`` longer than this many seconds is not waited for: the error is raised with its advice."""
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
"""A body larger than this is refused: a token and a list of ICE servers fit in a few kilobytes."""
MAX_RETRIES_LIMIT = 10

API_KEY_ENV = "ORGA_API_KEY"
USER_AGENT = f"orga-ai-python/{__version__}"

_RESERVED_HEADERS = frozenset({"authorization", "idempotency-key", "content-length", "host"})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and for addresses in 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated settings of one client. ``repr()`` shows the key's fingerprint only."""

    api_key: Secret
    base_url: str
    timeout: float
    max_retries: int
    debug: bool
    default_headers: Mapping[str, str] = field(default_factory=dict)
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def token_url(self) -> str:
        return self.base_url + "/v1/realtime/client-secrets"

    @property
    def ice_url(self) -> str:
        return self.base_url + "/v1/realtime/ice-config"


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _parse_float(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise OrgaAIConfigurationError(f"{name} must be a number of seconds, got {value!r}") from None


def _parse_int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise OrgaAIConfigurationError(f"{name} must be a whole number, got {value!r}") from None


def _parse_bool(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise OrgaAIConfigurationError(f"{name} must be 1/0, true/false, yes/no or on/off, got {value!r}")


def validate_timeout(timeout: float, name: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise OrgaAIConfigurationError(f"{name} must be a number of seconds, got {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise OrgaAIConfigurationError(f"{name} must be a positive, finite number of seconds, got {timeout!r}")
    return float(timeout)


def validate_max_retries(max_retries: object) -> int:
    """``max_retries`` as a whole number from 0 to the limit, or OrgaAIConfigurationError."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise OrgaAIConfigurationError("max_retries must be a whole number")
    if not 0 <= max_retries <= MAX_RETRIES_LIMIT:
        raise OrgaAIConfigurationError(f"max_retries must be between 0 and {MAX_RETRIES_LIMIT}, got {max_retries}")
    return max_retries


# RFC 9110: a field name is a token; a value is visible characters, spaces, tabs and obs-text (what http.client sends).
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header_name_ok(name: str) -> bool:
    return bool(name) and all(ch in _TOKEN_CHARS for ch in name)


def _header_value_ok(value: str) -> bool:
    return all(ch == "\t" or " " <= ch <= "~" or "\x80" <= ch <= "\xff" for ch in value)


INSECURE_BASE_URL_ENV = "ORGA_ALLOW_INSECURE_BASE_URL"
"""Set to 1 to allow plain http to a non-loopback base URL (an emulator in another container), with a key that does
not look live."""
_NOT_LIVE_KEY_MARKERS = ("_local_", "_test_", "_emulator_", "_dev_")


def key_looks_live(key: str) -> bool:
    """Whether an API key could open the real Orga Cloud: anything but a key marked local, test, emulator or dev
    (``sk_orga_ai_local_emulator_dev_key``, ``sk_orga_ai_test_...``)."""
    rest = "_" + key.removeprefix("sk_orga_ai_") + "_"
    return not any(marker in rest for marker in _NOT_LIVE_KEY_MARKERS)


def validate_base_url(url: str, *, allow_insecure: bool = False) -> str:
    """Check that ``url`` is an absolute https URL (http only to a loopback host, or anywhere with ``allow_insecure``)
    and strip its trailing slash."""
    if not isinstance(url, str) or not url:
        raise OrgaAIConfigurationError("base_url must be a non-empty URL string")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise OrgaAIConfigurationError(f"base_url must be an absolute http(s) URL, got {url!r}")
    try:
        parts.port  # noqa: B018 - read for its check: a port that is no number from 0 to 65535 raises
    except ValueError:
        port_ok = False
    else:
        port_ok = True
    if not port_ok:
        raise OrgaAIConfigurationError("base_url has a port that is not a number from 0 to 65535")
    if parts.username or parts.password:
        raise OrgaAIConfigurationError("base_url must not carry credentials; pass api_key instead")
    if parts.query or parts.fragment:
        raise OrgaAIConfigurationError("base_url must not carry a query or a fragment")
    if not parts.path.isascii() or any(ch.isspace() or not ch.isprintable() for ch in parts.path):
        raise OrgaAIConfigurationError("base_url's path must be ASCII without spaces: percent-encode it")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure:
        raise OrgaAIConfigurationError(
            f"base_url {url!r} uses plain http to a non-loopback host, which would send the API key in clear "
            "text; use https (plain http is allowed only for localhost, 127.0.0.0/8 and ::1, or, for an emulator "
            f"in another container with a non-live key, with {INSECURE_BASE_URL_ENV}=1)"
        )
    return url.rstrip("/")


def resolve_settings(
    *,
    api_key: str | None,
    base_url: str | None,
    timeout: float | None,
    max_retries: int | None,
    debug: bool | None,
    default_headers: Mapping[str, str] | None,
    max_retry_after: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge arguments, ``ORGA_*`` variables and defaults, and validate the result."""
    env = os.environ if environ is None else environ

    key = api_key if api_key is not None else _env(API_KEY_ENV, env)
    if key is not None and not isinstance(key, str):
        raise OrgaAIConfigurationError(f"api_key must be a string (sk_orga_ai_...), not {type(key).__name__}")
    if key is None or not key.strip():
        raise OrgaAIConfigurationError(
            f"No API key: pass api_key=... or set the {API_KEY_ENV} environment variable. "
            "Keep the key on your server; browsers and apps get ephemeral tokens instead."
        )
    key = key.strip()
    if any(ch.isspace() for ch in key) or not key.isprintable():
        raise OrgaAIConfigurationError("The API key contains whitespace or control characters")

    url = base_url if base_url is not None else (_env("ORGA_BASE_URL", env) or DEFAULT_BASE_URL)

    if timeout is None:
        raw = _env("ORGA_TIMEOUT", env)
        timeout = _parse_float(raw, "ORGA_TIMEOUT") if raw is not None else DEFAULT_TIMEOUT
        timeout = validate_timeout(timeout, "ORGA_TIMEOUT" if raw is not None else "timeout")
    else:
        timeout = validate_timeout(timeout)

    if max_retries is None:
        raw = _env("ORGA_MAX_RETRIES", env)
        max_retries = _parse_int(raw, "ORGA_MAX_RETRIES") if raw is not None else DEFAULT_MAX_RETRIES
    max_retries = validate_max_retries(max_retries)

    if debug is None:
        raw = _env("ORGA_DEBUG", env)
        debug = _parse_bool(raw, "ORGA_DEBUG") if raw is not None else False
    elif not isinstance(debug, bool):  # as strict as ORGA_DEBUG: "maybe" is neither
        raise OrgaAIConfigurationError(f"debug must be True or False, not {debug!r}")

    headers: dict[str, str] = {}
    for name, value in (default_headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise OrgaAIConfigurationError("default_headers must map strings to strings")
        if name.lower() in _RESERVED_HEADERS:
            raise OrgaAIConfigurationError(f"default_headers may not set {name!r}: the client manages it")
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise OrgaAIConfigurationError(f"default_headers[{name!r}] contains a line break")
        if not _header_name_ok(name):
            raise OrgaAIConfigurationError(f"default_headers: {name!r} is not a header name (letters, digits, -_.)")
        if not _header_value_ok(value):  # the value may be a secret: named by its header only
            raise OrgaAIConfigurationError(f"default_headers[{name!r}] holds a control character or non-Latin-1 text")
        headers[name] = value

    retry_after_cap = DEFAULT_MAX_RETRY_AFTER if max_retry_after is None else max_retry_after
    if not math.isfinite(retry_after_cap) or retry_after_cap < 0:
        raise OrgaAIConfigurationError("max_retry_after must be a finite number of seconds >= 0")

    raw = _env(INSECURE_BASE_URL_ENV, env)
    allow_insecure = _parse_bool(raw, INSECURE_BASE_URL_ENV) if raw is not None else False
    checked_url = validate_base_url(url, allow_insecure=allow_insecure)
    parts = urlsplit(checked_url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        if key_looks_live(key):
            raise OrgaAIConfigurationError(
                f"{INSECURE_BASE_URL_ENV} is set, but the API key looks live: it would cross the network in clear "
                f"text to {checked_url}; use https, or an emulator key (sk_orga_ai_local_..., sk_orga_ai_test_...)"
            )
        logging.getLogger("orga_ai").warning(
            "orga-ai: %s is set: the API key and tokens go in CLEAR TEXT to %s (an emulator, not Orga Cloud); "
            "never set it in production",
            INSECURE_BASE_URL_ENV,
            checked_url,
        )

    return Settings(
        api_key=Secret(key),
        base_url=checked_url,
        timeout=timeout,
        max_retries=max_retries,
        debug=bool(debug),
        default_headers=headers,
        max_retry_after=float(retry_after_cap),
    )
