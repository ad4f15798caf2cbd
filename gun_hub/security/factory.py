"""Building a party's envelope, and the hub's audit trail, from the settings (once per
process, at start-up; the keys they hold follow their files from then on)."""

from __future__ import annotations

import logging

from gun_contract.heartbeats import HeartbeatGate
from gun_contract.security.entitlements import HUB_PARTY, Entitlements
from gun_contract.security.jose_envelope import EnvelopePolicy, JoseEnvelope
from gun_contract.security.keystore import AuditSigner, KeystoreError, PartyKeys
from gun_contract.security.replay import READABLE_S, ReplayGuard, SqliteReplayGuard
from gun_contract.settings import SecuritySettings, Settings, load_settings
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.domain.routing import RoutingTableError, load_routing_table
from gun_hub.security.audit import (
    DEFAULT_CHECKPOINT_WITHIN_S,
    UNSIGNED_GRACE_S,
    AuditTrail,
    HeadStore,
    TailPolicy,
)

log = logging.getLogger(__name__)


def policy_from(settings: SecuritySettings) -> EnvelopePolicy:
    return EnvelopePolicy(
        lifetime_s=settings.message_lifetime_s, max_clock_skew_s=settings.max_clock_skew_s
    )


def build_envelope(
    settings: SecuritySettings,
    party: str,
    topics: TopicRegistry,
    replay: ReplayGuard | None = None,
    *,
    partitions: int | None = None,
) -> JoseEnvelope:
    """The envelope of ``party``; replay memory defaults to :func:`replay_memory` (a
    reader that commits builds that itself, to tell it its commits)."""
    keys = PartyKeys.load(settings.keys_dir, party)
    entitlements = Entitlements.from_registry(topics)
    if replay is None:
        replay = replay_memory(settings, party, topics, partitions=partitions)
    return JoseEnvelope(keys, entitlements, replay, policy_from(settings))


def replay_memory(
    settings: SecuritySettings, party: str, topics: TopicRegistry, *, partitions: int | None
) -> SqliteReplayGuard:
    """``party``'s durable replay memory, a SQLite file of its own: it forgets an id once
    each of the ``partitions`` (``kafka.partitions``) of the topics it reads is committed
    past its expiry, as its reader tells it (``SqliteReplayGuard.committed``); not told,
    or the count not given, only once no copy can be left in the log."""
    return SqliteReplayGuard(
        settings.state_dir / f"{topics.prefix}-{party}-replay.sqlite",
        keep_after_expiry_s=settings.max_clock_skew_s,
        partitions=partitions,
        readable_s=readable_s(topics, Entitlements.from_registry(topics), party),
    )


def readable_s(topics: TopicRegistry, entitlements: Entitlements, party: str) -> int:
    """The longest a record addressed to ``party`` can stay readable: twice the longest
    retention of the topics addressed to it (a segment is deleted only once its newest
    record is past the retention), as the hub's ``decided_marker_s`` for declarations."""
    retentions = [
        spec.retention_ms // 1000
        for spec in topics.specs()
        if entitlements.recipient_of(spec.name) == party
        and spec.retention_ms is not None
        and spec.retention_ms > 0
    ]
    return 2 * max(retentions) if retentions else READABLE_S


def checkpoint_within_s(settings: Settings) -> float:
    """How long an audit record may wait for its checkpoint while the hub runs
    (``hub.audit_checkpoint_within_s``; its default until that setting exists)."""
    value = getattr(settings.hub, "audit_checkpoint_within_s", DEFAULT_CHECKPOINT_WITHIN_S)
    return float(value)


def build_audit_trail(heads: HeadStore, settings: Settings) -> AuditTrail:
    """The hub's audit trail: checkpoints signed with the hub's audit key (never its
    envelope key), after at most ``audit_checkpoint_every`` records, within
    ``audit_checkpoint_within_s`` seconds, and as soon as a worker gets a partition."""
    return AuditTrail(
        heads,
        AuditSigner.load(settings.security.keys_dir),
        checkpoint_every=settings.hub.audit_checkpoint_every,
        checkpoint_within_s=checkpoint_within_s(settings),
        checkpoint_on_start=True,
    )


def tail_policy(settings: Settings) -> TailPolicy:
    """What ``audit verify`` allows after a partition's last checkpoint: the hub's bounds,
    plus a grace in time for restarts, rebalances and clocks a little apart."""
    return TailPolicy(
        max_unsigned=settings.hub.audit_checkpoint_every,
        max_unsigned_age_s=checkpoint_within_s(settings) + UNSIGNED_GRACE_S,
        clock_skew_s=settings.security.max_clock_skew_s,
    )


def build_heartbeat_gate(settings: Settings, topics: TopicRegistry) -> HeartbeatGate:
    """What the hub's operations view checks heartbeats with: every party's public keys
    as the hub's keystore has them (read again when they change), the registry's rule of
    who beats for which component, the allowed clock skew."""
    return HeartbeatGate(
        PartyKeys.load(settings.security.keys_dir, HUB_PARTY),
        Entitlements.from_registry(topics),
        max_clock_skew_s=settings.security.max_clock_skew_s,
    )


def heartbeat_gate_from_environment() -> HeartbeatGate:
    """:func:`build_heartbeat_gate` with the settings and routing table the hub process
    started with (read again from the environment); a gate that believes nothing, said
    once here, when they cannot be read."""
    settings = load_settings()
    try:
        routing = load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
        topics = topic_registry(settings.kafka.topic_prefix, routing.authorities)
        return build_heartbeat_gate(settings, topics)
    except (KeystoreError, RoutingTableError) as err:  # each names the file at fault
        problem = str(err)
    why = f"heartbeats cannot be verified ({problem}): none is believed"
    log.error("operations view: %s", why)
    return HeartbeatGate.refusing_all(why)
