"""The hub's faust application: topics, tables, and three thin agents.

Agents only turn events into calls on :mod:`gun_hub.pipeline` and send what comes back.
Processing is at-least-once (faust's exactly-once mode has open bugs, see docs/kafka.md):
the pipeline is idempotent by declaration version and by authority answer, and the case
is written to the table (changelog) before the records it causes are sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from faust.exceptions import FaustError
from faust.types import TP
from mode import Service

from gun_contract.commit_clock import CommitClock
from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter
from gun_contract.effects import Effects, Headers, OutgoingRecord
from gun_contract.envelope import LOG_APPEND_TIME
from gun_contract.kafka.admin import (
    CommittedTail,
    RecordsRead,
    committed_records_since,
    committed_tails,
    last_records,
)
from gun_contract.kafka.client import SCRAM, from_settings
from gun_contract.kafka.log_reader import LogReader
from gun_contract.private_files import make_private_folder
from gun_contract.security.entitlements import HUB_PARTY, Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import NoEncryptionKey, PartyKeys
from gun_contract.security.replay import NoReplayMemory, TableReplayGuard
from gun_contract.security.state_cipher import (
    SealedStore,
    StateCipher,
    StateKeyMissing,
    StateUnreadable,
)
from gun_contract.settings import Settings
from gun_contract.topics import (
    TOPIC_MAX_MESSAGE_BYTES,
    Payload,
    TopicRegistry,
    TopicSpec,
    topic_registry,
)
from gun_contract.validation import unhandled_reason
from gun_hub import metrics
from gun_hub.domain.risk import load_risk_rules
from gun_hub.domain.rollout import RolloutBoard
from gun_hub.domain.routing import RoutingTable, load_routing_table
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import OpsState, register_ops_metrics
from gun_hub.ops.lag_monitor import (
    LagMonitor,
    count_lost_from_start,
    not_counted_here,
    snapshot_publisher,
    watched_groups,
)
from gun_hub.ops.view import FeedTopics, OpsView
from gun_hub.pipeline.admission import (
    AdmissionGate,
    Admissions,
    Claim,
    ClaimJudge,
    Waiting,
    claims_memory,
    read_claims_record,
)
from gun_hub.pipeline.answer_progress import AnswerProgress
from gun_hub.pipeline.audit_keeper import AuditKeeper
from gun_hub.pipeline.correlation import Correlation
from gun_hub.pipeline.deadlines import DeadlineIndex, Deadlines, IndexedOpenCases
from gun_hub.pipeline.handling_writes import WriteJournal
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.pipeline.intake import Intake
from gun_hub.pipeline.redrive import RedriveGate
from gun_hub.pipeline.retention import (
    RETENTION_TABLE,
    RETENTION_TICK,
    CaseRetention,
    RetainedCases,
    RetentionIndex,
)
from gun_hub.pipeline.takeover import Takeover, is_notice
from gun_hub.pipeline.takeover import agent_name as takeover_agent_name
from gun_hub.pipeline.unreadable_state import UnreadableCases, dead_letter_unreadable
from gun_hub.runtime import clock_check, gc_pauses, table_store, table_writes
from gun_hub.runtime.admission_limit import AdmissionLimit
from gun_hub.runtime.aged_out import InputsAgedOut
from gun_hub.runtime.audit_lanes import AuditLanes, AuditLinkProducer
from gun_hub.runtime.audit_resync import (
    LOOK_BACK_RECORDS,
    LOOK_BACK_TIMEOUT_S,
    TAIL_RECORDS,
    resync_audit_heads,
    retaker,
    take_over_chains,
)
from gun_hub.runtime.deadline_sweep import DeadlineSweep
from gun_hub.runtime.delivery import StateFirst, send_outbox
from gun_hub.runtime.due_keys import RocksDueKeys
from gun_hub.runtime.faust_app import (
    STOP_WAIT_S,
    HubApp,
    InHand,
    as_if_handling,
    every,
    handled_agent,
    hold,
    mark_handled_at,
    release_at,
    watch_offsets,
)
from gun_hub.runtime.held_declarations import HeldDeclarations
from gun_hub.runtime.ownership import PartitionGivenUp
from gun_hub.runtime.partition_counts import refuse_other_counts
from gun_hub.runtime.publisher import (
    DecisionPublisher,
    publisher_group,
    publisher_transactional_id,
)
from gun_hub.runtime.readiness import GroupMembership, waiting_for
from gun_hub.runtime.retention_sweep import RetentionSweep
from gun_hub.runtime.rollout_follower import RolloutFollower
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer
from gun_hub.security.factory import (
    build_audit_trail,
    build_heartbeat_gate,
    checkpoint_within_s,
    policy_from,
)
from gun_hub.security.own_dead_letters import vouched
from gun_hub.web import register_web_views
from gun_hub.web.dead_letters import DeadLetterDesk
from gun_hub.web.probes import register_probes
from gun_hub.web.rollout import RolloutDesk
from gun_hub.xml.declaration_codec import DeclarationCodec
from gun_hub.xml.safe_parse import XmlLimits

log = logging.getLogger(__name__)

CASES_TABLE = "cases"
SEEN_MESSAGES_TABLE = "seen-messages"
CLAIMED_IDS_TABLE = "claimed-ids"
AUDIT_HEADS_TABLE = "audit-heads"
OPEN_CASES_TABLE = "open-cases"
CASE_RETENTION_TABLE = RETENTION_TABLE  # the markers are sealed for it (retention.py)
_RAW = {"key_serializer": "raw", "value_serializer": "raw"}
UNHANDLED = "UNHANDLED_ERROR"


TABLES = (
    CASES_TABLE,
    SEEN_MESSAGES_TABLE,
    CLAIMED_IDS_TABLE,
    AUDIT_HEADS_TABLE,
    OPEN_CASES_TABLE,
    CASE_RETENTION_TABLE,
)


def audit_links_prefix(app_id: str) -> str:
    """The transactional ids of the audit chains' producers begin with it."""
    return f"{app_id}-audit-links"


