"""The route's ICE policy: ``create_app(ice_policy=...)``, ``orga-ai serve --ice-*`` (flags and ORGA_PROXY_*), and an
adapter (Flask), against an emulator that lists many ICE URLs; plus ``refreshAfter`` in the route's JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orga_ai import IcePolicy
from orga_ai.emulator import EmulatorConfig
from orga_ai.proxy._settings import ice_policy, resolve
from orga_ai.testing import RunningEmulator, run_emulator
from tests.client.test_ice_policy import BAD_PORT, STUN, TURN_TCP, TURN_UDP, TURNS, urls_of

from .conftest import ProxyFactory
from .test_route import ROUTE
from .test_serve import replicas

SECRET = "ice-policy-shared-secret-0123456789"


@pytest.fixture(scope="module")
def many_urls() -> Iterator[RunningEmulator]:
    config = EmulatorConfig(stun_urls=(STUN, STUN, BAD_PORT), turn_urls=(TURN_UDP, TURN_TCP, TURNS))
    with run_emulator(config) as running:
        yield running


@pytest.fixture
def proxy_many(many_urls: RunningEmulator, proxy: ProxyFactory) -> ProxyFactory:
    def factory(**kwargs: Any) -> httpx.Client:
        kwargs.setdefault("orga_options", {"api_key": many_urls.api_key, "base_url": many_urls.base_url})
        return proxy(allow_anonymous=True, **kwargs)

    return factory


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, [STUN, STUN, BAD_PORT, TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(), [STUN, TURN_UDP, TURN_TCP, TURNS]),
        (IcePolicy(relay_only=True), [TURN_UDP, TURN_TCP, TURNS]),
        ({"transports": ["tcp"]}, [TURN_TCP]),
        (IcePolicy(max_servers=2), [STUN, TURN_UDP]),
        (IcePolicy(dedupe=False), [STUN, STUN, TURN_UDP, TURN_TCP, TURNS]),
    ],
)
def test_each_option_through_the_route(proxy_many: ProxyFactory, policy: Any, expected: list[str]) -> None:
    response = proxy_many(ice_policy=policy).get(ROUTE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert urls_of(body["iceServers"]) == expected
    assert set(body) == {"ephemeralToken", "iceServers", "expiresAt", "refreshAfter"}


def test_route_json_carries_refresh_after_before_expires_at(proxy_many: ProxyFactory) -> None:
    body = proxy_many().get(ROUTE).json()
    expires = dt.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    refresh = dt.datetime.fromisoformat(body["refreshAfter"].replace("Z", "+00:00"))
    turn_expiry = min(int(s["username"].split(":")[0]) for s in body["iceServers"] if "username" in s)
    assert refresh < expires and refresh.timestamp() < turn_expiry
    assert (expires - refresh).total_seconds() <= 60


def test_a_policy_that_leaves_nothing_is_a_500_in_words(
    proxy: ProxyFactory, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The default emulator hands out TURN over UDP only: asking for TLS leaves nothing a client could use.
    client = proxy(allow_anonymous=True, ice_policy=IcePolicy(transports={"tls"}))
    response = client.get(ROUTE)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "proxy_misconfigured"
    assert "ICE policy" in caplog.text and "left none" in caplog.text


def test_a_policy_that_leaves_nothing_logs_one_line_and_stops_spending_tokens(
    proxy: ProxyFactory, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = proxy(allow_anonymous=True, ice_policy=IcePolicy(transports={"tls"}))
    minted = emulator.stats()["tokens_issued"]
    statuses = [client.get(ROUTE).status_code for _ in range(3)]
    assert statuses == [500, 500, 500]
    # Only the first request asked Orga: the next ones, within the retry window, spend no token.
    assert emulator.stats()["tokens_issued"] == minted + 1
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "orga_ai.proxy"]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    assert "unexpected error" not in caplog.text and "Traceback" not in caplog.text
    assert "refusing for 30 s without asking Orga" in errors[0].getMessage()


def test_serve_settings_build_the_policy() -> None:
    env = {"ORGA_PROXY_ICE_TRANSPORT": "tcp,tls", "ORGA_PROXY_ICE_MAX_SERVERS": "3"}
    assert ice_policy(resolve({}, env)) == IcePolicy(transports={"tcp", "tls"}, max_servers=3)
    assert ice_policy(resolve({"ice_relay_only": True}, {"ORGA_PROXY_ICE_DEDUPE": "0"})) == IcePolicy(
        relay_only=True, dedupe=False
    )
    assert ice_policy(resolve({}, {})) is None


def test_function_entry_points_read_the_same_variables() -> None:
    from orga_ai.integrations._function import FunctionConfigurationError, policy_from_env

    env = {"ORGA_PROXY_SHARED_SECRET": SECRET, "ORGA_PROXY_ICE_RELAY_ONLY": "1"}
    assert policy_from_env(env).ice_policy == IcePolicy(relay_only=True)
    assert policy_from_env({"ORGA_PROXY_SHARED_SECRET": SECRET}).ice_policy is None
    with pytest.raises(FunctionConfigurationError, match="unknown ICE transport"):
        policy_from_env({"ORGA_PROXY_SHARED_SECRET": SECRET, "ORGA_PROXY_ICE_TRANSPORT": "quic"})


def test_serve_applies_flags_and_environment(many_urls: RunningEmulator) -> None:
    env = {"ORGA_PROXY_SHARED_SECRET": SECRET, "ORGA_PROXY_ICE_MAX_SERVERS": "2"}
    headers = {"Authorization": f"Bearer {SECRET}"}
    with replicas(many_urls, 1, "--ice-relay-only", "--ice-transport", "udp", "--ice-transport", "tls", env=env) as (
        replica,
    ):
        relay = httpx.get(replica.url + ROUTE, headers=headers)
    assert relay.status_code == 200, relay.text
    assert urls_of(relay.json()["iceServers"]) == [TURN_UDP, TURNS]
    with replicas(many_urls, 1, env=env) as (replica,):
        capped = httpx.get(replica.url + ROUTE, headers=headers)
    assert urls_of(capped.json()["iceServers"]) == [STUN, TURN_UDP]
    assert "ICE policy" in "".join(replica.stderr)


def test_flask_adapter_passes_the_policy_through(many_urls: RunningEmulator) -> None:
    from flask import Flask

    from orga_ai.integrations.flask import create_blueprint
    from tests.integrations.conftest import serve_wsgi

    blueprint = create_blueprint(
        orga_options={"api_key": many_urls.api_key, "base_url": many_urls.base_url},
        allow_anonymous=True,
        ice_policy=IcePolicy(relay_only=True, transports={"tcp", "tls"}),
    )
    try:
        app = Flask(__name__)
        app.register_blueprint(blueprint)
        with serve_wsgi(app) as url:
            response = httpx.get(url + ROUTE)
    finally:
        blueprint.close()
    assert response.status_code == 200, response.text
    assert urls_of(response.json()["iceServers"]) == [TURN_TCP, TURNS]
    assert "refreshAfter" in response.json()
