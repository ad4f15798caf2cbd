"""``gun-hub audit verify``: replay the audit topic and check every chain and checkpoint.

It reads public keys only (the JWKS): an auditor needs no private key of anyone.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import Connect, client_options, from_settings
from gun_contract.security.keystore import PUBLIC_JWKS, KeystoreError, read_public_keys
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.progress import HIDDEN, ProgressBar, progress_bar
from gun_hub.cli.startup import error_text, settings_or_exit
from gun_hub.security.audit import (
    UNSIGNED_GRACE_S,
    AuditReport,
    LoggedRecord,
    WitnessError,
    read_witness,
    verify_chain,
    write_witness,
)
from gun_hub.security.factory import tail_policy

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)

CANNOT_READ = 3


async def read_topic(
    connect: Connect, topic: str, progress: ProgressBar = HIDDEN
) -> list[LoggedRecord]:
    """Every committed record of ``topic`` from its beginning to its stable end at the
    time of the call.

    ``progress`` counts offsets read out of those between the beginnings and the ends.
    """
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(connect, topic)]
    # Committed records only: the hub appends its links in transactions, and a batch whose
    # transaction was aborted (a worker fenced, a failed attempt sent again) is no link.
    consumer = AIOKafkaConsumer(
        **client_options(connect), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        progress.set_total(sum(ends[tp] - starts[tp] for tp in partitions))
        records: list[LoggedRecord] = []

        async def behind() -> bool:
            positions = {tp: min(await consumer.position(tp), ends[tp]) for tp in partitions}
            progress.set_completed(sum(positions[tp] - starts[tp] for tp in partitions))
            return any(positions[tp] < ends[tp] for tp in partitions)

        while await behind():
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                records += [
                    LoggedRecord(tp.partition, r.offset, r.value or b"")
                    for r in batch
                    if r.offset < ends[tp]
                ]
        return records
    finally:
        await consumer.stop()


def print_report(report: AuditReport) -> None:
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(report.by_kind.items()))
    typer.echo(f"{report.records} audit records read: {kinds or 'none'}")
    typer.echo(f"{report.checkpoints} signed checkpoints verified")
    if report.unsigned_tail:
        tail = ", ".join(f"partition {p}: {n}" for p, n in sorted(report.unsigned_tail.items()))
        typer.echo(f"records after the last checkpoint (chained, not yet signed): {tail}")
    if report.orphans:
        typer.echo(
            f"{report.orphans} intact record(s) off the signed chain, written before the "
            "record that took their place (left by a crash; they prove nothing): "
            + "; ".join(report.orphan_positions)
        )
    if report.foreign:
        typer.echo(
            "the hub found records it did not write at the head of a chain, left them off "
            "it and said so in the chain (someone wrote to the audit topic without the "
            "hub's audit key): " + "; ".join(report.foreign)
        )
    if report.intact and not report.records:
        # An empty trail proves nothing: a recreated topic, another cluster, another prefix.
        typer.echo(
            "0 audit records: nothing verified (a new or recreated topic, or the wrong cluster?)"
        )
    elif report.intact:
        typer.echo("audit trail intact")
    else:
        typer.echo(f"AUDIT TRAIL BROKEN: first broken link at {report.broken[0].describe()}")
        for broken in report.broken[1:]:
            typer.echo(f"  also: {broken.describe()}")


@app.command()
def verify(
    topic: str | None = typer.Option(None, help="Audit topic (default: the registry's)."),
    jwks: Path | None = typer.Option(
        None,
        help="Public JWKS holding the hub's audit keys (default: jwks.json of the keys "
        "folder). No private key is ever read.",
    ),
    max_unsigned: int | None = typer.Option(
        None,
        min=1,
        help="Most records after a partition's last checkpoint (default: the hub's "
        "audit_checkpoint_every); more is a break.",
    ),
    max_unsigned_age_s: float | None = typer.Option(
        None,
        min=0,
        help="Longest a record may wait for a checkpoint, in seconds (default: the hub's "
        f"audit_checkpoint_within_s plus {int(UNSIGNED_GRACE_S)}); longer is a break.",
    ),
    witness: Path | None = typer.Option(
        None,
        help="The auditor's witness file: the checkpoints verified last time must still be "
        "in the trail (a cut tail is a break); updated after an intact verification.",
    ),
) -> None:
    """Check every chain link, checkpoint signature and unsigned tail. Exit 0 intact; 1 a
    break; 2 keys or witness unreadable; 3 the trail cannot be read (no such topic, the
    cluster unreachable)."""
    settings = settings_or_exit()
    topic = topic or registry_for(settings).audit
    public_file = jwks or settings.security.keys_dir / PUBLIC_JWKS
    policy = tail_policy(settings)
    policy = replace(
        policy,
        max_unsigned=max_unsigned or policy.max_unsigned,
        max_unsigned_age_s=(
            policy.max_unsigned_age_s if max_unsigned_age_s is None else max_unsigned_age_s
        ),
    )
    try:
        keys = read_public_keys(public_file)
        anchors = read_witness(witness, topic) if witness else {}
    except (KeystoreError, WitnessError) as err:
        typer.echo(f"cannot verify: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        with progress_bar(f"replaying {topic}", unit="records") as bar:
            records = asyncio.run(read_topic(from_settings(settings.kafka), topic, bar))
    except (LookupError, KafkaError, OSError) as err:  # OSError: TimeoutError, refused
        # Not a break: exit 1 is read as tampering by whoever watches the exit code.
        typer.echo(
            f"cannot read the audit trail {topic}: {error_text(err)} "
            f"(Kafka at {settings.kafka.bootstrap_servers})",
            err=True,
        )
        raise typer.Exit(CANNOT_READ) from None
    report = verify_chain(records, keys, policy=policy, witness=anchors)
    print_report(report)
    if not report.intact:
        raise typer.Exit(1)
    if witness is not None:
        write_witness(witness, topic, report.anchors)
        typer.echo(f"witness {witness} now holds the last checkpoint of each partition")
