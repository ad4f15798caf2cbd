"""``gun-hub intake serve`` and ``gun-hub intake watch DIR``: the intake gateway's channels
(docs/intake-channels.md)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer

from gun_contract.kafka.acls import gateway_topics
from gun_contract.listening import PortNotBound
from gun_contract.logs import configure_logging
from gun_contract.security.keystore import KeystoreError
from gun_contract.stop_deadline import StopDeadline, stopping
from gun_hub.cli.components import prepare_cluster
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.startup import cannot_start, settings_or_exit
from gun_hub.gateway.file_drop import DropFolderBusy, DropFolderUnsafe
from gun_hub.gateway.lodging import lodger_for
from gun_hub.gateway.service import build_gateway, serve_http, watch_folder
from gun_hub.security.web_auth import EORI, AccessConfigError
from gun_hub.web import WebConfigError, trader_tokens

app = typer.Typer(
    help="The intake gateway: declarations lodged over HTTP or dropped as files.",
    no_args_is_help=True,
)


def _run_until_signalled(
    main: Callable[[asyncio.Event, Callable[[], None]], Awaitable[None]], stop_within_s: float
) -> None:
    """Run ``main`` until SIGTERM or SIGINT sets its stop event, then end within
    ``stop_within_s`` (stop_deadline.py); a configuration fault (names the file or
    setting) exits 2."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = StopDeadline("the intake gateway", stop_within_s)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping(deadline, stop.set))
        try:
            await main(stop, deadline.start)  # started as it ends, whatever ends it
        finally:
            deadline.start()

    try:
        asyncio.run(run())
    except (
        KeystoreError,
        WebConfigError,
        AccessConfigError,
        DropFolderBusy,
        DropFolderUnsafe,
        NotADirectoryError,
        PortNotBound,
    ) as err:
        cannot_start(str(err))


@app.command()
def serve() -> None:
    """Take declarations over HTTP: POST /declarations with a portal token
    (GUN_HUB_GATEWAY__HOST/__PORT; the token settings are the trader lookup's)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, component="gateway.http", log_format=settings.log_format)
    topics = registry_for(settings)
    try:
        tokens = trader_tokens(settings.web, "gun-hub intake serve")
        gateway = build_gateway(settings, topics)
    except (KeystoreError, WebConfigError, AccessConfigError) as err:
        typer.echo(f"cannot start: {err}", err=True)
        raise typer.Exit(2) from None
    prepare_cluster(settings, own=gateway_topics(topics))
    _run_until_signalled(
        lambda stop, ending: serve_http(settings, gateway, tokens, stop, ending),
        settings.stop_within_s,
    )


@app.command()
def watch(
    folder: Path = typer.Argument(..., file_okay=False, help="The drop folder."),
    declarant: list[str] = typer.Option(
        [],
        "--declarant",
        help="An EORI this folder lodges for (repeat for several); a file naming another "
        "declarant is rejected. None: the folder is trusted for any declarant.",
    ),
    settle: float | None = typer.Option(
        None,
        min=0,
        help="Seconds a *.xml must stay unchanged (default GUN_HUB_GATEWAY__DROP_SETTLE_S).",
    ),
    batch: int | None = typer.Option(
        None, min=1, help="Files lodged together (default GUN_HUB_GATEWAY__DROP_BATCH)."
    ),
) -> None:
    """Lodge each complete *.xml file dropped in FOLDER once, then move it to done/ or
    rejected/ beside a receipt; restart-safe (what a crash leaves in processing/ is
    lodged again and decided once)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, component="gateway.file", log_format=settings.log_format)
    for eori in declarant:
        if not EORI.fullmatch(eori):
            typer.echo(f"--declarant {eori!r} is not an EORI number", err=True)
            raise typer.Exit(2)
    overrides = {
        name: value
        for name, value in (("drop_settle_s", settle), ("drop_batch", batch))
        if value is not None
    }
    settings.gateway = settings.gateway.model_copy(update=overrides)
    topics = registry_for(settings)
    try:
        gateway = build_gateway(settings, topics)
    except KeystoreError as err:
        typer.echo(f"cannot start: {err}", err=True)
        raise typer.Exit(2) from None
    lodger = lodger_for(declarant, "this drop folder")
    prepare_cluster(settings, own=gateway_topics(topics))
    _run_until_signalled(
        lambda stop, ending: watch_folder(
            settings, gateway, folder, lodger, topics.declarations, stop, ending
        ),
        settings.stop_within_s,
    )
