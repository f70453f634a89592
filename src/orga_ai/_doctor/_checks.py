"""The checks of ``orga-ai doctor``, in the order a session needs them: configuration, the network path to Orga, the
key (one token), the clock, the ICE servers and their reachability, and optionally the team's own route.

Each check measures one thing and says, on failure, what to do. Secrets never enter a :class:`Check`: the key and
tokens appear as fingerprints, TURN credentials not at all, route headers by name only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._config import API_KEY_ENV, INSECURE_BASE_URL_ENV, is_loopback_host, resolve_settings
from .._exceptions import OrgaAIAuthenticationError, OrgaAIError, OrgaAIPermissionError
from .._ice import parse_ice_url
from .._models import IceServer, SessionConfig, turn_username_expiry
from .._protocol import Request, Response, TransportFailure, ice_flow, token_flow
from .._secret import fingerprint
from ._report import Check, Report, Verdict

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["CLOCK_WARN_SECONDS", "DoctorOptions", "run_checks"]

CLOCK_WARN_SECONDS = 30.0
"""Clock skew past this is a warning: JWT checks with small leeways start to disagree."""
_KEY_SHAPE = re.compile(r"^sk_orga_ai_[A-Za-z0-9_\-]{8,}$")
_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
_CERT_WARN_DAYS = 14


@dataclass(slots=True)
class DoctorOptions:
    """What one run checks and how long it waits."""

    timeout: float = 10.0
    ice_timeout: float = 5.0
    route: str | None = None
    route_headers: Sequence[tuple[str, str]] = ()
    origin: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    call: bool = False


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# -- configuration ---------------------------------------------------------------------------------------------------


_UNREADABLE_PROXY = "(unreadable URL)"


def _strip_userinfo(value: str) -> str:
    """The proxy URL's host and port only; :data:`_UNREADABLE_PROXY` when its authority cannot be read (an unescaped
    / ? # in a password ends it early: the rest must not be shown as a host or a port)."""
    parts = urlsplit(value if "://" in value else f"http://{value}")
    try:
        port = parts.port
    except ValueError:
        return _UNREADABLE_PROXY
    if "@" in f"{parts.path}{parts.query}{parts.fragment}":
        return _UNREADABLE_PROXY
    host = parts.hostname or "?"
    return f"{host}:{port}" if port else host


def check_config(report: Report, options: DoctorOptions) -> Settings | None:
    env = options.environ
    raw_key = (env.get(API_KEY_ENV) or "").strip()
    if not raw_key:
        report.add(Check("config", "API key", "fail", detail=f"{API_KEY_ENV} is not set",
                         advice=f"export {API_KEY_ENV}=sk_orga_ai_... (the key from Orga's dashboard)"))
        return None
    if _KEY_SHAPE.match(raw_key):
        report.add(Check("config", "API key", "ok", detail=f"present, well-formed ({fingerprint(raw_key)})"))
    else:
        report.add(Check("config", "API key", "warn", detail=f"present but not shaped sk_orga_ai_... "
                         f"({fingerprint(raw_key)}, {len(raw_key)} chars)",
                         advice="check that the whole key was copied, without quotes or spaces", blocking=False))
    try:
        settings = resolve_settings(api_key=None, base_url=None, timeout=options.timeout, max_retries=0,
                                    debug=False, default_headers=None, environ=env)
    except OrgaAIError as exc:
        report.add(Check("config", "settings", "fail", detail=exc.message,
                         advice="fix the ORGA_* variable named above"))
        return None
    host = urlsplit(settings.base_url).hostname or ""
    if settings.base_url.startswith("https:"):
        report.add(Check("config", "base URL", "ok", detail=f"{settings.base_url} (https)"))
    elif is_loopback_host(host):
        report.add(Check("config", "base URL", "ok",
                         detail=f"{settings.base_url} (plain http to a loopback host: development only)"))
    else:
        report.add(Check("config", "base URL", "warn", blocking=False,
                         detail=f"{settings.base_url} (plain http to another host, allowed by {INSECURE_BASE_URL_ENV})",
                         advice=f"the key crosses the network in clear text: unset {INSECURE_BASE_URL_ENV} outside "
                                "a development setup"))
    proxies = [(name, env.get(name) or env.get(name.lower()) or "") for name in _PROXY_VARS]
    used = [(name, value) for name, value in proxies if value.strip()]
    if used:
        shown = ", ".join(f"{name}={value if name == 'NO_PROXY' else _strip_userinfo(value)}" for name, value in used)
        detail = f"{shown}; STUN/TURN traffic never uses them"
        if _UNREADABLE_PROXY in shown:
            report.add(Check("config", "proxy variables", "warn", detail=detail,
                             advice="write proxy URLs as http://user:password@host:port, with any of / ? # @ : in "
                                    "the user or password percent-encoded", blocking=False))
        else:
            report.add(Check("config", "proxy variables", "ok", detail=detail, blocking=False))
    else:
        report.add(Check("config", "proxy variables", "ok", detail="none set", blocking=False))
    if is_loopback_host(host) and settings.base_url.startswith("http:"):
        report.add(Check("config", "Orga endpoint", "warn", detail="a local emulator, not Orga Cloud",
                         advice="unset ORGA_BASE_URL to check the real Orga Cloud", blocking=False))
    return settings


