"""Optional dependencies: one check, one message, for every module and feature that needs an extra.

A public module that needs an extra calls :func:`require_extra` before it imports anything from it, so a missing
dependency is one sentence naming the extra (``orga_ai.integrations.fastapi needs the fastapi extra (fastapi is not
installed): pip install 'orga-ai[fastapi]'``) instead of a ``ModuleNotFoundError`` from deep inside an import or, worse,
from the first request. The check finds the modules without importing them, so it costs no import time.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "extra_message", "missing_modules", "not_installed", "require_extra"]

EXTRAS: dict[str, tuple[str, ...]] = {
    # The modules each extra brings that its features cannot start without (configuration-dependent ones, such as
    # PyJWT or redis, are checked where the configuration asks for them).
    "httpx": ("httpx",),
    "emulator": ("httpx", "starlette", "uvicorn", "jwt", "aioice"),
    "proxy": ("starlette", "uvicorn", "prometheus_client", "orjson"),
    "fastapi": ("fastapi", "starlette", "prometheus_client"),
    "flask": ("flask", "prometheus_client"),
    "aiohttp": ("aiohttp", "prometheus_client"),
    "django": ("django", "prometheus_client"),
    "functions": (),
    "aws-lambda": (),
    "gcp": ("flask", "functions_framework"),
    "doctor": ("aioice",),
    "realtime": ("aiortc", "av"),
}
"""What :func:`require_extra` checks for each extra when given no module names."""


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that brings it, in one line.

    A :class:`ModuleNotFoundError` (and so an :class:`ImportError`), so code that already handles a missing module
    handles this one; ``name`` is the missing module, ``extra`` the extra to install.
    """

    def __init__(self, message: str, *, name: str, extra: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a finder that refuses the name
        return False


def missing_modules(*modules: str) -> list[str]:
    """The ones among ``modules`` that cannot be imported (found without importing them)."""
    return [module for module in modules if not _installed(module)]


def not_installed(missing: list[str]) -> str:
    """``x is not installed`` / ``x, y are not installed``."""
    return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"


def extra_message(feature: str, extra: str, missing: list[str]) -> str:
    """The one line for ``feature`` needing ``extra``, whose modules ``missing`` are not installed."""
    return f"{feature} needs the {extra} extra ({not_installed(missing)}): pip install 'orga-ai[{extra}]'"


def require_extra(feature: str, extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` when a module ``feature`` needs is not installed.

    Args:
        feature: what needs it, as the user wrote it (``orga_ai.integrations.fastapi``, ``JWTAuth``, ...).
        extra: the extra that brings the modules, without ``orga-ai[...]`` around it.
        modules: the top-level modules to look for; by default those of :data:`EXTRAS` for ``extra``.
    """
    missing = missing_modules(*(modules or EXTRAS[extra]))
    if missing:
        raise MissingExtraError(extra_message(feature, extra, missing), name=missing[0], extra=extra)
