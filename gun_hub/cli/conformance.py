"""``gun-hub conformance <authority>``: certify a running adapter and partner system."""

from __future__ import annotations

import asyncio

import typer

from adapters.conformance.harness import Harness
from adapters.conformance.kit import run_kit, selected_scenarios, table
from gun_contract.kafka.client import from_settings
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.replay import MemoryReplayGuard
from gun_hub.cli.kafka import registry_for, routing_for
from gun_hub.cli.progress import progress_bar
from gun_hub.cli.startup import settings_or_exit
from gun_hub.security.factory import build_envelope


def conformance(
    authority: str = typer.Argument(help="Authority whose adapter to certify."),
    partner_url: str = typer.Option(..., help="Base URL of the partner system (test API on)."),
    partner_timeout: float = typer.Option(
        5.0,
        help="The adapter's deadline for one partner call (GUN_HUB_ADAPTER__PARTNER_TIMEOUT_S).",
    ),
    answer_timeout: float = typer.Option(30.0, help="How long to wait for each answer."),
    only: str | None = typer.Option(None, help="Run only scenarios whose name contains this."),
) -> None:
    """Run the scenario suite as the hub would; exit 1 if any scenario fails."""
    settings = settings_or_exit()
    routing = routing_for(settings)
    entry = routing.authorities.get(authority)
    if entry is None:
        typer.echo(f"{authority!r} is not in the routing table", err=True)
        raise typer.Exit(2)
    topics = registry_for(settings)
    harness = Harness(
        authority=authority,
        document_type=entry.codes[0],
        connect=from_settings(settings.kafka),
        topics=topics,
        hub_envelope=build_envelope(settings.security, HUB_PARTY, topics, MemoryReplayGuard()),
        partner_url=partner_url,
        answer_timeout_s=answer_timeout,
        partner_timeout_s=partner_timeout,
    )

    total = len(selected_scenarios(only))
    with progress_bar(f"conformance {authority}", total=total, unit="scenarios") as bar:
        outcomes = asyncio.run(run_kit(harness, only=only, progress=lambda _: bar.advance()))
    typer.echo(table(authority, outcomes))
    if not outcomes or not all(o.passed for o in outcomes):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(conformance)
