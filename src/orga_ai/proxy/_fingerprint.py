"""Keyed fingerprints of principals (user ids, client IPs) for logs, spans and the deny file.

A plain hash of an IP address or an e-mail is reversed by trying every candidate (all IPv4 addresses in seconds).
So a principal's fingerprint is an HMAC-SHA-256 under a key: ``fp:`` and 16 hex digits. The key is the
``ORGA_PROXY_FINGERPRINT_KEY`` environment variable (or ``ProxyCore(fingerprint_key=...)``) when set, identical on
every replica so their logs and a deny file's ``fp:`` lines agree; otherwise 32 random bytes drawn once per process
(``orga-ai serve`` draws one per run and hands it to all its workers). Whoever reads the logs without the key learns
only which lines belong to the same caller.

Fingerprints of tokens and keys (:func:`orga_ai.fingerprint`) stay unkeyed: those values are random, and a fixed
fingerprint lets an operator match a token across systems.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

__all__ = ["FINGERPRINT_KEY_ENV", "principal_fingerprint", "set_fingerprint_key"]

FINGERPRINT_KEY_ENV = "ORGA_PROXY_FINGERPRINT_KEY"

_MIN_KEY_CHARS = 16


def _key_from(value: str | None) -> bytes:
    if value is None or not value.strip():
        return os.urandom(32)
    if len(value.strip()) < _MIN_KEY_CHARS:
        raise ValueError(f"the fingerprint key must be at least {_MIN_KEY_CHARS} characters")
    return value.strip().encode("utf-8")


_key = _key_from(os.environ.get(FINGERPRINT_KEY_ENV))


def set_fingerprint_key(value: str | None) -> None:
    """Use ``value`` as this process's fingerprint key (None: a fresh random one)."""
    global _key
    _key = _key_from(value)
    principal_fingerprint.cache_clear()


# A caller makes many requests: its fingerprint is computed once (a bounded cache of short strings).
@functools.lru_cache(maxsize=4096)
def principal_fingerprint(principal_id: str) -> str:
    """``fp:`` and 16 hex digits of HMAC-SHA-256(key, principal id): stable within a deployment, not reversible."""
    return "fp:" + hmac.new(_key, principal_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
