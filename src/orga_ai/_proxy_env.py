"""The proxy the environment names for an origin, read the same way by both clients.

``HTTPS_PROXY`` for https origins, ``HTTP_PROXY`` for http ones (either spelling, lower case first, as the standard
library reads them), skipped for hosts ``NO_PROXY`` lists. Only ``http://`` proxies: https goes through them in a
CONNECT tunnel, so TLS (and its verification) stays end to end with the origin. Credentials in the proxy URL are
returned apart from its address, to go to the proxy only; nothing here puts them in a message or a repr.

Nothing is imported beyond ``os`` until a variable ending in ``_proxy`` is set.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

__all__ = ["ProxyConfigurationError", "ProxyTarget", "proxy_from_environment"]


class ProxyConfigurationError(OSError):
    """The environment names a proxy this client cannot use."""


class ProxyTarget:
    """An http proxy's address, and the credentials (if any) that go to it alone."""

    __slots__ = ("host", "password", "port", "username")

    def __init__(self, host: str, port: int, username: str | None, password: str | None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password

    @property
    def url(self) -> str:
        """``http://host:port``, without the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (Basic, UTF-8), or None without credentials."""
        if self.username is None:
            return None
        import base64

        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"ProxyTarget({self.url}{', with credentials' if self.username is not None else ''})"


def proxy_from_environment(scheme: str, host: str) -> ProxyTarget | None:
    """The proxy for ``scheme://host``, or None (no proxy variable, or ``NO_PROXY`` covers the host).

    Raises :class:`ProxyConfigurationError` for a proxy that is not ``http://`` or whose URL cannot be read; the
    message never shows the URL's user or password.
    """
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the common case, without importing urllib.request
    import urllib.request

    url = urllib.request.getproxies_environment().get(scheme)
    if not url or urllib.request.proxy_bypass(host):  # NO_PROXY (on Linux: the environment only)
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ProxyConfigurationError(
            f"the {scheme} proxy from the environment must be an http:// URL, not {parts.scheme}://"
        )
    try:
        port = parts.port or 80
    except ValueError:  # its text would show what stands where the port should: part of a password, say
        port = -1
    if port < 0 or "@" in f"{parts.path}{parts.query}{parts.fragment}":
        # A "/", "?" or "#" in an unescaped password ends the authority early: the text after it is no port.
        raise ProxyConfigurationError(
            f"the {scheme} proxy URL from the environment cannot be read: write it as http://user:password@host:"
            "port, with any of / ? # @ : in the user or password percent-encoded"
        )
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return ProxyTarget(parts.hostname, port, username, password)
