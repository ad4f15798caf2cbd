"""The decision publisher: exactly one decision per (reference, version) on the topic.

The hub's agents process at-least-once, so a worker killed at the wrong instant can
announce a decision twice. They therefore write sealed decisions to an internal outbox
topic, on the partition the declaration arrived on; this publisher moves them to
``gun.decisions`` (same partition) in Kafka transactions, each batch together with its
outbox offsets, skipping any (reference, version) already published.

Several hub workers run a publisher each. They share the outbox's partitions as one
consumer group, and each partition has a transactional producer of its own
(``<app>-publisher-<partition>``): the worker that takes a partition over fences the one
that had it, aborts its open transaction and carries on from its committed offsets, so a
rebalance loses and doubles nothing. A fenced or failing partition is dropped or retried
without stopping the worker.

**The one gate of a reference's versions.** The contract lets the clearance system's
producers split one reference across partitions (section 2); each partition keeps a case
of its own, and two of them may decide the same version, or a lower version after a higher
one was decided. The agents write every decision of a reference to the outbox partition
of the reference's hash (pipeline/hub_context.py), so one lane sees them all, and it
publishes none at or below a version of that reference it published (contract section 4:
"Exactly one decision per (Reference, Version). A lower or equal version arriving after a
higher one is ignored and recorded"). A lower one skipped is recorded: logged, counted
(``gun_hub_decisions_not_published_total``) and, in the same transaction, a status event
of that version (IGNORED_STALE_VERSION, on the lane's partition of ``gun.status``). ADR
0005's addendum of stop 38. Within one partition's case this never withholds a version
superseded before its decision: the intake announces its REFUSE (SUPERSEDED) as the
higher version arrives, before anything the higher one is decided on (pipeline/intake.py
``_supersede``, review stop 40, W4); only a split reference meets the rule. The lane
also keeps each reference's declarant (a hash, the outbox record's
``gun.decision.declarant`` header) from its first decision published, and publishes none
decided for another: a security dead letter DECLARANT_CHANGED in the same
transaction. The intake's check sees one partition's case only; a version in another
trader's name decided on another partition withheld the real decisions (review stop 38-s,
S3).

The memory of what was published is per partition and bounded by a count, the last
``memory`` decisions committed on that partition (issue 12, bounded state), and the
highest version published of the references among them. A decision is
announced twice only when a worker dies after the broker took it and before the case
recorded that: the event that decided it is then uncommitted (a record is marked handled
once the broker acknowledged its effects, and faust commits offsets only after flushing the
changelog), and its redelivery, among the first things the restarted worker handles,
announces it again. Between the original and the repeat on the outbox partition there are
thus only the decisions of that uncommitted window (the agents' delivery window of
runtime/settling.py, a commit interval, a few watchdog periods while a commit waits behind
a dropped record, the declarations held for their claims): a few thousand at most, below
the default 20,000. A bound in time would be wrong both ways: a hub down for a day adds no record in
between yet a day passes, and a day at the target rate is millions of decisions to read
again at every start. Taking a partition over reads back twice ``memory`` offsets (a
transaction's commit marker takes an offset too), not a time range. The argument holds
for one declaration partition's records; a partition stuck for long while the others'
decisions go on through the lane breaks the count, so the memory also keeps each
declaration partition's latest decisions apart (its window, runtime/published_memory.py),
and each transaction's commit says where the windows lie, for the lane's next owner to
read them back (ADR 0025's addendum of stop 47).

The agents seal each decision with the hub's state key (AES-GCM, bound to its reference
and version: the outbox is the hub's own, an envelope there cost a signature, an ECDH
exchange and their checks for nothing); the publisher opens it and seals it to the
clearance system as it publishes. The envelope's ``iat`` is thus the time the decision
enters ``gun.decisions``, and the clearance system's freshness check (against the
broker's log-append time) holds however long a decision waited in the outbox. A record
that does not open is dead-lettered (OUTBOX_UNREADABLE) and committed past; one sealed with
a state key this worker does not hold (another worker's rotation, not deployed here) is
not the record's fault: its transaction is aborted, it is read again for
``KEY_MISSING_PATIENCE_S``, then the worker stops naming the key, and publishes it once
restarted with the key (ADR 0022's addendum of stop 41).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerFenced
from aiokafka.structs import RecordMetadata

from gun_contract.consume import Batch, consume
from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_record
from gun_contract.envelope import ContentType, Envelope
from gun_contract.kafka.client import Connect, client_options, consumer_options, producer_options
from gun_contract.kafka.refusals import NOT_AUTHORISED, rights_refusal
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import CLEARANCE_PARTY
from gun_contract.security.state_cipher import (
    KEY_MISSING_PATIENCE_S,
    StateCipher,
    StateKeyMissing,
    StateUnreadable,
)
from gun_contract.trace import trace_header
from gun_hub import metrics
from gun_hub.domain.status_events import NOT_PUBLISHED, StatusEvent, StatusKind
from gun_hub.pipeline.decision_outbox import (
    HEADER_LODGING,
    HEADER_VERSION,
    OUTBOX_STATE,
    declarant_of,
    lodging_of,
    origin_of,
    outbox_record_key,
)
from gun_hub.pipeline.intake import DECLARANT_CHANGED
from gun_hub.pipeline.published_elsewhere import NotPublished
from gun_hub.pipeline.takeover import NOTICE_STATE
from gun_hub.runtime.published_memory import (
    DUPLICATE,
    OTHER_DECLARANT,
    SUPERSEDED,
    Identity,
    Published,
    PublishedMemory,
    Refusal,
    spans_of_windows_before,
    version_number,
    window_metadata,
    windows_in,
)
from gun_hub.runtime.transactions import (
    RETAKE_FENCED_AFTER_S,
    TRANSACTION_RETRY_BACKOFF_MS,
    fenced_by_its_coordinator,
    fenced_while_assigned,
    paced,
    producer_is_broken,
    retaken_after_a_fence,
    transaction,
)
from gun_hub.security.own_dead_letters import vouched

log = logging.getLogger(__name__)

# The outcome in the hub's own decision XML (xml/decision_codec.py renders it so).
_OUTCOME = re.compile(rb"<Outcome>([A-Z_]{1,40})</Outcome>")

DEFAULT_MEMORY = 20_000

# Reading what a partition published (taking it over) gives up after this long; a
# revocation meanwhile gives the taking up without waiting for it.
MEMORY_READ_TIMEOUT_S = 60.0

# A partition whose transactions fall behind (a slow broker, a retried produce) is paused
# once this many of its fetched decisions wait for their turn: what waits stays bounded.
MOST_RECORDS_WAITING = 2_000

# A lane holding this many decisions does not wait for its transaction interval.
FULL_ENOUGH_NOT_TO_WAIT = 500

# The kind of the dead letter of an outbox record that does not open.
OUTBOX_UNREADABLE = "OUTBOX_UNREADABLE"


def publisher_group(app_id: str) -> str:
    """The consumer group of the decision publishers of the hub ``app_id``."""
    return f"{app_id}-publisher"


def publisher_transactional_id(app_id: str, partition: int) -> str:
    """The transactional id of the publisher of an outbox ``partition``."""
    return f"{app_id}-publisher-{partition}"


def restore_from(*, beginning: int, end: int, capacity: int) -> int:
    """Where a publisher taking a partition over starts reading what was published (the
    offsets before ``end``): far enough back for ``capacity`` decisions even at one
    decision per transaction (each commit marker takes an offset). Aborted transactions
    take offsets too: when the span holds fewer decisions, the span before it is read."""
    return max(beginning, end - 2 * capacity)


# At most this many spans of twice the memory are read back at a takeover, the latest
# first, until the memory is full: a partition that has published fewer decisions is read
# to its beginning unless aborted transactions fill more than that (some 320,000 offsets
# at the default memory; a batch retried for 20 s aborts about 40 of them).
MOST_SPANS_READ_BACK = 8


def _version_of(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """The version header's bytes; empty when absent or null (a null one raised TypeError
    in the publisher, which stopped the worker, stop 34: the record then does not open,
    and is skipped as unreadable)."""
    value = next((value for key, value in headers if key == HEADER_VERSION), b"")
    return value if isinstance(value, bytes) else b""


class _PartitionPublisher:
    """One outbox partition: its transactional producer and what it already published."""

    def __init__(
        self, partition: int, producer: AIOKafkaProducer, published: PublishedMemory
    ) -> None:
        self.partition = partition
        self.producer = producer
        self.published = published


class _Lane:
    """One outbox partition's fetched decisions, published in its own transactions one
    after the other (a partition's order is its transactions' order) while the other
    partitions' go on. What was fetched while a transaction ran goes into the next one,
    whole: at saturation transactions stay large (stop 28: one transaction per fetched
    batch doubled the broker's work per declaration with one worker)."""

    def __init__(self) -> None:
        self.waiting: list[ConsumerRecord[bytes, bytes]] = []  # fetched, not yet published
        self.publishing: asyncio.Task[None] | None = None
        self.began = float("-inf")  # when its last transaction began (the loop's clock)


class DecisionPublisher:
    def __init__(
        self,
        connect: Connect,
        outbox_topic: str,
        decisions_topic: str,
        app_id: str,
        envelope: Envelope,
        outbox_cipher: StateCipher,
        memory: int = DEFAULT_MEMORY,
        clock: Callable[[], float] = time.monotonic,
        retake_fenced_after_s: float = RETAKE_FENCED_AFTER_S,
        dead_letters: str | None = None,
        transaction_interval_s: float = 0.0,
        status: str | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        key_missing_patience_s: float = KEY_MISSING_PATIENCE_S,
        deadlines: str | None = None,
    ) -> None:
        """``transaction_interval_s``: a partition begins a transaction at most this
        often; what is fetched meanwhile goes into its next one. ``status``: the status
        topic, where a version not published for being superseded is recorded (None:
        logged and counted only). ``key_missing_patience_s``: how long a partition whose
        decisions are sealed with a state key this worker lacks is read again before the
        publisher stops (:data:`KEY_MISSING_PATIENCE_S`). ``deadlines``: the hub's deadlines
        topic, where a case whose decision of a version another partition's case decided
        first is told so (None: not told; :meth:`_tell_decided_elsewhere`)."""
        self._connect = connect
        self._deadlines = deadlines
        self._status = status
        self._wall_clock = wall_clock
        self._transaction_interval_s = transaction_interval_s
        self._envelope = envelope
        self._outbox_cipher = outbox_cipher
        self._outbox = outbox_topic
        self._dead_letters = dead_letters  # the dead-letter topic (None: logged only)
        self._decisions = decisions_topic
        self._app_id = app_id
        self._group = publisher_group(app_id)
        self._memory = memory
        self._partitions: dict[int, _PartitionPublisher] = {}
        # The group hands partitions over in the background while batches are published:
        # one producer per partition at a time, and a partition's transaction and its
        # handover one after the other. One lock per partition, not one for all: each
        # partition's transactions run beside the others' (its lane, :meth:`_queue`).
        self._handover: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._lanes: defaultdict[int, _Lane] = defaultdict(_Lane)  # by outbox partition
        # Outbox partitions being taken (a producer started, the memory of what was
        # published read: seconds), one task each: begun at the assignment, awaited by the
        # partition's first batch, given up at a revocation (:meth:`_begin_taking`).
        self._taking: dict[int, asyncio.Task[None]] = {}
        self._fenced: set[int] = set()  # paused until assigned again, or still ours later
        self._retake_fenced_after_s = retake_fenced_after_s
        self._retakes: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None  # a bug in a lane: the publisher stops
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # consuming, its partitions' producers up (readiness)
        self.published_count = 0
        # Per outbox partition this worker holds: since when a batch it fetched waits to
        # be published (a transaction failing again and again, a producer that cannot be
        # started, a commit that never returns). Cleared by a published batch.
        self._unpublished_since: dict[int, float] = {}
        # Per outbox partition: since when its batch waits for a state key this worker
        # does not hold. Cleared by a published batch and by the partition's release.
        self._key_missing_since: dict[int, float] = {}
        self._key_missing_patience_s = key_missing_patience_s
        self._clock = clock

    def transactional_id(self, partition: int) -> str:
        return publisher_transactional_id(self._app_id, partition)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def partitions(self) -> set[int]:
        """The outbox partitions this worker publishes now."""
        return set(self._partitions)

    def stalled(self, longer_than_s: float) -> list[int]:
        """Outbox partitions whose fetched decisions have waited to be published for more
        than ``longer_than_s`` (readiness: a worker that cannot publish is not processing,
        however healthy its agents look)."""
        now = self._clock()
        return sorted(
            partition
            for partition, since in self._unpublished_since.items()
            if now - since > longer_than_s
        )

    def remembered(self) -> dict[int, int]:
        """How many published decisions this worker remembers, per partition it holds."""
        return {p: len(publisher.published) for p, publisher in self._partitions.items()}

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **consumer_options(self._connect),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        consumer.subscribe([self._outbox], listener=_Handover(self, consumer))
        await consumer.start()
        try:
            self.ready.set()

            async def publish(batch: Batch) -> None:
                for tp, records in batch.items():
                    self._queue(consumer, tp, list(records))

            # The loop only polls: each partition's batches go to its lane, whose
            # transactions commit their offsets; a batch not published is sought back to
            # and read again, never skipped.
            await consume(
                consumer,
                publish,
                commit=False,
                stopping=self._stopping,
                timeout_ms=100,
                max_records=500,
            )
        finally:
            self.ready.clear()
            lanes = [lane.publishing for lane in self._lanes.values() if lane.publishing]
            await asyncio.gather(*lanes, return_exceptions=True)
            for retake in self._retakes:
                retake.cancel()
            await asyncio.gather(*self._retakes, return_exceptions=True)
            await consumer.stop()
            await self._release(list(self._partitions.keys() | self._taking.keys()))
        if self._failure is not None:
            raise self._failure

    def _queue(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
    ) -> None:
        """Hand fetched decisions to their partition's lane: published after what the lane
        holds, beside the other partitions' (each has its own producer). Stop 28: the
        partitions' transactions ran one after another, and at 37.7 declarations/s the
        outbox-to-decision hop was the slowest (p50 98 to 148 ms)."""
        lane = self._lanes[tp.partition]
        lane.waiting.extend(records)
        if len(lane.waiting) >= MOST_RECORDS_WAITING:
            consumer.pause(tp)
        if lane.publishing is None or lane.publishing.done():
            lane.publishing = asyncio.create_task(self._drain(consumer, tp, lane))
            lane.publishing.add_done_callback(self._note_failure)

    async def _drain(self, consumer: AIOKafkaConsumer, tp: TopicPartition, lane: _Lane) -> None:
        """Publish what the lane holds, all of it in one transaction, until it holds
        nothing. A transaction not published seeks its partition back to its first
        decision and empties the lane: what was fetched after it is read again after it."""
        while lane.waiting:
            # A busy lane gathers for an interval (transactions.py); an idle one waits
            # nothing. On the decisions' way, so the interval is short.
            full = len(lane.waiting) >= FULL_ENOUGH_NOT_TO_WAIT
            lane.began = await paced(lane.began, self._transaction_interval_s, full=full)
            if not lane.waiting:
                break  # handed over meanwhile: its next owner reads them
            records, lane.waiting = lane.waiting, []
            await self._publish_partition(consumer, tp, records, lane)
            if (
                len(lane.waiting) < MOST_RECORDS_WAITING
                and tp.partition not in self._fenced
                and tp in consumer.paused()
            ):
                consumer.resume(tp)

    def _note_failure(self, task: asyncio.Task[None]) -> None:
        """A lane that raised (not a broker's refusal, which is retried: a bug, a refusal
        of the principal's rights, a state key this worker still lacks after waiting for
        it) stops the publisher, and :meth:`run` raises it, as the poll loop did before
        lanes: the worker ends with it. A refusal of rights is kept over any other
        failure: a lane refused leaves its neighbours' producers out of their transaction
        too (aiokafka's assertion), and the worker ended 1 saying neither (the stop audit
        of stop 51); ``gun-hub hub`` says a refusal in its sentence."""
        if task.cancelled() or task.exception() is None:
            return
        failure = task.exception()
        if self._failure is None or (
            rights_refusal(failure) is not None and rights_refusal(self._failure) is None
        ):
            self._failure = failure
        self._stopping.set()

    def _begin_taking(self, partitions: Iterable[int]) -> None:
        """Partitions assigned: each is taken in a task of its own, beside the others.

        Called in the group's assignment callback, where aiokafka sends no heartbeat: a
        take there (InitProducerId, which may wait for a fenced owner's transaction to
        end, then up to twice ``memory`` decisions read back), one partition after the
        other, got a survivor taking over 8 partitions expelled from the group before it
        was done, and the rebalance that followed began it again: a publishing storm
        (found by the scale-out review; ADR 0019 moved the audit chains' reads out of
        that callback for the same reason). A partition's lane waits for its taking
        before its first batch: nothing is published before the memory is read."""
        for partition in partitions:
            self._taking_of(partition)

    def _taking_of(self, partition: int) -> asyncio.Task[None]:
        """The taking of ``partition`` under way, or a new one: one at a time (two
        producers of one transactional id would fence each other)."""
        taking = self._taking.get(partition)
        if taking is None or taking.done():
            taking = asyncio.create_task(self._take(partition))
            taking.add_done_callback(self._note_failure)  # a bug stops the publisher
            self._taking[partition] = taking
        return taking

    async def _take(self, partition: int) -> None:
        """``_take_one``, a broker failure logged (the partition is taken again at its
        next batch)."""
        try:
            await self._take_one(partition)
        except NOT_AUTHORISED:
            raise  # the principal's rights, not an outage: tried again, refused for ever
        except KafkaError:
            log.exception("publisher: outbox partition %d not taken yet; tried again", partition)

    async def _take_one(self, partition: int) -> None:
        """A producer for ``partition`` (fencing the previous owner) and the memory of what
        was published on it; the partition is published from then on. No handover lock is
        held meanwhile: a revocation cancels the taking instead of waiting for it."""
        if partition in self._partitions:
            return
        producer = AIOKafkaProducer(
            **producer_options(self._connect),
            transactional_id=self.transactional_id(partition),
            enable_idempotence=True,
            acks="all",
            retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,  # transactions.py
        )
        try:
            # Starting fences any previous owner and aborts its open transaction (or waits
            # for the coordinator to end the one a failed commit of ours left open: the
            # memory read next then has it, whichever way it ended).
            await producer.start()
            published = await self._recently_published(partition)
        except BaseException:
            await producer.stop()  # not one producer more at every attempt of an outage
            raise
        publisher = _PartitionPublisher(partition, producer, published)
        self._partitions[partition] = publisher
        log.info(
            "publisher: outbox partition %d taken (%d decisions remembered)",
            partition,
            len(publisher.published),
        )

    async def _release(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            # What its lane holds, its next owner reads from the committed offset.
            self._lanes[partition].waiting.clear()
            taking = self._taking.pop(partition, None)
            if taking is not None and not taking.done():
                # Given up, not waited for (a revocation runs in the group's callback too):
                # its producer is stopped, nothing of it kept.
                taking.cancel()
                await asyncio.wait([taking])
            async with self._handover[partition]:
                self._unpublished_since.pop(partition, None)  # its next owner's concern now
                self._key_missing_since.pop(partition, None)
                self._fenced.discard(partition)
                await self._drop(partition)

    async def _drop(self, partition: int) -> None:
        """Stop the producer of ``partition`` (its handover lock held). Still assigned, the
        partition is taken again, with a new producer, at its next batch."""
        publisher = self._partitions.pop(partition, None)
        if publisher is not None:
            await publisher.producer.stop()

    async def _recently_published(self, partition: int) -> PublishedMemory:
        """The last (reference, version) pairs committed on this decisions partition."""
        tp = TopicPartition(self._decisions, partition)
        reader = AIOKafkaConsumer(
            **consumer_options(self._connect),
            enable_auto_commit=False,
            isolation_level="read_committed",
            # The log's head deleted by retention while it is read: from what is left,
            # never silently from its end with nothing remembered (review stop 45).
            auto_offset_reset="earliest",
        )
        await reader.start()
        found = PublishedMemory(self._memory)
        # The spans read, each with its first offset: the latest first, then the origins'
        # windows lying before them.
        spans: list[tuple[int, list[Published]]] = []
        try:
            async with asyncio.timeout(MEMORY_READ_TIMEOUT_S):
                # After the producer's start: the previous owner's last commit is final.
                windows = await self._committed_windows(partition)
                reader.assign([tp])
                beginning = (await reader.beginning_offsets([tp]))[tp]
                end = (await reader.end_offsets([tp]))[tp]
                while len(spans) < MOST_SPANS_READ_BACK and end > beginning:
                    start = restore_from(beginning=beginning, end=end, capacity=self._memory)
                    spans.append((start, []))
                    await self._read_span(reader, tp, start, end, spans[-1][1])
                    if sum(len(span) for _, span in spans) >= self._memory:
                        break
                    end = start
            earliest = min(start for start, _ in spans) if spans else end
            await self._read_windows(reader, tp, windows, earliest, beginning, spans)
        except TimeoutError:
            raise KafkaTimeoutError(f"decisions partition {partition} not read back") from None
        finally:
            await reader.stop()
        for _, span in sorted(spans, key=lambda span: span[0]):  # in the order published
            for decision in span:
                found.remember(decision)
        return found

    async def _read_windows(
        self,
        reader: AIOKafkaConsumer,
        tp: TopicPartition,
        windows: dict[int, tuple[int, int]],
        earliest: int,
        beginning: int,
        spans: list[tuple[int, list[Published]]],
    ) -> None:
        """Read into ``spans`` the part of each origin's window lying before the offset
        ``earliest`` (the latest offsets, read already). With a time budget of its own:
        what it could not read in it is said and left out, never the lane's taking
        failed (a taking that times out is tried again, reading the same spans, for
        ever; review of stop 47)."""
        wanted = spans_of_windows_before(
            windows, earliest, beginning=beginning, most=2 * self._memory
        )
        try:
            async with asyncio.timeout(MEMORY_READ_TIMEOUT_S):
                for start, stop in wanted:
                    spans.append((start, []))
                    await self._read_span(reader, tp, start, stop, spans[-1][1])
        except TimeoutError:
            log.warning(
                "publisher: decisions partition %d: the windows of its declaration "
                "partitions were not all read back within %.0f s (%d offsets in %d spans); "
                "a repeat of what was left out may be published again",
                tp.partition,
                MEMORY_READ_TIMEOUT_S,
                sum(stop - start for start, stop in wanted),
                len(wanted),
            )

    async def _committed_windows(self, partition: int) -> dict[int, tuple[int, int]]:
        """Where the origins' windows lay on the decisions partition when the lane's last
        transaction committed (its outbox offset's metadata); none before any commit.
        Raised when the coordinator did not answer for the partition: aiokafka reads no
        group-level error of the answer (a coordinator loading, moved) and returns
        nothing, which would be taken for "no windows" (review of stop 47)."""
        outbox = TopicPartition(self._outbox, partition)
        admin = AIOKafkaAdminClient(**client_options(self._connect))
        try:
            await admin.start()
            committed = await admin.list_consumer_group_offsets(self._group, partitions=[outbox])
        finally:
            await admin.close()
        entry = committed.get(outbox)
        if entry is None:  # a partition never committed is answered, with offset -1
            raise KafkaError(f"the commit of outbox partition {partition} was not answered")
        return windows_in(entry.metadata or "")

    @staticmethod
    async def _read_span(
        reader: AIOKafkaConsumer,
        tp: TopicPartition,
        start: int,
        end: int,
        span: list[Published],
    ) -> None:
        """Append to ``span`` the decisions committed between offsets ``start`` and
        ``end``, in order."""
        reader.seek(tp, start)
        while await reader.position(tp) < end:
            for records in (await reader.getmany(tp, timeout_ms=200)).values():
                for record in records:
                    if record.offset >= end:
                        return  # read on into the span after: already read
                    headers = list(record.headers)
                    # Published decisions carry their declarant and origin as the outbox
                    # record did (its headers are copied); those published before the
                    # headers existed name none: judged by version, counted by the lane.
                    span.append(
                        Published(
                            (record.key or b"", _version_of(headers)),
                            declarant_of(headers),
                            origin_of(headers),
                            record.offset,
                        )
                    )

    async def _publish_partition(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        lane: _Lane,
    ) -> None:
        self._unpublished_since.setdefault(tp.partition, self._clock())
        if tp.partition not in self._partitions:
            # Fetched before its handover finished (or after it was revoked): never
            # skipped while ours, or its position would move past unpublished decisions.
            if tp not in consumer.assignment():
                self._unpublished_since.pop(tp.partition, None)
                return  # revoked: its next owner reads them from the committed offset
            # Its taking, begun at the assignment (or begun again after a failure): the
            # batch is published only once what the partition published is known.
            await asyncio.wait([self._taking_of(tp.partition)])
        # The batch's transaction runs under its partition's handover lock: a revocation
        # (the group rebalancing, a broker lost) waits for it to commit or abort before it
        # stops the partition's producer. A producer stopped mid-transaction never resolves
        # its commit: the publisher hung, every partition with it (seen on the three-node
        # cluster, tests/e2e/test_a_broker_dies_under_the_hub.py).
        async with self._handover[tp.partition]:
            publisher = self._partitions.get(tp.partition)
            if publisher is not None and producer_is_broken(publisher.producer):
                log.warning("publisher: producer of partition %d failed; replaced", tp.partition)
                await self._drop(tp.partition)
                publisher = None
            if publisher is None or tp not in consumer.assignment():
                published = False  # not ours (any more, or yet)
            else:
                published = await self._publish_batch(publisher, consumer, tp, records)
            if not published and tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)  # read again once it can be published
                lane.waiting.clear()  # and so is what was fetched after it
        if published:
            self._unpublished_since.pop(tp.partition, None)
        else:
            await asyncio.sleep(0.5)  # outside the lock: a handover may be waiting on it

    async def _publish_batch(
        self,
        publisher: _PartitionPublisher,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
    ) -> bool:
        """One transaction: the batch's decisions not yet published, and its offsets.
        False when it was aborted or fenced. The caller holds the partition's handover
        lock."""
        sent = PublishedMemory(len(records))  # this batch's, until it is committed
        skipped: list[tuple[Identity, Refusal, int | None]] = []
        deliveries: list[asyncio.Future[object]] = []
        # Each decision sent: what it is, where it came from, and its delivery (its
        # offset on the decisions partition once delivered).
        sending: list[
            tuple[Identity, bytes, int | None, Outcome | None, asyncio.Future[RecordMetadata]]
        ] = []
        remembered: list[Published] = []  # what the memory adds once committed
        opening = records[0].offset  # the record being opened: named if its key is missing
        try:
            # What aiokafka ended the transaction with, not what a send failed after it.
            async with transaction(publisher.producer):
                for record in records:
                    headers = list(record.headers)
                    identity = (record.key or b"", _version_of(headers))
                    declarant = declarant_of(headers)
                    refusal = publisher.published.refusal(identity, declarant) or sent.refusal(
                        identity, declarant
                    )
                    if refusal == OTHER_DECLARANT:
                        # Lodged in another's name and decided where the reference's
                        # case was not (another partition, another worker): never
                        # published, and the reference's highest version stays where it
                        # was. A security dead letter, in the same transaction.
                        skipped.append((identity, refusal, None))
                        letter = await self._dead_letter(
                            publisher.producer,
                            record,
                            error_class=ErrorClass.SECURITY,
                            kind=DECLARANT_CHANGED,
                            reason=f"decided for another declarant than the decisions of "
                            f"reference {identity[0].decode(errors='replace')} published "
                            "before it; a declaration's later versions are its declarant's",
                        )
                        if letter is not None:
                            deliveries.append(letter)
                        # And a status of the version: without it the operations view
                        # counts its decision and takes its declarant for the reference's.
                        recorded = await self._record_not_published(
                            publisher.producer,
                            tp.partition,
                            identity,
                            StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
                            "decided for another declarant than the decisions of this "
                            "declaration published before it",
                            lodging_of(headers),
                        )
                        if recorded is not None:
                            deliveries.append(recorded)
                        continue
                    if refusal is not None:
                        # A duplicate: announced again after a crash, or decided by the
                        # reference's case on another partition too. Superseded: a lower
                        # version decided after a higher one was published, recorded.
                        known = (publisher.published, sent)
                        highest = max(
                            (h for m in known if (h := m.highest(identity[0])) is not None),
                            default=None,
                        )
                        skipped.append((identity, refusal, highest))
                        if refusal == DUPLICATE:
                            deliveries.extend(
                                await self._tell_decided_elsewhere(
                                    publisher, sent, tp.partition, record, identity
                                )
                            )
                        if refusal == SUPERSEDED:
                            recorded = await self._record_not_published(
                                publisher.producer,
                                tp.partition,
                                identity,
                                StatusKind.IGNORED_STALE_VERSION,
                                f"version {highest} of this declaration was published already",
                                lodging_of(headers),
                            )
                            if recorded is not None:
                                deliveries.append(recorded)
                        continue
                    opening = record.offset
                    opened = self._seal_for_clearance(record)
                    if opened is None:
                        # In the same transaction: dead-lettered once, with its offset.
                        letter = await self._dead_letter(publisher.producer, record)
                        if letter is not None:
                            deliveries.append(letter)
                        continue
                    sealed, outcome = opened
                    delivery = await publisher.producer.send(
                        self._decisions,
                        sealed,
                        key=record.key,
                        partition=tp.partition,
                        # The receipt is the hub's own: gun.decisions stays as it was.
                        headers=[h for h in headers if h[0] != HEADER_LODGING],
                    )
                    deliveries.append(delivery)
                    origin = origin_of(headers)
                    sent.remember(Published(identity, declarant, origin, outcome=outcome))
                    sending.append((identity, declarant, origin, outcome, delivery))
                # aiokafka commits a transaction whose produce the broker refused (a record
                # too large, a corrupt batch, any error it does not retry): its commit waits
                # for the sends, it does not check them, and the offsets committed with it
                # would skip the refused decisions. Checked here, a refusal aborts instead.
                await asyncio.gather(*deliveries)
                # Delivered: their offsets are known, and the commit says where each
                # origin's window lies now, this transaction's decisions in it (a lane
                # taken over reads the windows from there: published_memory.py).
                for identity, declarant, origin, outcome, delivery in sending:
                    offset = delivery.result().offset
                    remembered.append(Published(identity, declarant, origin, offset, outcome))
                said = window_metadata(publisher.published.windows_with(remembered))
                await publisher.producer.send_offsets_to_transaction(
                    {tp: (records[-1].offset + 1, said)}, self._group
                )
        except ProducerFenced:
            # Another worker owns this partition now (we missed a rebalance): it
            # publishes from the committed offsets. Or the coordinator aborted a
            # transaction older than its timeout. Ours stops here, until the group
            # assigns it to us again, or still assigns it later (RETAKE_FENCED_AFTER_S).
            log.warning(
                fenced_while_assigned(
                    f"publisher: outbox partition {tp.partition}", self._retake_fenced_after_s
                )
            )
            await self._drop(tp.partition)
            consumer.pause(tp)
            self._fenced.add(tp.partition)
            retake = asyncio.create_task(self._retake_if_still_ours(consumer, tp))
            self._retakes.add(retake)
            retake.add_done_callback(self._retakes.discard)
            return False
        except StateKeyMissing as missing:
            # Sealed by another worker with a state key rotated since and not deployed here
            # (a well-formed key id, not among this worker's keys even after its key file
            # was looked at again): not the record's fault. The transaction is aborted
            # (nothing of the batch is visible, no dead letter, no offset committed) and
            # the batch read again, until the key arrives or the patience ends.
            self._wait_for_the_key(tp.partition, opening, missing)
            return False
        except NOT_AUTHORISED:
            # Refused by the principal's rights (no Write on the decisions, the dead
            # letters, the status): read again, it would be refused again for ever. The
            # publisher stops, and the worker with it, naming the refusal (stop 40).
            raise
        except KafkaError:
            # Aborted: nothing of the batch is visible; read it again, with a new producer.
            # The old one may be unusable (aiokafka leaves a producer in a fatal state on
            # some errors, and a refused idempotent batch leaves a gap in its sequence
            # numbers), and a commit that failed may have happened all the same: the new
            # producer waits for the coordinator to end that transaction, and the memory
            # read again when the partition is taken holds what it published.
            log.exception("publisher: batch of partition %d aborted; retried", tp.partition)
            await self._drop(tp.partition)
            return False
        self._key_missing_since.pop(tp.partition, None)  # a key missing later: waited anew
        for decision in remembered:  # only once the transaction is committed
            publisher.published.remember(decision)
        self.published_count += len(sent)
        for (reference, version), refusal, highest in skipped:
            metrics.DECISIONS_NOT_PUBLISHED.labels(reason=refusal).inc()
            if refusal == SUPERSEDED:
                log.warning(
                    "publisher: decision of %s version %s not published: version %s of it "
                    "was published already (its versions arrived on several partitions)",
                    reference.decode(errors="replace"),
                    version.decode(errors="replace"),
                    highest,
                )
            elif refusal == OTHER_DECLARANT:
                # Neither declarant is named (nor its hash): the dead letter holds the rest.
                log.warning(
                    "publisher: decision of %s version %s not published: decided for another "
                    "declarant than the reference's decisions published (dead-lettered as %s)",
                    reference.decode(errors="replace"),
                    version.decode(errors="replace"),
                    DECLARANT_CHANGED,
                )
        return True

    def _wait_for_the_key(self, partition: int, offset: int, missing: StateKeyMissing) -> None:
        """The batch of ``partition`` waits for the state key ``missing`` names (of the
        outbox record at ``offset``): said once, then, after ``key_missing_patience_s``,
        the publisher stops, and the worker with it (the lane's failure ends :meth:`run`,
        faust's task crashes the app), its reason in one line. Restarted with the key,
        the worker reads the partition again from its committed offset, which never moved
        past the decision: published once. Never a dead letter: the other workers'
        decisions would be lost for the clearance system (review stop 40's open item; ADR
        0022's addendum of stop 41)."""
        now = self._clock()
        first = partition not in self._key_missing_since
        since = self._key_missing_since.setdefault(partition, now)
        if now - since < self._key_missing_patience_s:
            if first:  # not at every read again (every half second)
                log.warning(
                    "publisher: outbox partition %d offset %d: %s; not published, read "
                    "again until the key is deployed (this worker stops after %.0f s "
                    "without it)",
                    partition,
                    offset,
                    missing,
                    self._key_missing_patience_s,
                )
            return
        log.critical(
            "publisher: outbox partition %d offset %d: %s; this worker stops: deploy the "
            "state key %r to it (the key file every worker of the hub shares) and start it "
            "again (nothing of the partition was published, dead-lettered or committed "
            "past it)",
            partition,
            offset,
            missing,
            missing.kid,
        )
        raise missing

    async def _tell_decided_elsewhere(
        self,
        publisher: _PartitionPublisher,
        sent: PublishedMemory,
        lane_partition: int,
        record: ConsumerRecord[bytes, bytes],
        identity: Identity,
    ) -> list[asyncio.Future[object]]:
        """A duplicate the reference's case on another partition decided than the one
        published (a version read on two partitions, each case deciding it: docs/
        decisions.md, "One reference on several partitions", ADR 0028): both cases are
        told, a :class:`NotPublished` notice on the hub's deadlines topic at each one's
        partition (pipeline/published_elsewhere.py: the one not published follows the
        outcome published, and either tells the other partitions of a later version), and
        the view is, a NOT_PUBLISHED_DECIDED_ELSEWHERE status naming the outcome not
        published and its receipt, on the lane's partition of the status topic. All in
        the lane's transaction. Nothing for a repeat from the partition whose decision was
        published (a crash's announcement again), nor when either partition is not said
        (a decision of a worker from before stop 38's origins); no status when both
        outcomes are known and the same."""
        headers = list(record.headers)
        decided_on = origin_of(headers)
        published = publisher.published.origin(identity)
        if published.partition is None:
            published = sent.origin(identity)
        published_from = published.partition
        if decided_on is None or published_from is None or decided_on == published_from:
            return []
        version = version_number(identity[1])
        if version is None:
            return []  # its record does not open (its seal is bound to its version)
        reference = identity[0].decode(errors="replace")
        outcome = self._outcome_of(record)
        log.warning(
            "publisher: decision of %s version %d decided on partition %d not published: "
            "the one decided on partition %d was (its versions arrived on several partitions)",
            reference,
            version,
            decided_on,
            published_from,
        )
        told: list[asyncio.Future[object]] = []
        if self._deadlines is not None:
            notice = NotPublished(version, published_from, published.outcome).to_bytes()
            sealed = self._outbox_cipher.seal(NOTICE_STATE, reference, notice)
            # Every hub topic has the declarations' partitions (ADR 0005, checked at the
            # start); an origin beyond them (an outbox record not the agents') is no
            # reason to stop the lane: aiokafka refuses an unknown partition with an
            # AssertionError, not a KafkaError.
            partitions = await publisher.producer.partitions_for(self._deadlines)
            for partition in sorted({decided_on, published_from}):
                if partition not in partitions:
                    log.warning(
                        "publisher: %s names partition %d, which %s does not have: not told",
                        reference,
                        partition,
                        self._deadlines,
                    )
                    continue
                told.append(
                    await publisher.producer.send(
                        self._deadlines,
                        sealed,
                        key=identity[0],
                        partition=partition,
                        headers=[trace_header(reference, version)],
                    )
                )
        if outcome is not None and outcome == published.outcome:
            # The same outcome as the one published: nothing for the view to put right,
            # and a status naming the outcome published would have it drop the published
            # decision (three partitions, two of them alike: a review of stop 59).
            return told
        recorded = await self._record_not_published(
            publisher.producer,
            lane_partition,
            identity,
            StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE,
            f"decided {outcome or 'a decision'} on partition {decided_on}; the decision the "
            f"case on partition {published_from} made of this version was published",
            lodging_of(headers),
            outcome=outcome,
        )
        if recorded is not None:
            told.append(recorded)
        return told

    def _outcome_of(self, record: ConsumerRecord[bytes, bytes]) -> Outcome | None:
        """The outcome of the decision in the outbox ``record``; None when it does not
        open or names none."""
        key = outbox_record_key(record.key or b"", _version_of(list(record.headers)))
        try:
            document = self._outbox_cipher.open(OUTBOX_STATE, key, record.value or b"")
        except (StateKeyMissing, StateUnreadable):
            return None
        return _outcome_in(document)

    async def _record_not_published(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        identity: Identity,
        kind: StatusKind,
        why: str,
        lodging: str | None,
        *,
        outcome: Outcome | None = None,
    ) -> asyncio.Future[object] | None:
        """The status event of a version decided and not published, in the lane's
        transaction: on the lane's partition of the status topic (the case's partition is
        unknown here). For a version below one published, IGNORED_STALE_VERSION (contract
        section 4: ignored and recorded); for one decided for another declarant,
        NOT_PUBLISHED_OTHER_DECLARANT beside its dead letter (the operations view reads no
        dead letter's version, and anybody may write dead letters: without it the view
        counted the decision and took its declarant for the reference's). It names no
        declarant (nothing on the status topic does), and ``why`` begins with
        :data:`NOT_PUBLISHED`, which the view reads. ``lodging``: the receipt the
        decision's outbox record names (``HEADER_LODGING``), which the view then withholds
        alone; without it the view withholds the whole version (review of stop 54: the
        declarant whose decision of that version was published read a 404). None for a
        version that is no number (its record does not open either)."""
        version = version_number(identity[1])
        if self._status is None or version is None:
            return None  # no number: its record does not open (published_memory.py)
        reference = identity[0].decode(errors="replace")
        event = StatusEvent(
            reference=reference,
            version=version,
            kind=kind,
            at=self._wall_clock(),
            detail=f"{NOT_PUBLISHED}: {why}",
            lodging=lodging,
            outcome=None if outcome is None else outcome.value,
        )
        delivery: asyncio.Future[object] = await producer.send(
            self._status,
            event.to_bytes(),
            key=identity[0],
            partition=partition,
            headers=[trace_header(reference, version)],
        )
        return delivery

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        record: ConsumerRecord[bytes, bytes],
        *,
        error_class: ErrorClass = ErrorClass.PERMANENT,
        kind: str = OUTBOX_UNREADABLE,
        reason: str = "the outbox record does not open with the hub's state key",
    ) -> asyncio.Future[object] | None:
        """Send the dead letter of ``record``; what acknowledges it (checked before the
        commit, as the decisions are)."""
        if self._dead_letters is None:
            return None
        metrics.DEAD_LETTERS.labels(kind=kind).inc()
        letter = dead_letter_record(
            self._dead_letters,
            record.value or b"",
            error_class=error_class,
            kind=kind,
            reason=reason,
            source=SourcePosition(record.topic, record.partition, record.offset, record.key),
            component="decision-publisher",
        )
        # Vouched for as the hub's own (a DECLARANT_CHANGED is evidence no flood of
        # anybody's reports may leave out of the audit: security/own_dead_letters.py).
        letter = vouched(self._outbox_cipher, letter, time.time())
        delivery: asyncio.Future[object] = await producer.send(
            letter.topic, letter.value, key=letter.key, headers=letter.headers
        )
        return delivery

    async def _retake_if_still_ours(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        """A fenced partition the group still assigns to this worker after a while was
        fenced by the transaction coordinator, not by a new owner: taken again. Parked for
        good, its decisions stopped with nobody else to publish them."""
        if await fenced_by_its_coordinator(
            lambda: tp.partition in self._fenced and tp in consumer.assignment(),
            self._retake_fenced_after_s,
        ):
            log.warning(
                retaken_after_a_fence(
                    f"publisher: outbox partition {tp.partition}", self._retake_fenced_after_s
                )
            )
            self._fenced.discard(tp.partition)
            consumer.resume(tp)

    def _seal_for_clearance(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[bytes, Outcome | None] | None:
        """The decision the agents sealed with the hub's state key, sealed now to the
        clearance system, and its outcome (remembered: :meth:`_tell_decided_elsewhere`);
        None when it does not open.

        The outbox is written by the hub's agents alone; a record that does not open is a
        bug or a state key changed wrongly, not data: logged, dead-lettered, skipped.
        Raises :class:`StateKeyMissing` when it is sealed with a state key this worker
        does not hold (another worker's rotation, not deployed here yet): the record may
        be sound, and is never dead-lettered for it (ADR 0022).
        """
        key = outbox_record_key(record.key or b"", _version_of(list(record.headers)))
        try:
            document = self._outbox_cipher.open(OUTBOX_STATE, key, record.value or b"")
        except StateKeyMissing:
            raise  # the worker's deployment, not the record: _publish_batch waits, or stops
        except StateUnreadable:
            log.exception(
                "publisher: outbox record %s/%d/%d does not open; skipped",
                record.topic,
                record.partition,
                record.offset,
            )
            return None
        sealed = self._envelope.seal(
            document,
            recipient=CLEARANCE_PARTY,
            topic=self._decisions,
            content_type=ContentType.XML,
        )
        return sealed, _outcome_in(document)


def _outcome_in(document: bytes) -> Outcome | None:
    """The outcome of a decision the hub rendered (xml/decision_codec.py: its
    ``<Outcome>`` near the start); None when it names none."""
    found = _OUTCOME.search(document, 0, 1024)
    if found is None:
        return None
    name = found.group(1).decode()
    return Outcome(name) if name in Outcome.__members__ else None


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """Producers follow the group's assignment of outbox partitions."""

    def __init__(self, publisher: DecisionPublisher, consumer: AIOKafkaConsumer) -> None:
        self._publisher = publisher
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._publisher._release(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # No broker round trip here (no heartbeat is sent meanwhile): the partitions are
        # taken in the background (``_begin_taking``).
        self._publisher._begin_taking(tp.partition for tp in assigned)
        # Assigned (again): none of them fenced or paused any more.
        self._publisher._fenced.difference_update(tp.partition for tp in assigned)
        self._consumer.resume(*assigned)
