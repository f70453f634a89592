"""Every ```python block of README.md and docs/*.md runs as written, against the emulator.

Each block runs in its own interpreter (a fresh process, so one block's Django settings or event loop never leak into
the next), in a temporary working directory, with ``ORGA_BASE_URL`` and ``ORGA_API_KEY`` pointing at a running
emulator. A block preceded by the line ``<!-- snippet: skip -->`` is a fragment (a settings.py excerpt, a file that
needs a platform) and is not run; the test that lists the blocks keeps that escape hatch honest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orga_ai.testing import RunningEmulator

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARKER = "<!-- snippet: skip -->"
_FENCE = re.compile(r"^```python[ \t]*$")


@dataclass(frozen=True)
class Snippet:
    """One fenced python block: where it is, its code, and whether the skip marker precedes it."""

    path: Path
    line: int
    code: str
    skipped: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract(path: Path) -> list[Snippet]:
    """The ```python blocks of one Markdown file (line numbers 1-based, of the opening fence)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    index = 0
    while index < len(lines):
        if _FENCE.match(lines[index]):
            start = index
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            previous = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
            found.append(Snippet(path, start + 1, "\n".join(body) + "\n", previous == SKIP_MARKER))
        index += 1
    return found


def all_snippets() -> list[Snippet]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [snippet for path in files for snippet in extract(path)]


SNIPPETS = all_snippets()


def test_the_extractor_finds_blocks_and_honours_the_skip_marker(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nprint(1)\n```\n\n<!-- snippet: skip -->\n\n```python\nsettings = 1\n```\n```sh\nls\n```\n"
    )
    first, second = extract(page)
    assert (first.line, first.code, first.skipped) == (2, "print(1)\n", False)
    assert (second.line, second.code, second.skipped) == (8, "settings = 1\n", True)
    assert len(SNIPPETS) >= 5, "README.md alone has more python blocks than that"


def test_most_snippets_run() -> None:
    """The skip marker stays the exception: the main SDK examples must never be skipped."""
    skipped = [s for s in SNIPPETS if s.skipped]
    assert len(skipped) * 3 <= len(SNIPPETS), [s.id for s in skipped]
    readme_sdk = [s for s in SNIPPETS if s.path.name == "README.md" and "OrgaAI(" in s.code]
    assert readme_sdk and not any(s.skipped for s in readme_sdk)


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if not s.skipped], ids=lambda s: s.id)
def test_snippet_runs(snippet: Snippet, emulator: RunningEmulator, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORGA_", "DJANGO_"))}
    env |= {"ORGA_BASE_URL": emulator.base_url, "ORGA_API_KEY": emulator.api_key}
    # The worktree's sources first, as the test run itself sees them.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{snippet.id} failed:\n{snippet.code}\n--- stderr ---\n{result.stderr}"
    # A block that leaves an unclosed session or a never-awaited coroutine behind is not an example to copy.
    for noise in ("Unclosed client session", "was never awaited", "Task was destroyed"):
        assert noise not in result.stderr, f"{snippet.id}: {noise}\n{result.stderr}"
