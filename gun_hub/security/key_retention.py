"""How long after its retirement a party's encryption key can still be needed: until every
record encrypted to it before then can have left the topics addressed to the party, twice
their longest retention (a segment is deleted only once its newest record is past the
retention).

The retention is the longer of the topic registry's and the broker's as it describes the
topic now: an operator lengthens a request topic's retention for a partner's outage
(docs/operations.md), and a key pruned by the registry's alone left that unread backlog
undecryptable, dead-lettered for good (review stop 39-S, S2). ``gun-hub keys prune`` asks
(DescribeConfigs, which every principal has on the topics it uses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from aiokafka.admin import AIOKafkaAdminClient

from gun_contract.kafka.admin import topic_retentions
from gun_contract.kafka.client import Connect, client_options
from gun_contract.security.entitlements import HUB_PARTY, Entitlements
from gun_contract.topics import TopicRegistry, TopicSpec
from gun_hub.security.factory import readable_s

# How long the prune waits for the broker before it judges without it.
BROKER_ANSWER_S = 15.0


class RetentionNotDescribed(RuntimeError):
    """The broker answered, but not for every topic asked about (no DescribeConfigs right)."""


@dataclass(frozen=True, slots=True)
class NeededFor:
    """How long after its retirement a key can be needed (None: for ever), and why."""

    span: timedelta | None
    because: str


def addressed_to(topics: TopicRegistry, entitlements: Entitlements, party: str) -> list[TopicSpec]:
    """The topics whose records are encrypted to ``party``; for every reader that honours
    a redrive, the dead letters too: a redrive opens a dead letter's original, sealed to
    it, for as long as ``gun.dlq`` keeps it (ADR 0010): the hub's intake and correlation,
    and since stop 40 each authority's adapter. Not the clearance system's (its reader's
    dead letters are not redriven)."""
    redriven_by = {HUB_PARTY, *topics.authorities}
    return [
        spec
        for spec in topics.specs()
        if entitlements.recipient_of(spec.name) == party
        or (party in redriven_by and spec.name == topics.dlq)
    ]


def _as_registered(topics: TopicRegistry, entitlements: Entitlements, party: str) -> timedelta:
    """Twice the longest registry retention of the topics addressed to ``party``."""
    kept = [
        spec.retention_ms
        for spec in addressed_to(topics, entitlements, party)
        if spec.retention_ms is not None and spec.retention_ms > 0
    ]
    if not kept:
        return timedelta(seconds=readable_s(topics, entitlements, party))
    return 2 * timedelta(milliseconds=max(kept))


# A retention beyond a thousand years is kept for ever (Kafka's Long.MAX_VALUE included).
_AS_GOOD_AS_EVER_MS = 1000 * 366 * 24 * 3600 * 1000


def needed_after_retirement(
    topics: TopicRegistry,
    entitlements: Entitlements,
    party: str,
    on_broker: Mapping[str, int | None],
) -> NeededFor:
    """Twice the longest retention of the topics addressed to ``party``: the registry's,
    or the broker's (``on_broker``: ms by topic, None for a topic kept for ever) where
    longer."""
    registry = _as_registered(topics, entitlements, party)
    longest: tuple[int, str] | None = None
    for spec in addressed_to(topics, entitlements, party):
        if spec.name not in on_broker:
            continue
        retention_ms = on_broker[spec.name]
        if retention_ms is None or retention_ms > _AS_GOOD_AS_EVER_MS:
            # Long.MAX_VALUE says "for ever" as -1 does; twice it is no time a date can
            # be added to (an OverflowError stopped the prune before any key was judged:
            # review stop 56).
            return NeededFor(None, f"{spec.name} keeps its records for ever on the broker")
        if longest is None or retention_ms > longest[0]:
            longest = (retention_ms, spec.name)
    if longest is not None and 2 * timedelta(milliseconds=longest[0]) > registry:
        retention_ms, name = longest
        return NeededFor(
            2 * timedelta(milliseconds=retention_ms),
            f"twice the {_days(timedelta(milliseconds=retention_ms))} {name} keeps its "
            "records on the broker",
        )
    return NeededFor(registry, "twice the longest retention of the topics addressed to it")


async def retentions_on_the_broker(connect: Connect, names: Sequence[str]) -> dict[str, int | None]:
    """The retention (ms; None: for ever) of each topic of ``names`` that exists on the
    broker. Raises :class:`RetentionNotDescribed` when the principal may not describe one,
    and the client's error (or TimeoutError) when the broker does not answer within
    ``BROKER_ANSWER_S``."""
    return await asyncio.wait_for(_retentions(connect, names), BROKER_ANSWER_S)


async def _retentions(connect: Connect, names: Sequence[str]) -> dict[str, int | None]:
    admin = AIOKafkaAdminClient(**client_options(connect), request_timeout_ms=5000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [name for name in names if name in existing]
        found = await topic_retentions(admin, present)
    finally:
        await admin.close()
    unknown = sorted(set(present) - set(found))
    if unknown:
        raise RetentionNotDescribed(
            f"the principal may not DescribeConfigs {', '.join(unknown)}: their retention "
            "is not known"
        )
    return found


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86_400
    return f"{days:g} day{'s' if days != 1 else ''}"
