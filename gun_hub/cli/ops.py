"""Operator commands: ``gun-hub status``, ``gun-hub stats``, ``gun-hub lag``, and the
credentials they present (``gun-hub portal``, ``gun-hub officers``).

``status`` and ``stats`` ask a running hub's trader or officer listener (the view lives
there, ADR 0007); ``lag`` measures the cluster itself and needs no hub.

* ``gun-hub status REF --token-file F``: as a trader, with a token from the clearance
  portal (the trader listener: its own declarations only, redacted);
* ``gun-hub status REF --credentials-file C`` and ``gun-hub stats --credentials-file C``:
  as an officer (the officer listener; ``C`` holds ``NAME:PASSWORD``, mode 0600).

Exit codes: 0 found; 1 unknown declaration; 2 refused (a bad parameter, the view off);
3 hub unreachable; 4 not authenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from gun_contract.trace import trace_id_for
from gun_hub.cli.hub_client import (
    AS_JSON,
    CAFILE,
    CREDENTIALS_FILE,
    HUB_URL,
    call_hub,
    hub_url_of,
    officer_authorization,
    print_table,
    refused,
)
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.startup import aiokafka_quiet, settings_or_exit
from gun_hub.cli.terminal import as_json as json_text
from gun_hub.cli.terminal import shown
from gun_hub.ops.lag import LagSnapshot
from gun_hub.ops.lag_monitor import LagMonitor
from gun_hub.security.web_auth import (
    AccessConfigError,
    add_officer,
    generate_portal_key,
    issue_trader_token,
    load_portal_key,
    write_officer_credentials,
    write_private_file,
)


def _trader(token_file: Path) -> str:
    try:
        token = token_file.read_text().strip()
    except OSError as err:
        typer.echo(f"cannot read {token_file}: {err.strerror}", err=True)
        raise typer.Exit(2) from None
    return f"Bearer {token}"


TOKEN_FILE = typer.Option(
    None, help="As a trader: a file holding the token the clearance portal issued."
)


def status(
    reference: str = typer.Argument(help="Declaration reference."),
    token_file: Path | None = TOKEN_FILE,
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
    as_json: bool = AS_JSON,
) -> None:
    """Where a declaration stands, and its dated history."""
    if (token_file is None) == (credentials_file is None):
        typer.echo("give --token-file (a trader) or --credentials-file (an officer)", err=True)
        raise typer.Exit(2)
    if token_file is not None:
        authorization, base = _trader(token_file), hub_url_of(hub_url, "trader")
    else:
        assert credentials_file is not None  # noqa: S101 - one of the two, checked above
        authorization = officer_authorization(credentials_file)
        base = hub_url_of(hub_url, "officer")
    path = f"/declarations/{urllib.parse.quote(reference, safe='')}"
    code, body = call_hub(f"{base}{path}", authorization, cafile)
    if as_json:
        typer.echo(json_text(body))
    if code == 404:
        if not as_json:
            typer.echo(f"{reference}: unknown declaration", err=True)
        raise typer.Exit(1)
    if code != 200:
        refused(code, body, reference)
    if as_json:
        return
    # Texts a declaration carried, or a partner's answer: each line shown escaped.
    outcome = f" {body['outcome']}" if body.get("outcome") else ""
    typer.echo(shown(f"{body['reference']} version {body['version']}: {body['state']}{outcome}"))
    if body.get("post_release_alert"):
        typer.echo("  post-release alert raised (post-clearance control)")
    for reason in body.get("reasons", []):
        csw = f" (EU CSW-CERTEX {reason['csw']})" if reason.get("csw") else ""
        typer.echo(shown(f"  {reason['code']}{csw}"))
        typer.echo(shown(f"    en: {reason['en']}"))
        typer.echo(shown(f"    fr: {reason['fr']}"))
    for event in body["history"]:
        who = f" [{event['authority']}]" if event.get("authority") else ""
        detail = f"  {event['detail']}" if event.get("detail") else ""
        typer.echo(shown(f"  {event['at']}  v{event['version']}  {event['kind']}{who}{detail}"))


def stats(
    since: str | None = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, "--to", help="Last day (YYYY-MM-DD; default today)."),
    declarant: str | None = typer.Option(None, help="Documents used by this declarant (EORI)."),
    written_off: bool = typer.Option(False, help="Quantity written off per document."),
    document: str | None = typer.Option(None, help="With --written-off: this document only."),
    limit: int | None = typer.Option(None, help="With --declarant or --written-off: rows."),
    offset: int | None = typer.Option(
        None, help="With --declarant or --written-off: rows to skip (0: none)."
    ),
    after: str | None = typer.Option(
        None,
        help="With --declarant or --written-off: the page after this cursor (the '--after' "
        "the previous page ends with; rows arriving meanwhile shift no row, as offsets do).",
    ),
    credentials_file: Path | None = CREDENTIALS_FILE,
    hub_url: str | None = HUB_URL,
    cafile: Path | None = CAFILE,
    as_json: bool = AS_JSON,
) -> None:
    """Counts by outcome, authority, document code and day; documents; write-offs."""
    if credentials_file is None:
        typer.echo("statistics are for officers: give --credentials-file", err=True)
        raise typer.Exit(2)
    authorization = officer_authorization(credentials_file)
    base = hub_url_of(hub_url, "officer")
    if after is not None and offset is not None:
        typer.echo("--offset and --after: one or the other (two places to start)", err=True)
        raise typer.Exit(2)
    paging = {"after": after} if after is not None else {"offset": str(offset or 0)}
    paging |= {"limit": str(limit)} if limit is not None else {}
    if declarant is not None:
        query = urllib.parse.urlencode(paging)
        url = f"{base}/stats/declarants/{urllib.parse.quote(declarant, safe='')}/documents"
        url += f"?{query}"
    elif written_off:
        query = urllib.parse.urlencode({**({"document": document} if document else {}), **paging})
        url = f"{base}/stats/written-off?{query}"
    else:
        query = urllib.parse.urlencode(
            {k: v for k, v in (("from", since), ("to", until)) if v is not None}
        )
        url = f"{base}/stats" + (f"?{query}" if query else "")
    code, body = call_hub(url, authorization, cafile)
    if code != 200:
        refused(code, body, "the hub refused")
    if as_json:
        typer.echo(json_text(body))
    elif declarant is not None and not body["documents"]:
        typer.echo(f"no document used by declarant {declarant}" + _past(offset or 0, after))
    elif declarant is not None:
        print_table(
            ["code", "document", "authority", "declarations", "last used (UTC)"],
            [
                [d["code"], d["document"], d["authority"] or "-", d["declarations"], d["last_used"]]
                for d in body["documents"]
            ],
        )
    elif written_off and not body["written_off"]:
        on = f"document {document}" if document else "any document"
        typer.echo(f"nothing written off on {on}" + _past(offset or 0, after))
    elif written_off:
        print_table(
            [
                "authority",
                "code",
                "document",
                "line",
                "quantity",
                "given back",
                "unit",
                "declarations",
            ],
            [
                [
                    w["authority"],
                    w["code"],
                    w["document"],
                    w["line"] or "-",
                    w["quantity"] or "-",
                    w.get("given_back") or "-",  # a hub before stop 37-s does not say it
                    w["unit"] or "-",
                    w["declarations"],
                ]
                for w in body["written_off"]
            ],
        )
    else:
        _print_statistics(body)
    if as_json:
        return
    if body.get("next_after") is not None:  # a hub before stop 57 gives offsets only
        typer.echo(f"(more: --after {body['next_after']})", err=True)
    elif body.get("next_offset") is not None:
        typer.echo(f"(more: --offset {body['next_offset']})", err=True)


def _past(offset: int, after: str | None) -> str:
    """What an empty page past the first means: the rows skipped were all there is."""
    if after is not None:
        return " after that cursor"
    return f" past the first {offset}" if offset else ""


def _print_statistics(body: dict[str, Any]) -> None:
    decisions = body["decisions"]
    zone = body.get("timezone", "UTC")  # days as the hub counts them
    typer.echo(f"decisions from {body['from']} to {body['to']} ({zone} days): {decisions['total']}")
    if decisions["by_outcome"]:
        _print_decisions(decisions)
    else:
        typer.echo(f"no decision from {body['from']} to {body['to']}")
    overrides = body.get("overrides")
    if overrides:
        typer.echo(
            f"\noverrides (mention 73000): {overrides['declared']} declared, "
            f"{overrides['applied']} applied, {overrides['declined']} declined"
        )
        print_table(
            ["declarant", "declared", "applied", "declined"],
            [
                [eori, v["declared"], v["applied"], v["declined"]]
                for eori, v in overrides["by_declarant"].items()
            ],
        )
    dead = body["dead_letters"]
    typer.echo(f"\ndead letters: {dead['total']}")
    for kind, count in dead["by_kind"].items():
        typer.echo(f"  {shown(kind)}: {count}")


def _print_decisions(decisions: dict[str, Any]) -> None:
    print_table(["outcome", "count"], [[k, v] for k, v in decisions["by_outcome"].items()])
    typer.echo("")
    outcomes = sorted({o for day in decisions["by_day"].values() for o in day})
    print_table(
        ["day", *outcomes],
        [[day, *(v.get(o, 0) for o in outcomes)] for day, v in decisions["by_day"].items()],
    )
    typer.echo("")
    print_table(
        ["authority", *outcomes],
        [[a, *(v.get(o, 0) for o in outcomes)] for a, v in decisions["by_authority"].items()],
    )
    typer.echo("")
    print_table(
        ["document code", "uses", "verdicts"],
        [
            [code, v["uses"], ", ".join(f"{k} {n}" for k, n in v["by_verdict"].items())]
            for code, v in decisions["by_document_code"].items()
        ],
    )


CANNOT_MEASURE = 3


def lag(
    watch: float = typer.Option(
        0.0, help="Measure again every N seconds (flags growing lag); 0: once."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print each measurement as JSON (the gun.ops.lag snapshot), asked of the "
        "cluster: no hub needed.",
    ),
) -> None:
    """Consumer lag of every group of the hub, its adapters and the clearance system.
    Exit code 3: the cluster could not be measured (with --watch, a failed measurement is
    said and the next one taken)."""
    settings = settings_or_exit()
    topics = registry_for(settings)

    async def measure() -> bool:
        """Whether the last measurement measured a group."""
        monitor = LagMonitor.for_settings(settings, topics)
        try:
            await monitor.start()
        except Exception as err:  # noqa: BLE001 - an unreachable cluster is one sentence
            await monitor.stop()  # its clients closed, none reported unclosed afterwards
            _cannot_measure(err, f"(Kafka at {settings.kafka.bootstrap_servers})")
            return False
        try:
            while True:
                try:
                    measured: LagSnapshot | None = await monitor.measure()
                except Exception as err:  # noqa: BLE001 - said; with --watch, measured again
                    _cannot_measure(err, f"measuring again in {watch:g} s" if watch > 0 else "")
                    measured = None
                if measured is not None and as_json:
                    typer.echo(measured.model_dump_json())
                elif measured is not None:
                    _print_lag(measured)
                if watch <= 0:
                    return measured is not None and bool(measured.groups)
                # The cluster is most often unwell when an operator watches it: a failed
                # measurement is said, and the watch goes on.
                await asyncio.sleep(watch)
        finally:
            await monitor.stop()

    measured_any = True
    # aiokafka's error for each failed connection held back: the sentence says it once.
    with contextlib.suppress(KeyboardInterrupt), aiokafka_quiet():
        measured_any = asyncio.run(measure())
    if not measured_any:
        raise typer.Exit(CANNOT_MEASURE)


def _cannot_measure(err: Exception, then: str) -> None:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    typer.echo(
        f"cannot measure the lag at {at}: {type(err).__name__}: {err}"
        + (f"; {then}" if then else ""),
        err=True,
    )


def _print_lag(measured: LagSnapshot) -> None:
    at = measured.at.isoformat(timespec="seconds")
    if not measured.groups:
        typer.echo(
            f"consumer lag at {at}: no group could be measured (the cluster described none "
            "of them: see the warnings above)"
        )
        return
    typer.echo(f"consumer lag at {at}")
    rows = []
    for group in measured.groups:
        parts = [p for p in measured.partitions if p.group == group.group]
        by_topic: dict[str, int] = {}
        lost: dict[str, int] = {}  # deleted by retention before the group read them
        for p in parts:
            by_topic[p.topic] = by_topic.get(p.topic, 0) + p.lag
            lost[p.topic] = lost.get(p.topic, 0) + p.lost
        flag = "GROWING" if group.growing else ""
        for topic, total in sorted(by_topic.items()):
            # The oldest record the group has not read on the topic, and what the topic's
            # retention leaves of it (docs/operations.md, "Unread records near retention").
            unread = [u for u in measured.unread if u.group == group.group and u.topic == topic]
            headrooms = [u.headroom_s for u in unread if u.headroom_s is not None]
            oldest = max((u.age_s for u in unread), default=None)
            left = min(headrooms, default=None)
            gone = lost[topic] or "-"
            rows.append([group.group, topic, total, gone, _duration(oldest), _duration(left), flag])
    print_table(
        ["group", "topic", "lag", "lost to retention", "oldest unread", "retention left", ""],
        rows,
    )


def _duration(seconds: float | None) -> str:
    """``seconds`` in its two largest units, without a space ("5d6h", "42min"); "-" for
    none."""
    if seconds is None:
        return "-"
    left = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return "".join(parts)


portal_app = typer.Typer(
    help="Stand-in for the clearance portal (local runs and tests): its key and tokens.",
    no_args_is_help=True,
)
officers_app = typer.Typer(help="Customs officers' credentials.", no_args_is_help=True)


@portal_app.command("init")
def portal_init(
    directory: Path = typer.Option(..., "--dir", help="Where to write the portal's key."),
) -> None:
    """A portal signing key: DIR/portal.jwk (private, 0600) and DIR/portal-jwks.json
    (public: give it to the hub as GUN_HUB_WEB__PORTAL_JWKS)."""
    private, public = generate_portal_key(directory)
    typer.echo(f"portal key written to {private} (private) and {public} (public, for the hub)")


@portal_app.command("token")
def portal_token(
    eori: str = typer.Option(..., help="The trader the portal authenticated."),
    key: Path = typer.Option(..., help="The portal's private key (portal.jwk)."),
    lifetime: int = typer.Option(
        300,
        min=1,
        help="Seconds the token stays valid; at most what the hub accepts "
        "(GUN_HUB_WEB__TOKEN_MAX_LIFETIME_S, 900 by default).",
    ),
    out: Path | None = typer.Option(None, help="Write the token to this file (mode 0600)."),
    lodge: bool = typer.Option(
        False,
        "--lodge",
        help="Grant the lodging scope (GUN_HUB_GATEWAY__LODGING_SCOPE, gun:lodge): the "
        "token lodges over HTTP too. Without it, it reads the status lookup only.",
    ),
) -> None:
    """A token for one trader, as the portal would issue it (printed, or written)."""
    settings = settings_or_exit()
    longest = settings.web.token_max_lifetime_s
    if lifetime > longest:  # the hub would refuse it for good (review stop 39-O, O8)
        typer.echo(
            f"--lifetime {lifetime} is over the {longest} s the hub accepts "
            "(GUN_HUB_WEB__TOKEN_MAX_LIFETIME_S): it would refuse the token; ask for "
            f"{longest} s at most",
            err=True,
        )
        raise typer.Exit(2)
    # The opt-out (empty) asks for no scope: a token naming none is what it takes then.
    scope = settings.gateway.lodging_scope if lodge and settings.gateway.lodging_scope else None
    try:
        token = issue_trader_token(
            load_portal_key(key),
            eori,
            issuer=settings.web.portal_issuer,
            audience=settings.web.token_audience,
            lifetime_s=lifetime,
            scope=scope,
        )
    except AccessConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if out is None:
        typer.echo(token)
    else:
        write_private_file(out, token + "\n")
    until = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + lifetime))
    typer.echo(
        f"a token for {eori}, valid for {lifetime} s (until {until}); then the hub answers "
        "that it has expired: make another the same way",
        err=True,
    )


MIN_OFFICER_PASSWORD_CHARS = 12


@officers_app.command("add")
def officers_add(
    name: str = typer.Argument(help="The officer's name (letters, digits, . _ -)."),
    file: Path = typer.Option(..., help="The hub's officers file (GUN_HUB_WEB__OFFICERS_FILE)."),
    password_file: Path | None = typer.Option(
        None,
        help="Read the password from this file (otherwise one is asked, or generated "
        "with --credentials-out).",
    ),
    credentials_out: Path | None = typer.Option(
        None,
        help="Write NAME:PASSWORD here (mode 0600) for --credentials-file; with no "
        "--password-file, a random password is generated.",
    ),
) -> None:
    """Add an officer (or set a new password): only its scrypt hash goes to FILE."""
    if password_file is not None:
        password = password_file.read_text().strip()
    elif credentials_out is not None:
        password = secrets.token_urlsafe(18)
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_OFFICER_PASSWORD_CHARS:
        # Officers sign in over the network: a short password falls to guessing.
        typer.echo(
            f"an officer's password has at least {MIN_OFFICER_PASSWORD_CHARS} characters "
            "(a sentence of a few words will do)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        add_officer(file, name, password)
        if credentials_out is not None:
            write_officer_credentials(credentials_out, name, password)
    except AccessConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"officer {name} written to {file}")


def trace(
    reference: str = typer.Argument(help="Declaration reference."),
    version: int = typer.Argument(help="Declaration version."),
) -> None:
    """The trace id of a declaration version: grep the hub's, adapters' and partner
    systems' logs (``trace_id``) and the records' ``gun.trace.id`` header for it."""
    typer.echo(trace_id_for(reference, version))


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(trace)
    app.command()(stats)
    app.command()(lag)
    app.add_typer(portal_app, name="portal")
    app.add_typer(officers_app, name="officers")
