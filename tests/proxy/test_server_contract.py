"""The uvicorn internals ``orga-ai serve``'s protocol class relies on (``orga_ai/proxy/_server.py``), checked against
the installed release: a uvicorn that renames one, or changes a method whose behaviour the class builds on, fails
here rather than in production. When this fails after an upgrade: read the new methods, adjust the class, run
``tests/adversarial`` and ``tests/proxy/test_server_limits.py``, then record the new fingerprints below.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import textwrap

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.supervisors import Multiprocess

from orga_ai.proxy._server import LimitedConfig, LimitedHttpToolsProtocol, ServerLimits

# ast-normalised source of each uvicorn method the class overrides or builds on, in the releases it was checked
# against (uvicorn 0.53.0 - 0.55.0: identical).
KNOWN = {
    "__init__": {"ef1b7c9c78"},
    "connection_made": {"52a70c6785"},
    "connection_lost": {"8a5a84898d"},
    "data_received": {"8583b7d501"},  # replaced: _parse/_feed keep its error handling (400, upgrade)
    "on_headers_complete": {"f5d7f89383"},  # queues a request behind an unanswered one, pausing reading
    "on_body": {"04bff947c3"},
    "on_message_complete": {"4ce97e51d9"},
    "on_response_complete": {"3b835da51f"},  # resumes reading, starts the queued request or arms the timer
}


def fingerprint(function: object) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return hashlib.sha256(ast.unparse(tree.body[0]).encode()).hexdigest()[:10]


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_uvicorn_methods_the_protocol_builds_on_are_the_ones_it_was_written_against(name: str) -> None:
    found = fingerprint(getattr(HttpToolsProtocol, name))
    assert found in KNOWN[name], f"uvicorn {uvicorn.__version__} changed HttpToolsProtocol.{name} ({found})"


def test_the_attributes_the_protocol_uses_exist() -> None:
    config = LimitedConfig(lambda scope, receive, send: None, limits=ServerLimits.defaults(), lifespan="off")
    config.load()
    from uvicorn.server import ServerState

    loop = asyncio.new_event_loop()
    try:
        protocol = LimitedHttpToolsProtocol(config, ServerState(), {}, loop)
    finally:
        loop.close()
    for attribute in (
        "timeout_keep_alive",
        "timeout_keep_alive_task",
        "connections",
        "parser",
        "cycle",
        "pipeline",
        "flow",
        "loop",
        "logger",
        "server_state",
    ):
        assert hasattr(protocol, attribute), attribute
    for method in ("timeout_keep_alive_handler", "_unset_keepalive_if_required", "send_400_response"):
        assert callable(getattr(protocol, method)), method
    cycle_init = inspect.getsource(RequestResponseCycle.__init__)
    for attribute in ("response_started", "response_complete", "disconnected", "message_event"):
        assert f"self.{attribute}" in cycle_init, attribute
    from uvicorn.protocols.http.flow_control import FlowControl

    for method in ("pause_reading", "resume_reading", "pause_writing", "resume_writing"):
        assert callable(getattr(FlowControl, method)), method  # what the protocol calls on its .flow


def test_the_supervisor_takes_config_and_sockets() -> None:
    # serve_forever calls Multiprocess(config, sockets=[...]); uvicorn 0.30-0.50 wanted (config, target, sockets).
    assert list(inspect.signature(Multiprocess.__init__).parameters) == ["self", "config", "sockets"]
