"""Secret values that never print themselves."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Secret", "fingerprint"]


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible tag for a secret, safe for logs: ``fp:`` and 10 hex digits of its SHA-256.

    It shares no characters with the secret by construction, so it can sit in logs beside request ids.
    """
    return "fp:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]


class Secret:
    """A string that must never reach a log, a repr or an exception message.

    ``str()`` and ``repr()`` show only a fingerprint; ``reveal()`` gives the value to the one place that sends it.
    Comparison is constant-time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself. Call it only where the value leaves for Orga Cloud or the client."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """A short, log-safe tag of the value (see :func:`fingerprint`)."""
        return fingerprint(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.fingerprint})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling a secret is allowed (multiprocessing), but never silently through repr.
        return (Secret, (self._value,))
