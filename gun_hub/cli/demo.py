"""``gun-hub demo``: the whole pipeline on this machine, sample declarations through it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from gun_hub.cli.startup import settings_or_exit
from gun_hub.cli.tooling import require_tooling


def demo(
    keep_broker: bool = typer.Option(False, help="Leave the broker running afterwards."),
    bootstrap: str | None = typer.Option(
        None,
        help="Use this running Kafka (host:port) instead of starting the embedded broker.",
    ),
) -> None:
    """Start broker, partner systems (DGAL, CITES, DGA), adapters and hub; submit the
    samples; print the decisions. Exits 1 if any sample gets no decision."""
    require_tooling("demo")
    from gun_tools.demo import DemoFailed, run_demo
    from gun_tools.demo.report import problems, report
    from gun_tools.processes import stopping_what_it_started_on_termination

    settings = settings_or_exit()
    work_dir = Path(tempfile.mkdtemp(prefix="gun-hub-demo-"))
    try:
        with stopping_what_it_started_on_termination():
            result = run_demo(
                settings, work_dir, typer.echo, keep_broker=keep_broker, bootstrap=bootstrap
            )
    except DemoFailed as failure:
        typer.echo(f"demo failed: {failure}", err=True)
        raise typer.Exit(1) from None
    for line in report(result):
        typer.echo(line)
    trouble = problems(result)
    for line in trouble:
        typer.echo(line, err=True)
    if trouble:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(demo)
