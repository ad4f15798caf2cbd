"""``gun-hub demo``: the whole pipeline on this machine, sample declarations through it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from gun_hub.cli.io import format_decision
from gun_hub.demo import run_demo
from gun_hub.settings import load_settings


def demo(
    keep_broker: bool = typer.Option(False, help="Leave the broker running afterwards."),
) -> None:
    """Start broker, partner system, adapter and hub; submit samples; print the decisions."""
    settings = load_settings()
    work_dir = Path(tempfile.mkdtemp(prefix="gun-hub-demo-"))
    result = run_demo(settings, work_dir, typer.echo, keep_broker=keep_broker)
    typer.echo("")
    for received in result.decisions:
        typer.echo(format_decision(received))
    typer.echo(
        f"\n{len(result.decisions)} of {result.expected} decisions in {result.elapsed_s:.1f}s "
        f"(component logs in {work_dir / 'logs'})"
    )
    if len(result.decisions) != result.expected:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(demo)
