"""The published Node SDK, ``@orga-ai/node``, gets a session config from the emulator.

It is the reference implementation of the server SDK: it sends the legacy ``?email=`` query, reads only the API
form's ``ephemeral_token``, and takes the emulator's address through its ``baseUrl`` option.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jwt
import pytest

from orga_ai.testing import RunningEmulator
from tests.support import npm_project, require_binary

pytestmark = [pytest.mark.slow, pytest.mark.node]

PACKAGE = "@orga-ai/node@1.0.0-beta.1"

SCRIPT = """
const { OrgaAI } = require("@orga-ai/node");

async function main() {
  const base = { userEmail: "dev@example.com", baseUrl: process.env.ORGA_BASE_URL, timeout: 5000 };
  const config = await new OrgaAI({ ...base, apiKey: process.env.ORGA_API_KEY }).getSessionConfig();
  let refused = null;
  try {
    await new OrgaAI({ ...base, apiKey: "sk_orga_ai_not_a_key" }).getSessionConfig();
  } catch (error) {
    refused = { name: error.constructor.name, message: error.message };
  }
  console.log(JSON.stringify({ config, refused }));
}

main().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="module")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway npm project with the published package installed."""
    # --legacy-peer-deps: the package lists `node` itself as a peer dependency, which npm would otherwise install
    # (a Node binary download). --ignore-scripts: nothing here needs install scripts.
    folder = npm_project(tmp_path_factory.mktemp("orga-node"), PACKAGE, "--ignore-scripts", "--legacy-peer-deps")
    (folder / "check.js").write_text(SCRIPT)
    return folder


def test_node_sdk_gets_a_session_config(node_project: Path, emulator: RunningEmulator) -> None:
    node = require_binary("node")
    env = {**os.environ, "ORGA_BASE_URL": emulator.base_url, "ORGA_API_KEY": emulator.api_key}
    result = subprocess.run(
        [node, "check.js"], cwd=node_project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])

    config = outcome["config"]
    claims = jwt.decode(config["ephemeralToken"], emulator.config.jwt_secret, algorithms=["HS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["scope"] == "realtime"
    stun, turn = config["iceServers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["username"] == f"{claims['exp']}:{claims['jti']}"
    # Its only error mapping: 401 -> OrgaAIAuthenticationError.
    assert outcome["refused"]["name"] == "OrgaAIAuthenticationError"

    token_request, ice_request, refused_request = emulator.requests()
    assert token_request["query_params"] == ["email"]  # the legacy query, accepted and ignored
    assert token_request["idempotency_key"] is None  # it sends none (ours does)
    assert ice_request["status"] == 200
    assert refused_request["status"] == 401
