from __future__ import annotations

from collections.abc import Iterator

import pytest

from orga_ai import _retry

# The emulator fixtures (`emulator`, reset before each test, and `emulator_server`, one per session), as users get them.
pytest_plugins = ["orga_ai.testing"]


@pytest.fixture(autouse=True)
def _clean_orga_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's ORGA_* variables unless it sets them itself."""
    import os

    for name in list(os.environ):
        if name.startswith("ORGA_"):
            monkeypatch.delenv(name)
    return


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    """Jittered backoff sleeps off by default (Retry-After is still honoured); tests that time it turn it on."""
    _retry.set_backoff_enabled(False)
    yield
    _retry.set_backoff_enabled(True)


@pytest.fixture(autouse=True)
def _restore_orga_loggers() -> Iterator[None]:
    """Undo what a test did to the package's loggers (an in-process `orga-ai serve` configures them), so one test's
    logging set-up never decides what the next one can observe."""
    import logging

    names = ("orga_ai", "orga_ai.proxy", "orga_ai.proxy.access")
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, logger.disabled, list(logger.handlers))
    yield
    for name, (level, propagate, disabled, handlers) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled

