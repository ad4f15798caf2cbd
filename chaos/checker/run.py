"""Checking a chaos run's output folder against its still-running (quiet) stack.

The folder holds what the orchestrator wrote: ``run.json`` (where the stack is, which
faults were scheduled), ``manifest.jsonl`` (every version produced), ``events.jsonl``
(faults, process exits, the held-back reader) and ``partners/<authority>.json`` (the
documents loaded into each partner simulator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaos.checker.invariants import CheckReport, check, partner_document_references
from chaos.checker.model import load_events, load_manifest
from chaos.checker.sources import LiveSource, Source, observe
from chaos.checker.table import render, save

RUN_FILE = "run.json"
MANIFEST = "manifest.jsonl"
EVENTS = "events.jsonl"
PARTNERS = "partners"
RESULTS = "results.json"
DECISIONS = "decisions.jsonl"


def partner_documents(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((run_dir / PARTNERS).glob("*.json")):
        found[path.stem] = list(json.loads(path.read_text())["documents"])
    return found


def live_source(run_dir: Path) -> LiveSource:
    info = json.loads((run_dir / RUN_FILE).read_text())
    return LiveSource(
        bootstrap=info["bootstrap"],
        prefix=info["prefix"],
        keys_dir=Path(info["keys_dir"]),
        partner_urls=info["partner_urls"],
    )


def check_run(
    run_dir: Path,
    source: Source | None = None,
    *,
    elapsed_s: float | None = None,
    extra: dict[str, Any] | None = None,
) -> CheckReport:
    """Observe, check, print the table and save ``results.json``; the report."""
    info = json.loads((run_dir / RUN_FILE).read_text())
    observed = observe(
        source or live_source(run_dir), partner_document_references(partner_documents(run_dir))
    )
    with (run_dir / DECISIONS).open("w") as handle:  # for the post-mortem of a failed run
        for d in observed.decisions:
            handle.write(
                json.dumps(
                    {
                        "reference": d.reference,
                        "version": d.version,
                        "outcome": d.outcome,
                        "decided_at": d.decided_at,
                        "reasons": [code for code, _ in d.reasons],
                        "partition": d.partition,
                        "offset": d.offset,
                    }
                )
                + "\n"
            )
    report = check(
        load_manifest(run_dir / MANIFEST),
        observed,
        load_events(run_dir / EVENTS),
        required_faults=info.get("required_faults", ()),
        expected_declarations=info.get("declarations"),
        elapsed_s=elapsed_s if elapsed_s is not None else info.get("elapsed_s"),
    )
    print(render(report), flush=True)
    save(report, run_dir / RESULTS, extra)
    return report
