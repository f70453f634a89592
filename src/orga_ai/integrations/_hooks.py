"""What the adapters share about framework-native identity: turning whatever the app's own login returned into the
proxy's :class:`~orga_ai.proxy.Principal`."""

from __future__ import annotations

from typing import Any

from ..proxy._auth import (
    AnonymousAuth,
    AnyOf,
    AuthenticationError,
    JWTAuth,
    Principal,
    SharedSecretAuth,
    to_principal,
)

__all__ = ["BUILT_IN", "as_principal", "not_logged_in"]

BUILT_IN = (JWTAuth, SharedSecretAuth, AnyOf, AnonymousAuth)
"""The authenticators that read the proxy's own request (headers, cookies); the frameworks' hooks read theirs."""


def not_logged_in(detail: str) -> AuthenticationError:
    """The 401 of a hook that found no logged-in user (the message is safe to show the user)."""
    message = "Log in first: no signed-in user on this request."
    return AuthenticationError(message, code="unauthenticated", detail=detail)


def as_principal(found: Any, *, source: str) -> Principal:
    """The principal of what an app's hook or dependency returned (:func:`~orga_ai.proxy._auth.to_principal`)."""
    return to_principal(found, source=source)
