"""What the adapters share about framework-native identity: turning whatever the app's own login returned into the
proxy's :class:`~orga_ai.proxy.Principal`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
from ..proxy._request import ProxyRequest

__all__ = ["BUILT_IN", "NativeHook", "as_principal", "native_hook", "not_logged_in"]

BUILT_IN = (JWTAuth, SharedSecretAuth, AnyOf, AnonymousAuth)
"""The authenticators that read the proxy's own request (headers, cookies); the frameworks' hooks read theirs."""


def not_logged_in(detail: str) -> AuthenticationError:
    """The 401 of a hook that found no logged-in user (the message is safe to show the user)."""
    message = "Log in first: no signed-in user on this request."
    return AuthenticationError(message, code="unauthenticated", detail=detail)


def as_principal(found: Any, *, source: str) -> Principal:
    """The principal of what an app's hook or dependency returned (:func:`~orga_ai.proxy._auth.to_principal`)."""
    return to_principal(found, source=source)


class NativeHook:
    """An app's own callable of its framework's request (``request.native``), as the proxy's authenticator: it
    returns the user (an id, an object with ``.id``) or None for 401; with ``awaits``, an ``async def`` hook is
    awaited (by :meth:`~orga_ai.proxy.ProxyCore.authenticate_async`)."""

    may_block = False

    def __init__(self, hook: Callable[[Any], Any], kind: str, *, awaits: bool = False) -> None:
        self.hook = hook
        self.kind = kind
        self.awaits = awaits  # only where the framework is async: a sync one's proxies (flask-login's) look awaitable

    def __call__(self, request: ProxyRequest, /) -> Any:
        found = self.hook(request.native)
        if self.awaits and inspect.isawaitable(found):
            return self._later(found)
        return as_principal(found, source=repr(self.hook))

    async def _later(self, found: Any) -> Principal:
        return as_principal(await found, source=repr(self.hook))

    def __repr__(self) -> str:
        return f"{self.kind}({self.hook!r})"


def native_hook(settings: dict[str, Any], policy: Any, kind: str, *, awaits: bool = False) -> None:
    """Wrap ``authenticate`` (in ``settings``, else the ``policy``'s) in a :class:`NativeHook` unless it is one of
    the proxy's own authenticators, which read the proxy's request."""
    authenticate = settings.get("authenticate", policy.authenticate if policy is not None else None)
    if authenticate is not None and not isinstance(authenticate, BUILT_IN):
        if not callable(authenticate):
            raise TypeError(f"authenticate= must be callable, not {type(authenticate).__name__}")
        settings["authenticate"] = NativeHook(authenticate, kind, awaits=awaits)
