"""The CLI in a base install (no extras): every subcommand's --help works, and running one says in one line which
extra to install and exits 2. The extras are made unimportable in a fresh interpreter by a meta-path finder that
refuses them, as if they were not installed; orga-ai's own code runs unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orga_ai.cli import _SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
EXTRAS_MODULES = (
    "starlette", "uvicorn", "jwt", "limits", "redis", "prometheus_client", "orjson", "fastapi", "flask", "django",
    "aiortc", "av", "uvloop", "httptools", "aioice",
)
BLOCKER = f"""
import importlib.abc, sys

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
from orga_ai.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_base(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env["ORGA_API_KEY"] = "sk_orga_ai_base_install_test"
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_the_blocker_really_blocks() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER.replace("from orga_ai.cli import main", "import starlette"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "No module named 'starlette'" in result.stderr


@pytest.mark.parametrize("command", ["session", *(command for command, _, _ in _SUBCOMMANDS)])
def test_help_works_for_every_subcommand(command: str) -> None:
    result = run_base(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: orga-ai " + command in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["emulator"], "orga-ai[emulator]"),
        (["emulator", "--port", "0"], "orga-ai[emulator]"),
        (["serve", "--allow-anonymous", "--port", "0"], "orga-ai[proxy]"),
        (["dev"], "orga-ai[all]"),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_2(args: list[str], extra: str) -> None:
    result = run_base(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"pip install '{extra}'" in lines[0] and "Traceback" not in result.stderr
