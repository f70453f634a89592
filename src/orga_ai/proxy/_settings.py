"""The settings of ``orga-ai serve``: one table of options, each a command-line flag and an ``ORGA_PROXY_*``
environment variable.

The rule, as in the SDK: an explicit flag wins; the environment variable fills only a flag that was not given; the
default fills the rest. ``docs/proxy.md`` prints :data:`OPTIONS` as its table (``python -m orga_ai.proxy._settings``
regenerates it). The Orga key itself is the SDK's ``ORGA_API_KEY`` (and ``ORGA_BASE_URL``, ``ORGA_TIMEOUT``...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._policy import policy_settings

if TYPE_CHECKING:
    import argparse

    from .._ice import IcePolicy
    from ._auth import Authenticator  # argparse is the CLI's; a function host reads settings from the environment only

__all__ = [
    "NO_AUTH",
    "OPTIONS",
    "Option",
    "ServeSettingsError",
    "add_arguments",
    "build_authenticator",
    "ice_policy",
    "markdown_table",
    "option_named",
    "resolve",
    "to_environ",
]


class ServeSettingsError(ValueError):
    """A setting of ``orga-ai serve`` is missing, unreadable or unsafe; the message says how to fix it."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its flag, variable, type, default and help (the help is the docs table's text)."""

    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "list"
    default: Any
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "ORGA_PROXY_" + self.name.upper()

    def parse(self, text: str) -> Any:
        parsers: dict[str, Callable[[str], Any]] = {
            "str": str,
            "int": int,
            "float": float,
            "bool": _bool,
            "list": _list,
        }
        try:
            return parsers[self.kind](text)
        except ValueError as exc:
            raise ServeSettingsError(f"{self.env}: {exc}") from None


def _policy_option(name: str) -> Option:
    """The option of a :class:`~orga_ai.proxy.ProxyPolicy` field, from the field's own declaration."""
    for _field, how, default in policy_settings():
        if how.option == name:
            shown = how.option_default if how.own_default else default
            if isinstance(shown, tuple):
                shown = list(shown)
            return Option(name, how.kind, shown, how.help, secret=how.secret)
    raise LookupError(name)


OPTIONS: tuple[Option, ...] = (
    Option("host", "str", "127.0.0.1", "Interface to listen on."),
    Option("port", "int", 8080, "Port to listen on."),
    Option("workers", "int", 1, "Worker processes (each with its own limiter unless --redis-url is set)."),
    _policy_option("path"),
    Option(
        "shared_secret",
        "list",
        [],
        "Static bearer secret(s) for service-to-service callers "
        "(`Authorization: Bearer <secret>`); repeat the flag or comma-separate to rotate.",
        secret=True,
    ),
    Option("jwt_secret", "str", None, "HMAC key of your app's JWTs (HS256 by default).", secret=True),
    Option("jwks_url", "str", None, "JWKS URL of your identity provider (RS256/ES256 by default)."),
    Option("jwt_audience", "list", [], "Required `aud` of the JWT (repeatable)."),
    Option("jwt_issuer", "str", None, "Required `iss` of the JWT."),
    Option("jwt_algorithm", "list", [], "Accepted JWT algorithms (repeatable); pinned, never `none`."),
    Option("jwt_cookie", "str", None, "Also read the JWT from this cookie."),
    Option("jwt_leeway", "float", 30.0, "Seconds of clock skew tolerated on `exp`/`nbf`."),
    _policy_option("allow_anonymous"),
    _policy_option("rate_limit"),
    _policy_option("global_rate_limit"),
    _policy_option("redis_url"),
    _policy_option("cors_origin"),
    _policy_option("trusted_proxy"),
    _policy_option("allowed_host"),
    _policy_option("fingerprint_key"),
    _policy_option("deadline"),
    _policy_option("max_concurrency"),
    _policy_option("max_body_bytes"),
    _policy_option("breaker_threshold"),
    _policy_option("breaker_cooldown"),
    _policy_option("deny_file"),
    Option(
        "head_timeout",
        "float",
        10.0,
        "Seconds a client has to send a request's line and headers (and an idle keep-alive connection its next one); "
        "then the server closes the connection.",
    ),
    Option(
        "request_timeout",
        "float",
        10.0,
        "Seconds a client has to send a whole request, head and body, from the same start as --head-timeout; a "
        "body still arriving then is answered 408 and the connection closed.",
    ),
    Option(
        "write_timeout",
        "float",
        10.0,
        "Seconds a connection may leave its answers unread (the server's write buffer full); then it is dropped.",
    ),
    _policy_option("max_header_bytes"),
    Option(
        "max_connections",
        "int",
        4096,
        "Connections each worker holds at once; more are answered 503 and closed. "
        "The open-file limit is raised to fit.",
    ),
    Option(
        "max_client_connections",
        "int",
        64,
        "Connections one client address (an IPv6 /64) holds in each worker; more are answered 503 and closed. "
        "The --trusted-proxy addresses are exempt.",
    ),
    _policy_option("prefetch"),
    Option("graceful_timeout", "float", None, "Seconds SIGTERM waits for in-flight requests (default: deadline + 2)."),
    Option("log_level", "str", "info", "`debug`, `info`, `warning` or `error`."),
    _policy_option("events"),
    Option(
        "log_format",
        "str",
        "text",
        "`text`, or `json`: one JSON object per line, with trace ids; both carry the request id on every line of a "
        "request.",
    ),
    Option(
        "ice_relay_only",
        "bool",
        False,
        "Hand out TURN (`turn:`/`turns:`) URLs only, so clients never reveal their own addresses (docs/ice.md).",
    ),
    Option("ice_transport", "list", [], "Hand out only URLs reached over these transports: `udp`, `tcp`, `tls`."),
    Option("ice_dedupe", "bool", None, "Drop duplicate ICE URLs (on whenever another `--ice-*` option is set)."),
    Option("ice_max_servers", "int", None, "Hand out at most this many ICE URLs, in Orga's order."),
)

