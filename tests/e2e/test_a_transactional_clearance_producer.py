"""A clearance system that publishes its declarations in Kafka transactions.

The contract lets the clearance system use any Kafka client (architecture.md section 2).
One that publishes with a *transactional* producer (librdkafka here, its default
partitioner, each declaration sealed and keyed by its reference as the contract says)
changes two things in the log of ``gun.declarations``:

* each transaction ends with a commit or abort **marker** on every partition it wrote:
  an offset that holds no record. The hub's admission (``pipeline/admission.py``) holds a
  declaration until every offset before it was read, so a declaration behind a marker
  is held for an offset no record will ever arrive at. The consumer learns such offsets
  hold nothing (from the fetch, or the offset watchdog for a marker at the head), and
  the "admission recheck" timer (``admit_what_no_longer_waits``, run ``as_if_handling``
  the declaration's record) releases it. If that did not happen, these declarations
  would never be decided;
* an **aborted** transaction leaves records in the log that were never published: the
  clearance system gave them up. Deciding one would decide a declaration nobody lodged.

What this shows, on the real broker with the hub as a real process:

1. declarations published in transactions of several declarations, in transactions of
   one each, and around aborted transactions (fresh declarations, and an amendment of a
   declaration already committed) each get exactly one decision per reference and
   version; the aborted ones get none;
2. the same holds when the hub worker is stopped (SIGTERM) or killed (SIGKILL) while
   such declarations are in flight (read, held, asked about, none decided yet), more
   are published while it is away, and it starts again with its local state (the
   mechanism of ``test_hub_restart`` and ``test_kill_the_hub``).

Each time, the partner's ledger on the one document every declaration quotes
(``load_on_one_document``) then holds exactly the committed declarations' reservations
and write-offs: none reserved twice, nothing reserved for an aborted one.

Each test checks its own premise from the producer's delivery reports (markers between
the records, aborted records before committed ones on a partition), so a change in how
the records land cannot make it pass without exercising what it is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import KafkaError, Message, Producer

from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision
from gun_tools.processes import start_adapter
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline
from tests.e2e.load_on_one_document import (
    DOCUMENT,
    QUANTITY,
    assert_each_decided_once_and_ledger_exact,
    seed_document,
)

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

Version = tuple[str, int]  # (reference, version): what one decision is for

DEADLINE_S = 120  # generous: a restart, and a few admission rechecks and watchdog looks
STRAGGLERS_S = 5  # read on once all are there: a duplicate or an aborted one would show


@dataclass(frozen=True)
class Transaction:
    """Declarations the clearance system publishes together, then commits or aborts."""

    versions: tuple[Version, ...]
    committed: bool


@dataclass(frozen=True)
class Delivered:
    """Where the broker wrote one declaration of a transaction."""

    version: Version
    partition: int
    offset: int
    committed: bool


def transactions(run: str) -> list[Transaction]:
    """A clearance system's day in miniature: transactions of several declarations and of
    one, and two aborted ones between them (one of fresh declarations and the amendment
    of a declaration already committed, one of a single declaration)."""
    refs = [f"26FRTX{run}{n:08d}" for n in range(22)]

    def lodged(*numbers: int) -> tuple[Version, ...]:
        return tuple((refs[n], 1) for n in numbers)

    return [
        Transaction(lodged(0, 1, 2, 3), committed=True),
        Transaction(lodged(4), committed=True),
        Transaction(lodged(5), committed=True),
        Transaction((*lodged(6, 7, 8), (refs[0], 2)), committed=False),
        Transaction(lodged(9, 10, 11, 12), committed=True),
        Transaction(lodged(13), committed=True),
        Transaction(lodged(14), committed=False),
        Transaction(lodged(15), committed=True),
        Transaction(lodged(16, 17, 18, 19), committed=True),
        Transaction(lodged(20), committed=True),
        Transaction(lodged(21), committed=True),
    ]


def on_the_document(version: Version) -> bytes:
    """The declaration (or amendment) quoting ``QUANTITY`` of the seeded document's line,
    as ``load_on_one_document.declarations`` builds them, at any version."""
    reference, number = version
    return declaration_xml(
        reference=reference,
        version=number,
        items=(goods_item(1, (document("N853", DOCUMENT, 1, str(QUANTITY)),)),),
    )


Written = list[tuple[Version, int, int]]  # (version, partition, offset) per record


def report_into(
    written: Written, failures: list[KafkaError], version: Version
) -> Callable[[KafkaError | None, Message], None]:
    """librdkafka's delivery report of ``version``'s record."""

    def report(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)
        else:
            written.append((version, message.partition(), message.offset()))

    return report


def publish_in_transactions(
    bootstrap: str,
    topic: str,
    transactional_id: str,
    plan: list[tuple[Transaction, list[bytes]]],
) -> list[Delivered]:
    """Publish each transaction's sealed declarations, keyed by reference, with a
    librdkafka transactional producer (default partitioner), then commit or abort it.
    Every record is written to the log before its transaction ends, aborted ones too: a
    clearance system that gives up after sending. Blocking: run it in a thread."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "acks": "all"}
    )
    producer.init_transactions(30)
    delivered: list[Delivered] = []
    for transaction, sealed in plan:
        written: Written = []
        failures: list[KafkaError] = []
        producer.begin_transaction()
        for version, value in zip(transaction.versions, sealed, strict=True):
            producer.produce(
                topic,
                value,
                version[0].encode(),
                on_delivery=report_into(written, failures, version),
            )
        assert producer.flush(30) == 0, "every record of the transaction written"
        assert failures == [], f"records of a transaction not written: {failures}"
        if transaction.committed:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
        delivered += [Delivered(v, p, o, transaction.committed) for v, p, o in written]
    return delivered