def hub_coordinated(settings: Settings) -> tuple[list[str], list[str]]:
    """The consumer groups a hub worker joins and (one of each family of) the
    transactional ids it uses: its principal must be granted them, which its start checks
    (cli/components.py)."""
    app_id = settings.hub.app_id
    groups = [app_id, publisher_group(app_id)]
    transactional_ids = [
        publisher_transactional_id(app_id, 0),
        AuditLinkProducer.transactional_id_of(audit_links_prefix(app_id), 0),
    ]
    return groups, transactional_ids


def table_changelogs(settings: Settings) -> list[TopicSpec]:
    """The changelog topic of each hub table, created before the worker starts: a worker
    that handled an event before faust had created them failed on every table access."""
    return [
        TopicSpec(
            _changelog_name(settings, name),
            "hub (tables)",
            "hub (table recovery)",
            Payload.JSON,
            f"Internal: changelog of the hub's {name} table.",
            compacted=True,
        )
        for name in TABLES
    ]


def _changelog_name(settings: Settings, table: str) -> str:
    return f"{settings.hub.app_id}-{table}-changelog"


def utc_now() -> datetime:
    return datetime.now(UTC)


class _TableStore:
    """Adapts a faust table holding raw bytes to the pipeline's ``CaseStore``."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        value = self._table.get(key)
        return value if isinstance(value, bytes) else None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._table[key]  # a tombstone in the changelog

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = self._table.get(key)  # one lookup (WriteAwaitedTable.get), not three
        if value is None:
            return default
        del self._table[key]  # a tombstone in the changelog
        return value if isinstance(value, bytes) else default


def _raw_table(app: faust.App, settings: Settings, name: str) -> Any:
    """A table of raw bytes keyed by raw bytes (ADR 0002).

    faust derives a table's codecs from its key/value *types* and falls back to JSON for
    anything but a faust Record. The changelog topic (which recovery decodes with) is
    given raw codecs explicitly, and so are the table's write and store paths.
    """
    changelog = app.topic(
        _changelog_name(settings, name),
        partitions=settings.kafka.partitions,
        compacting=True,
        deleting=False,
        acks=False,
        internal=True,
        # A case holds every quoted document: as large as a record may be (limits.py).
        config={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
        **_RAW,
    )
    table = app.Table(
        name,
        default=None,
        partitions=settings.kafka.partitions,
        changelog_topic=changelog,
        options=_store_options(settings) if settings.hub.store.startswith("rocksdb") else None,
    )
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    return table


def _store_options(settings: Settings) -> dict[str, Any]:
    """RocksDB sized for a hub's tables: a case is a few kilobytes written a few times,
    and retention deletes it; buffers faust sizes for bulk loads never flush here. Every
    table partition shares the process's memory budget (table_store.py)."""
    mib = 1024 * 1024
    return {
        "write_buffer_size": settings.hub.rocksdb_write_buffer_mib * mib,
        "max_write_buffer_number": 2,
        "target_file_size_base": 8 * mib,
        "budget": table_store.process_budget(settings.hub.rocksdb_memory_mib),
    }


def _credentials(settings: Settings) -> faust.SASLCredentials | None:
    connect = from_settings(settings.kafka)
    if not connect.secured:
        return None
    return faust.SASLCredentials(
        username=connect.username,
        password=connect.password,
        mechanism=SCRAM,
        ssl_context=create_ssl_context(cafile=str(connect.ca_file) if connect.ca_file else None),
    )


def _value(event: Any) -> bytes:
    value = event.value
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""


Handler = Callable[[Any, SourcePosition, float | None], Effects]


def _accepted_at(message: Any) -> float | None:
    """The broker's log-append time of a record, in seconds (faust gives seconds)."""
    if message.timestamp_type != LOG_APPEND_TIME or message.timestamp is None:
        return None
    return float(message.timestamp)


_CLUSTER_RETRIES = 10
# Records handled whose effects the broker has not acknowledged yet, at most (settling.py).
_IN_FLIGHT_LIMIT = 1000
# Taking the audit partitions' producers (fencing former owners, ending their open
# transactions) at an assignment gives up after this long and stops the worker, which
# starts again: a broker that answers does it in well under a second.
_TAKE_AUDIT_PARTITIONS_S = 60.0


class Rollback(Protocol):
    """What a handler changes besides its outbox (the audit chains, the decisions on their
    way, its table writes): recorded from ``mark``, put back by ``undo`` when its outbox
    is discarded, kept by ``kept`` when it completed."""

    def mark(self) -> int: ...

    def undo(self, mark: int) -> None: ...

    def kept(self) -> None: ...


async def _handled(
    handle: Callable[[], Effects],
    data: bytes,
    source: SourcePosition,
    dlq: str,
    agent: str,
    *,
    rollback: Rollback | None = None,
    unreadable: Callable[[StateUnreadable], None] | None = None,
) -> Effects:
    """What handling the record ``data`` read at ``source`` causes. A failure of the
    cluster or the framework (a changelog not there yet, a broker away) is not the
    record's fault: handled again with backoff, as a redelivery would (handlers are
    idempotent), then raised (the agent restarts and the record is read again). A stored
    value sealed with a state key this worker lacks is not either: handled again the same
    way (the key file is read again each time), then raised, and the agent stops the
    worker (``handled_agent``), naming the key. A stored value that does not open for any
    other reason is data about its key (ADR 0022): ``unreadable`` forgets it and the
    record is dead-lettered (STATE_UNREADABLE). Any other failure is the record's:
    dead-lettered. Either way the handler's outbox is discarded, so what it changed
    besides (``rollback``: the audit links it built, the decisions it announced, its
    table writes) is undone, or the next link would name one never sent, and a case be
    left as no handling ever leaves one (pipeline/handling_writes.py)."""
    for attempt in range(_CLUSTER_RETRIES):
        mark = rollback.mark() if rollback is not None else 0
        try:
            outbox = handle()
        except PartitionGivenUp:
            # A table refused its write: the record's partition is being revoked (faust
            # lets the agents finish the event in hand). Not the record's fault, and
            # nothing to retry: its next owner reads it again. Nothing is sent.
            if rollback is not None:
                rollback.undo(mark)
            log.info("agent %s: %s given up with its partition", agent, source.describe())
            return Effects()
        except (KafkaError, FaustError, StateKeyMissing, NoEncryptionKey) as error:
            # StateKeyMissing: this worker lacks a state key another one sealed with
            # (rotated, not deployed here yet): never the record's fault, never a dead
            # letter, and never a reason to forget the value. NoEncryptionKey: a party's
            # last encryption key retired (or a partner's retirement imported before its
            # new key): every record for it would have been dead-lettered as a bug.
            if rollback is not None:
                rollback.undo(mark)
            if attempt == _CLUSTER_RETRIES - 1:
                raise
            delay = min(5.0, 0.1 * 2**attempt)
            log.warning(
                "agent %s: %s on %s; handled again in %.1fs",
                agent,
                type(error).__name__,
                source.describe(),
                delay,
            )
            await asyncio.sleep(delay)
            continue
        except StateUnreadable as error:
            if rollback is not None:
                rollback.undo(mark)
            return _state_unreadable(dlq, data, source, agent, error, unreadable)
        except Exception as error:  # noqa: BLE001 - dead-lettered with its reason
            if rollback is not None:
                rollback.undo(mark)
            return _unhandled(dlq, data, source, agent, error)
        if rollback is not None:
            rollback.kept()
        return outbox
    raise AssertionError("unreachable")  # pragma: no cover


