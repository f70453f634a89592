"""The refusal reasons (401 challenge, JSON message, and the INFO line that goes to stderr when the app configured no
logging) are a new output surface: scanned for every canary secret, with credentials that share a prefix with the real
ones and JWTs signed with the app's real secret, so an echo would be found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .support import CANARY_APP_JWT_SECRET, CANARY_SHARED_SECRET, Canary, app_jwt

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from orga_ai.proxy import AnyOf, JWTAuth, ProxyCore, ProxyRequest, SharedSecretAuth

core = ProxyCore(authenticate=AnyOf(SharedSecretAuth(sys.argv[1]), JWTAuth(secret=sys.argv[2], audience="orga-tests")))
out = []
for token in json.loads(sys.argv[3]):
    request = ProxyRequest.from_pairs("GET", "/api/orga-client-secrets", [("authorization", "Bearer " + token)])
    response = core.handle_sync(request, None)
    out.append({"status": response.status, "headers": response.headers, "body": response.body.decode()})
print(json.dumps(out))
"""


def test_refusals_echo_no_secret(canary: Canary) -> None:
    now = int(time.time())
    tokens = [
        CANARY_SHARED_SECRET[:-4] + "XXXX",  # nearly the service secret
        app_jwt(aud="another-app"),
        app_jwt(exp=now - 3600, aud="orga-tests"),
        app_jwt(aud="orga-tests", secret="s" * 40),
        "a" * 9000,
    ]
    for token in tokens:
        canary.add(token, "caller credential")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, CANARY_SHARED_SECRET, CANARY_APP_JWT_SECRET, json.dumps(tokens)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["status"] for a in answers] == [401] * len(tokens)
    assert result.stderr.count("orga_ai.proxy.refused") == len(tokens)  # the stderr fallback did write them
    hits = canary.scan(result.stdout, "refusal response") + canary.scan(result.stderr, "refusal stderr")
    assert hits == 0, [h for h in canary.hits if h.source.startswith("refusal")]
