"""``gun-hub dlq list | show | redrive``: dead letters, through the officer listener.

The hub keeps the dead letters in its operations view, reads them back from the broker,
and holds the rules: who may see a payload, what can be redriven, and the audit of both
(gun_hub/web/dead_letters.py, ADR 0010). The command presents the officer's credentials
(``--credentials-file``, as ``gun-hub stats``) and prints what the hub answers.

An id is ``PARTITION:OFFSET`` of the dead letter in the dead-letter topic, as ``list``
prints it; ``gun.dlq/PARTITION/OFFSET`` works too.

Exit codes: 0 done; 1 no such dead letter (none matched); 2 refused (a bad parameter, a
dead letter that cannot be redriven, a sealed payload); 3 hub unreachable; 4 not
authenticated; 5 not a dead-letter operator (``--payload``, ``redrive``). ``redrive
--kind`` tries every dead letter of the kind, says each one not redriven and why, and ends
with its summary: exit 2 when the hub refused one, 3 when it did not answer for one.
"""

from __future__ import annotations

import base64
import os
import sys
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from gun_hub.cli.hub_client import (
    AS_JSON,
    CAFILE,
    CREDENTIALS_FILE,
    HUB_URL,
    NOT_FOUND,
    UNREACHABLE,
    HubUnanswered,
    OfficerClient,
    print_table,
)
from gun_hub.cli.hub_client import fail_as_hub_says as _fail
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.startup import settings_or_exit
from gun_hub.cli.terminal import as_json as json_text
from gun_hub.cli.terminal import shown
from gun_hub.ops.dead_letters import DeadLetterId, NotAFilter, NotAnId, parse_since

_REASON_CHARS = 60

app = typer.Typer(
    help="Dead letters: list them, show one, redrive them once the cause is fixed "
    "(officers; docs/operations.md).",
    no_args_is_help=True,
)

SINCE = typer.Option(
    None,
    help="Written since: a duration back from now (90m, 6h, 7d), a day (YYYY-MM-DD) or an "
    "ISO date and time (local time unless it has an offset).",
)
KIND = typer.Option(None, help="Of this kind only (e.g. ENVELOPE_UNKNOWN_KID).")
REFERENCE = typer.Option(None, help="About this declaration only.")


def _dead_letter_id(text: str) -> DeadLetterId:
    try:
        return DeadLetterId.parse(text, registry_for(settings_or_exit()).dlq)
    except NotAnId as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


def _query(
    since: str | None, kind: str | None, reference: str | None, **paging: int | str
) -> dict[str, str]:
    query = {name: str(value) for name, value in paging.items()}
    if since is not None:
        try:
            now = datetime.now().astimezone()
            query["since"] = parse_since(since, now, local=True).isoformat()
        except NotAFilter as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(2) from None
    if kind is not None:
        query["kind"] = kind
    if reference is not None:
        query["reference"] = reference
    return query


@app.command("list")
def list_dead_letters(
    since: str | None = SINCE,
    kind: str | None = KIND,
    reference: str | None = REFERENCE,
    limit: int | None = typer.Option(
        None, help="Rows (default and most: the hub's page sizes, 100 and 1000)."
    ),
    offset: int | None = typer.Option(None, help="Rows to skip (0: none)."),
    after: str | None = typer.Option(
        None,
        help="The page after this cursor (the '--after' the previous page ends with; dead "
        "letters the retention removes meanwhile shift no row, as offsets do).",
    ),
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
    as_json: bool = AS_JSON,
) -> None:
    """Dead letters, in the order the hub's view read them: id, time, kind, where the
    original was, and whether it can be redriven."""
    if after is not None and offset is not None:
        typer.echo("--offset and --after: one or the other (two places to start)", err=True)
        raise typer.Exit(2)
    officer = OfficerClient(credentials_file, hub_url, cafile, "dead letters")
    paging: dict[str, int | str] = {"offset": offset or 0}
    if after is not None:
        paging = {"after": after}
    paging |= {"limit": limit} if limit is not None else {}
    query = _query(since, kind, reference, **paging)
    code, body = officer.get(f"/dead-letters?{urllib.parse.urlencode(query)}")
    if code != 200:
        _fail(code, body, "the hub refused")
    if as_json:
        typer.echo(json_text(body))
        return
    rows = body["dead_letters"]
    if not rows:
        typer.echo("no dead letter matches" + _past(offset or 0, after), err=True)
    else:
        print_table(
            ["id", "at", "kind", "component", "reference", "source", "redrive", "reason"],
            [
                [
                    row["id"],
                    row["at"],
                    row["kind"],
                    row["component"],
                    row["reference"] or "-",
                    row["source"],
                    "yes" if row["redrivable"] else "no",
                    _short(row["reason"]),
                ]
                for row in rows
            ],
        )
    if body.get("next_after") is not None:  # none from a hub paging them by offset only
        typer.echo(f"(more: --after {body['next_after']})", err=True)
    elif body.get("next_offset") is not None:
        typer.echo(f"(more: --offset {body['next_offset']})", err=True)