# -- DNS, TCP, TLS ---------------------------------------------------------------------------------------------------


def _refused(exc: BaseException) -> bool:
    # asyncio reports a refusal on several addresses as one OSError whose message lists each ("Multiple exceptions").
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return True
    codes = re.findall(r"\[Errno (\d+)\]", str(exc)) if str(exc).startswith("Multiple exceptions") else []
    return bool(codes) and all(int(code) == errno.ECONNREFUSED for code in codes)


def _tcp_advice(exc: BaseException, host: str, port: int) -> str:
    """What to do when the base URL's TCP port does not connect: a refusal is nothing listening, not a firewall."""
    if _refused(exc):
        if is_loopback_host(host):
            return (f"nothing listens on {host}:{port}: start the local emulator (orga-ai emulator --port {port}), "
                    "or unset ORGA_BASE_URL to check Orga Cloud")
        return f"nothing listens on {host}:{port}, or a firewall rejects the connection: check ORGA_BASE_URL"
    if is_loopback_host(host):
        return f"the local endpoint {host}:{port} accepts no connection in time: is it stuck or overloaded?"
    if isinstance(exc, asyncio.TimeoutError):
        return f"a firewall or proxy may drop outbound TCP {port} (STUN/TURN aside, HTTPS_PROXY applies to the SDK)"
    return f"check the network path from this host to {host}:{port}"


