"""Rate-limit storage URIs: ``memory://``, Redis, Sentinel and Cluster (``rediss`` for TLS), with what neither
``limits`` nor redis-py parses for us: ``?password_file=`` (a secret kept out of the URI and ``ps``), one
``?timeout=`` applied to every server, TLS parameters on the HA schemes, and error messages that never echo a
password (every accepted form: :func:`storage_config`)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_STORAGE_TIMEOUT", "MEMORY_STORAGE", "StorageConfig", "storage_config"]

MEMORY_STORAGE = "memory://"
"""The storage URI of in-process limits (the default: one process, nothing shared)."""
DEFAULT_STORAGE_TIMEOUT = 0.5
"""Seconds to connect to and read from Redis before failing closed."""


def _redis_options(timeout: float, *, cluster: bool = False) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py retries failed commands by default; each retry would add another socket timeout to the request.
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if not cluster:  # the cluster clients refuse these two (they manage node health themselves)
        options["retry_on_timeout"] = False
        options["health_check_interval"] = 0
    return options


_PLAIN_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})
_HA_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"})
# Query parameters the HA schemes take (``limits`` would ignore a query there); the plain schemes hand theirs to
# redis-py's URL parser, which knows the ssl_* ones itself.
_TLS_PARAMETERS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"})
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """How to reach the rate-limit storage: the URI ``limits`` is given and the options for its Redis clients.

    ``repr`` shows neither the password nor the URI (which may hold one).
    """

    scheme: str
    uri: str = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel_options: dict[str, Any] = field(default_factory=dict, repr=False)
    timeout: float = DEFAULT_STORAGE_TIMEOUT

    @property
    def distributed(self) -> bool:
        return self.scheme != "memory"

    @property
    def mode(self) -> str:
        """``memory``, ``redis``, ``sentinel`` or ``cluster``."""
        if self.scheme == "memory":
            return "memory"
        return self.scheme.partition("+")[2] if self.scheme in _HA_SCHEMES else "redis"


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ValueError(f"cannot read the Redis password file {path!r}: {exc.strerror}") from None
    password = text.strip("\r\n")
    if not password:
        raise ValueError(f"the Redis password file {path!r} is empty")
    return password


def storage_config(uri: str, *, timeout: float = DEFAULT_STORAGE_TIMEOUT) -> StorageConfig:
    """Read a rate-limit storage URI; ValueError (naming the problem, never the password) when it is unusable.

    Accepted forms:

    * ``memory://``: this process only.
    * ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS), ``redis+unix:///path.sock``: one Redis server.
    * ``redis+sentinel://[:password@]h1:p1,h2:p2,h3:p3/<service>``: the primary that the Sentinels name for
      ``service``, found again after a failover. Reads and writes both go to the primary (a replica's copy of a
      window may lag). The password, if any, is used for the Sentinels as well as the Redis servers.
    * ``redis+cluster://[:password@]h1:p1,h2:p2``: a Redis Cluster, found from any of the listed nodes.

    ``rediss+sentinel://`` and ``rediss+cluster://`` are the same over TLS; their query may carry ``ssl_ca_certs``,
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` and ``ssl_check_hostname``. Every Redis form also takes
    ``?password_file=/path`` (a file holding only the password, e.g. a mounted secret) instead of a password
    in the URI, and ``?timeout=<seconds>`` instead of the ``timeout`` argument: it bounds connecting to, and each
    answer from, every server involved (raise it above the default 0.5 s only for a distant or busy Redis: a request
    waits up to about four times this long before it is refused).
    """
    if not isinstance(uri, str) or "://" not in uri:
        raise ValueError("rate-limit storage must be a URI such as memory:// or redis://host:6379/0")
    scheme = uri.partition("://")[0].lower()
    if scheme == "memory":
        return StorageConfig("memory", MEMORY_STORAGE, timeout=timeout)
    if scheme not in _PLAIN_SCHEMES | _HA_SCHEMES:
        raise ValueError(
            f"rate-limit storage must be memory://, redis://, rediss://, redis+unix://, redis+sentinel:// or "
            f"redis+cluster://, not {scheme}://"
        )
    parts = urllib.parse.urlsplit(uri)
    try:
        port_ok = scheme not in {"redis", "rediss"} or parts.port is None or parts.port >= 0
    except ValueError:  # its text would show what stands where the port should: part of a password, say
        port_ok = False
    if not port_ok or (scheme != "redis+unix" and "@" in f"{parts.path}{parts.query}{parts.fragment}"):
        # A "/", "?" or "#" in an unescaped password ends the URI's authority early.
        raise ValueError(
            "the rate-limit storage URI cannot be read: write it as redis://user:password@host:port/db, with any of "
            "/ ? # @ : in the user or password percent-encoded"
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    password_file = [value for key, value in query if key == "password_file"]
    timeouts = [value for key, value in query if key == "timeout"]
    query = [(key, value) for key, value in query if key not in {"password_file", "timeout"}]
    if timeouts:
        try:
            timeout = float(timeouts[-1])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 30:
            raise ValueError(f"timeout={timeouts[-1]!r} in the rate-limit storage URI: give seconds, 0 < s <= 30")
    options: dict[str, Any] = {}
    if password_file:
        if parts.password:
            raise ValueError("give the Redis password in the URI or in password_file, not both")
        options["password"] = _read_password(password_file[-1])
    cluster = scheme.endswith("+cluster")
    options.update(_redis_options(timeout, cluster=cluster))
    if scheme in _PLAIN_SCHEMES:
        rest = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        return StorageConfig(scheme, rest, options, timeout=timeout)
    tls: dict[str, Any] = {"ssl": True} if scheme.startswith("rediss") else {}
    for key, value in query:
        if key not in _TLS_PARAMETERS:
            raise ValueError(f"unknown parameter {key!r} in the rate-limit storage URI")
        if not tls:
            raise ValueError(f"{key} needs TLS: write {scheme.replace('redis', 'rediss', 1)}://")
        tls[key] = value.strip().lower() in _TRUE if key == "ssl_check_hostname" else value
    options.update(tls)
    try:
        hosts = [host for host in parts.netloc.rpartition("@")[2].split(",") if host.strip()]
        if not hosts or any(urllib.parse.urlsplit("//" + host).port is None for host in hosts):
            raise ValueError
    except ValueError:
        raise ValueError(f"{scheme}:// needs host:port pairs separated by commas") from None
    service = parts.path.strip("/")
    if scheme.endswith("+sentinel") and not service:
        raise ValueError(f"{scheme}:// needs the service name as its path: {scheme}://h1:p1,h2:p2/<service>")
    # limits reads the hosts, the service and the userinfo from this URI; TLS and timeouts travel as options.
    bare = urllib.parse.urlunsplit(("redis+" + scheme.partition("+")[2], parts.netloc, parts.path, "", ""))
    sentinel_options: dict[str, Any] = {}
    if not cluster:
        sentinel_options = {key: options[key] for key in ("socket_timeout", "socket_connect_timeout", "retry")}
        sentinel_options.update(tls)
        if "password" in options:
            # As a password in the URI: the sentinels' too (limits before 5.8 gives them only the URI's).
            sentinel_options["password"] = options["password"]
    return StorageConfig(scheme, bare, options, sentinel_options, timeout=timeout)