def _state_unreadable(
    dlq: str,
    data: bytes,
    source: SourcePosition,
    agent: str,
    error: StateUnreadable,
    forget: Callable[[StateUnreadable], None] | None,
) -> Effects:
    """A record whose handling met a stored value that does not open (an answer, a tick:
    the intake refuses a declaration itself): the value forgotten, so that no later event
    meets it again, and the record dead-lettered; the worker goes on."""
    log.warning("agent %s: %s on %s: dead-lettered", agent, error, source.describe())
    then = "left as it is (nothing here forgets it)"
    if forget is not None:
        try:
            forget(error)
        except PartitionGivenUp:
            log.info("agent %s: %s given up with its partition", agent, source.describe())
            return Effects()  # its next owner reads it again, and forgets the value
        then = UnreadableCases.FORGOTTEN
    outbox = Effects()
    dead_letter_unreadable(outbox, dlq, data, source, f"hub.{agent}", error, then)
    return outbox


def _unhandled(
    dlq: str, data: bytes, source: SourcePosition, agent: str, error: Exception
) -> Effects:
    """A record a handler could not deal with: dead-lettered with its reason, and the
    worker goes on (nothing a party writes may stop it)."""
    log.exception("agent %s could not handle %s: dead-lettered", agent, source.describe())
    metrics.DEAD_LETTERS.labels(kind=UNHANDLED).inc()
    outbox = Effects()
    add_dead_letter(
        outbox,
        dlq,
        data,
        error_class=ErrorClass.PERMANENT,
        kind=UNHANDLED,
        reason=unhandled_reason(error),
        source=source,
        component=f"hub.{agent}",
    )
    return outbox


def _source(event: Any) -> SourcePosition:
    message = event.message
    return SourcePosition(message.topic, message.partition, message.offset, event.key)


def _header_list(headers: Any) -> Headers:
    """faust gives headers as a mapping or a list of pairs, depending on the path; any
    party may write ``gun.dlq``, so a header may also have no value (left out)."""
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), bytes(v)) for k, v in pairs if isinstance(v, (bytes, bytearray, memoryview))]


async def _every(*settles: Awaitable[None]) -> None:
    """Until every one of ``settles`` completes (the first failure raised)."""
    await asyncio.gather(*settles)