async def publish(pipeline: Pipeline, run: str) -> list[Delivered]:
    """``transactions(run)``, sealed by the clearance system, on the declarations topic."""
    plan = [(t, [pipeline.seal(on_the_document(v)) for v in t.versions]) for t in transactions(run)]
    return await asyncio.to_thread(
        publish_in_transactions,
        pipeline.kafka.bootstrap,
        pipeline.kafka.topics.declarations,
        f"{pipeline.kafka.prefix}-clearance",
        plan,
    )


def assert_what_the_log_holds(delivered: list[Delivered]) -> None:
    """The premise: on some partition a committed declaration comes after an offset that
    holds no record (a transaction marker), and after a record of an aborted one."""
    records = {(d.partition, d.offset) for d in delivered}
    committed = [d for d in delivered if d.committed]
    behind_a_marker = [
        d for d in committed if d.offset > 0 and (d.partition, d.offset - 1) not in records
    ]
    assert behind_a_marker, "some committed declaration follows a transaction marker"
    aborted = [d for d in delivered if not d.committed]
    behind_an_aborted = [
        d
        for d in committed
        if any(a.partition == d.partition and a.offset < d.offset for a in aborted)
    ]
    assert behind_an_aborted, "some committed declaration follows an aborted record"


async def read_until_decided(
    pipeline: Pipeline,
    reader: DecisionReader,
    received: list[ReceivedDecision],
    expected: set[Version],
    *,
    then_s: float = 0.0,
) -> None:
    """Read decisions until every version of ``expected`` has one (for at most
    ``DEADLINE_S``, the components checked alive meanwhile), then whatever else comes
    within ``then_s``: the assertions that follow say what is missing."""

    def decided() -> set[Version]:
        return {(r.decision.reference, r.decision.version) for r in received}

    try:
        async with asyncio.timeout(DEADLINE_S):
            while not expected <= decided():
                pipeline.group.check_alive()
                received += await reader.collect(expected=len(expected), timeout_s=0.5)
    except TimeoutError:
        return
    if then_s:
        received += await reader.collect(expected=len(expected) + 1, timeout_s=then_s)