# Every secret also comes from a file (`--shared-secret-file`, `ORGA_PROXY_SHARED_SECRET_FILE`): a flag's value is
# visible to every local user in `ps`, and a mounted secret (Kubernetes, Docker) is a file.
OPTIONS += tuple(
    Option(
        option.name + "_file",
        "str",
        None,
        f"File holding the value of `{option.flag}` (surrounding whitespace stripped); keeps it out of `ps`.",
    )
    for option in OPTIONS
    if option.secret
)
SECRET_OPTIONS = tuple(option for option in OPTIONS if option.secret)

_BY_NAME = {option.name: option for option in OPTIONS}


def option_named(name: str) -> Option:
    """The option called ``name`` (its flag and variable, for messages)."""
    return _BY_NAME[name]


NO_AUTH = """orga-ai serve: no authentication configured, refusing to start.
Choose one (flag, or its environment variable):
  --shared-secret SECRET  (ORGA_PROXY_SHARED_SECRET)    callers send Authorization: Bearer SECRET
  --jwt-secret KEY        (ORGA_PROXY_JWT_SECRET)       your app's HS256 JWTs; add --jwt-audience and --jwt-issuer
  --jwks-url URL          (ORGA_PROXY_JWKS_URL)         your identity provider's JWTs; add --jwt-audience/--jwt-issuer
  --allow-anonymous       (ORGA_PROXY_ALLOW_ANONYMOUS)  anyone, rate-limited per IP: local development only"""


def build_authenticator(settings: Mapping[str, Any]) -> Authenticator | None:
    """The authenticator the credential options describe, or None when only anonymous access (or nothing) is
    configured."""
    from ._auth import AnyOf, JWTAuth, SharedSecretAuth

    found: list[Authenticator] = []
    if settings.get("shared_secret"):
        found.append(SharedSecretAuth(settings["shared_secret"]))
    if settings.get("jwt_secret") or settings.get("jwks_url"):
        if settings["jwt_secret"] and settings["jwks_url"]:
            raise ServeSettingsError("give --jwt-secret or --jwks-url, not both")
        audience = settings["jwt_audience"] or None
        found.append(
            JWTAuth(
                secret=settings["jwt_secret"],
                jwks_url=settings["jwks_url"],
                audience=audience[0] if audience and len(audience) == 1 else audience,
                issuer=settings["jwt_issuer"],
                algorithms=settings["jwt_algorithm"] or None,
                cookie_name=settings["jwt_cookie"],
                leeway=settings["jwt_leeway"],
            )
        )
    elif settings.get("jwt_audience") or settings.get("jwt_issuer"):
        raise ServeSettingsError("--jwt-audience/--jwt-issuer need --jwt-secret or --jwks-url")
    if not found:
        return None
    return found[0] if len(found) == 1 else AnyOf(*found)


def _read_secret_files(out: dict[str, Any]) -> None:
    for option in SECRET_OPTIONS:
        path = out.get(option.name + "_file")
        if not path:
            continue
        if out[option.name]:
            raise ServeSettingsError(f"give {option.flag} or {option.flag}-file, not both")
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeSettingsError(f"{option.flag}-file: cannot read {path!r} ({type(exc).__name__})") from None
        if not text:
            raise ServeSettingsError(f"{option.flag}-file: {path!r} is empty")
        out[option.name] = option.parse(text)
        out[option.name + "_file"] = None  # read once: workers get the value, not the path again


def secrets_on_command_line(args: argparse.Namespace | Mapping[str, Any] | None) -> list[str]:
    """The secret options given as flags (visible in `ps`), for a warning at start-up."""
    given = dict(args or {}) if args is None or isinstance(args, Mapping) else vars(args)
    return [option.flag for option in SECRET_OPTIONS if given.get(option.name)]


