"""The topic registry: every topic of the hub, declared once.

Names, partitioning, retention and compaction are decided here and nowhere else; the topic
creation command, the faust app, the adapters and the AsyncAPI document all read this
module. Keys are the declaration reference (UTF-8) so that every event of one declaration
lands on the same partition number of every topic and stays in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from aiokafka.partitioner import murmur2

from gun_contract.limits import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES

TOPIC_MAX_MESSAGE_BYTES = MAX_RECORD_BYTES + RECORD_OVERHEAD_BYTES


class Payload(StrEnum):
    """What a topic's record values are."""

    DECLARATION_XML = "declaration XML (plain)"
    ENVELOPE = "sealed envelope"
    SIGNED = "signed JSON (JWS, not encrypted)"
    JSON = "JSON"
    ORIGINAL_BYTES = "original bytes, error in headers"
    STATE_SEALED = "sealed with the writer's state key (AES-GCM, internal)"
    # The hub's deadlines topic: ticks as text, takeover notices sealed (pipeline/takeover.py).
    TICKS = "ticks as text, notices sealed with the writer's state key (internal)"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its full name and how it is laid out on the cluster."""

    name: str
    producer: str
    consumer: str
    payload: Payload
    description: str
    keyed: bool = True
    compacted: bool = False
    # Writers besides ``producer``, each entitled to it with keys of its own.
    other_producers: tuple[str, ...] = ()
    retention_ms: int | None = None
    # The hub relies on each record being readable for the whole retention (a shorter
    # one on an existing topic is lengthened at start-up: kafka/topic_settings.py).
    retention_relied_on: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def broker_config(self) -> dict[str, str]:
        """Topic-level configuration to create the topic with.

        Every topic takes records up to the size limit of limits.py. Envelope topics are
        stamped with the broker's log-append time: freshness is judged against it, a time
        the producer cannot choose and the reader's clock does not change (contract 5).
        """
        config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}
        if self.payload is Payload.ENVELOPE:
            config["message.timestamp.type"] = "LogAppendTime"
        config.update(self.config)
        config["cleanup.policy"] = "compact" if self.compacted else "delete"
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


# Topics other parties write besides the envelope ones: the broker dates their records.
# With the producer's time, one record dated in the year 9000 kept its segment, and every
# later one, from retention for good, and records dated further and further ahead made the
# broker roll a segment per batch, open files and memory maps until it stopped (review
# stop 46). No reader needs the writer's time there (a heartbeat and a dead letter say
# theirs in their content and headers).
_WRITERS_DO_NOT_DATE = {"message.timestamp.type": "LogAppendTime"}


def reference_partition(reference: str, partitions: int) -> int:
    """The partition the hub itself chooses for a declaration reference: murmur2 of its
    UTF-8 bytes, as the Java client's and aiokafka's default partitioners hash a key.

    Only where the hub picks a partition for its own records, never to guess where a
    declaration arrived (the clearance system's producer chose that, contract section 2).
    The decision outbox is written here (pipeline/hub_context.py): the versions of one
    reference may arrive on several partitions, and every decision of the reference then
    goes through one publisher lane, the one gate of its versions (ADR 0005's addendum
    of stop 38)."""
    hashed: int = murmur2(reference.encode())
    return (hashed & 0x7FFFFFFF) % partitions


_SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
_THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicRegistry:
    """Topic names for one prefix and set of authorities."""

    prefix: str
    authorities: tuple[str, ...]

    @property
    def declarations(self) -> str:
        return f"{self.prefix}.declarations"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def ops_lag(self) -> str:
        return f"{self.prefix}.ops.lag"

    @property
    def ops_health(self) -> str:
        return f"{self.prefix}.ops.health"

    @property
    def facts(self) -> str:
        """Internal to the hub: what the statistics are made of (declarant, documents)."""
        return f"{self.prefix}.hub.facts"

    @property
    def decision_outbox(self) -> str:
        """Internal to the hub: sealed decisions waiting for the transactional publisher."""
        return f"{self.prefix}.hub.decision-outbox"

    @property
    def claims(self) -> str:
        """Internal to the hub: each declaration's message id claimed at the one partition
        that owns it, and the verdict sent back (pipeline/admission.py)."""
        return f"{self.prefix}.hub.claims"

    @property
    def operator_actions(self) -> str:
        """Internal to the hub: what officers did through it, for the audit keeper."""
        return f"{self.prefix}.hub.operator-actions"

    @property
    def rollout(self) -> str:
        """Internal to the hub: each authority's rollout mode, everywhere or per office
        (rollout.py); compacted, the latest setting of each scope."""
        return f"{self.prefix}.hub.rollout"

    @property
    def deadlines(self) -> str:
        """Internal to the hub: ticks of cases whose deadline (or retention) is due,
        and notices of a later version read on another partition (pipeline/takeover.py)."""
        return f"{self.prefix}.hub.deadlines"

    def requests(self, authority: str) -> str:
        """Topic on which the hub asks ``authority`` (encrypted to it alone)."""
        return f"{self.prefix}.requests.{authority}"

    def responses(self, authority: str) -> str:
        """Topic on which ``authority``'s adapter answers the hub."""
        return f"{self.prefix}.responses.{authority}"

    def all_responses(self) -> list[str]:
        return [self.responses(a) for a in self.authorities]

    def specs(self) -> list[TopicSpec]:
        """Every topic, in the order they appear in the documentation."""
        specs = [
            TopicSpec(
                self.declarations,
                "clearance system",
                "hub",
                Payload.ENVELOPE,
                "Customs declarations to check, one record per declaration version, sealed "
                "by the clearance system, or by the single window's intake gateway for "
                "declarations lodged over HTTP or as files.",
                retention_ms=_SEVEN_DAYS_MS,
                other_producers=("intake gateway",),
            )
        ]
        for authority in self.authorities:
            specs.append(
                TopicSpec(
                    self.requests(authority),
                    "hub",
                    f"adapter {authority}",
                    Payload.ENVELOPE,
                    f"Check, reserve, write-off and delete requests for {authority}.",
                    retention_ms=_SEVEN_DAYS_MS,
                )
            )
            specs.append(
                TopicSpec(
                    self.responses(authority),
                    f"adapter {authority}",
                    "hub",
                    Payload.ENVELOPE,
                    f"Per-document verdicts from {authority}.",
                    retention_ms=_SEVEN_DAYS_MS,
                )
            )
        specs += [
            TopicSpec(
                self.decisions,
                "hub",
                "clearance system",
                Payload.ENVELOPE,
                "One release or control decision per declaration version.",
                retention_ms=_THIRTY_DAYS_MS,
            ),
            TopicSpec(
                self.status,
                "hub",
                "status and statistics views",
                Payload.JSON,
                "Per-declaration status history (no confidential data).",
                retention_ms=_THIRTY_DAYS_MS,
            ),
            TopicSpec(
                self.audit,
                "hub",
                "auditors",
                Payload.JSON,
                "Hash-chained record of every decision.",
                # The audit trail is evidence: it is never deleted by retention.
                retention_ms=-1,
            ),
            TopicSpec(
                self.dlq,
                "any component",
                "operations",
                Payload.ORIGINAL_BYTES,
                "Messages that could not be processed: original bytes, error kind and "
                "text in headers.",
                retention_ms=_THIRTY_DAYS_MS,
                config=_WRITERS_DO_NOT_DATE,
            ),
            TopicSpec(
                self.decision_outbox,
                "hub (agents)",
                "hub (decision publisher)",
                Payload.STATE_SEALED,
                "Internal: decisions announced at least once, published exactly once.",
                retention_ms=_SEVEN_DAYS_MS,
            ),
            TopicSpec(
                self.claims,
                "hub (intake, claims agent)",
                "hub (claims agent)",
                Payload.JSON,
                "Internal: a declaration's message id claimed at its owner partition, and "
                "the verdict (first sighting or replay) sent back to the declaration's.",
                retention_ms=24 * 3600 * 1000,
            ),
            TopicSpec(
                self.deadlines,
                "hub (deadline and retention timers, intake)",
                "hub",
                Payload.TICKS,
                "Internal: a case's deadline has passed (decided in degraded mode) or its "
                "retention is due; or a later version was read on another partition (a "
                "notice sealed with the hub's state key).",
                # As long as a declaration: a takeover notice (pipeline/takeover.py) is
                # read once by the partition it tells; deleted before a partition behind
                # read it, the earlier version's control was kept and reported overdue
                # for ever (24 hours until stop 52). Ticks and notices are small and few.
                retention_ms=_SEVEN_DAYS_MS,
                retention_relied_on=True,
            ),
            TopicSpec(
                self.operator_actions,
                "hub (officer listener)",
                "hub (audit keeper)",
                Payload.STATE_SEALED,
                "Internal: what an officer did through the hub (a dead letter's payload read, "
                "a redrive), sealed with the hub's state key, chained into the audit trail.",
                retention_ms=_SEVEN_DAYS_MS,
            ),
            TopicSpec(
                self.rollout,
                "hub (officer listener)",
                "hub (every worker)",
                Payload.STATE_SEALED,
                "Internal: each authority's rollout mode (off, shadow, advice, enforce), "
                "everywhere or at one customs office, sealed with the hub's state key; "
                "never deleted: the newest setting of each scope is in force.",
                # Kept whole, not compacted (ADR 0023): compaction keeps each key's newest
                # record, so garbage, a tombstone or an older setting written again under
                # a scope's key erased the officer's mode for every worker started after
                # the cleaning (review stop 40-F). A setting is a few hundred bytes, set
                # by hand: the log stays small.
                retention_ms=-1,
            ),
            TopicSpec(
                self.ops_lag,
                "lag monitor",
                "operations",
                Payload.JSON,
                "Consumer lag snapshots of every group.",
                keyed=False,
                retention_ms=_SEVEN_DAYS_MS,
            ),
            TopicSpec(
                self.ops_health,
                "adapters",
                "operations (hub dashboard)",
                Payload.SIGNED,
                "Each adapter's heartbeat, signed with its authority's key: partner circuit "
                "state and pending operations.",
                retention_ms=24 * 3600 * 1000,
                config=_WRITERS_DO_NOT_DATE,
            ),
            TopicSpec(
                self.facts,
                "hub (agents)",
                "hub (statistics view)",
                Payload.JSON,
                "Internal: who lodged each accepted declaration version, per-decision and "
                "per-write-off facts, for the trader lookup and the statistics.",
                retention_ms=_THIRTY_DAYS_MS,
            ),
        ]
        return specs

    def names(self) -> list[str]:
        return [spec.name for spec in self.specs()]


def topic_registry(prefix: str, authorities: Iterable[str]) -> TopicRegistry:
    """Build the registry for a prefix and the authorities of the routing table."""
    return TopicRegistry(prefix=prefix, authorities=tuple(sorted(set(authorities))))