def assert_exactly_the_committed_decided_once(
    received: list[ReceivedDecision], delivered: list[Delivered]
) -> None:
    """One decision per committed (reference, version), none for an aborted one: every
    departure at once, each named."""
    committed = {d.version for d in delivered if d.committed}
    aborted = {d.version for d in delivered if not d.committed}
    counts = Counter((r.decision.reference, r.decision.version) for r in received)
    departures = {
        f"committed, not decided within {DEADLINE_S} s": sorted(committed - set(counts)),
        "aborted, yet decided": sorted(
            (v, r.decision.outcome.value)
            for r in received
            if (v := (r.decision.reference, r.decision.version)) in aborted
        ),
        "decided more than once": sorted((v, n) for v, n in counts.items() if n > 1),
        "decided, never published": sorted(set(counts) - committed - aborted),
    }
    found = {what: versions for what, versions in departures.items() if versions}
    assert found == {}, "\n".join(f"{what}: {versions}" for what, versions in found.items())


@contextlib.asynccontextmanager
async def reading_decisions(pipeline: Pipeline) -> AsyncIterator[DecisionReader]:
    """The clearance system's decision reader, from the start of the decisions topic."""
    reader = DecisionReader(
        pipeline.kafka.bootstrap,
        pipeline.kafka.topics.decisions,
        pipeline.kafka.envelope("clearance"),
    )
    await reader.start(from_beginning=True)
    try:
        yield reader
    finally:
        await reader.stop()


async def assert_each_committed_one_decided_once(
    pipeline: Pipeline, reader: DecisionReader, delivered: list[Delivered]
) -> None:
    """The log holds what the test is about; each committed declaration gets one decision,
    no aborted one any, and the partner's ledger is exact."""
    assert_what_the_log_holds(delivered)
    committed = {d.version for d in delivered if d.committed}
    received: list[ReceivedDecision] = []
    await read_until_decided(pipeline, reader, received, committed, then_s=STRAGGLERS_S)
    assert_exactly_the_committed_decided_once(received, delivered)
    await assert_each_decided_once_and_ledger_exact(
        pipeline, received, sorted({reference for reference, _ in committed})
    )


async def test_declarations_published_in_transactions_are_each_decided_once(
    pipeline: Pipeline,
) -> None:
    await seed_document(pipeline)
    async with reading_decisions(pipeline) as reader:
        delivered = await publish(pipeline, "A")
        await assert_each_committed_one_decided_once(pipeline, reader, delivered)


async def first_request_sent(pipeline: Pipeline) -> None:
    """Wait until the hub has asked the DGAL side about a declaration: it read and
    admitted one (a precise failure after ``DEADLINE_S``)."""
    consumer = AIOKafkaConsumer(
        pipeline.kafka.topics.requests("dgal"),
        bootstrap_servers=pipeline.kafka.bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not await consumer.getmany(timeout_ms=200):
                pipeline.group.check_alive()
    except TimeoutError:
        raise AssertionError(f"no request sent within {DEADLINE_S} s") from None
    finally:
        await consumer.stop()


@pytest.mark.chaos
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_a_hub_stopped_while_transactional_declarations_are_in_flight_decides_each_once(
    pipeline: Pipeline, sig: int
) -> None:
    """The hub goes down as soon as it has asked about the first declaration of a batch
    of transactions: none of them can be decided yet (the DGAL adapter is stopped until
    then), the others are being read, held for their verdicts or the offsets before them,
    or asked about. The adapter comes back and answers while the hub is away, the
    clearance system publishes more meanwhile, and more once the hub is back."""
    await seed_document(pipeline)
    async with reading_decisions(pipeline) as reader:
        pipeline.group.stop("adapter-dgal")
        delivered = await publish(pipeline, "B")
        await first_request_sent(pipeline)
        pipeline.group.stop("hub", sig=sig)
        assert pipeline.partner_port is not None
        start_adapter(pipeline.group, "dgal", pipeline.partner_port)

        delivered += await publish(pipeline, "C")  # while the hub is away
        pipeline.start_hub()
        delivered += await publish(pipeline, "D")  # once it is back
        await assert_each_committed_one_decided_once(pipeline, reader, delivered)
