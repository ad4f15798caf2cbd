"""The ``gun-hub`` command: one entry point for every process and operator task.
May import: every package; gun_tools only inside a command that runs it (cli.tooling)."""

from __future__ import annotations

import typer

from gun_hub.cli import (
    asyncapi,
    audit,
    components,
    conformance,
    demo,
    dlq,
    intake,
    io,
    kafka,
    keys,
    ops,
    rollout,
)

app = typer.Typer(
    name="gun-hub",
    help="Integration hub for a customs single window (GUN).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka.app, name="kafka")
app.add_typer(kafka.topics_app, name="topics")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(intake.app, name="intake")
components.register(app)
io.register(app)
demo.register(app)
conformance.register(app)
asyncapi.register(app)
ops.register(app)
dlq.register(app)
rollout.register(app)


def main() -> None:
    app()