def _settle_unwatched(settled: Awaitable[None] | None) -> None:
    """Let ``settled`` run to its end with nobody waiting (its record is read again): its
    ``after_delivery`` or ``if_undelivered`` still run, its failure is only logged."""

    def logged(done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("records of a record read again not delivered: %r", done.exception())

    if settled is not None:
        asyncio.ensure_future(settled).add_done_callback(logged)


def _closing(name: str, close: Callable[[], Awaitable[None]]) -> type[Service]:
    """A service that runs ``close`` when the app stops."""

    async def on_stop(_self: Service) -> None:
        await close()

    return type(name, (Service,), {"on_stop": on_stop})


@dataclass(slots=True)
class Hub:
    """A configured faust app and what its agents use."""

    app: faust.App
    topics: TopicRegistry
    routing: RoutingTable


def build_hub(settings: Settings) -> Hub:
    """Create the faust app for these settings; nothing connects until the worker starts."""
    routing = load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    topics = topic_registry(settings.kafka.topic_prefix, routing.authorities)
    metrics.export_at_start(routing.authorities)  # alerts see a counter's first increment
    table_store.use()  # rocksdb://: every table under one memory budget
    gc_pauses.watch()  # gun_hub_gc_pause_seconds
    # gun_hub_clock_offset_seconds; an error logged beyond the envelope skew.
    clock_check.CLOCK.configure(envelope_skew_s=settings.security.max_clock_skew_s)
    # HubApp: commits only past records an agent handled (runtime/offsets.py).
    app = HubApp(
        settings.hub.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
        store=settings.hub.store,
        datadir=str(settings.hub.data_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        # At-least-once with idempotent handling (ADR 0001): faust's exactly_once mode
        # was measured to duplicate decisions and is not offered.
        processing_guarantee="at_least_once",
        in_flight_limit=_IN_FLIGHT_LIMIT,
        web_enabled=settings.hub.web_enabled,
        web_host=settings.hub.web_host,
        web_port=settings.hub.web_port,
        web_bind=settings.hub.web_host,
        # The built-in /table endpoints would publish case contents: never.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
        table_standby_replicas=0,
        producer_linger_ms=settings.hub.producer_linger_ms,
        producer_max_batch_size=256 * 1024,
        # Every record the contract allows travels (limits.py).
        producer_max_request_size=TOPIC_MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=TOPIC_MAX_MESSAGE_BYTES,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.hub.session_timeout_s,
        broker_heartbeat_interval=settings.hub.session_timeout_s / 5,
        logging_config=None,
        broker_credentials=_credentials(settings),
        # faust's wait for the records in hand at a clean stop, within the whole stop's
        # deadline (its in-loop cut comes at two thirds of it: hub_worker.py).
        stop_wait_s=min(STOP_WAIT_S, settings.stop_within_s / 3),
    )
    # First at every assignment: a keyed topic grown while the worker runs stops it
    # before any partition is taken in (runtime/partition_counts.py; review stop 37, K3).
    app.before_assigning.append(
        refuse_other_counts(
            [spec.name for spec in (*topics.specs(), *table_changelogs(settings)) if spec.keyed],
            settings.kafka.partitions,
            _partition_count(app),
        )
    )
    if settings.hub.gc_freeze_after_start:

        async def freeze_the_startup_heap() -> None:
            # A task runs once the tables are recovered: the worker's long-lived
            # objects are made by then (runtime/gc_pauses.py).
            log.info(
                "garbage collector: %d objects of the started worker frozen", gc_pauses.freeze()
            )

        app.task(freeze_the_startup_heap)
    declarations = app.topic(topics.declarations, **_RAW)
    responses = app.topic(*topics.all_responses(), **_RAW)
    dead_letters = app.topic(topics.dlq, **_RAW)
    cases = _raw_table(app, settings, CASES_TABLE)
    seen_messages = _raw_table(app, settings, SEEN_MESSAGES_TABLE)
    audit_heads = _raw_table(app, settings, AUDIT_HEADS_TABLE)
    open_cases = _raw_table(app, settings, OPEN_CASES_TABLE)
    deadline_ticks = app.topic(topics.deadlines, **_RAW)
    operator_actions = app.topic(topics.operator_actions, **_RAW)
    # Reads records back by position: redrives checked against their original, dead
    # letters shown on the officer listener.
    log_reader = LogReader(from_settings(settings.kafka))
    app.service(_closing("ClosingLogReader", log_reader.close))
    keys = PartyKeys.load(settings.security.keys_dir, HUB_PARTY)
    # A case quotes every document, war-material licences included: sealed with the hub's
    # state key before faust sees it, so RocksDB and the changelog hold it encrypted.
    state_cipher = StateCipher.load(settings.security.keys_dir, HUB_PARTY)
    # A handling that fails has its table writes undone with its outbox: a prefix of them
    # left cases no handling leaves (pipeline/handling_writes.py, review stop 40).
    writes = WriteJournal()
    sealed_cases = SealedStore(writes.journaled(_TableStore(cases)), state_cipher, CASES_TABLE)
    # The deadline timer looks at what falls due, kept in memory for the next hour from
    # the pipeline's writes (read_the_tables_again, below: and after each rebalance);
    # an entry written back by an undo is scheduled as any write.
    deadline_index = DeadlineIndex()
    open_case_store = writes.journaled(IndexedOpenCases(_TableStore(open_cases), deadline_index))
    progress = AnswerProgress()
    sweep = DeadlineSweep(app, topics, open_cases, progress, deadline_index)
    # Finalised cases leave the cases table; a marker each keeps the versions rule.
    retention_table = _raw_table(app, settings, CASE_RETENTION_TABLE)
    retention_entries = writes.journaled(_TableStore(retention_table))
    # Every entry's key in due order, on the worker's disk (days of them: due_keys.py).
    retention_index = RetentionIndex(RocksDueKeys(settings.hub.data_dir / "retention-due"))

    async def read_the_tables_again(sender: Any, **_: Any) -> None:
        """The timers' indexes hold what this worker wrote: once a rebalance's recovery
        has completed, partitions taken over hold entries it never wrote."""
        deadline_index.invalidate()
        retention_index.invalidate()

    app.on_rebalance_complete.connect(read_the_tables_again)
    retention = CaseRetention(
        cases=sealed_cases,
        entries=retention_entries,
        open_cases=open_case_store,
        index=retention_index,
        clock=utc_now,
        retention_s=settings.hub.case_retention_s,
        marker_s=settings.hub.decided_marker_s,
        # A marker keeps the documents written off (war-material licences included).
        cipher=state_cipher,
    )
    # What the pipeline reads: the live case, else the marker of a retired one.
    store = RetainedCases(sealed_cases, retention_entries, state_cipher)
    # A case (or marker) that does not open is forgotten by the event that meets it, which
    # is dead-lettered: never retried, never a stop (ADR 0022).
    unreadable_cases = UnreadableCases(store, open_case_store)
    # The answers' ids are each forgotten once their own response partition is committed
    # past them (replay.py, JOSE review of stop 48): the broker times of what was read
    # since each partition's commit point, told the broker's confirmed commit.
    answers_read = {topic: CommitClock() for topic in topics.all_responses()}

    def answers_readable_from(topic: str, partition: int) -> float | None:
        fetcher = consumer()
        clock = answers_read.get(topic)
        if fetcher is None or clock is None:
            return None
        committed = fetcher.confirmed_commit(TP(topic, partition))
        return None if committed is None else clock.readable_from(partition, committed)

    answer_ids = TableReplayGuard(
        seen_messages,
        keep_after_expiry_s=settings.security.max_clock_skew_s,
        source_clock=answers_readable_from,
        # While a partition's commit is not known: no longer than a copy stays readable.
        readable_s=int(settings.hub.decided_marker_s),
    )
    # The rollout modes in force (rollout.py), read by every worker from hub.rollout.
    rollout = RolloutFollower(
        from_settings(settings.kafka), topics.rollout, state_cipher, RolloutBoard()
    )
    app.task(rollout.run)
    context = HubContext(
        topics=topics,
        routing=routing,
        envelope=JoseEnvelope(
            keys,
            Entitlements.from_registry(topics),
            answer_ids,
            policy_from(settings.security),
        ),
        # Checkpoints signed with the hub's audit key, never its envelope key.
        audit=build_audit_trail(_TableStore(audit_heads), settings),
        cases=store,
        open_cases=open_case_store,
        risk_rules=load_risk_rules(settings.hub.risk_rules, routing.authorities),
        request_deadline_s=settings.hub.request_deadline_s,
        clock=utc_now,
        outbox_cipher=state_cipher,
        outbox_partitions=settings.kafka.partitions,
        answers_read=sweep.answers_read,
        control_report_after_s=settings.hub.control_report_after_s,
        seal_takeover_notices=settings.hub.seal_takeover_notices,
        retention=retention,
        rollout=rollout.board,
        writes=writes,
    )
    codec = DeclarationCodec(XmlLimits(max_bytes=settings.hub.max_declaration_bytes))
    intake = Intake(context, codec, store, accept_plain=settings.hub.accept_plain_declarations)
    correlation = Correlation(context, store)
    audit_keeper = AuditKeeper(context)
    deadlines = Deadlines(context, store)
    takeover = Takeover(context, store)

    # Records whose effects are on their way: marked handled once acknowledged, while the
    # agents go on (runtime/settling.py), for as long as their partitions are this worker's.
    settling = app.settling
    # A handling that decided sends its records once its decided case is on the broker,
    # and its partition's later records after them (delivery.py, ADR 0013's addendum of
    # stop 38): never a decision published for a case the changelog does not hold.
    # The claims topic's records concern other partitions' cases: its partitions wait
    # behind none of the cases' (review stop 38-sf, SF2).
    state_first = StateFirst(
        topics.decision_outbox,
        writes=lambda: table_writes.so_far(faust.current_event()),
        tenure=lambda: settling.tenure(faust.current_event()),
        held_apart=frozenset({topics.claims}),
    )

    async def send_record(record: OutgoingRecord) -> Any:
        if record.topic == topics.dlq:
            # The hub's own security dead letters, vouched for: the audit keeper chains
            # them whatever a flood of anybody's (security/own_dead_letters.py).
            record = vouched(context.outbox_cipher, record, time.time())
        return await app.producer.send(
            record.topic,
            record.key,
            record.value,
            partition=record.partition,
            timestamp=None,
            headers=record.headers,
        )

    # Audit links in chain order, each certain to follow the links before it, never
    # dead-lettered, and added to a chain by its partition's owner only
    # (runtime/audit_lanes.py). A lane fenced once the group no longer assigns it the
    # partition gives it up (the newer owner is the rightful one: no crash; review stop
    # 36); one still assigned 30 s after its fence was fenced by its transaction
    # coordinator (a transaction older than its timeout), and takes its partition again,
    # going on with what it holds once the committed tail shows nobody else wrote (review
    # stop 39-Z, Z1); a lane that cannot crashes this worker, which starts again and
    # resyncs what it is given.
    link_producer = AuditLinkProducer(
        from_settings(settings.kafka), topics.audit, audit_links_prefix(settings.hub.app_id)
    )

    async def audit_partition_lost(_partition: int, lost: BaseException) -> None:
        await app.crash(lost)

    async def take_audit_partitions(wanted: Sequence[int]) -> None:
        async with asyncio.timeout(_TAKE_AUDIT_PARTITIONS_S):  # else the worker stops
            await link_producer.take(wanted)

    def audit_tails(partitions: list[int]) -> Awaitable[dict[int, list[bytes]]]:
        return last_records(from_settings(settings.kafka), topics.audit, partitions, TAIL_RECORDS)

    def placed_audit_tails(partitions: list[int]) -> Awaitable[dict[int, CommittedTail]]:
        return committed_tails(
            from_settings(settings.kafka), topics.audit, partitions, TAIL_RECORDS
        )

    def audit_records_since(partition: int, since: datetime, until: int) -> Awaitable[RecordsRead]:
        # Further back than a tail, when its highest link of the hub's is below the head
        # table's (security/audit.py ``look_back_from``), bounded: anyone able to write
        # the topic decides how many records lie there.
        return committed_records_since(
            from_settings(settings.kafka),
            topics.audit,
            partition,
            since,
            until,
            LOOK_BACK_RECORDS,
            timeout_s=LOOK_BACK_TIMEOUT_S,
        )

    audit_links = AuditLanes(
        topics.audit,
        link_producer.send_batch,
        link_producer.release,
        on_lost=audit_partition_lost,
        owns=lambda partition: TP(topics.declarations, partition) in app.consumer.assignment(),
        retake=retaker(take_audit_partitions, audit_tails),
        interval_s=settings.hub.audit_transaction_interval_ms / 1000,
    )

    async def give_up_audit_lanes(revoked: set[TP]) -> None:
        await audit_links.give_up(
            {tp.partition for tp in revoked if tp.topic == topics.declarations}
        )

    async def sent_if_any(
        outbox: Effects, source: SourcePosition
    ) -> Coroutine[Any, Any, None] | None:
        """``outbox`` handed over (what settles it), or None when it holds nothing."""
        if not outbox.records and not outbox.after_delivery:
            return None
        return await send_outbox(
            send_record, outbox, source, topics.dlq, links=audit_links, state_first=state_first
        )

    app.before_revoking.append(give_up_audit_lanes)  # before faust waits for the agents
    app.before_stopping.append(audit_links.stop)
    app.service(_closing("StoppingAuditLinkProducer", link_producer.stop))

    def agent(
        topic: Any,
        name: str,
        handle: Handler,
        redrives: RedriveGate | None = None,
        named: Callable[[bytes], str] | None = None,
    ) -> None:
        """One event at a time per partition (order), handled, then its records sent on
        the event's partition and acknowledged (delivery.py). Any record is survivable:
        whatever a handler cannot deal with is dead-lettered with its reason (defect 3).
        ``redrives``: a redrive is handled as the original it was checked to be, at the
        original's position and broker time (redrive.py, ADR 0010). ``named``: the name
        a record's value is handled under, which its dead letters carry as their
        component (``hub.<name>``), where an agent reads records of several kinds."""

        async def handled(event: Any) -> Awaitable[None]:
            message = event.message
            source = _source(event)
            accepted_at = _accepted_at(message)
            checked = Effects()
            if redrives is not None:
                arrival = await redrives.arrival(
                    _header_list(event.headers), _value(event), source, accepted_at
                )
                source, accepted_at, checked = arrival.source, arrival.accepted_at, arrival.outbox
                if not arrival.handle:
                    return await send_outbox(
                        send_record,
                        checked,
                        source,
                        topics.dlq,
                        links=audit_links,
                        state_first=state_first,
                    )
            read_as, at = source, accepted_at
            # A redrive's audit link goes to its lane before the handler can yield (handled
            # again after a cluster error): a link built meanwhile would overtake it.
            first = await sent_if_any(checked, source)
            try:
                outbox = await _handled(
                    lambda: handle(event, read_as, at),
                    _value(event),
                    source,
                    topics.dlq,
                    name if named is None else named(_value(event)),
                    rollback=context,
                    unreadable=unreadable_cases.forget,
                )
            except BaseException:
                _settle_unwatched(first)  # the agent stops; the record is read again
                raise
            then = await send_outbox(
                send_record, outbox, source, topics.dlq, links=audit_links, state_first=state_first
            )
            return then if first is None else _every(first, then)

        handled_agent(app, topic, name, handled, settling)

    # A redrive is read as the original it was checked to be (redrive.py, ADR 0010).
    redrives = RedriveGate(log_reader, context)

    # Declarations are admitted once their message id is claimed at its owner partition
    # (pipeline/admission.py): a copy on another partition is a replay there too.
    def consumer() -> StrictOffsetsConsumer | None:
        found = app.consumer
        return found if isinstance(found, StrictOffsetsConsumer) else None

    def read_declarations_from(partition: int) -> int | None:
        """Where the consumer says this declarations partition must be read from."""
        fetcher = consumer()
        if fetcher is None:
            return None
        return fetcher.first_unsettled(TP(topics.declarations, partition))

    def declarations_committed(partition: int) -> int | None:
        """Where the broker has this declarations partition read again from: each claim
        says how far its partition can no longer be read again (stop 36, ADR 0008)."""
        fetcher = consumer()
        if fetcher is None:
            return None
        return fetcher.confirmed_commit(TP(topics.declarations, partition))

    admissions = Admissions(read_declarations_from, declarations_committed)
    gate = AdmissionGate(intake, admissions, topics.claims, settings.kafka.partitions)
    # Forgotten once every declarations partition is committed past an id's expiry (the
    # broker confirmed it: nothing before can be read again); while one is not (idle,
    # days behind, or its claims from an older worker), once no copy can be left in the
    # log: the decided markers' span, twice the declarations' retention.
    claimed_ids = claims_memory(
        _raw_table(app, settings, CLAIMED_IDS_TABLE),
        settings.kafka.partitions,
        keep_after_expiry_s=settings.security.max_clock_skew_s,
        readable_s=int(settings.hub.decided_marker_s),
    )
    judge = ClaimJudge(claimed_ids, topics.claims)

    intake_in_hand = InHand()
    admission_limit = AdmissionLimit(
        admissions, consumer, topics.declarations, settings.hub.admission_limit, intake_in_hand
    )
    app.may_hand_over = admission_limit.may_take

    # Marked once its own effects and its decision are delivered; its decision not
    # delivered for good, let go of, so that the watchdog reads it again (held for ever,
    # its partition's commit stopped there; stop 30, found by review).
    held_declarations = HeldDeclarations(
        settling,
        functools.partial(mark_handled_at, app, topics.declarations),
        functools.partial(release_at, app, topics.declarations),
    )

    async def decide(waiting: Waiting) -> None:
        where = waiting.source
        with as_if_handling(where.topic, where.partition, where.offset):
            outbox = await _handled(
                functools.partial(gate.admit, waiting),
                waiting.sealed,
                where,
                topics.dlq,
                "intake",
                rollback=context,
                unreadable=unreadable_cases.forget,
            )
            settled = await send_outbox(
                send_record, outbox, where, topics.dlq, links=audit_links, state_first=state_first
            )
            held_declarations.decided(where.partition, where.offset, settled)

    async def admit(released: list[Waiting]) -> None:
        """Decide each released declaration in log order, then settle its record. From
        the recheck timer too: its table writes go to the declaration's partition."""
        await held_declarations.admit(released, decide)

    async def receive_declaration(event: Any) -> bool | Awaitable[None]:
        # Decided with the modes in force, never with defaults before they were read.
        await rollout.caught_up.wait()
        source = _source(event)
        data = _value(event)
        arrival = await redrives.arrival(
            _header_list(event.headers), data, source, _accepted_at(event.message)
        )
        if not arrival.handle:
            admissions.saw(source.partition, source.offset, _accepted_at(event.message))
            return await send_outbox(
                send_record,
                arrival.outbox,
                source,
                topics.dlq,
                links=audit_links,
                state_first=state_first,
            )
        caused: tuple[Effects, list[Waiting]] | None = None
        # A redrive's audit link goes to its lane before the intake can yield.
        first = await sent_if_any(arrival.outbox, source)

        def receive() -> Effects:
            nonlocal caused
            # A redrive is claimed and decided as the original, held as itself.
            caused = gate.receive(data, source, arrival.accepted_at, read_as=arrival.source)
            return caused[0]

        try:
            outbox = await _handled(
                receive,
                data,
                source,
                topics.dlq,
                "intake",
                rollback=context,
                unreadable=unreadable_cases.forget,
            )
        except BaseException:
            _settle_unwatched(first)  # the agent stops; the record is read again
            raise
        released = caused[1] if caused is not None else []
        # Waiting for its claim's verdict, or a plain declaration decided in this very
        # event (no claim): either way marked by its decision's settling, once its own
        # effects are delivered too (held_declarations.py).
        held = admissions.holds(source.partition, source.offset) or any(
            waiting.source == source for waiting in released
        )
        if held:
            # Before the claim leaves: its verdict may settle the record at once.
            hold(app, source.topic, source.partition, source.offset)
        then = await send_outbox(
            send_record, outbox, source, topics.dlq, links=audit_links, state_first=state_first
        )
        settled = then if first is None else _every(first, then)
        if held:  # before anything yields: its verdict's settling waits for these
            held_declarations.own_effects(source.partition, source.offset, settled)
        await admission_limit.keep()
        await admit(released)
        return False if held else settled

    async def on_claims_record(event: Any) -> Awaitable[None] | None:
        source = _source(event)
        data = _value(event)
        try:
            record = read_claims_record(data)
        except ValueError as error:
            outbox = _unhandled(topics.dlq, data, source, "claims", error)
            return await send_outbox(
                send_record, outbox, source, topics.dlq, links=audit_links, state_first=state_first
            )
        if isinstance(record, Claim):
            claim = record
            outbox = await _handled(
                lambda: judge.judge(claim),
                data,
                source,
                topics.dlq,
                "claims",
                rollback=context,
                unreadable=unreadable_cases.forget,
            )
            return await send_outbox(
                send_record, outbox, source, topics.dlq, links=audit_links, state_first=state_first
            )
        # The verdict's effects are the admitted declarations': each of their records is
        # settled by its own delivery (admit).
        await admit(gate.settle(record))
        await admission_limit.keep()
        return None

    async def forget_admissions(_sender: Any, revoked: Any = (), **_: Any) -> None:
        given_up = {tp.partition for tp in revoked if tp.topic == topics.declarations}
        admissions.forget(given_up)
        held_declarations.forget(given_up)
        # Their records are read again (here too, if they come back): what they announced
        # and is still on its way is announced again then (hub_context.py ``give_up``).
        context.give_up(given_up)
        # The replay memories forget their expiry order of what another worker will now
        # write: seeded again from the table if the partition comes back.
        claimed_ids.release({tp.partition for tp in revoked if tp.topic == topics.claims})
        answer_ids.release(
            {tp.partition for tp in revoked if tp.topic in set(topics.all_responses())}
        )
        for tp in revoked:
            if tp.topic in answers_read:
                answers_read[tp.topic].forget([tp.partition])
        # Where their logs ended and how far they were read: a deadline read on one given
        # back waits until it is read through again (deadline_sweep.py).
        sweep.partitions_revoked(revoked)

    app.on_partitions_revoked.connect(forget_admissions)

    async def admit_what_no_longer_waits() -> None:
        """Declarations held only for offsets the consumer has since learnt hold nothing
        (no record arrives to release them); a partition waiting for a skipped record
        fetches again even when no record or verdict arrives."""
        await admit(gate.release_ready())
        await admission_limit.keep()

    every(app, settings.hub.admission_recheck_s, "admission recheck", admit_what_no_longer_waits)
    handled_agent(app, declarations, "intake", receive_declaration, settling, intake_in_hand)
    handled_agent(app, app.topic(topics.claims, **_RAW), "claims", on_claims_record, settling)

    def correlate(event: Any, source: SourcePosition, at: float | None) -> Effects:
        clock = answers_read.get(source.topic)
        if clock is not None:
            clock.saw(source.partition, source.offset, at)
        return correlation.handle(_value(event), source, at)

    agent(responses, "correlation", correlate, redrives)
    agent(
        operator_actions,
        "operator-actions",
        lambda event, source, _at: audit_keeper.operator_action(event.key, _value(event), source),
    )
    agent(
        dead_letters,
        "audit-keeper",
        lambda event, source, at: audit_keeper.handle(
            _header_list(event.headers), source, at, _value(event)
        ),
    )

    def on_deadlines_record(event: Any, source: SourcePosition, _at: float | None) -> Effects:
        """A deadline tick (its value the version), a retention tick, or a takeover
        notice (a JSON object): each handled for the case of its key on ``source``'s
        partition."""
        reference = bytes(event.key or b"").decode()
        value = _value(event)
        if value == RETENTION_TICK:
            return retention.handle(
                reference,
                source.partition,
                lambda outbox, case: context.announce_again_if_lost(outbox, case, source.partition),
            )
        if is_notice(value):
            return takeover.handle(reference, value, source)
        return deadlines.handle(reference, int(value or b"0"), source)

    # The same topic carries the ticks that sign an idle partition's audit tail. A notice
    # is redriven as the intake's declarations are, read as the original: its dead letters
    # name hub.takeover, and the ticks', not redriven, hub.deadlines (takeover.py).
    agent(
        deadline_ticks,
        "deadlines",
        audit_keeper.ticks_or(on_deadlines_record),
        redrives,
        named=takeover_agent_name,
    )
    audit_keeper.schedule_checkpoints(app, checkpoint_within_s(settings) / 4)

    # The chains of an assignment go on from the last records actually on the audit
    # topic, never from a head a killed worker saved without its record
    # (runtime/audit_resync.py); then their lanes take links. The partitions' producers
    # are taken first: any former owner fenced and its open transaction ended, the tail
    # read next is all that will ever precede this worker's links. Read once faust's recovery
    # is about to resume the partitions (``on_rebalance_complete``): inside the group's
    # assignment callback no heartbeat is sent, and a slow read got the worker expelled,
    # again and again (found by review in stop 32).
    chains_to_resync: dict[str, Any] = {"partitions": [], "rebalances": None}

    def rebalances() -> object:
        return (app.consumer_generation_id, audit_links.revocations)

    async def note_assignment(assigned: set[TP]) -> None:
        chains_to_resync["partitions"] = sorted(
            {tp.partition for tp in assigned if tp.topic == topics.declarations}
        )
        chains_to_resync["rebalances"] = rebalances()

    async def resync_chains(_sender: Any = None, **_: Any) -> None:
        partitions = chains_to_resync["partitions"]
        if not partitions:
            return  # nothing new (a rebalance since: take_over_chains sees it)

        async def resync(wanted: Sequence[int]) -> None:
            await resync_audit_heads(
                placed_audit_tails, context.audit, wanted, read_earlier=audit_records_since
            )

        if await take_over_chains(
            partitions,
            take=take_audit_partitions,
            release=link_producer.release,
            resync=resync,
            open_lanes=audit_links.open,  # links go on from the heads just read
            rebalances=rebalances,
            since=chains_to_resync["rebalances"],
        ):
            chains_to_resync["partitions"] = []

    app.before_assigning.append(note_assignment)
    app.on_rebalance_complete.connect(resync_chains)
    every(app, settings.hub.deadline_sweep_s, "deadline sweep", sweep.run)
    every(
        app,
        settings.hub.case_sweep_s,
        "retention sweep",
        RetentionSweep(
            app,
            topics,
            retention_table,
            retention_index,
            spread_s=settings.hub.case_sweep_s / 2,
            window_s=2 * settings.hub.case_sweep_s,
        ).run,
    )

    async def send_and_wait(record: OutgoingRecord) -> None:
        await (await send_record(record))

    watch_offsets(
        app,
        from_settings(settings.kafka),
        # Every topic an agent reads: a partition never committed before has its start
        # learned here, without which nothing read on it would ever be committed.
        # What retention deleted unread is stepped over in silence on the internal
        # topics (claims, deadline ticks, operator actions, dead letters): a claim is made
        # again when its declaration is read again, deadlines are swept from the open
        # cases, ticks only tick. On the inputs someone waits on, it is named.
        {
            topics.declarations,
            topics.claims,
            *topics.all_responses(),
            topics.dlq,
            topics.deadlines,
            topics.operator_actions,
        },
        settings.hub.offset_watchdog_s,
        InputsAgedOut(
            {
                topics.declarations: "declarations never decided: the clearance system "
                "waits for their decisions",
                **dict.fromkeys(
                    topics.all_responses(),
                    "partners' answers never correlated: their cases were decided without "
                    "them, or their follow-ups stay FOLLOW_UP_PENDING",
                ),
            },
            topics.dlq,
            send_and_wait,
        ),
    )

    publisher = DecisionPublisher(
        from_settings(settings.kafka),
        topics.decision_outbox,
        topics.decisions,
        settings.hub.app_id,
        JoseEnvelope(
            keys,
            Entitlements.from_registry(topics),
            NoReplayMemory(),
            policy_from(settings.security),
        ),
        state_cipher,
        memory=settings.hub.publisher_memory_decisions,
        dead_letters=topics.dlq,
        # A case whose decision another partition's case made first is told (ADR 0005).
        deadlines=topics.deadlines,
        transaction_interval_s=settings.hub.publisher_transaction_interval_ms / 1000,
        status=topics.status,
    )

    async def publish_decisions() -> None:
        await publisher.run()

    app.task(publish_decisions)

    # Heartbeats are followed where the view runs: only there is an authority never heard
    # from known to be silent (a worker beside `gun-hub view` follows none).
    listened = frozenset(routing.authorities) if settings.ops.view_enabled else frozenset()
    ops_state = OpsState(expected_partners=listened)
    register_ops_metrics(ops_state)
    view = _operations_view(app, settings, topics, ops_state)
    if settings.ops.lag_monitor_enabled:
        # Its counter of records lost to retention at 0 from the worker's start, not from
        # the monitor's first measurement: an alert reads it (gun_contract/counters.py).
        count_lost_from_start(
            watched_groups(topics, settings.hub.app_id, settings.ops.clearance_group),
            not_counted_here(topics, settings.hub.app_id),
        )

        async def monitor_lag() -> None:
            monitor = LagMonitor.for_settings(settings, topics)
            await monitor.start()

            async def send(topic: str, value: bytes) -> Any:
                return await app.producer.send(topic, None, value, None, None, None)

            publish = snapshot_publisher(send, topics.ops_lag)
            try:
                await monitor.run(ops_state, settings.ops.lag_interval_s, publish)
            finally:
                await monitor.stop()

        app.task(monitor_lag)

    async def send_acknowledged(record: OutgoingRecord) -> int:
        metadata = await (await send_record(record))
        return int(metadata.offset)

    membership = GroupMembership(app)
    app.on_rebalance_complete.connect(membership.rebalance_completed)

    def ready() -> list[str]:
        return waiting_for(
            app,
            publisher,
            rollout,
            settings.hub.publisher_stall_s,
            membership,
            audit_fenced=audit_links.fenced,
        )

    if view is None:
        # A worker without the view decides and serves its probes only: the trader and
        # officer listeners answer from a view, so they are `gun-hub view`'s (ADR 0015).
        register_probes(app, ready)
        if settings.web.trader_port or settings.web.officer_port:
            log.info(
                "operations view off on this worker: the trader and officer listeners are "
                "served by `gun-hub view`, not here"
            )
        return Hub(app=app, topics=topics, routing=routing)
    register_web_views(
        app,
        view,
        ops_state,
        ready=ready,
        web=settings.web,
        routing=routing,
        desk=DeadLetterDesk(
            topics,
            log_reader,
            send_acknowledged,
            state_cipher,
            settings.web.dead_letter_operator_names(),
        ),
        rollout=RolloutDesk(
            topics,
            rollout.board,
            rollout.applied,
            send_acknowledged,
            state_cipher,
            settings.web.rollout_operator_names(),
            settings_read=rollout.caught_up.is_set,
        ),
    )
    return Hub(app=app, topics=topics, routing=routing)


def _partition_count(app: faust.App) -> Callable[[str], int | None]:
    """A topic's partition count as this worker's consumer last learnt it."""

    def count(topic: str) -> int | None:
        consumer = app.consumer
        return (
            consumer.partition_count(topic) if isinstance(consumer, StrictOffsetsConsumer) else None
        )

    return count


def _operations_view(
    app: faust.App, settings: Settings, topics: TopicRegistry, state: OpsState
) -> OpsView | None:
    """The status and statistics view, fed by its own task (ops/feed.py)."""
    if not settings.ops.view_enabled:
        return None
    make_private_folder(settings.hub.data_dir)  # the view's file is its owner's only
    view = OpsView(
        settings.hub.data_dir / "ops-view.sqlite3",
        FeedTopics(
            status=topics.status, facts=topics.facts, dlq=topics.dlq, health=topics.ops_health
        ),
    )
    feed = OpsFeed(
        from_settings(settings.kafka),
        view,
        state,
        # Believes a heartbeat only if its signer is the component it names (heartbeats.py).
        heartbeats=build_heartbeat_gate(settings, topics),
        retention_s=settings.ops.view_retention_days * 86400.0,
        gather_ms=settings.ops.view_gather_ms,
    )

    async def feed_view() -> None:
        await feed.run()

    app.task(feed_view)
    return view
