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
    "aiortc", "av", "uvloop", "aioice",
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


# -- every public module names its extra -----------------------------------------------------------------------------

IMPORTER = """
import importlib.abc, os, sys

BLOCKED = set(os.environ["BLOCKED_MODULES"].split(","))

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
statement = sys.argv[1]
try:
    exec(statement)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
print("imported")
"""


def import_base(statement: str, blocked: tuple[str, ...] = EXTRAS_MODULES, **env: str) -> tuple[int, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ORGA_")}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), full.get("PYTHONPATH", "")) if p)
    full["BLOCKED_MODULES"] = ",".join((*blocked, "httpx", "functions_framework", "opentelemetry"))
    full.update(env)
    result = subprocess.run(
        [sys.executable, "-c", IMPORTER, statement], env=full, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.strip()


# Every public module: what a base install says when it is imported (None: it imports, it needs no extra).
PUBLIC_MODULES = {
    "orga_ai": None,
    "orga_ai.proxy": None,
    "orga_ai.telemetry": None,
    "orga_ai.integrations": None,
    "orga_ai.integrations.functions": None,
    "orga_ai.integrations.aws_lambda": None,
    "orga_ai.realtime": None,  # importable without its extra; connect() names it (tests/realtime)
    "orga_ai.emulator": "emulator",
    "orga_ai.testing": "emulator",
    "orga_ai.integrations.fastapi": "fastapi",
    "orga_ai.integrations.flask": "flask",
    "orga_ai.integrations.aiohttp": "aiohttp",
    "orga_ai.integrations.django": "django",
    "orga_ai.integrations.django.urls": "django",
    "orga_ai.integrations.django.apps": "django",
    "orga_ai.integrations.gcp": "gcp",
}


def test_the_list_of_public_modules_is_complete() -> None:
    found = {"orga_ai"}
    for path in (ROOT / "src" / "orga_ai").rglob("*.py"):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts) and parts[-1] != "cli":
            found.add(".".join(parts))
    assert found == set(PUBLIC_MODULES)


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES))
def test_every_public_module_names_its_extra_in_one_line(module: str) -> None:
    code, out = import_base(f"import {module}")
    extra = PUBLIC_MODULES[module]
    if extra is None:
        assert (code, out) == (0, "imported")
        return
    assert code == 1 and len(out.splitlines()) == 1, out
    assert out.startswith("MissingExtraError: orga_ai."), out
    assert f"needs the {extra} extra (" in out and out.endswith(f"pip install 'orga-ai[{extra}]'"), out


@pytest.mark.parametrize(
    ("statement", "installed", "expected"),
    [
        # `pip install orga-ai fastapi`: the framework is there, the proxy's own dependencies are not.
        ("import orga_ai.integrations.fastapi", ("fastapi", "starlette"), "(prometheus_client is not installed)"),
        ("import orga_ai.integrations.flask as f; f.create_blueprint(allow_anonymous=True)", ("flask",),
         "orga_ai.integrations.flask needs the flask extra (prometheus_client is not installed)"),
        ("from orga_ai.proxy import create_app; create_app(allow_anonymous=True)", (),
         "orga_ai.proxy.create_app needs the proxy extra (starlette, prometheus_client, orjson are not installed)"),
        ("from orga_ai.proxy import JWTAuth; JWTAuth(secret='x' * 32)", (),
         "JWTAuth needs the proxy extra (jwt is not installed): pip install 'orga-ai[proxy]'"),
    ],
)
def test_a_partly_installed_extra_is_named_before_anything_fails(
    statement: str, installed: tuple[str, ...], expected: str
) -> None:
    code, out = import_base(statement, tuple(m for m in EXTRAS_MODULES if m not in installed))
    assert code == 1 and len(out.splitlines()) == 1 and "MissingExtraError" in out and expected in out, out


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ORGA_PROXY_JWT_SECRET": "j" * 32}, "jwt is not installed"),
        ({"ORGA_PROXY_SHARED_SECRET": "s" * 32, "ORGA_PROXY_REDIS_URL": "redis://127.0.0.1:1/0"},
         "limits, redis are not installed"),
    ],
)
@pytest.mark.parametrize(("module", "extra"), [("aws_lambda", "aws-lambda"), ("functions", "functions")])
def test_a_function_without_its_extra_says_so_in_one_line(
    env: dict[str, str], missing: str, module: str, extra: str
) -> None:
    # `orga-ai` instead of `orga-ai[aws-lambda]` in requirements.txt: the documented line, not a ModuleNotFoundError.
    build = "handler" if module == "aws_lambda" else "asgi_app()"
    statement = f"from orga_ai.integrations import {module}; {module}.{build}"
    code, out = import_base(statement, ORGA_API_KEY="sk_orga_ai_base_install_test", **env)
    assert code == 1, out
    assert out == f"FunctionConfigurationError: {missing}: pip install 'orga-ai[{extra}]'", out