def _shown_default(option: Option) -> str:
    if option.kind == "bool":
        return "default off"
    if option.default in (None, []):
        return "no default"
    return f"default {option.default}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag whose default is None, so "not given" is distinguishable from a value."""
    for option in OPTIONS:
        text = f"{option.help.replace('`', '')} [env {option.env}; {_shown_default(option)}]".replace("%", "%%")
        if option.kind == "bool":
            parser.add_argument(
                option.flag, dest=option.name, action="store_const", const=True, default=None, help=text
            )
        elif option.kind == "list":
            parser.add_argument(
                option.flag, dest=option.name, action="append", default=None, help=text, metavar="VALUE"
            )
        else:
            kind: Callable[[str], Any] = {"int": int, "float": float}.get(option.kind, str)
            parser.add_argument(
                option.flag, dest=option.name, type=kind, default=None, help=text, metavar=option.name.upper()
            )


def resolve(
    args: argparse.Namespace | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge flags, ``ORGA_PROXY_*`` variables and defaults into one dict of settings."""
    env = os.environ if environ is None else environ
    given = dict(args or {}) if args is None or isinstance(args, Mapping) else vars(args)
    out: dict[str, Any] = {}
    for option in OPTIONS:
        value = given.get(option.name)
        if value is None:
            raw = env.get(option.env)
            value = option.parse(raw) if raw is not None and raw.strip() != "" else option.default
        elif option.kind == "list":
            value = [item for entry in value for item in _list(entry)]
        out[option.name] = list(value) if isinstance(value, list) else value
    # "none" is the command line's spelling of rate_limit=None (a flag cannot say None); "0" is refused later.
    if isinstance(out["rate_limit"], str) and out["rate_limit"].strip().lower() in {"none", "off"}:
        out["rate_limit"] = None
    _read_secret_files(out)
    if "workers" in out and (not isinstance(out["workers"], int) or out["workers"] < 1):
        raise ValueError(f"--workers / ORGA_PROXY_WORKERS must be 1 or more, not {out['workers']!r}")
    _check_ranges(out)
    return out


# (lowest, highest or None, what the range means): checked at start-up, so a bad value is one line naming the flag and
# its variable, not a traceback from the library the value reaches.
_RANGES: dict[str, tuple[float, float | None, str]] = {
    "port": (1, 65535, "between 1 and 65535"),
    "prefetch": (0, 1000, "a whole number between 0 (off) and 1000"),
    "breaker_threshold": (0, None, "0 (off) or more"),
    "breaker_cooldown": (0.001, None, "more than 0 seconds"),
    "max_concurrency": (1, None, "1 or more"),
    "max_body_bytes": (0, None, "0 or more"),
    "jwt_leeway": (0, None, "0 seconds or more"),
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


def _check_ranges(out: Mapping[str, Any]) -> None:
    for name, (low, high, meaning) in _RANGES.items():
        value = out.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or value < low or (high is not None and value > high):
            option = _BY_NAME[name]
            raise ServeSettingsError(f"{option.flag} / {option.env} must be {meaning}, not {value!r}")
    for name, choices in (("log_level", LOG_LEVELS), ("log_format", LOG_FORMATS)):
        value = out.get(name)
        if isinstance(value, str) and value.lower() not in choices:
            option = _BY_NAME[name]
            raise ServeSettingsError(f"{option.flag} / {option.env}: {value!r} is not one of {', '.join(choices)}")


def to_environ(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings as ``ORGA_PROXY_*`` variables, for worker processes that rebuild the app from the environment."""
    env: dict[str, str] = {}
    for name, value in settings.items():
        option = _BY_NAME[name]
        if value is None:
            env[option.env] = "none" if name == "rate_limit" else ""
        elif option.kind == "list":
            env[option.env] = ",".join(value)
        elif option.kind == "bool":
            env[option.env] = "1" if value else "0"
        else:
            env[option.env] = str(value)
    return env


def ice_policy(settings: Mapping[str, Any]) -> IcePolicy | None:
    """The :class:`~orga_ai.IcePolicy` of the ``--ice-*`` settings, or None when none is set."""
    from .._ice import IcePolicy

    try:
        return IcePolicy.from_options(
            relay_only=settings["ice_relay_only"] or None,
            transports=settings["ice_transport"],
            dedupe=settings["ice_dedupe"],
            max_servers=settings["ice_max_servers"],
        )
    except ValueError as exc:
        raise ServeSettingsError(f"--ice-*: {exc}") from None


def markdown_table() -> str:
    """The options as the Markdown table of ``docs/proxy.md``."""
    lines = ["| Flag | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        default = option.default
        shown = "—" if default in (None, []) else f"`{default}`"
        if option.kind == "bool":
            shown = "off"
        flag = option.flag + (" (repeatable)" if option.kind == "list" else "")
        lines.append(f"| `{flag}` | `{option.env}` | {shown} | {option.help} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
