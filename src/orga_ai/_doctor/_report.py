"""The doctor's results: one :class:`Check` per thing tested, and the :class:`Report` that renders them as a table or
JSON and decides the exit code. Pure data and formatting, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Check", "Report", "Verdict"]

Verdict = Literal["ok", "warn", "fail", "skip"]

_MARKS: dict[str, str] = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@dataclass(slots=True)
class Check:
    """One verdict.

    Attributes:
        group: ``config``, ``network``, ``key``, ``clock``, ``ice`` or ``route``.
        name: what was checked, e.g. ``turn:host:3478 over TCP``.
        verdict: ``ok``, ``warn``, ``fail`` or ``skip``.
        seconds: how long the check took, when it measured something.
        detail: what was found, in one line; never a secret (fingerprints only).
        advice: on a warning or a failure, one sentence on what to do.
        blocking: whether a failure means no session can be set up (exit 1); a single ICE path failing does not.
            ``--json`` shows it true on failures only: an ``ok`` or ``skip`` line blocks nothing.
        data: machine-readable facts for ``--json``.
    """

    group: str
    name: str
    verdict: Verdict
    seconds: float | None = None
    detail: str = ""
    advice: str = ""
    blocking: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group, "name": self.name, "verdict": self.verdict}
        if self.seconds is not None:
            out["ms"] = round(self.seconds * 1000, 1)
        if self.detail:
            out["detail"] = self.detail
        if self.advice:
            out["advice"] = self.advice
        out["blocking"] = self.blocking and self.verdict == "fail"  # only a failure can block a session
        if self.data:
            out["data"] = self.data
        return out


@dataclass(slots=True)
class Report:
    """Every check of one run, in order."""

    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def ok(self) -> bool:
        """True when nothing blocking failed: a session can be set up from this host."""
        return not any(c.verdict == "fail" and c.blocking for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        counts = {verdict: sum(1 for c in self.checks if c.verdict == verdict) for verdict in _MARKS}
        return {"ok": self.ok, "exitCode": self.exit_code, "counts": counts,
                "checks": [c.to_json() for c in self.checks]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False)

    def table(self) -> str:
        """The human report: one line per check (verdict, group, name, time, detail), advice indented below."""
        rows = []
        for c in self.checks:
            took = "" if c.seconds is None else f"{c.seconds * 1000:.0f} ms"
            rows.append((_MARKS[c.verdict], c.group, c.name, took, c.detail, c.advice))
        widths = [max([len(r[i]) for r in rows] + [0]) for i in range(4)]
        lines = []
        for mark, group, name, took, detail, advice in rows:
            line = (f"{mark:<{widths[0]}}  {group:<{widths[1]}}  {name:<{widths[2]}}  {took:>{widths[3]}}  "
                    f"{detail}").rstrip()
            lines.append(line)
            if advice:
                lines.append(" " * (widths[0] + 2) + f"-> {advice}")
        failed = [c for c in self.checks if c.verdict == "fail" and c.blocking]
        if failed:
            lines.append(f"\nRESULT: a session cannot be set up from this host ({len(failed)} blocking failure(s)).")
        else:
            warned = sum(1 for c in self.checks if c.verdict in ("warn", "fail"))
            tail = f", {warned} warning(s)" if warned else ""
            lines.append(f"\nRESULT: a session can be set up from this host{tail}.")
        return "\n".join(lines)
