"""The faust app class and agent shape the hub runs on (offsets.py says why).

``HubApp`` consumes through ``StrictOffsetsConsumer``; ``handled_agent`` is the one way an
agent is written: handle each event in order, then mark it handled, so that only handled
records are ever committed over. ``every`` is the one way a periodic task is written: its
failure is logged, not fatal. ``watch_offsets`` starts the watchdog that reads again a
record faust dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
import faust.streams as faust_streams
from aiokafka.errors import KafkaError
from faust.types import TP, EventT, Message

from gun_contract.counters import export_at_zero
from gun_contract.kafka.client import Connect
from gun_contract.security.state_cipher import StateKeyMissing
from gun_hub import metrics
from gun_hub.runtime import ownership, table_writes
from gun_hub.runtime.aged_out import InputsAgedOut
from gun_hub.runtime.faust_monitor import LivelockMonitor
from gun_hub.runtime.raw_codecs import RawBytesRegistry
from gun_hub.runtime.settling import Settling
from gun_hub.runtime.strict_consumer import StrictOffsetsConsumer, StrictOffsetsTransport
from gun_hub.runtime.table_writes import WriteAwaitedTable
from gun_hub.runtime.watchdog import OffsetWatchdog

log = logging.getLogger(__name__)


# How long a stop waits for the records in hand to settle: a clean stop's settle in well
# under a second (their deliveries are on their way); one that waits longer waits for
# something that will not come.
STOP_WAIT_S = 15.0


class HubApp(faust.App):  # type: ignore[misc]
    """faust.App whose consumer commits only past handled records, whose tables keep
    their writes for the settling of the record that made them (table_writes.py), and
    whose agents' delivery window (``settling``) acts for a record only while its
    partition is this worker's (ownership.py); its raw bytes skip faust's codecs
    (raw_codecs.py) and its monitor counts only what faust reads (faust_monitor.py)."""

    def __init__(
        self,
        *args: Any,
        in_flight_limit: int = 1000,
        stop_wait_s: float = STOP_WAIT_S,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("Table", WriteAwaitedTable)
        # Keys and values are bytes under the raw codec: handed back as they are, not put
        # through faust's codec lookups (raw_codecs.py).
        kwargs.setdefault("Serializers", RawBytesRegistry)
        # faust's own sensor, counting only what faust reads (faust_monitor.py).
        kwargs.setdefault("Monitor", LivelockMonitor)
        super().__init__(*args, **kwargs)
        self.settling = Settling(limit=in_flight_limit)
        self._stop_wait_s = stop_wait_s
        # Run before faust waits for every agent to finish the event in hand (at a
        # revocation, at stop): what could hold an agent for ever is let go first (an
        # audit lane retrying links the broker will not take; found by review in stop 32).
        self.before_revoking: list[Callable[[set[TP]], Awaitable[None]]] = []
        self.before_stopping: list[Callable[[], Awaitable[None]]] = []
        # Run before faust takes an assignment in, inside the group's assignment callback
        # (no heartbeat is sent meanwhile: each must be quick, no broker round trip); what
        # must read the broker before records flow again runs at ``on_rebalance_complete``,
        # which faust's recovery awaits before it resumes the partitions.
        self.before_assigning: list[Callable[[set[TP]], Awaitable[None]]] = []
        # Asked by the consumer before it hands a fetched record to the agents' queues:
        # False leaves the record, and its partition's records after it, for the fetch
        # after the partition is unthrottled (the admission limit, app.py).
        self.may_hand_over: Callable[[TP], bool] | None = None

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.should_stop:  # faust returns at once too
            await super()._on_partitions_revoked(revoked)
            return
        try:
            # No more events handed to the agents (faust does it again, harmlessly):
            # those read meanwhile would have their audit links cancelled.
            consumer = self._consumer  # None before the worker ever consumed: nothing flows
            if consumer is not None:
                consumer.stop_flow()
            self.flow_control.suspend()
            self.flow_control.clear()
            # Before faust waits for the agents: a settling that ends meanwhile must not
            # write for a partition its next owner is about to restore.
            self.settling.give_up(revoked)
            for table in self.tables.values():
                if isinstance(table, WriteAwaitedTable):
                    table.give_up(revoked)
            for give_up in self.before_revoking:
                await give_up(revoked)
        except Exception as failure:  # noqa: BLE001 - aiokafka would log and swallow it,
            await self.crash(failure)  # and faust's revocation be skipped without a word
            return
        await super()._on_partitions_revoked(revoked)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        if self.should_stop:
            await super()._on_partitions_assigned(assigned, generation_id)
            return
        self.settling.take(assigned)
        try:
            for take_in in self.before_assigning:
                await take_in(assigned)
        except Exception as failure:  # noqa: BLE001 - as above: a crash, not a skip
            await self.crash(failure)
            return
        await super()._on_partitions_assigned(assigned, generation_id)

    async def on_stop(self) -> None:
        for stop in self.before_stopping:
            await stop()
        await super().on_stop()

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """faust's wait at stop for the records its agents have in hand to be
        acknowledged, then its commit: not after a crash, bounded otherwise.

        After a crash the commit went to the consumer's thread, which the crash had
        stopped, and waited for its answer for ever: the worker never exited, so its
        supervisor never restarted it (CI, stop 50: a publisher refused its topic; mode's
        task dump showed ``wait_empty`` in ``call_thread``). What is not settled and
        committed is read again at the next start (ADR 0001). A revocation's wait is left
        as faust has it: its records must be done before another worker takes their
        partitions (ownership.py)."""
        if not self.should_stop:
            await super()._consumer_wait_empty(consumer, logger)
            return
        if self.crash_reason is not None:
            logger.warning(
                "crashed: the records in hand are not waited for nor committed; they are "
                "read again at the next start"
            )
            return
        try:
            async with asyncio.timeout(self._stop_wait_s):
                await super()._consumer_wait_empty(consumer, logger)
        except TimeoutError:
            logger.warning(
                "stopping with records in hand still unsettled after %g s: they are read "
                "again at the next start",
                self._stop_wait_s,
            )

    def _new_transport(self) -> Any:
        return StrictOffsetsTransport(self.conf.broker_consumer, self)


def mark_handled(app: Any, message: Message) -> None:
    consumer = app.consumer
    if isinstance(consumer, StrictOffsetsConsumer):
        consumer.mark_handled(message)


def hold(app: Any, topic: str, partition: int, offset: int) -> None:
    """The record is on its way until ``mark_handled_at`` settles it."""
    consumer = app.consumer
    if isinstance(consumer, StrictOffsetsConsumer):
        consumer.hold(TP(topic, partition), offset)


def release(app: Any, message: Message) -> None:
    """A record held will not be settled after all (``StrictOffsetsConsumer.release``)."""
    release_at(app, message.topic, message.partition, message.offset)


def let_go(app: Any, message: Message) -> None:
    """From the settling of ``message`` itself: release it, unless its partition changed
    hands since it was held. The revocation dropped that hold, and one taken since is the
    new tenure's (the record read again after a sticky reassignment): released, the
    record was neither handled nor on its way, and the watchdog read its partition again
    from it (found by the review of stop 35's diff)."""
    if ownership.acts_for_its_partition():
        release(app, message)


def release_at(app: Any, topic: str, partition: int, offset: int) -> None:
    """A record held (``hold``) will not be settled after all: the watchdog reads it
    again, as it does any record neither handled nor on its way."""
    consumer = app.consumer
    if isinstance(consumer, StrictOffsetsConsumer):
        consumer.release(TP(topic, partition), offset)


def mark_handled_at(app: Any, topic: str, partition: int, offset: int) -> None:
    """A record settled after its own event (a declaration admitted on its verdict)."""
    consumer = app.consumer
    if isinstance(consumer, StrictOffsetsConsumer):
        consumer.mark_handled_at(TP(topic, partition), offset)


Handled = bool | None | Awaitable[None]


@dataclass(frozen=True, slots=True)
class _Read:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, eq=False)
class _StandInEvent:
    """What faust's tables ask of the event being handled: its message's topic and
    partition (which changelog partition and which store a write goes to)."""

    message: _Read


