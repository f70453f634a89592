"""What the adapters share about framework-native identity: turning whatever the app's own login returned into the
proxy's :class:`~orga_ai.proxy.Principal`."""

from __future__ import annotations

from typing import Any

from ..proxy._auth import AnonymousAuth, AnyOf, AuthenticationError, JWTAuth, Principal, SharedSecretAuth

__all__ = ["BUILT_IN", "as_principal", "not_logged_in"]

BUILT_IN = (JWTAuth, SharedSecretAuth, AnyOf, AnonymousAuth)
"""The authenticators that read the proxy's own request (headers, cookies); the frameworks' hooks read theirs."""


def not_logged_in(detail: str) -> AuthenticationError:
    """The 401 of a hook that found no logged-in user (the message is safe to show the user)."""
    message = "Log in first: no signed-in user on this request."
    return AuthenticationError(message, code="unauthenticated", detail=detail)


def as_principal(found: Any, *, source: str) -> Principal:
    """The principal of what an app's hook or dependency returned.

    A :class:`Principal` as is; a ``str`` or ``int`` as a user id; an object with an ``id`` (or Django's ``pk``)
    by that; ``None``, ``""`` or ``False`` as "nobody is logged in" (401). Anything else is a bug in the hook and a
    TypeError (a 500, with the type in the log).
    """
    if isinstance(found, Principal):
        return found
    if found is None or found is False or found == "":
        raise not_logged_in(f"{source} found no user")
    if isinstance(found, (str, int)) and not isinstance(found, bool):
        return Principal(str(found), kind="user")
    for attribute in ("id", "pk"):
        value = getattr(found, attribute, None)
        if value is not None and value != "":
            return Principal(str(value), kind="user")
    raise TypeError(f"{source} returned a {type(found).__name__}; return a user id (str), an object with .id, or None")
