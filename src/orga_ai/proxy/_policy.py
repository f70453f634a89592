"""``ProxyPolicy``: the route's settings, each declared once.

Every setting of the client-secrets route is one field of :class:`ProxyPolicy`, with its default, its check, and
(where ``orga-ai serve`` has one) its flag and ``ORGA_PROXY_*`` variable, in the field's :func:`setting` metadata.
The policy is built from code (``ProxyPolicy(rate_limit="5/minute")``), from Django's ``settings.ORGA_PROXY`` (the
same names), or from serve's flags and the environment (:meth:`ProxyPolicy.from_settings`,
:meth:`ProxyPolicy.from_env`), and it is the one thing :class:`~orga_ai.proxy.ProxyCore`, ``create_app``, the
framework adapters, ``orga-ai serve`` and the function entry points take. Adding a setting is one field here plus its
use; ``tests/proxy/test_policy.py`` derives the list of fields and proves that every entry point honours each.

Two fields are built from several of serve's options rather than one: ``authenticate`` (``--shared-secret``,
``--jwt-*``, ``--jwks-url``) and ``ice_policy`` (``--ice-*``); their options are in ``_settings.py``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._storage import MEMORY_STORAGE

if TYPE_CHECKING:
    from .._ice import IcePolicy

__all__ = [
    "ANONYMOUS_GLOBAL_RATE_LIMIT",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_PATH",
    "DEFAULT_RATE_LIMIT",
    "LOOPBACK_HOSTS",
    "ProxyPolicy",
    "Setting",
    "policy_settings",
]

DEFAULT_PATH = "/api/orga-client-secrets"
DEFAULT_RATE_LIMIT = "10/minute"
DEFAULT_DEADLINE = 8.0
"""Seconds for the whole request: Orga's widget gives up at 10 s, so the route answers (504) before it does."""
DEFAULT_MAX_CONCURRENCY = 64
"""Upstream calls in flight per process; the next caller is shed with 503 at once rather than queued."""
DEFAULT_MAX_BODY_BYTES = 4096
"""The route takes no body; a POST carrying more than this is refused with 413."""
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
"""All request headers together; more is refused with 431 (``orga-ai serve``'s HTTP layer enforces the same cap)."""
ANONYMOUS_GLOBAL_RATE_LIMIT = "120/minute"
"""The ceiling an anonymous route gets when none is configured: per-IP limits alone let a botnet mint without end."""
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True, slots=True)
class Setting:
    """How one policy field is set from outside code: serve's option (flag ``--x-y``, variable ``ORGA_PROXY_X_Y``),
    its kind and help (the docs table's text), and what the option's value becomes in the field."""

    option: str | None
    kind: str = "str"  # "str" | "int" | "float" | "bool" | "list", as serve parses it
    help: str = ""
    secret: bool = False
    option_default: Any = None
    """The option's default when it differs from the field's (``--redis-url`` unset means ``memory://``)."""
    own_default: bool = False
    """Whether ``option_default`` is set (else the option's default is the field's)."""
    from_option: Callable[[Any], Any] | None = None


def setting(default: Any, option: str | None, kind: str = "str", help: str = "", **extra: Any) -> Any:
    """A policy field: its default and how serve sets it."""
    if "option_default" in extra:
        extra["own_default"] = True
    meta = Setting(option, kind, help, **extra)
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"orga": meta})
    return field(default=default, metadata={"orga": meta})


def policy_settings() -> list[tuple[str, Setting, Any]]:
    """Every policy field: (name, how it is set, its default)."""
    return [(f.name, f.metadata["orga"], f.default) for f in dataclasses.fields(ProxyPolicy)]


# -- checks (each raises ValueError with a sentence that names the field) -----------------------------------------


def _count(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be a whole number <= {maximum}, got {value!r}")
    return value


def _seconds(name: str, value: object, *, low: float, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        raise ValueError(f"{name} must be more than {low:g} seconds, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high:g} seconds, got {value!r}")
    return float(value)


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} takes a list, not one string: {name}=[{value!r}]")
    if not isinstance(value, Iterable):
        raise ValueError(f"{name} takes a list of strings, not {type(value).__name__}")
    return tuple(str(item) for item in value)


def validate_origins(origins: Iterable[str]) -> frozenset[str]:
    """Exact ``scheme://host[:port]`` origins, lower-cased as browsers send them; never ``*`` or ``null``."""
    out = set()
    for origin in origins:
        origin = origin.strip().rstrip("/")
        if origin in {"*", "null"}:
            raise ValueError(
                f"CORS origin {origin!r} is not allowed: list exact origins such as https://app.example.com "
                "(a wildcard with credentials would let any site mint sessions for your users)"
            )
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or parts.query:
            raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port], with no path")
        out.add(origin.lower())
    return frozenset(out)


def networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The trusted proxies' addresses or CIDR networks."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {value!r} is not an IP address or CIDR network") from None
    return tuple(out)


def validate_path(path: str) -> str:
    """The route's path, refused unless it is absolute (``"api/x"`` would mount nowhere a browser asks)."""
    if not isinstance(path, str) or not path.startswith("/") or "?" in path or "#" in path or " " in path:
        raise ValueError(f"path={path!r} must be an absolute URL path such as '/api/orga-client-secrets'")
    return path


