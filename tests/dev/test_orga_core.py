"""The proxy route's JSON, as served by ``orga-ai dev``, passes Orga's own client-side validation.

The published ``@orga-ai/core`` exports ``fetchSessionConfig(endpoint)``: a plain ``fetch`` (GET, no headers) that
throws unless the answer is 200 with a truthy ``ephemeralToken`` and ``iceServers``. We install it with npm into a
temporary directory and call it with Node against the live route.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.dev.conftest import DevServer
from tests.support import npm_project

pytestmark = [pytest.mark.node, pytest.mark.slow]

CORE_PACKAGE = "@orga-ai/core@1.0.0"

# Calls the package's own fetchSessionConfig on each URL given and prints one JSON line per call.
SCRIPT = """
const core = require("@orga-ai/core");
(async () => {
  for (const url of process.argv.slice(1)) {
    try {
      console.log(JSON.stringify({ url, config: await core.fetchSessionConfig(url) }));
    } catch (error) {
      console.log(JSON.stringify({ url, error: error.message }));
    }
  }
})();
"""


@pytest.fixture(scope="module")
def orga_core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``@orga-ai/core`` installed from the npm registry."""
    return npm_project(tmp_path_factory.mktemp("orga-core"), CORE_PACKAGE)


def fetch_session_config(orga_core: Path, *urls: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["node", "-e", SCRIPT, *urls], cwd=orga_core, capture_output=True, text=True, timeout=30, check=True
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_orga_core_accepts_the_dev_proxy_route(orga_core: Path, dev_server: DevServer) -> None:
    route = dev_server.url + "/api/orga-client-secrets"
    # The control: the same function refuses the snake_case shape (what Orga's token endpoint itself answers),
    # so a pass below is the real validator agreeing, not a function that accepts anything.
    snake_case = "data:application/json," + json.dumps({"ephemeral_token": "x", "ice_servers": []})
    accepted, refused = fetch_session_config(orga_core, route, snake_case)

    assert "error" not in accepted, accepted
    config = accepted["config"]
    assert isinstance(config["ephemeralToken"], str) and config["ephemeralToken"].count(".") == 2  # a JWT
    # What @orga-ai/widget also checks, and what RTCPeerConnection takes: a list of {urls[, username, credential]}.
    assert isinstance(config["iceServers"], list) and config["iceServers"]
    for server in config["iceServers"]:
        assert set(server) <= {"urls", "username", "credential"}
        assert isinstance(server["urls"], (str, list))
        assert ("username" in server) == ("credential" in server)
        assert None not in server.values()

    assert refused == {"url": snake_case, "error": "Invalid response from session config endpoint"}
