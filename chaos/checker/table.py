"""The checker's verdict as a plain-text table and as JSON."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from chaos.checker.invariants import CheckReport

_STATUS = {True: "PASS", False: "FAIL", None: "info"}


def render(report: CheckReport, *, width: int = 110) -> str:
    name_width = max(len(row.name) for row in report.rows)
    measured_width = min(48, max(len(row.measured) for row in report.rows))
    rule = "-" * min(width + 20, name_width + measured_width + 12)
    lines = [rule, f"{'':4}  {'invariant':<{name_width}}  measured", rule]
    for row in report.rows:
        lines.append(f"{_STATUS[row.ok]:<4}  {row.name:<{name_width}}  {row.measured}")
        if row.ok is False or row.ok is None:
            for detail in row.detail:
                for part in textwrap.wrap(detail, width=width - 8) or [""]:
                    lines.append(f"{'':6}  - {part}" if part is not None else "")
    lines.append(rule)
    verdict = "ALL INVARIANTS HOLD" if report.ok else f"{len(report.failed)} INVARIANT(S) FAIL"
    figures = report.figures
    lines.append(
        f"{verdict}: {figures.get('declarations')} declarations, "
        f"{figures.get('versions_submitted')} versions, {figures.get('decisions')} decisions, "
        f"{figures.get('lost')} lost, {figures.get('duplicates')} duplicated, "
        f"ledger deviation {figures.get('ledger_deviation')}, "
        f"{sum(dict(figures.get('faults', {})).values())} faults"
        + (f", {figures['time_s']:.0f} s" if figures.get("time_s") else "")
    )
    return "\n".join(lines)


def as_json(report: CheckReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        **report.figures,
        "invariants": [
            {
                "name": row.name,
                "status": _STATUS[row.ok],
                "measured": row.measured,
                "detail": list(row.detail),
            }
            for row in report.rows
        ],
    }


def save(report: CheckReport, path: Path, extra: dict[str, Any] | None = None) -> None:
    path.write_text(json.dumps({**as_json(report), **(extra or {})}, indent=2, default=str) + "\n")
