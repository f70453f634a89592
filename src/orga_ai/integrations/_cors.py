"""Reading the host app's own CORS allowlist, so the route agrees with it without the origins being listed twice.

Each reader returns ``(origins, patterns, setting)`` for :meth:`ProxyCore.adopt_cors`, or None when the app
configures no CORS for the route. A configuration that lets every origin in (``*``) is refused with one sentence
naming the setting, unless the route has its own ``cors_origins`` (then the app's wildcard is simply not adopted):
with cookie sessions, ``*`` would let any web page mint sessions for the signed-in user. A configuration whose shape
cannot be read raises :class:`CorsInferenceError`, naming the setting to pass instead.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from ..proxy._core import ProxyCore

__all__ = ["CorsInferenceError", "adopt", "aiohttp_cors", "django_cors", "flask_cors", "starlette_cors"]

Found = tuple[list[str], list[str], str]

logger = logging.getLogger("orga_ai.proxy")


class CorsInferenceError(ValueError):
    """The app's CORS configuration cannot be adopted safely; the message says what to set instead."""


def _wildcard(setting: str, own: str) -> CorsInferenceError:
    return CorsInferenceError(
        f"{setting} lets every origin in, and the Orga route will not mint sessions for any web page: list exact "
        f"origins there, or give the route its own list with {own}"
    )


def _no_credentials(setting: str, own: str) -> CorsInferenceError:
    return CorsInferenceError(
        f"{setting} does not allow credentials, and the Orga route answers its origins with credentials (cookies): "
        f"allow them there, or give the route its own list with {own}"
    )


_PROBES = ("https://{}.example", "http://{}.test:8443", "https://{}.evil-{}.net", "http://{}")


def _matches_anything(pattern: str) -> bool:
    """Whether ``pattern`` lets in hosts nobody listed: it is tried against a few random origins."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error:
        return False  # adopt_cors names the setting and the error
    for probe in _PROBES:
        origin = probe.format(secrets.token_hex(6), secrets.token_hex(3))
        if compiled.fullmatch(origin) or compiled.match(origin):
            return True
    return False


def _catch_all(patterns: Iterable[str], setting: str, own: str, explicit: bool) -> bool:
    """True when a pattern is a wildcard in disguise and the route has its own list (adopt nothing then); raises
    naming the setting when it has none."""
    for pattern in patterns:
        if _matches_anything(pattern):
            if explicit:
                return True
            raise _wildcard(f"{setting}: {pattern!r} matches any origin, so it", own)
    return False


def adopt(core: ProxyCore, found: Found | None) -> None:
    """Add what a reader found to the core's allowlist (nothing when it found nothing)."""
    if found is not None:
        origins, patterns, setting = found
        core.adopt_cors(origins, patterns, setting=setting)


def starlette_cors(app: Any, *, own: str, explicit: bool) -> Found | None:
    """The allowlist of a Starlette/FastAPI ``CORSMiddleware`` added with ``app.add_middleware``."""
    from starlette.middleware.cors import CORSMiddleware

    for middleware in getattr(app, "user_middleware", ()):
        if not (isinstance(middleware.cls, type) and issubclass(middleware.cls, CORSMiddleware)):
            continue
        options = dict(middleware.kwargs)
        origins = list(options.get("allow_origins") or ())
        regex = options.get("allow_origin_regex")
        setting = "CORSMiddleware(allow_origins=[...])"
        if "*" in origins:
            if explicit:
                return None
            raise _wildcard("CORSMiddleware(allow_origins=['*'])", own)
        patterns = [regex] if regex else []
        if _catch_all(patterns, "CORSMiddleware(allow_origin_regex=...)", own, explicit):
            return None
        if not options.get("allow_credentials", False):
            if explicit:
                return None
            raise _no_credentials("CORSMiddleware(allow_credentials=False)", own)
        return origins, patterns, setting
    return None


def aiohttp_cors(app: Any, *, own: str, explicit: bool) -> Found | None:
    """The default origins of aiohttp-cors (``aiohttp_cors.setup(app, defaults={origin: ResourceOptions(...)})``),
    the origins the app lets in on every route it adds to aiohttp-cors. Each must allow credentials."""
    configs = [value for value in app.values() if type(value).__module__.startswith("aiohttp_cors")]
    if not configs:
        return None
    setting = "aiohttp_cors.setup(app, defaults={...})"
    defaults = getattr(configs[0], "defaults", None)
    if not isinstance(defaults, Mapping):
        raise CorsInferenceError(f"cannot read the origins of {setting} (aiohttp-cors {_version('aiohttp-cors')}): "
                                 f"list the origins the route may serve in {own}")
    if "*" in defaults:
        if explicit:
            return None
        raise _wildcard("aiohttp_cors.setup(app, defaults={'*': ...})", own)
    closed = sorted(origin for origin, options in defaults.items() if not getattr(options, "allow_credentials", False))
    if closed:
        if explicit:
            return None
        raise _no_credentials(f"aiohttp_cors.setup(app, defaults={{{closed[0]!r}: ResourceOptions()}}) (its "
                              "allow_credentials=False)", own)
    return [str(origin) for origin in defaults], [], setting