def _past(offset: int, after: str | None) -> str:
    """What an empty page past the first means: the rows skipped were all there is."""
    if after is not None:
        return " after that cursor"
    return f" past the first {offset}" if offset else ""


@app.command()
def show(
    dead_letter: str = typer.Argument(help="PARTITION:OFFSET, as `gun-hub dlq list` prints it."),
    payload: bool = typer.Option(
        False,
        "--payload",
        help="Also print the value (dead-letter operators only; audited; never a value "
        "sealed to a party).",
    ),
    out: Path | None = typer.Option(
        None, help="With --payload: write the value's bytes to this file (mode 0600)."
    ),
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
    as_json: bool = AS_JSON,
) -> None:
    """One dead letter: what failed, why, where the original was, what its value is."""
    officer = OfficerClient(credentials_file, hub_url, cafile, "dead letters")
    named = _dead_letter_id(dead_letter)
    code, body = officer.get(f"/dead-letters/{named}")
    if code != 200:
        _fail(code, body, str(named))
    if as_json and not payload:
        typer.echo(json_text(body))
    elif not as_json:
        _print_dead_letter(body)
    if not payload:
        return
    code, answer = officer.post(f"/dead-letters/{named}/payload")
    if code != 200:
        _fail(code, answer, f"{named}: payload")
    if as_json:
        typer.echo(json_text({**body, "payload": answer}))
        return
    data = (
        base64.b64decode(answer["payload"])
        if answer["encoding"] == "base64"
        else answer["payload"].encode()
    )
    if out is not None:
        out.touch(mode=0o600, exist_ok=True)
        out.chmod(0o600)
        out.write_bytes(data)
        typer.echo(f"payload ({len(data)} bytes) written to {out}", err=True)
        return
    typer.echo(
        "payload"
        + (" (the head only: the original did not fit)" if answer["truncated"] else "")
        + ":"
    )
    if answer["encoding"] == "base64":
        typer.echo(answer["payload"])
    else:
        # A foreign producer's text: its lines as lines, any control sequence escaped
        # (the bytes as they are only with --out).
        text = shown(answer["payload"], multiline=True)
        sys.stdout.write(text + ("" if text.endswith("\n") else os.linesep))


@app.command()
def redrive(
    dead_letter: str | None = typer.Argument(
        None, help="PARTITION:OFFSET of one dead letter (or --kind)."
    ),
    kind: str | None = typer.Option(
        None, help="Every dead letter of this kind that can be redriven (instead of an id)."
    ),
    since: str | None = SINCE,
    reference: str | None = REFERENCE,
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
) -> None:
    """Republish a dead letter's original on its topic and partition, once its cause is
    fixed (dead-letter operators only; audited). Redriving again changes nothing: the
    hub reads a redrive as the original read again."""
    if (dead_letter is None) == (kind is None):
        typer.echo("give one dead letter id, or --kind", err=True)
        raise typer.Exit(2)
    if dead_letter is not None and (since is not None or reference is not None):
        typer.echo("--since and --reference narrow --kind, not an id", err=True)
        raise typer.Exit(2)
    officer = OfficerClient(credentials_file, hub_url, cafile, "dead letters")
    if dead_letter is not None:
        named = _dead_letter_id(dead_letter)
        code, body = officer.post(f"/dead-letters/{named}/redrive")
        if code != 200:
            _fail(code, body, str(named))
        _print_redriven(body)
        return
    assert kind is not None  # noqa: S101 - one of the two, checked above
    _redrive_kind(officer, kind, since, reference)


