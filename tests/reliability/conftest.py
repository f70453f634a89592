"""The reliability suite's harness: the canary run, the emulator with known fake secrets, the scenario table.

The canary run: the emulator accepts one known fake API key and signs tokens and TURN credentials with known fake
secrets; every token and TURN credential seen on the wire or returned to a test is added to the canaries. The
root, orga_ai, httpx, httpcore and aiohttp loggers log at DEBUG into a handler for the whole session. After each
test, its log records, its captured stdout and stderr, the texts of the exceptions it saw (``timed()``) and the
error bodies and metrics it fed in are scanned for every canary, whole and by its first 12 characters. Any hit
fails the session. The table of scenarios (``report``) is printed at the end and written to
``artifacts/reliability.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from orga_ai.emulator import EmulatorConfig
from orga_ai.testing import RunningEmulator, run_emulator
from tests.reliability.support import (
    CANARY_API_KEY,
    CANARY_APP_JWT_SECRET,
    CANARY_JWT_SECRET,
    CANARY_SHARED_SECRET,
    CANARY_TURN_SECRET,
    LOGGERS,
    Canary,
    CanaryLogHandler,
    Report,
    artifacts_dir,
)

CANARY = Canary()
REPORT = Report()


def _scan_logs(texts: list[str]) -> None:
    test = REPORT.current_test or None
    for text in texts:
        CANARY.scan(text, "log", test)


_HANDLER = CanaryLogHandler(_scan_logs)

for _value, _label in (
    (CANARY_API_KEY, "api key"),
    (CANARY_TURN_SECRET, "turn secret"),
    (CANARY_JWT_SECRET, "orga jwt secret"),
    (CANARY_SHARED_SECRET, "proxy shared secret"),
    (CANARY_APP_JWT_SECRET, "app jwt secret"),
):
    CANARY.add(_value, _label)


@pytest.fixture(scope="session", autouse=True)
def _canary_logging(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every logger of the canary run at DEBUG into the canary handler, for this directory's tests only.

    A fixture, not pytest_configure/pytest_sessionstart hooks: hooks of a directory's conftest act on the whole session,
    which would put every other suite at DEBUG too. pytest's own log capture is lowered to WARNING meanwhile: it would
    keep every DEBUG record of a test in memory (hundreds of megabytes under load, and an RSS figure about pytest
    rather than about us); the canary handler sees everything.
    """
    plugin = request.config.pluginmanager.get_plugin("logging-plugin")
    handlers = [getattr(plugin, name, None) for name in ("caplog_handler", "report_handler")]
    saved_handler_levels = [(h, h.level) for h in handlers if h is not None]
    for handler, _ in saved_handler_levels:
        handler.setLevel(logging.WARNING)
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).disabled) for name in LOGGERS}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    logging.getLogger().addHandler(_HANDLER)
    yield
    _HANDLER.flush()
    logging.getLogger().removeHandler(_HANDLER)
    for name, (level, disabled) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).disabled = disabled
    for handler, level in saved_handler_levels:
        handler.setLevel(level)


@pytest.fixture(autouse=True)
def _canary_scope(request: pytest.FixtureRequest) -> Iterator[None]:
    """Scan what this test logged once it is over; rows it added carry its count of hits."""
    _HANDLER.flush()  # what was logged between tests (teardowns, collection) is scanned, and credited to nobody
    REPORT.current_test = request.node.nodeid
    first_row = len(REPORT.rows)
    yield
    nodeid = request.node.nodeid
    _HANDLER.flush()
    REPORT.current_test = ""
    for row in REPORT.rows[first_row:]:
        row.secrets = CANARY.by_test.get(nodeid, 0)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Captured stdout/stderr (uvicorn, warnings, anything printed) and the text of a failure's exception.
    for name, text in report.sections:
        if name.startswith("Captured stderr") or name.startswith("Captured stdout"):
            CANARY.scan(text, "stderr/stdout", report.nodeid)
    if report.failed:
        CANARY.scan(report.longreprtext, "exception", report.nodeid)
    hits = CANARY.by_test.get(report.nodeid, 0)
    if report.when == "teardown":
        for row in REPORT.rows:
            if row.test == report.nodeid:
                row.secrets = hits


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if CANARY.hits and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if not REPORT.rows:
        return
    table = REPORT.markdown(CANARY)
    terminalreporter.section("reliability")
    if CANARY.hits:
        by_label: dict[str, int] = {}
        for hit in CANARY.hits:
            key = f"{hit.label} ({hit.needle_kind}) in {hit.source}"
            by_label[key] = by_label.get(key, 0) + 1
        for key, count in sorted(by_label.items()):
            terminalreporter.write_line(f"CANARY FOUND: {key}: {count}", red=True)
    terminalreporter.write_line(table)
    path = artifacts_dir() / "reliability.md"
    path.write_text("# Reliability and security suite: results\n\n" + table + "\n")
    terminalreporter.write_line(f"(written to {path})")


# -- the emulator of the canary run ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[RunningEmulator]:
    config = EmulatorConfig(
        api_keys=(CANARY_API_KEY,),
        turn_secret=CANARY_TURN_SECRET,
        jwt_secret=CANARY_JWT_SECRET,
        quota_per_minute=0,
        max_logged_requests=2_000,
        stall_seconds=20.0,
    )
    with run_emulator(config) as running:
        yield running


@pytest.fixture
def emulator(emulator_server: RunningEmulator) -> RunningEmulator:
    emulator_server.reset()
    return emulator_server


@pytest.fixture
def canary() -> Canary:
    return CANARY


@pytest.fixture
def report() -> Report:
    return REPORT