def django_cors(path: str, *, own: str, explicit: bool) -> Found | None:
    """The allowlist of django-cors-headers, when its middleware is installed and applies to ``path``."""
    from django.conf import settings

    if "corsheaders.middleware.CorsMiddleware" not in getattr(settings, "MIDDLEWARE", ()):
        return None
    urls = getattr(settings, "CORS_URLS_REGEX", r"^.*$")
    if not re.match(urls, path):
        return None  # the app's CORS does not cover the route
    if getattr(settings, "CORS_ALLOW_ALL_ORIGINS", False) or getattr(settings, "CORS_ORIGIN_ALLOW_ALL", False):
        if explicit:
            return None
        raise _wildcard("CORS_ALLOW_ALL_ORIGINS = True (django-cors-headers)", own)
    origins = [*getattr(settings, "CORS_ALLOWED_ORIGINS", ()), *getattr(settings, "CORS_ORIGIN_WHITELIST", ())]
    patterns = [
        *getattr(settings, "CORS_ALLOWED_ORIGIN_REGEXES", ()),
        *getattr(settings, "CORS_ORIGIN_REGEX_WHITELIST", ()),
    ]
    texts = [p if isinstance(p, str) else p.pattern for p in patterns]
    if _catch_all(texts, "CORS_ALLOWED_ORIGIN_REGEXES", own, explicit):
        return None
    if (origins or texts) and not getattr(settings, "CORS_ALLOW_CREDENTIALS", False):
        if explicit:
            return None
        raise _no_credentials("CORS_ALLOW_CREDENTIALS = False (django-cors-headers)", own)
    return list(origins), texts, "CORS_ALLOWED_ORIGINS"


def flask_cors(app: Any, path: str, *, own: str, explicit: bool) -> Found | None:
    """The allowlist of flask-cors (``CORS(app, origins=[...])``) for ``path``.

    flask-cors keeps no configuration on the app: ``CORS(app)`` resolves its resources once and registers an
    after-request function holding them, in a variable named ``resources`` (every release since 3.0). That is what
    is read, by name. A flask-cors that keeps them elsewhere raises CorsInferenceError naming ``own`` - unless the
    route has its own list (``explicit``), which then serves alone, with a warning.
    """
    hooks = [f for f in app.after_request_funcs.get(None, ()) if getattr(f, "__module__", "").startswith("flask_cors")]
    if not hooks:
        return None
    # flask-cors's own rule for an origin string that is a regular expression (pinned <7, with a contract test).
    from flask_cors.core import probably_regex
    origins: list[str] = []
    patterns: list[str] = []
    for hook in hooks:
        resources = _flask_cors_resources(hook)
        if resources is None:
            if explicit:
                logger.warning(
                    "orga proxy: cannot read the origins of flask-cors %s; the route allows only its own list (%s)",
                    _version("flask-cors"),
                    own,
                )
                return None
            raise CorsInferenceError(
                f"flask-cors {_version('flask-cors')} is set up on this app, but the Orga route cannot read its "
                f"origins from this version: list the origins the route may serve in {own} (the route then uses "
                "its own list and does not read flask-cors's)"
            )
        for resource, options in resources:
            if not _path_matches(resource, path):
                continue
            if getattr(options, "allow_all_origins", False):
                if explicit:
                    return None
                raise _wildcard("CORS(app, origins='*') (flask-cors)", own)
            found_origins: list[str] = []
            found_patterns: list[str] = []
            for origin in _origins_of(options, own):
                if isinstance(origin, re.Pattern):
                    found_patterns.append(origin.pattern)
                elif probably_regex(str(origin)):
                    found_patterns.append(str(origin))  # flask-cors reads such a string as a regular expression
                else:
                    found_origins.append(str(origin))
            if _catch_all(found_patterns, "CORS(app, origins=[...]) (flask-cors)", own, explicit):
                return None
            credentials = options.get("supports_credentials") if isinstance(options, dict) else None
            if credentials is None:
                credentials = getattr(options, "supports_credentials", False)
            if (found_origins or found_patterns) and not credentials:
                if explicit:
                    return None
                raise _no_credentials("CORS(app, supports_credentials=False) (flask-cors)", own)
            origins += found_origins
            patterns += found_patterns
            break  # flask-cors applies the first resource that matches the path
    return origins, patterns, "CORS(app, origins=[...]) (flask-cors)"


def _flask_cors_resources(hook: Any) -> list[tuple[Any, Any]] | None:
    """The ``(path pattern, options)`` pairs of flask-cors's after-request function, or None when it holds none."""
    try:
        found = inspect.getclosurevars(hook).nonlocals.get("resources")
    except (TypeError, ValueError):  # not a plain function (a bound method, a callable object)
        return None
    if isinstance(found, list) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in found):
        return found
    return None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def _path_matches(resource: Any, path: str) -> bool:
    if isinstance(resource, re.Pattern):
        return bool(resource.match(path))
    return resource == path or bool(re.match(str(resource), path))


def _origins_of(options: Any, own: str) -> Iterable[Any]:
    origins = options.get("origins") if isinstance(options, dict) else getattr(options, "origins", None)
    if origins is None:
        raise CorsInferenceError(f"cannot read flask-cors's origins for the route: pass them to {own}")
    return [origins] if isinstance(origins, (str, re.Pattern)) else list(origins)
