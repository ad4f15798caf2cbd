"""How the hub sends what one event caused (gun_hub/runtime/delivery.py), issue 10 defects 8 and 13.

The producer is replaced by a recording function here: what is tested is the hub's
policy (partition, retries, dead letters, when ``after_delivery`` runs), not Kafka; the
end-to-end tests send through the real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects, OutgoingRecord
from gun_hub.runtime.delivery import UNDELIVERABLE, DeliveryFailed, Retries, deliver, pinned

SOURCE = SourcePosition("gun.declarations", 3, 41, b"26FR000690I0000012")


class Broker:
    """Acknowledges records, or fails them as told, and remembers what it kept."""

    def __init__(self, failures: dict[str, list[Exception]] | None = None) -> None:
        self.failures = failures or {}
        self.kept: list[OutgoingRecord] = []

    async def send(self, record: OutgoingRecord) -> Awaitable[Any]:
        queued = self.failures.get(record.topic)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if queued:
            future.set_exception(queued.pop(0))
        else:
            self.kept.append(record)
            future.set_result(None)
        return future


def outbox_of(*topics: str) -> Effects:
    outbox = Effects()
    for topic in topics:
        outbox.add(topic, b"26FR000690I0000012", b"value")
    return outbox


def test_every_record_goes_to_the_partition_of_its_event() -> None:
    outbox = outbox_of("gun.requests.dgal", "gun.status")
    outbox.add("gun.audit", None, b"chained", partition=0)
    assert [r.partition for r in pinned(outbox, 3)] == [3, 3, 0]


async def test_confirmations_run_once_every_record_is_acknowledged() -> None:
    broker = Broker({"gun.status": [KafkaTimeoutError(), KafkaTimeoutError()]})
    confirmed: list[int] = []
    outbox = outbox_of("gun.requests.dgal", "gun.status")
    outbox.after_delivery.append(lambda: confirmed.append(len(broker.kept)))
    await deliver(broker.send, outbox, SOURCE, "gun.dlq", Retries(backoff_s=0.001))
    assert confirmed == [2]
    assert [r.topic for r in broker.kept] == ["gun.requests.dgal", "gun.status"]


async def test_a_record_the_broker_will_never_take_becomes_a_dead_letter() -> None:
    broker = Broker({"gun.requests.dgal": [MessageSizeTooLargeError()]})
    await deliver(broker.send, outbox_of("gun.requests.dgal", "gun.status"), SOURCE, "gun.dlq")
    [status, dead] = broker.kept
    assert status.topic == "gun.status"
    assert (dead.topic, dead.partition) == ("gun.dlq", 3)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == UNDELIVERABLE


async def test_a_broker_that_keeps_failing_stops_the_event_unacknowledged() -> None:
    broker = Broker({"gun.status": [KafkaTimeoutError()] * 10})
    confirmed: list[bool] = []
    outbox = outbox_of("gun.status")
    outbox.after_delivery.append(lambda: confirmed.append(True))
    with pytest.raises(DeliveryFailed):
        await deliver(broker.send, outbox, SOURCE, "gun.dlq", Retries(attempts=3, backoff_s=0.001))
    assert confirmed == []  # never marked delivered: the event is redelivered after restart


class FaustProducer(Broker):
    """A broker behind faust's producer, which refuses before queueing as faust does: a
    ``ProducerSendError`` wrapping aiokafka's error (what the hub's real path raises)."""

    def __init__(self, refusals: dict[str, list[Exception]]) -> None:
        super().__init__()
        self.refusals = refusals

    async def send(self, record: OutgoingRecord) -> Awaitable[Any]:
        refused = self.refusals.get(record.topic)
        if refused:
            cause = refused.pop(0)
            raise ProducerSendError(f"Error while sending: {cause!r}") from cause
        return await super().send(record)


async def test_a_record_faust_refuses_before_queueing_becomes_a_dead_letter() -> None:
    """Stop 30, found by review (this test first): faust wraps aiokafka's errors in its
    own, which the delivery did not catch; the agent restarted, the record was read again
    and refused again, and its partition's commit never moved again."""
    broker = FaustProducer({"gun.requests.dgal": [MessageSizeTooLargeError()]})
    await deliver(broker.send, outbox_of("gun.requests.dgal", "gun.status"), SOURCE, "gun.dlq")
    [status, dead] = broker.kept
    assert status.topic == "gun.status"
    assert header_value(dead.headers, HEADER_ERROR_KIND) == UNDELIVERABLE


async def test_a_record_faust_refuses_for_now_is_sent_again() -> None:
    broker = FaustProducer({"gun.status": [KafkaTimeoutError()]})
    await deliver(broker.send, outbox_of("gun.status"), SOURCE, "gun.dlq", Retries(backoff_s=0.001))
    assert [record.topic for record in broker.kept] == ["gun.status"]


async def test_what_must_be_undone_if_never_delivered_runs_when_a_delivery_fails_for_good() -> None:
    broker = Broker({"gun.status": [KafkaTimeoutError()] * 5})
    outbox = outbox_of("gun.status")
    undone: list[str] = []
    outbox.after_delivery.append(lambda: undone.append("confirmed"))
    outbox.if_undelivered.append(lambda: undone.append("undone"))
    with pytest.raises(DeliveryFailed):
        await deliver(broker.send, outbox, SOURCE, "gun.dlq", Retries(attempts=2, backoff_s=0.001))
    assert undone == ["undone"]


async def test_what_must_be_undone_if_never_delivered_runs_when_a_delivery_is_given_up() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def held(_record: OutgoingRecord) -> Awaitable[Any]:
        return never

    outbox = outbox_of("gun.status")
    undone: list[str] = []
    outbox.if_undelivered.append(lambda: undone.append("undone"))
    settling = asyncio.ensure_future(deliver(held, outbox, SOURCE, "gun.dlq"))
    await asyncio.sleep(0)
    settling.cancel()  # a partition given up
    with pytest.raises(asyncio.CancelledError):
        await settling
    assert undone == ["undone"]


async def test_a_record_for_a_partition_the_topic_does_not_have_becomes_a_dead_letter() -> None:
    """aiokafka refuses a partition the topic does not have with an ``assert``; from a
    claim naming partition 4096 it escaped the delivery and crashed the claims agent on the
    same record again and again (found by review in stop 34)."""

    class Asserting(Broker):
        async def send(self, record: OutgoingRecord) -> Awaitable[Any]:
            if record.topic == "gun.hub.claims":
                raise AssertionError("Unrecognized partition")
            return await super().send(record)

    broker = Asserting()
    await deliver(broker.send, outbox_of("gun.hub.claims", "gun.status"), SOURCE, "gun.dlq")
    [status, dead] = broker.kept
    assert status.topic == "gun.status"
    assert header_value(dead.headers, HEADER_ERROR_KIND) == UNDELIVERABLE


async def test_an_assertion_of_the_producer_about_anything_but_the_partition_is_not_hidden() -> (
    None
):
    """Only aiokafka's partition check is a refusal of the record; another assertion is
    a bug, and stays one (found by review in stop 34)."""

    class Asserting(Broker):
        async def send(self, record: OutgoingRecord) -> Awaitable[Any]:
            raise AssertionError("the producer's loop is not the running loop")

    with pytest.raises(AssertionError, match="loop"):
        await deliver(Asserting().send, outbox_of("gun.status"), SOURCE, "gun.dlq")