async def check_network(report: Report, settings: Settings, timeout: float) -> bool:
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=0, proto=6), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        report.add(Check("network", f"DNS {host}", "fail", time.perf_counter() - started,
                         f"cannot resolve {host}: {getattr(exc, 'strerror', None) or type(exc).__name__}",
                         "check this host's DNS (and that the base URL's host name is right)"))
        return False
    addresses = sorted({str(info[4][0]) for info in infos})
    report.add(Check("network", f"DNS {host}", "ok", time.perf_counter() - started,
                     f"{len(addresses)} address(es): {', '.join(addresses[:4])}"))

    started = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        why = "timed out" if isinstance(exc, asyncio.TimeoutError) else (exc.strerror or str(exc))
        report.add(Check("network", f"TCP {host}:{port}", "fail", time.perf_counter() - started, why,
                         _tcp_advice(exc, host, port)))
        return False
    writer.close()
    with _quiet():
        await writer.wait_closed()
    report.add(Check("network", f"TCP {host}:{port}", "ok", time.perf_counter() - started, "connected"))
    if not tls:
        report.add(Check("network", "TLS", "skip", detail="plain http (loopback development endpoint)",
                         blocking=False))
        return True

    started = time.perf_counter()
    context = ssl.create_default_context()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), timeout)
    except ssl.SSLCertVerificationError as exc:
        report.add(Check("network", f"TLS {host}", "fail", time.perf_counter() - started,
                         f"certificate not accepted: {exc.verify_message or exc.reason}",
                         "a TLS-inspecting proxy or an outdated CA bundle; set SSL_CERT_FILE to your CA bundle"))
        return False
    except (OSError, asyncio.TimeoutError) as exc:
        why = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
        report.add(Check("network", f"TLS {host}", "fail", time.perf_counter() - started, f"handshake failed: {why}",
                         "check proxies and firewalls between this host and Orga"))
        return False
    took = time.perf_counter() - started
    cert = writer.get_extra_info("peercert") or {}
    version = writer.get_extra_info("ssl_object").version() if writer.get_extra_info("ssl_object") else "TLS"
    writer.close()
    with _quiet():
        await writer.wait_closed()
    not_after = cert.get("notAfter")
    days = None
    if isinstance(not_after, str):
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.timezone.utc)
        days = (expires - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400
    detail = f"{version}, certificate valid" + (f" for {days:.0f} more days" if days is not None else "")
    verdict: Verdict = "warn" if days is not None and days < _CERT_WARN_DAYS else "ok"
    report.add(Check("network", f"TLS {host}", verdict, took, detail,
                     "the certificate expires soon" if verdict == "warn" else "", blocking=False))
    return True


class _quiet:
    """Suppress the errors of closing a socket we are done with."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


# -- the key, the clock and the ICE servers --------------------------------------------------------------------------


def _recording_client(settings: Settings, timeout: float) -> Any:
    """An ``AsyncOrgaAI`` that keeps the last response it read: its ``Date`` header is what the clock is checked
    against. Everything else (requests, parsing, errors) is the SDK's own."""
    from .._client import AsyncOrgaAI

    class Recording(AsyncOrgaAI):
        last: Response | None = None

        async def _send(self, request: Request) -> Response | TransportFailure:
            outcome = await super()._send(request)
            if isinstance(outcome, Response):
                self.last = outcome
            return outcome

    return Recording(api_key=settings.api_key.reveal(), base_url=settings.base_url, timeout=timeout, max_retries=0)


def _server_date(response: Response | None) -> dt.datetime | None:
    raw = response.headers.get("date") if response is not None else None
    if not raw:
        return None
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


async def check_session(report: Report, settings: Settings, options: DoctorOptions) -> SessionConfig | None:
    orga = _recording_client(settings, options.timeout)
    try:
        orga._connections().prepare()  # importing the HTTP library and opening a session is not Orga's latency
        ctx = orga._context(None, None)
        sent_at = time.time()
        started = time.perf_counter()
        try:
            token = await orga._run(token_flow(ctx))
        except OrgaAIError as exc:
            took = time.perf_counter() - started
            if isinstance(exc, (OrgaAIAuthenticationError, OrgaAIPermissionError)):
                advice = (f"Orga refused the key {settings.api_key.fingerprint}: check {API_KEY_ENV} "
                          "(revoked, or from another environment?)")
            else:
                advice = "Orga could not mint a token; retry, and if it persists tell Orga support the request id"
            report.add(Check("key", "API key accepted", "fail", took, f"{type(exc).__name__}: {exc.message}", advice,
                             data={"status": exc.status, "requestId": exc.request_id}))
            return None
        took = time.perf_counter() - started
        received_at = time.time()
        left = token.seconds_left()
        expiry = "an unknown time" if token.expires_at is None else (
            f"{token.expires_at.isoformat().replace('+00:00', 'Z')} (in {left:.0f} s)")
        report.add(Check("key", "API key accepted", "ok", took,
                         f"minted token {token.fingerprint} (this check consumes one token); expires {expiry}",
                         data={"requestId": token.request_id,
                               "expiresAt": token.expires_at.isoformat() if token.expires_at else None}))
        _check_clock(report, _server_date(orga.last), sent_at, received_at, token.expires_at)

        started = time.perf_counter()
        try:
            servers, request_id = await orga._run(ice_flow(ctx, token.value))
        except OrgaAIError as exc:
            report.add(Check("ice", "ICE servers", "fail", time.perf_counter() - started,
                             f"{type(exc).__name__}: {exc.message}",
                             "Orga minted a token but gave no ICE servers for it; retry, then contact Orga support "
                             "with the request id", data={"requestId": exc.request_id}))
            return None
        config = SessionConfig(token.value, servers, token.expires_at, token.request_id, request_id)
        _describe_servers(report, servers, time.perf_counter() - started)
        return config
    finally:
        await orga.close()


def _check_clock(
    report: Report, server: dt.datetime | None, sent_at: float, received_at: float, expires_at: dt.datetime | None
) -> None:
    if server is None:
        report.add(Check("clock", "clock skew", "skip", detail="Orga sent no Date header", blocking=False))
        return
    # The Date was stamped between sending and receiving: compare with the midpoint; it has whole seconds only.
    local = dt.datetime.fromtimestamp((sent_at + received_at) / 2, dt.timezone.utc)
    skew = (server - local).total_seconds()
    lifetime = (expires_at - server).total_seconds() if expires_at is not None else None
    # Past this, a token looks expired, or not yet valid, on one side the moment it is minted.
    limit = max(CLOCK_WARN_SECONDS, lifetime - min(60.0, lifetime * 0.2)) if lifetime else None
    ahead = "ahead of" if skew > 0 else "behind"
    detail = f"Orga's clock is {abs(skew):.0f} s {ahead} this host's"
    data = {"skewSeconds": round(skew, 1), "failPastSeconds": round(limit, 1) if limit else None}
    if limit is not None and abs(skew) > limit:
        report.add(Check("clock", "clock skew", "fail", detail=f"{detail}: past the token lifetime's margin "
                         f"({limit:.0f} s of a {lifetime:.0f} s lifetime)",
                         advice="sync this host's clock (NTP: timedatectl set-ntp true, or chrony)", data=data))
    elif abs(skew) > CLOCK_WARN_SECONDS:
        report.add(Check("clock", "clock skew", "warn", detail=f"{detail} (more than {CLOCK_WARN_SECONDS:.0f} s)",
                         advice="sync this host's clock (NTP) before tokens start to look expired",
                         blocking=False, data=data))
    else:
        report.add(Check("clock", "clock skew", "ok", detail=detail, blocking=False, data=data))


def _describe_servers(report: Report, servers: tuple[IceServer, ...], took: float) -> None:
    urls = [url for s in servers for url in ((s.urls,) if isinstance(s.urls, str) else s.urls)]
    bad = [url for url in urls if parse_ice_url(url) is None]
    turn_expiries = [e for e in (turn_username_expiry(s.username) for s in servers) if e is not None]
    detail = f"{len(urls)} URL(s): {', '.join(urls)}"
    if turn_expiries:
        first = min(turn_expiries)
        left = (first - dt.datetime.now(dt.timezone.utc)).total_seconds()
        detail += f"; TURN credentials expire in {left:.0f} s"
    if bad:
        report.add(Check("ice", "ICE servers", "warn", took, detail,
                         f"browsers refuse {', '.join(bad)}: hand clients an IcePolicy() (docs/ice.md)",
                         blocking=False, data={"urls": urls, "unusable": bad}))
    else:
        report.add(Check("ice", "ICE servers", "ok", took, detail, blocking=False, data={"urls": urls}))


# -- ICE reachability ------------------------------------------------------------------------------------------------


async def check_ice(report: Report, config: SessionConfig, timeout: float) -> None:
    from .._extras import MissingExtraError, require_extra

    try:
        require_extra("the STUN/TURN checks", "doctor")
    except MissingExtraError as exc:
        report.add(Check("ice", "reachability", "skip", detail=str(exc), blocking=False))
        return
    from ._probe import plan_probes, run_probe

    probes, _ = plan_probes(config.ice_servers)
    if not probes:
        report.add(Check("ice", "reachability", "fail", detail="no ICE URL that a browser could use",
                         advice="Orga returned no usable STUN/TURN URL: contact Orga support"))
        return
    # aioice logs every STUN message at DEBUG, TURN usernames included: keep those lines out of any log.
    aioice_logger = logging.getLogger("aioice")
    level = aioice_logger.level
    if aioice_logger.getEffectiveLevel() < logging.INFO:
        aioice_logger.setLevel(logging.INFO)
    try:
        context = ssl.create_default_context() if any(p.transport == "tls" for p in probes) else None
        results = await asyncio.gather(*(run_probe(probe, timeout, context) for probe in probes))
    finally:
        aioice_logger.setLevel(level)
    for check in results:
        report.add(check)
    working: dict[str, list[str]] = {}
    failing: dict[str, list[str]] = {}
    for check in results:
        bucket = working if check.verdict == "ok" else failing
        bucket.setdefault(check.data["transport"], []).append(check.data["kind"])
    summary = {t: ("ok" if t in working else "fail") for t in ("udp", "tcp", "tls") if t in working or t in failing}
    parts = [f"{t.upper()} {'works' if v == 'ok' else 'fails'}" for t, v in summary.items()]
    refused = [c for c in results if c.data.get("credentialsRefused")]
    relay_ok = any(c.verdict == "ok" and c.data["kind"] == "turn" for c in results)
    data = {"transports": summary, "relay": relay_ok}
    if refused and not relay_ok:
        report.add(Check("ice", "summary", "fail", detail="; ".join(parts) + "; TURN credentials refused everywhere",
                         advice="no relay path: clients behind strict NATs or firewalls cannot connect; the TURN "
                         "server does not accept the credentials Orga issues", data=data))
    elif not working:
        report.add(Check("ice", "summary", "fail", detail="; ".join(parts),
                         advice="no STUN/TURN server is reachable from this host over any transport", data=data))
    elif failing:
        report.add(Check("ice", "summary", "warn", detail="; ".join(parts),
                         advice="clients on networks like this one connect over "
                         + ", ".join(t.upper() for t in working), blocking=False, data=data))
    else:
        report.add(Check("ice", "summary", "ok", detail="; ".join(parts), data=data))


# -- the team's own route --------------------------------------------------------------------------------------------


def _nulls_or_snake(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if value is None:
        found.append(f"{path or 'body'} is null")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "_" in str(key):
                found.append(f"{where} is snake_case")
            found.extend(_nulls_or_snake(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_nulls_or_snake(item, f"{path}[{index}]"))
    return found


def route_shape_problems(body: Any) -> list[str]:
    """What in a route's JSON Orga's client SDKs would refuse or trip over (empty when the shape is right)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems = []
    token = body.get("ephemeralToken")
    if not isinstance(token, str) or not token:
        problems.append("ephemeralToken is missing or not a non-empty string")
    servers = body.get("iceServers")
    if not isinstance(servers, list) or not servers:
        problems.append("iceServers is missing or not a non-empty array")
    else:
        for index, server in enumerate(servers):
            urls = server.get("urls") if isinstance(server, dict) else None
            listed = isinstance(urls, list) and bool(urls) and all(isinstance(u, str) for u in urls)
            if not (isinstance(urls, str) or listed):
                problems.append(f"iceServers[{index}].urls is not a string or an array of strings")
    problems.extend(_nulls_or_snake(body))
    return problems


def route_advice(status: int, code: str | None, options: DoctorOptions, request_id: str | None) -> str:
    """What to do about a route that did not answer 200: the refusal's code says which setting is at fault."""
    log_line = (f"the route's log line for request id {request_id}" if request_id
                else "the route's log (it sent no X-Request-ID)")
    if code == "origin_not_allowed":
        return (f"the route refuses Origin {options.origin}: add that exact origin to the route's CORS allowlist "
                "(orga-ai serve: --cors-origin / ORGA_PROXY_CORS_ORIGIN)")
    if code == "principal_denied":
        return f"the deny list refuses this caller (--deny-file); see {log_line}"
    if status in (401, 403):
        if not options.route_headers:
            return "the route wants credentials: pass --header 'Authorization: Bearer ...' as your app would"
        sent = ", ".join(sorted(name for name, _ in options.route_headers))
        return (f"the route refused the credentials sent ({sent}): check that they are valid, current and meant for "
                f"this route (a token that expired, another secret); see {log_line}")
    if status == 404:
        return f"nothing is served at this path: check the --route URL against the route's path; see {log_line}"
    return f"see {log_line}"


async def check_route(report: Report, options: DoctorOptions) -> None:
    import aiohttp

    assert options.route is not None
    headers = dict(options.route_headers)
    if options.origin:
        headers["Origin"] = options.origin
    names = ", ".join(sorted(headers)) or "none"
    started = time.perf_counter()
    try:
        timeout = aiohttp.ClientTimeout(total=options.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            options.route, headers=headers, allow_redirects=False
        ) as response:
            raw = await response.content.read(256 * 1024)
            status = response.status
            got = {k.lower(): v for k, v in response.headers.items()}
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        report.add(Check("route", "status", "fail", time.perf_counter() - started,
                         f"{options.route}: {type(exc).__name__}: {str(exc)[:120]}",
                         "is the route running and reachable from here?"))
        return
    took = time.perf_counter() - started
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if status != 200:
        code = body.get("error", {}).get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) \
            else None
        report.add(Check("route", "status", "fail", took,
                         f"HTTP {status}{f' ({code})' if code else ''}; headers sent: {names}",
                         route_advice(status, code, options, got.get("x-request-id")),
                         data={"status": status, "requestId": got.get("x-request-id")}))
        return
    report.add(Check("route", "status", "ok", took, f"HTTP 200 in {_ms(took)}; headers sent: {names}",
                     data={"status": status, "requestId": got.get("x-request-id")}))
    cache = got.get("cache-control", "")
    if "no-store" in cache.lower():
        report.add(Check("route", "no-store", "ok", detail=f"Cache-Control: {cache}"))
    else:
        report.add(Check("route", "no-store", "fail", detail=f"Cache-Control: {cache or '(none)'}",
                         advice="credentials must never be cached: send Cache-Control: no-store"))
    problems = route_shape_problems(body)
    if problems:
        report.add(Check("route", "JSON shape", "fail", detail="; ".join(problems[:5]),
                         advice="return SessionConfig.to_client_json(): camelCase, no nulls"))
    else:
        keys = ", ".join(sorted(body))
        report.add(Check("route", "JSON shape", "ok", detail=f"camelCase, no nulls ({keys})"))
    if options.origin:
        allowed = got.get("access-control-allow-origin")
        if allowed == options.origin:
            report.add(Check("route", "CORS", "ok", detail=f"Access-Control-Allow-Origin: {allowed}"))
        else:
            report.add(Check("route", "CORS", "fail", detail=f"Access-Control-Allow-Origin: {allowed or '(none)'} "
                             f"for Origin {options.origin}",
                             advice="add the page's exact origin to the route's CORS allowlist (--cors-origin)"))


# -- the run ---------------------------------------------------------------------------------------------------------


async def run_checks(options: DoctorOptions) -> Report:
    """Every check, in order; a failure of a step the next ones need skips them."""
    report = Report()
    settings = check_config(report, options)
    if settings is not None and await check_network(report, settings, options.timeout):
        config = await check_session(report, settings, options)
        if config is not None:
            await check_ice(report, config, options.ice_timeout)
            if options.call:
                from ._call import check_call

                await check_call(report, settings, options.timeout)
    if options.route:
        await check_route(report, options)
    return report
