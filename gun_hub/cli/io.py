"""``gun-hub submit`` and ``gun-hub decisions``: the clearance system's two gestures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from gun_hub.clearance import DecisionReader, ReceivedDecision, submit_declarations
from gun_hub.cli.kafka import registry_for
from gun_hub.envelope import PlainEnvelope
from gun_hub.pipeline.context import CLEARANCE_PARTY
from gun_hub.settings import load_settings


def format_decision(received: ReceivedDecision) -> str:
    """One decision as a few readable lines."""
    decision = received.decision
    lines = [f"{decision.reference} v{decision.version}: {decision.outcome.value}"]
    lines += [f"    reason {reason.code}: {reason.text}" for reason in decision.reasons]
    lines += [
        f"    item {d.goods_item} {d.code} {d.reference}: {d.verdict.value}"
        + (f" ({d.authority})" if d.authority else "")
        + (f" partner code {d.partner_code}" if d.partner_code else "")
        for d in decision.documents
    ]
    return "\n".join(lines)


def submit(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="XML files."),
) -> None:
    """Publish declaration XML files on the declarations topic, keyed by reference."""
    settings = load_settings()
    topics = registry_for(settings)
    sent = asyncio.run(
        submit_declarations(
            settings.kafka.bootstrap_servers,
            topics.declarations,
            [path.read_bytes() for path in files],
        )
    )
    typer.echo(f"submitted {len(sent)} declaration(s): {', '.join(sent)}")


def decisions(
    count: int = typer.Option(10, help="Stop after this many decisions."),
    timeout: float = typer.Option(30.0, help="Stop after this many seconds."),
    from_beginning: bool = typer.Option(True, help="Read the topic from its start."),
) -> None:
    """Read, verify and print decisions, as the clearance system would."""
    settings = load_settings()
    topics = registry_for(settings)

    async def read() -> list[ReceivedDecision]:
        reader = DecisionReader(
            settings.kafka.bootstrap_servers, topics.decisions, PlainEnvelope(CLEARANCE_PARTY)
        )
        await reader.start(from_beginning=from_beginning)
        try:
            return await reader.collect(expected=count, timeout_s=timeout)
        finally:
            await reader.stop()

    for received in asyncio.run(read()):
        typer.echo(format_decision(received))


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(decisions)
