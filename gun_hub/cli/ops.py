"""Operator commands: ``gun-hub status``, ``gun-hub stats``, ``gun-hub lag``.

``status`` and ``stats`` ask a running hub's web server (the view lives there); ``lag``
measures the cluster itself and needs no hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import typer

from gun_hub.cli.kafka import registry_for
from gun_hub.ops.lag import LagSnapshot
from gun_hub.ops.lag_monitor import LagMonitor
from gun_hub.settings import load_settings


def _hub_url(hub_url: str | None) -> str:
    if hub_url:
        return hub_url.rstrip("/")
    settings = load_settings()
    host = "127.0.0.1" if settings.hub.web_host in ("0.0.0.0", "") else settings.hub.web_host  # noqa: S104
    return f"http://{host}:{settings.hub.web_port}"


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own hub
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, {"error": err.reason}
    except (urllib.error.URLError, OSError) as err:
        typer.echo(f"cannot reach the hub at {url}: {err}", err=True)
        raise typer.Exit(3) from None


HUB_URL = typer.Option(None, help="The hub's web address (default: from the settings).")
AS_JSON = typer.Option(False, "--json", help="Print the hub's JSON answer as is.")


def status(
    reference: str = typer.Argument(help="Declaration reference."),
    hub_url: str | None = HUB_URL,
    as_json: bool = AS_JSON,
) -> None:
    """Where a declaration stands, and its dated history."""
    code, body = _get(f"{_hub_url(hub_url)}/declarations/{urllib.parse.quote(reference, safe='')}")
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
    if code == 404:
        if not as_json:
            typer.echo(f"{reference}: unknown declaration", err=True)
        raise typer.Exit(1)
    if code != 200:
        if not as_json:
            typer.echo(f"{reference}: {body.get('error', code)}", err=True)
        raise typer.Exit(2)
    if as_json:
        return
    outcome = f" {body['outcome']}" if body.get("outcome") else ""
    typer.echo(f"{body['reference']} version {body['version']}: {body['state']}{outcome}")
    if body.get("post_release_alert"):
        typer.echo("  post-release alert raised (post-clearance control)")
    for event in body["history"]:
        who = f" [{event['authority']}]" if event.get("authority") else ""
        detail = f"  {event['detail']}" if event.get("detail") else ""
        typer.echo(f"  {event['at']}  v{event['version']}  {event['kind']}{who}{detail}")


def stats(
    since: str | None = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, "--to", help="Last day (YYYY-MM-DD)."),
    declarant: str | None = typer.Option(None, help="Documents used by this declarant (EORI)."),
    written_off: bool = typer.Option(False, help="Quantity written off per document."),
    document: str | None = typer.Option(None, help="With --written-off: this document only."),
    hub_url: str | None = HUB_URL,
    as_json: bool = AS_JSON,
) -> None:
    """Counts by outcome, authority, document code and day; documents; write-offs."""
    base = _hub_url(hub_url)
    if declarant is not None:
        url = f"{base}/stats/declarants/{urllib.parse.quote(declarant, safe='')}/documents"
    elif written_off:
        query = urllib.parse.urlencode({"document": document} if document else {})
        url = f"{base}/stats/written-off" + (f"?{query}" if query else "")
    else:
        query = urllib.parse.urlencode(
            {k: v for k, v in (("from", since), ("to", until)) if v is not None}
        )
        url = f"{base}/stats" + (f"?{query}" if query else "")
    code, body = _get(url)
    if code != 200:
        typer.echo(f"the hub refused: {body.get('error', code)}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
    elif declarant is not None:
        _table(
            ["code", "document", "authority", "declarations", "last used"],
            [
                [d["code"], d["document"], d["authority"] or "-", d["declarations"], d["last_used"]]
                for d in body["documents"]
            ],
        )
    elif written_off:
        _table(
            ["authority", "code", "document", "line", "quantity", "unit", "declarations"],
            [
                [
                    w["authority"],
                    w["code"],
                    w["document"],
                    w["line"] or "-",
                    w["quantity"] or "-",
                    w["unit"] or "-",
                    w["declarations"],
                ]
                for w in body["written_off"]
            ],
        )
    else:
        _print_statistics(body)


def _print_statistics(body: dict[str, Any]) -> None:
    decisions = body["decisions"]
    typer.echo(f"decisions: {decisions['total']}")
    _table(["outcome", "count"], [[k, v] for k, v in decisions["by_outcome"].items()])
    typer.echo("")
    outcomes = sorted({o for day in decisions["by_day"].values() for o in day})
    _table(
        ["day", *outcomes],
        [[day, *(v.get(o, 0) for o in outcomes)] for day, v in decisions["by_day"].items()],
    )
    typer.echo("")
    _table(
        ["authority", *outcomes],
        [[a, *(v.get(o, 0) for o in outcomes)] for a, v in decisions["by_authority"].items()],
    )
    typer.echo("")
    _table(
        ["document code", "uses", "verdicts"],
        [
            [code, v["uses"], ", ".join(f"{k} {n}" for k, n in v["by_verdict"].items())]
            for code, v in decisions["by_document_code"].items()
        ],
    )
    dead = body["dead_letters"]
    typer.echo(f"\ndead letters: {dead['total']}")
    for kind, count in dead["by_kind"].items():
        typer.echo(f"  {kind}: {count}")


def lag(
    watch: float = typer.Option(
        0.0, help="Measure again every N seconds (flags growing lag); 0: once."
    ),
    as_json: bool = AS_JSON,
) -> None:
    """Consumer lag of every group of the hub, its adapters and the clearance system."""
    settings = load_settings()
    topics = registry_for(settings)

    async def measure() -> None:
        monitor = LagMonitor.for_settings(settings, topics)
        await monitor.start()
        try:
            while True:
                measured = await monitor.measure()
                if as_json:
                    typer.echo(measured.model_dump_json())
                else:
                    _print_lag(measured)
                if watch <= 0:
                    return
                await asyncio.sleep(watch)
        finally:
            await monitor.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(measure())


def _print_lag(measured: LagSnapshot) -> None:
    typer.echo(f"consumer lag at {measured.at.isoformat(timespec='seconds')}")
    rows = []
    for group in measured.groups:
        parts = [p for p in measured.partitions if p.group == group.group]
        by_topic: dict[str, int] = {}
        for p in parts:
            by_topic[p.topic] = by_topic.get(p.topic, 0) + p.lag
        flag = "GROWING" if group.growing else ""
        for topic, total in sorted(by_topic.items()):
            rows.append([group.group, topic, total, flag])
    _table(["group", "topic", "lag", ""], rows)


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(stats)
    app.command()(lag)
