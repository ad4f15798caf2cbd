"""``gun-hub rollout show | set | report``: pilot, then generalise (ADR 0012).

Each authority's rollout mode (off, shadow, advice, enforce), everywhere or at one
customs office, is held by the hub (gun_hub/domain/rollout.py) and set through the officer
listener, audited (gun_hub/web/rollout.py). The command presents the officer's
credentials (``--credentials-file``, as ``gun-hub stats``) and prints what the hub answers.

Exit codes: 0 done; 2 refused (a bad parameter); 3 hub unreachable; 4 not authenticated;
5 not a rollout operator (``set``); 6 published but not applied by the worker that took it
within its wait (``set``: see ``rollout show``).
"""

from __future__ import annotations

import urllib.parse
from datetime import date
from pathlib import Path
from typing import Any

import typer

from gun_hub.cli.hub_client import (
    AS_JSON,
    CAFILE,
    CREDENTIALS_FILE,
    HUB_URL,
    OfficerClient,
    fail_as_hub_says,
    print_table,
)
from gun_hub.cli.terminal import as_json as json_text
from gun_hub.cli.terminal import shown
from gun_hub.domain.rollout import RolloutMode

app = typer.Typer(
    help="Rollout modes of the partner administrations: show them, set one, print the "
    "pilot report (officers; docs/rollout.md).",
    no_args_is_help=True,
)
_WHAT = "rollout modes"
NOT_APPLIED = 6


@app.command()
def show(
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
    as_json: bool = AS_JSON,
) -> None:
    """Each authority's mode everywhere, and the offices that have their own."""
    officer = OfficerClient(credentials_file, hub_url, cafile, _WHAT)
    code, body = officer.get("/rollout")
    if code != 200:
        fail_as_hub_says(code, body, "the hub refused")
    if as_json:
        typer.echo(json_text(body))
        return
    rows = []
    for authority, everywhere in body["authorities"].items():
        rows.append([authority, "(everywhere)", everywhere["mode"], *_set_by(everywhere["set"])])
        for office, at_office in everywhere["offices"].items():
            rows.append([authority, office, at_office["mode"], *_set_by(at_office["set"])])
    print_table(["authority", "office", "mode", "set by", "at", "reason"], rows)


def _set_by(described: dict[str, str] | None) -> list[str]:
    if described is None:
        return ["-", "-", "default"]
    return [described["by"], described["at"], described["reason"]]


@app.command("set")
def set_mode(
    authority: str = typer.Argument(help="The authority, as the routing table names it."),
    mode: RolloutMode = typer.Argument(help="off, shadow, advice or enforce."),
    reason: str = typer.Option(..., help="Why (kept in the audit trail)."),
    office: str | None = typer.Option(
        None, help="At this customs office only (e.g. FR000690); default: everywhere."
    ),
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
) -> None:
    """Set an authority's mode, everywhere or at one office (rollout operators only;
    audited). It applies to the declaration versions received after it."""
    officer = OfficerClient(credentials_file, hub_url, cafile, _WHAT)
    code, body = officer.post(
        "/rollout",
        {"authority": authority, "mode": mode.value, "reason": reason, "office": office},
    )
    if code != 200:
        fail_as_hub_says(code, body, f"{authority}: not set")
    where = f" at {body['office']}" if body.get("office") else " everywhere"
    typer.echo(shown(f"{body['authority']}{where}: {body['previous']} -> {body['mode']}"))
    if not body.get("applied"):
        # Not a success: a setting every worker refuses (dated before the one in force)
        # was taken for a mode in force by scripts reading the exit status (review of
        # stop 47).
        typer.echo(
            "published, but not applied by the hub worker that took it within its wait: "
            "check with `gun-hub rollout show` before relying on it",
            err=True,
        )
        raise typer.Exit(NOT_APPLIED)


@app.command()
def report(
    since: str | None = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, "--to", help="Last day (YYYY-MM-DD)."),
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
    as_json: bool = AS_JSON,
) -> None:
    """Per authority, office and mode: declarations seen, and in shadow mode the
    agreements and disagreements with the decision taken, and the reasons."""
    query = {}
    for name, value in (("from", since), ("to", until)):
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                typer.echo(f"--{name}: not a day (YYYY-MM-DD): {value!r}", err=True)
                raise typer.Exit(2) from None
            query[name] = value
    officer = OfficerClient(credentials_file, hub_url, cafile, _WHAT)
    code, body = officer.get(f"/rollout/report?{urllib.parse.urlencode(query)}")
    if code != 200:
        fail_as_hub_says(code, body, "the hub refused")
    if as_json:
        typer.echo(json_text(body))
        return
    rows = body["report"]
    if not rows:
        typer.echo("no decided declaration quoted a routed document in that period", err=True)
        return
    print_table(
        [
            "authority",
            "office",
            "mode",
            "declarations",
            "agree",
            "disagree",
            "would decide",
            "decided",
            "reasons",
        ],
        [_report_row(row) for row in rows],
    )


def _report_row(row: dict[str, Any]) -> list[Any]:
    shadow = row["mode"] == RolloutMode.SHADOW.value

    def counts(by: dict[str, int]) -> str:
        return ", ".join(f"{name} {count}" for name, count in by.items()) or "-"

    return [
        row["authority"],
        row["office"],
        row["mode"],
        row["declarations"],
        row["agreements"] if shadow else "-",
        row["disagreements"] if shadow else "-",
        counts(row["would_decide"]) if shadow else "-",
        counts(row["decided"]),
        counts(row["reasons"]),
    ]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="rollout")