def _import_hook(path: str) -> Any:
    """``authenticate="package.module.function"`` (or ``"package.module:function"``): imported now, so a typo fails
    at start-up naming the path rather than answering every request with a 500."""
    import importlib

    module_name, sep, attribute = path.replace(":", ".").rpartition(".")
    try:
        if not sep or not module_name:
            raise ImportError("not a dotted path")
        hook = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"authenticate={path!r} cannot be imported ({exc})") from None
    if not callable(hook):
        raise ValueError(f"authenticate={path!r} is a {type(hook).__name__}, not a callable")
    return hook


# -- the policy ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyPolicy:
    """The route's settings: who may call, how much, from where, and how long it may take.

    Build it from code (``ProxyPolicy(authenticate=JWTAuth(...), rate_limit="5/minute")``), from the environment
    (:meth:`from_env`) or from ``orga-ai serve``'s resolved flags (:meth:`from_settings`). Django's
    ``settings.ORGA_PROXY`` uses the same names (plus the adapter's own ``path``, ``view``, ``events`` and
    ``orga_options``). Every value is checked when the policy is made: a bad one is a ValueError naming it.
    """

    authenticate: Any = setting(None, None, help="who may call: JWTAuth, SharedSecretAuth or any callable")  # noqa: RUF009
    """Who the caller is: any callable ``(ProxyRequest) -> Principal | str`` raising ``AuthenticationError`` to refuse
    (``JWTAuth``, ``SharedSecretAuth``), or a dotted path to one. Required unless ``allow_anonymous``."""
    allow_anonymous: bool = setting(
        False,
        "allow_anonymous",
        "bool",
        "Serve callers without credentials (rate-limited per IP). Development only; announced loudly at start-up.",
    )
    rate_limit: str | None = setting(
        DEFAULT_RATE_LIMIT, "rate_limit", help="Per-principal limit (`none` to disable)."
    )
    global_rate_limit: str | None = setting(
        None, "global_rate_limit", help="Ceiling across all callers, e.g. `600/minute`."
    )
    storage_uri: str = setting(
        MEMORY_STORAGE,
        "redis_url",
        help="`redis://host:port/db`, `redis+sentinel://h1:p1,h2:p2/<service>` or `redis+cluster://h1:p1,h2:p2` "
        "(`?password_file=`, `?timeout=`; `rediss` for TLS): share rate limits between replicas "
        "(fails closed with 503 when Redis is down).",
        secret=True,
        option_default=None,
        from_option=lambda value: value or MEMORY_STORAGE,
    )
    cors_origins: tuple[str, ...] = setting(
        (), "cors_origin", "list", "Exact browser origin allowed cross-origin (repeatable; never `*`)."
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "trusted_proxy",
        "list",
        "Address or CIDR of a reverse proxy whose `X-Forwarded-For` is believed, and which "
        "--max-client-connections does not apply to (repeatable).",
    )
    allowed_hosts: tuple[str, ...] | None = setting(
        None,
        "allowed_host",
        "list",
        "`Host` name (or `name:port`) the route answers (repeatable); others get 400. Default: any, or "
        "loopback names only with --allow-anonymous.",
        option_default=[],
        from_option=lambda value: value or None,
    )
    path: str = setting(DEFAULT_PATH, "path", help="Path of the client-secrets route.")
    deadline: float = setting(DEFAULT_DEADLINE, "deadline", "float", "Seconds for the whole request before 504.")
    max_concurrency: int = setting(
        DEFAULT_MAX_CONCURRENCY, "max_concurrency", "int", "Upstream calls in flight before shedding with 503."
    )
    max_body_bytes: int = setting(
        DEFAULT_MAX_BODY_BYTES, "max_body_bytes", "int", "Largest request body accepted (413 above)."
    )
    max_header_bytes: int = setting(
        DEFAULT_MAX_HEADER_BYTES,
        "max_header_bytes",
        "int",
        "Largest request head (line and headers); 431 above, read no further.",
    )
    breaker_threshold: int = setting(
        5, "breaker_threshold", "int", "Consecutive upstream failures that open the circuit breaker (0: off)."
    )
    breaker_cooldown: float = setting(
        10.0, "breaker_cooldown", "float", "Seconds the breaker stays open before one probe."
    )
    deny_file: str | None = setting(
        None,
        "deny_file",
        help="Deny-list file, re-read live: `*` stops all minting, other lines are principal ids or their `fp:` "
        "fingerprints.",
    )
    ice_policy: IcePolicy | None = setting(None, None, help="the ICE servers handed out")  # noqa: RUF009
    """An :class:`~orga_ai.IcePolicy` (or a dict of its fields) narrowing the ICE servers handed out."""
    fingerprint_key: str | None = setting(
        None,
        "fingerprint_key",
        help="Key of the principals' fingerprints in logs (HMAC; 16+ characters). Set the same on every replica to "
        "correlate their logs and use `fp:` lines in a deny file; default: random per run.",
        secret=True,
    )
    prefetch: int = setting(
        0, "prefetch", "int", "Session configs kept minted ahead (the SDK's warm pool; 0: off)."
    )
    events: bool = setting(
        False,
        "events",
        "bool",
        "Also serve `POST {path}/events`: logs `{request_id, conversation_id, state}` from the page (authenticated, "
        "rate-limited).",
    )

    def __post_init__(self) -> None:
        fix = object.__setattr__  # frozen: the checks normalise in place once
        authenticate = self.authenticate
        if isinstance(authenticate, str):  # settings files and env vars give strings
            authenticate = _import_hook(authenticate)
            fix(self, "authenticate", authenticate)
        if authenticate is not None and not callable(authenticate):
            kind = type(authenticate).__name__
            raise ValueError(f"authenticate must be callable (or a dotted path to one), not {kind}")
        if authenticate is None and not self.allow_anonymous:
            raise ValueError(
                "the proxy needs authentication: pass authenticate=JWTAuth(...) or SharedSecretAuth(...) "
                "(or any callable), or allow_anonymous=True for local development only"
            )
        from ._auth import AnonymousAuth

        if isinstance(authenticate, AnonymousAuth) and not self.allow_anonymous:
            raise ValueError("AnonymousAuth serves anyone; pass allow_anonymous=True to mean it")
        fix(self, "allow_anonymous", bool(self.allow_anonymous))
        fix(self, "deadline", _seconds("deadline", self.deadline, low=0, high=60))
        fix(self, "breaker_cooldown", _seconds("breaker_cooldown", self.breaker_cooldown, low=0, high=None))
        _count("max_concurrency", self.max_concurrency, 0)
        _count("max_body_bytes", self.max_body_bytes, 0)
        _count("max_header_bytes", self.max_header_bytes, 1)
        _count("breaker_threshold", self.breaker_threshold, 0)
        _count("prefetch", self.prefetch, 0, 1000)
        cors = _strings("cors_origins", self.cors_origins)
        validate_origins(cors)
        fix(self, "cors_origins", cors)
        trusted = _strings("trusted_proxies", self.trusted_proxies)
        networks(trusted)
        fix(self, "trusted_proxies", trusted)
        if self.allowed_hosts is not None:
            fix(self, "allowed_hosts", _strings("allowed_hosts", self.allowed_hosts))
        validate_path(self.path)
        if self.ice_policy is not None:
            from .._ice import IcePolicy

            fix(self, "ice_policy", IcePolicy.coerce(self.ice_policy))
        fix(self, "events", bool(self.events))

    # -- construction from the outside ----------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str = "the policy") -> ProxyPolicy:
        """A policy from a mapping of field names (Django's ``ORGA_PROXY``); an unknown name is a ValueError naming
        ``where``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{where} has no setting named {', '.join(map(repr, unknown))}")
        return cls(**dict(values))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **given: Any) -> ProxyPolicy:
        """A policy from ``orga-ai serve``'s resolved settings (:func:`~orga_ai.proxy._settings.resolve`): each
        field from its option, ``authenticate`` from the credential options, ``ice_policy`` from ``--ice-*``.
        ``given`` overrides fields (an authenticator built elsewhere, say). A bad value is a ServeSettingsError
        naming the flag and its variable."""
        from ._settings import ServeSettingsError, build_authenticator, ice_policy, option_named

        values: dict[str, Any] = {}
        for name, how, _default in policy_settings():
            if how.option is None or how.option not in settings:
                continue
            value = settings[how.option]
            values[name] = how.from_option(value) if how.from_option is not None else value
        if "authenticate" not in given:
            given["authenticate"] = build_authenticator(settings)
        if "ice_policy" not in given:
            given["ice_policy"] = ice_policy(settings)
        values.update(given)
        if values.get("authenticate") is not None:
            values["allow_anonymous"] = False  # credentials win; serve warns that --allow-anonymous was ignored
        try:
            return cls(**values)
        except ValueError as exc:
            text = str(exc)
            for name, how, _default in policy_settings():
                if how.option is not None and text.startswith(name + " "):
                    option = option_named(how.option)
                    raise ServeSettingsError(f"{option.flag} / {option.env}: {text}") from None
            if text.startswith("the proxy needs authentication"):
                from ._settings import NO_AUTH

                raise ServeSettingsError(NO_AUTH) from None
            raise ServeSettingsError(text) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> ProxyPolicy:
        """A policy from the ``ORGA_PROXY_*`` variables, as ``orga-ai serve`` reads them."""
        from ._settings import resolve

        return cls.from_settings(resolve({}, environ), **given)

    def replace(self, **changes: Any) -> ProxyPolicy:
        """This policy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:  # secrets (a fingerprint key, a Redis password) never appear
        auth = type(self.authenticate).__name__ if self.authenticate is not None else "anonymous"
        scheme = self.storage_uri.split(":", 1)[0]
        return (
            f"ProxyPolicy(authenticate={auth}, rate_limit={self.rate_limit!r}, "
            f"global_rate_limit={self.global_rate_limit!r}, storage={scheme}://, path={self.path!r}, "
            f"deadline={self.deadline})"
        )
