"""Fixtures of the attack suite: the open-file room of the server-limits tests, reused."""

from __future__ import annotations

from tests.proxy.test_server_limits import many_files

__all__ = ["many_files"]
