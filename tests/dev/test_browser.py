"""The demo page of ``orga-ai dev`` in headless Chromium: the whole flow, the TURN-only path, and its error messages.

Chromium is Debian's (``executable_path``), driven by Python Playwright; nothing is downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dev.conftest import ARTIFACTS, CHROMIUM_ARGS, DevServer, start_dev
from tests.support import Coturn, require_binary

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_api = pytest.importorskip("playwright.sync_api")

# Playwright's own timeouts, in ms: connected takes well under a second here; gathering is capped at 5 s by the page.
STEP_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_binary("chromium")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Microphone granted: Chromium then exposes raw host IPs instead of .local names the emulator cannot resolve.
    context = browser.new_context(permissions=["microphone"])
    context.set_default_timeout(STEP_TIMEOUT_MS)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield opened
    finally:
        # Hang up before closing so the emulator's peer sees the end of the call, not a timeout.
        if not opened.is_closed():
            opened.evaluate("typeof hangUp === 'function' && hangUp()")
        context.close()
    assert not problems, problems


def open_demo(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def text(page: Any, selector: str) -> str:
    return str(page.inner_text(selector)).strip()


def wait_text(page: Any, selector: str, expected: Any) -> None:
    # expect() polls from Playwright's side: wait_for_function would eval a string, which the page's CSP forbids.
    playwright_api.expect(page.locator(selector)).to_have_text(expected, timeout=STEP_TIMEOUT_MS)


def wait_connected(page: Any) -> None:
    page.wait_for_selector('#events li[data-type="session.created"]')
    wait_text(page, "#connection-state", "connected")


def error_text(page: Any) -> str:
    page.wait_for_selector("#error:not([hidden])")
    return text(page, "#error")


def selected_local_candidate_type(page: Any) -> str:
    """The type of the local candidate of the pair the connection actually uses (host, srflx, prflx or relay)."""
    return str(
        page.evaluate(
            """async () => {
                const stats = await state.pc.getStats();
                let pairId = null;
                stats.forEach((r) => {
                    if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
                });
                const pair = stats.get(pairId);
                return stats.get(pair.localCandidateId).candidateType;
            }"""
        )
    )


def test_demo_page_runs_the_whole_flow(page: Any, dev_server: DevServer) -> None:
    open_demo(page, dev_server.url + "/")
    with page.expect_response("**/api/orga-client-secrets") as config_response:
        page.click("#start")
    session_config = config_response.value.json()
    wait_connected(page)

    # 1. the session config arrived and is shown with its secrets masked and its expiry counting down
    assert text(page, "#config-status") == "received"
    shown = text(page, "#config-json")
    assert session_config["ephemeralToken"] not in page.content()
    turn = [server for server in session_config["iceServers"] if "credential" in server]
    assert turn, "orga-ai dev hands out its coturn's TURN credentials"
    for server in turn:  # the username and the credential: the pair a relay accepts
        assert server["username"] not in page.content() and server["credential"] not in page.content()
    assert "masked" in shown and "iceServers" in shown
    assert text(page, "#expiry").startswith("in ")
    # 2. candidates were gathered and listed by type
    assert int(text(page, "#count-host")) > 0
    # 3. the offer went to the emulator's /v1/realtime/calls and the answer was applied
    assert text(page, "#call-status") == "answer applied"
    assert text(page, "#conversation-id").startswith("conv_")
    # 4. connected, with the greeting on the data channel
    assert text(page, "#channel-state") == "open"
    page.wait_for_selector('#events li[data-type="conversation.created"]')
    assert page.is_hidden("#error"), text(page, "#error")
    # The emulator echoes the fake microphone: the page counts the RTP packets coming back.
    wait_text(page, "#audio-status", re.compile(r"^receiving the echo"))

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dev-demo-page.png"), full_page=True)


def test_expired_token_is_explained_on_the_page(page: Any, dev_server: DevServer) -> None:
    open_demo(page, dev_server.url + "/")
    page.click("#fetch-only")
    wait_text(page, "#config-status", "received")
    # An hour passes on Orga's clock between fetching the config and using it.
    dev_server.advance_clock(3600)
    try:
        page.click("#connect-only")
        message = error_text(page)
    finally:
        dev_server.reset_emulator()
    assert "Step 3" in message and "expired" in message and "HTTP 401" in message, message
    assert text(page, "#call-status") == "failed"
    assert text(page, "#connection-state") != "connected"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dev-demo-expired-token.png"), full_page=True)


def test_proxy_unreachable_and_rate_limited_are_explained(page: Any, dev_server: DevServer) -> None:
    open_demo(page, dev_server.url + "/")
    page.route("**/api/orga-client-secrets", lambda route: route.abort("connectionrefused"))
    page.click("#start")
    message = error_text(page)
    assert "Step 1" in message and "proxy is unreachable" in message, message

    page.unroute("**/api/orga-client-secrets")
    page.route(
        "**/api/orga-client-secrets",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "7", "Content-Type": "application/json"},
            body=json.dumps({"error": {"code": "rate_limited", "message": "Too many requests."}}),
        ),
    )
    page.click("#start")
    wait_text(page, "#error", re.compile("Rate limited"))
    message = text(page, "#error")
    assert "HTTP 429" in message and "7 s" in message, message


@pytest.fixture(scope="module")
def relay_dev_server(coturn: Coturn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """``orga-ai dev`` whose emulator hands out STUN and TURN for the test's coturn, and whose route's ICE policy
    (``--ice-relay-only``) passes on the TURN URL only."""
    server = start_dev(
        tmp_path_factory.mktemp("relay"), "--turn-url", coturn.turn_urls()[0], "--turn-secret", coturn.secret,
        "--stun-url", f"stun:127.0.0.1:{coturn.port}", "--ice-relay-only",
    )
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.output()


def test_relay_only_connects_through_turn(page: Any, relay_dev_server: DevServer, coturn: Coturn) -> None:
    open_demo(page, relay_dev_server.url + "/?relay=1")
    assert text(page, "#policy-badge") == "ICE: relay only (TURN)"
    with page.expect_response("**/api/orga-client-secrets") as config_response:
        page.click("#start")
    wait_connected(page)
    # The emulator listed a STUN URL too; the route's relay_only policy kept it from the page.
    servers = config_response.value.json()["iceServers"]
    assert [server["urls"] for server in servers] == [[coturn.turn_urls()[0]]]
    assert int(text(page, "#count-relay")) > 0
    # iceTransportPolicy "relay" gathers nothing else, and the pair in use starts at our TURN allocation.
    assert text(page, "#count-host") == "0" and text(page, "#count-srflx") == "0"
    assert selected_local_candidate_type(page) == "relay"
    assert page.is_hidden("#error"), text(page, "#error")


def test_relay_only_fails_in_words_with_a_forged_turn_credential(page: Any, relay_dev_server: DevServer) -> None:
    # The negative control: the same path with the credential altered is refused by coturn (401), which shows the
    # connection above really depended on the credentials our stack minted.
    def forge(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for server in body["iceServers"]:
            if "credential" in server:
                server["credential"] = "forged" + server["credential"][6:]
        route.fulfill(response=response, body=json.dumps(body))

    open_demo(page, relay_dev_server.url + "/?relay=1")
    page.route("**/api/orga-client-secrets", forge)
    page.click("#start")
    message = error_text(page)
    assert "Step 2" in message and "no relay candidate" in message, message
    assert "401" in text(page, "#ice-warnings")


def test_without_coturn_the_builtin_stun_server_is_enough(page: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_dev(tmp_path_factory.mktemp("stun"), "--no-coturn")
    try:
        assert "built-in STUN responder" in server.output()
        open_demo(page, server.url + "/")
        page.click("#start")
        wait_connected(page)
        # The STUN server answered, so gathering completed instead of running into the page's 5 s cap.
        assert text(page, "#gathering-state") == "complete"
        assert text(page, "#count-relay") == "0"
        page.evaluate("hangUp()")
    finally:
        assert server.stop() == 0, server.output()