def _redrive_kind(
    officer: OfficerClient, kind: str, since: str | None, reference: str | None
) -> None:
    """Each original once (a dead letter redriven before and dead-lettered again has the
    same original): the dead letters that can be redriven, in the order they came. Of
    the dead letters about one original, the next is tried when the hub refuses one: any
    party can write a dead letter about any position, and a forged one listed first kept
    the genuine one from its redrive (review of stop 56)."""
    chosen: dict[str, list[str]] = {}  # source -> the dead letters about it, in order
    skipped = 0
    # By cursor: dead letters the retention removes while the pages are read shift none
    # (by offset, as many were skipped unsaid).
    # "6h back" taken once: taken for each page, the window's start moved on between
    # pages, and a dead letter at its edge fell out of it (a review of stop 58).
    chosen_by = _query(since, kind, reference)
    paging: dict[str, int | str] | None = {"offset": 0}
    while paging is not None:
        query = chosen_by | {name: str(value) for name, value in paging.items()}
        code, body = officer.get(f"/dead-letters?{urllib.parse.urlencode(query)}")
        if code != 200:
            _fail(code, body, "the hub refused")
        for row in body["dead_letters"]:
            if not row["redrivable"]:
                skipped += 1
                typer.echo(f"{row['id']}: not redriven: {shown(row['not_redrivable'])}", err=True)
            else:
                chosen.setdefault(row["source"], []).append(row["id"])
        paging = _next_page(body)
    if not chosen and not skipped:
        typer.echo(f"no dead letter of kind {kind} matches", err=True)
        raise typer.Exit(NOT_FOUND)
    failed = unanswered = 0
    for candidates in chosen.values():
        # Each original on its own: one the hub refuses every dead letter of, or does not
        # answer for in time, is said, and the others are still redriven; the summary
        # ends the run.
        outcome = _redrive_one_of(officer, candidates)
        if outcome == "unanswered":
            unanswered += 1
        elif outcome == "refused":
            failed += 1
    typer.echo(
        f"{len(chosen) - failed - unanswered} redriven, {skipped} cannot be redriven, "
        f"{failed} refused, {unanswered} not answered",
        err=True,
    )
    if unanswered:
        raise typer.Exit(UNREACHABLE)
    if failed:
        raise typer.Exit(2)


def _next_page(body: dict[str, Any]) -> dict[str, int | str] | None:
    """Where the page after ``body`` starts (None: it was the last): after its cursor, or
    at its offset from a hub that gives offsets only."""
    if body.get("next_after") is not None:
        return {"after": body["next_after"]}
    if body.get("next_offset") is not None:
        return {"offset": body["next_offset"]}
    return None


def _redrive_one_of(officer: OfficerClient, candidates: list[str]) -> str:
    """The first of ``candidates`` (dead letters about one original) the hub redrives:
    "redriven", "refused" (every one) or "unanswered"."""
    for named in candidates:
        try:
            code, body = officer.try_post(f"/dead-letters/{named}/redrive")
        except HubUnanswered as err:
            typer.echo(
                f"{named}: not redriven: the hub did not answer ({err.reason}); redriving it "
                "again is safe (the hub decides a redrive once)",
                err=True,
            )
            return "unanswered"
        if code in (401, 403):
            _fail(code, body, named)
        if code == 200:
            _print_redriven(body)
            return "redriven"
        error = body.get("error", code) if isinstance(body, dict) else code
        typer.echo(f"{named}: not redriven: {shown(error)}", err=True)
    return "refused"


def _print_redriven(body: dict[str, Any]) -> None:
    reference = f" ({body['reference']})" if body.get("reference") else ""
    typer.echo(shown(f"{body['id']}{reference}: {body['origin']} redriven as {body['redrive']}"))


def _print_dead_letter(body: dict[str, Any]) -> None:
    value = body["value"]
    form = value["form"]
    if form == "sealed":
        form = f"sealed to {value['sealed_to']} ({value['encryption']}): not shown"
    typer.echo(shown(f"dead letter {body['id']} ({body['dead_letter']}), written {body['at']}"))
    rows = [
        ["kind", f"{body['kind']} ({body['class'] or 'no class'})"],
        ["component", body["component"]],
        ["reference", body["reference"] or "-"],
        [
            "original",
            body["source"] + (" (the value is its head only)" if body["truncated"] else ""),
        ],
        ["value", f"{value['bytes']} bytes, {form}, sha256 {value['sha256']}"],
        [
            "redrive",
            "possible" if body["redrivable"] else f"not possible: {body['not_redrivable']}",
        ],
    ]
    # Every field is a header someone wrote (a producer on the dead-letter topic too).
    for name, text in rows:
        typer.echo(f"  {name:<10} {shown(text)}")
    typer.echo(f"  {'reason':<10} {shown(body['reason'])}")


def _short(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dlq")