@contextlib.contextmanager
def as_if_handling(topic: str, partition: int, offset: int) -> Iterator[None]:
    """Work done outside any event (a timer) as if it handled the record at
    ``topic/partition/offset``: its table writes go to that partition's changelog and
    store. faust finds them from the event being handled (a context variable) and refuses
    a write without one: a TypeError, which dead-lettered the valid declarations the
    admission recheck released (stop 30, found by review). Within an event, the event's.

    A task started inside copies the context; faust holds the event by a weak reference,
    so the one who needs it later holds it (runtime/settling.py does)."""
    if faust.current_event() is not None:
        yield
        return
    event = _StandInEvent(_Read(topic, partition, offset))
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def every(app: Any, interval_s: float, name: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` every ``interval_s`` seconds on ``app``, a failure logged and counted
    (``gun_hub_timer_failures_total``) and the next run trying again.

    faust runs a timer as an app task, and mode crashes the worker when a task raises
    (``Service._execute_task``): a sweep that met a broker timeout, a table changing under
    its read in a rebalance, or a send faust refused stopped the whole worker (stop 30,
    found by review), and its own recovery (the keys pushed back for "the next sweep")
    never ran."""

    export_at_zero(metrics.TIMER_FAILURES, timer=[name])

    async def survivably() -> None:
        try:
            await work()
        except Exception:
            metrics.TIMER_FAILURES.labels(timer=name).inc()
            log.exception("%s failed; tried again in %.1f s", name, interval_s)

    app.timer(interval=interval_s, name=name)(survivably)


class InHand:
    """How many events an agent has taken from its queue and not finished handling: with
    what its queue holds, what it has been handed and not yet taken in."""

    def __init__(self) -> None:
        self.count = 0


def handled_agent(
    app: Any,
    topic: Any,
    name: str,
    handle: Callable[[EventT], Awaitable[Handled]],
    settling: Settling | None = None,
    in_hand: InHand | None = None,
) -> None:
    """One event at a time per partition, in order (``in_hand`` counts the one taken from
    the agent's queue and not yet handled). ``handle`` returns:

    * an awaitable (its effects, on their way): the record is held (on its way, for the
      watchdog) and marked handled once it completes, while the agent goes on
      (``settling``, runtime/settling.py);
    * False: it held the record (``hold``, before sending anything that could settle it)
      until ``mark_handled_at`` settles it;
    * None or True: the record is marked handled now.

    A stored value sealed with a state key this worker lacks (``StateKeyMissing``, raised
    once ``handle`` gave up waiting for the key) stops the worker, exit non-zero, naming
    the key: restarted by faust's supervisor, the agent read the same record and failed
    again, for good, in a worker still live and ready whose partition's commit no longer
    moved (review stop 40-F, F3). Restarted with the key, the worker reads it again.
    """

    in_hand = InHand() if in_hand is None else in_hand

    async def process(stream: Any) -> None:
        async for event in stream.events():
            in_hand.count += 1
            try:
                if settling is not None:
                    await settling.room()
                try:
                    result = await handle(event)
                except StateKeyMissing as missing:
                    log.critical(
                        "agent %s: %s; this worker stops: deploy the state key %r to it (the "
                        "key file every worker of the hub shares) and start it again",
                        name,
                        missing,
                        missing.kid,
                    )
                    await app.crash(missing)
                    return
                if result is False:
                    continue
                if result is None or result is True:
                    if not table_writes.pending(event):
                        mark_handled(app, event.message)
                        continue
                    result = table_writes.written(event)  # its table writes still on their way
                if settling is None:
                    await result
                    mark_handled(app, event.message)
                    continue
                # On its way until the broker has its effects: a delivery can take longer
                # than the watchdog's patience under load, and a record neither handled nor
                # on its way is one the watchdog reads again, with all fetched after it.
                message = event.message
                hold(app, message.topic, message.partition, message.offset)
                settling.track(
                    result,
                    functools.partial(mark_handled, app, message),
                    otherwise=functools.partial(let_go, app, message),
                )
            finally:
                in_hand.count -= 1

    app.agent(topic, name=name, concurrency=1)(process)


def watch_offsets(
    app: Any,
    connect: Connect,
    topics: set[str],
    interval_s: float,
    aged_out: InputsAgedOut | None = None,
) -> OffsetWatchdog:
    """Tick the offset watchdog every ``interval_s`` on this worker's partitions of
    ``topics``; what retention deleted unread from ``aged_out``'s inputs is named."""
    watchdog = OffsetWatchdog(
        lambda: app.consumer, connect, topics, stall_s=2 * interval_s, aged_out=aged_out
    )

    async def watch() -> None:
        try:
            while True:
                await asyncio.sleep(interval_s)
                if app.rebalancing or app.in_recovery:
                    continue  # the assignment seeks back to the commit point itself
                try:
                    await watchdog.tick()
                except (KafkaError, OSError, TimeoutError):
                    log.exception("offset watchdog: the broker could not be asked; next tick")
        finally:
            await watchdog.stop()

    app.task(watch)
    return watchdog
