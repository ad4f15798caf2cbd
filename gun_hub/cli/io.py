"""``gun-hub submit`` and ``gun-hub decisions``: the clearance system's two gestures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gun_contract.kafka.client import from_settings
from gun_contract.security.entitlements import CLEARANCE_PARTY
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreError
from gun_contract.security.replay import MemoryReplayGuard, ReplayGuard
from gun_contract.settings import Settings
from gun_contract.topics import TopicRegistry
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.startup import cannot_start, run_on_the_cluster, settings_or_exit
from gun_hub.cli.terminal import shown
from gun_hub.cli.tooling import require_tooling
from gun_hub.domain.decision_text import decision_lines
from gun_hub.security.factory import build_envelope, replay_memory

if TYPE_CHECKING:
    from gun_tools.clearance_stand_in import ReceivedDecision

# Both commands are the clearance system's, played by its stand-in (development tooling).


def format_decision(received: ReceivedDecision) -> str:
    """One decision as a few readable lines (the clearance system's view: in clear)."""
    return "\n".join(decision_lines(received.decision))


def clearance_envelope(
    settings: Settings, topics: TopicRegistry, replay: ReplayGuard
) -> JoseEnvelope:
    """The clearance system's envelope; its keys not where the settings say (a wrong copy
    out of the ``keys`` volume, deployment.md) stops the command in one sentence naming
    the file and the setting (review stop 39-O, O7)."""
    try:
        return build_envelope(settings.security, CLEARANCE_PARTY, topics, replay)
    except KeystoreError as err:
        cannot_start(f"{err}; the keys folder is GUN_HUB_SECURITY__KEYS_DIR")


def submit(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="XML files."),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="Send plain XML (only a hub with GUN_HUB_HUB__ACCEPT_PLAIN_DECLARATIONS=true "
        "takes it: local development).",
    ),
) -> None:
    """Publish declaration XML files on the declarations topic, keyed by reference,
    sealed with the clearance system's keys (signed by it, encrypted to the hub)."""
    require_tooling("submit")
    from gun_tools.clearance_stand_in import submit_declarations

    settings = settings_or_exit()
    topics = registry_for(settings)
    envelope = None if plain else clearance_envelope(settings, topics, MemoryReplayGuard())
    # A broker that cannot be reached is one sentence, exit 2, as for every command (a
    # traceback until the operator review of stop 48).
    sent = run_on_the_cluster(
        settings,
        submit_declarations(
            from_settings(settings.kafka),
            topics.declarations,
            [path.read_bytes() for path in files],
            envelope,
        ),
    )
    typer.echo(f"submitted {len(sent)} declaration(s): {', '.join(sent)}")


def decisions(
    count: int = typer.Option(10, help="Stop after this many decisions."),
    timeout: float = typer.Option(30.0, help="Stop after this many seconds."),
    group: str | None = typer.Option(
        None,
        help="Consumer group: each decision is read once per group "
        "(default: GUN_HUB_OPS__CLEARANCE_GROUP, whose lag is watched).",
    ),
) -> None:
    """Verify, decrypt and print new decisions, as the clearance system would.

    The reader holds the clearance system's private key, commits what it has read and
    remembers message ids durably, so a replayed decision is refused.
    """
    require_tooling("decisions")
    from gun_tools.clearance_stand_in import DecisionReader

    settings = settings_or_exit()
    topics = registry_for(settings)
    # Told the reader's confirmed commits: an id is forgotten only once no partition
    # can be read again from before a copy of it (ADR 0008).
    replay = replay_memory(
        settings.security, CLEARANCE_PARTY, topics, partitions=settings.kafka.partitions
    )
    envelope = clearance_envelope(settings, topics, replay)

    async def read() -> tuple[list[ReceivedDecision], int]:
        reader = DecisionReader(
            from_settings(settings.kafka),
            topics.decisions,
            envelope,
            group_id=group or settings.ops.clearance_group,
            dlq_topic=topics.dlq,
            replay_memory=replay,
        )
        try:
            await reader.start()
            # ``unreadable``: every record skipped, failed verifications included.
            return await reader.collect(expected=count, timeout_s=timeout), len(reader.unreadable)
        finally:
            await reader.stop()

    received, rejected = run_on_the_cluster(settings, read())
    for decision in received:
        typer.echo(shown(format_decision(decision), multiline=True))  # a declaration's texts
    if rejected:
        typer.echo(
            f"{rejected} message(s) failed verification or could not be read, and were "
            "dead-lettered",
            err=True,
        )
        # A script or a CI step notices (it exited 0: operator review of stop 48).
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(decisions)
