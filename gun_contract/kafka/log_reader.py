"""Reading one record back by its position: for the few places that must see a record
again, as the broker holds it (a redrive checked against its original, a dead letter
shown to an operator); and, bounded by the caller, the records of one key between two
positions (what an adapter's declaration was sent between a redrive and its original).

One consumer without a group, started on first use and kept: a redrive of many dead
letters reads many records, and a consumer's start costs a metadata round trip or two.
Reads are serialised (a consumer has one assignment at a time); they are rare. A position
on a partition that does not exist is found absent at once (the topic is described first),
and every read is bounded by the reader's timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError, for_code
from aiokafka.protocol.metadata import MetadataRequest

from gun_contract.envelope import broker_accepted_at
from gun_contract.kafka.client import Connect, client_options, consumer_options, start_or_close

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A record as the broker holds it at ``topic/partition/offset``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    timestamp_type: int

    @property
    def accepted_at(self) -> float | None:
        """The broker's log-append time, when the topic stamps records with it."""
        return broker_accepted_at(self.timestamp_ms, self.timestamp_type)

    def describe(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class LogReader:
    """Reads single records by position (see the module docstring)."""

    def __init__(
        self, connect: Connect, *, timeout_s: float = 10.0, client_id: str = "gun-hub-log-reader"
    ) -> None:
        self._connect = connect
        self._timeout_s = timeout_s
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()
        self._admin_lock = asyncio.Lock()

    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None:
        """The record at ``topic/partition/offset``; None if the log does not hold it (no
        such topic or partition, never written, removed by retention, or a transaction
        marker). Whatever the broker does, the answer comes within the timeout, the wait
        for another read included, or ``TimeoutError``; the broker's errors, ``KafkaError``.
        """
        # One bound over everything: the worker's redrive checks share this reader (and
        # its lock) with the operators' desk, and aiokafka asks the offsets of a partition
        # that does not exist again and again until its own request timeout (40 s).
        async with asyncio.timeout(self._timeout_s), self._lock:
            if partition not in (await self._partitions([topic]))[topic]:
                return None
            consumer = await self._started()
            tp = TopicPartition(topic, partition)
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if not first <= offset < end:
                return None
            consumer.assign([tp])
            consumer.seek(tp, offset)
            while True:
                fetched = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                for record in fetched.get(tp, []):
                    if record.offset != offset:
                        return None  # the offset held a control record, skipped
                    return _logged(topic, partition, record)
                # Past it with nothing returned: the offset held an aborted record, which
                # a read-committed fetch steps over. Read on to the next committed record,
                # a writer's gigabytes of aborted transactions took the read past its
                # timeout, again at each retry, and the intake agent with it (review stop 46).
                if await consumer.position(tp) > offset:
                    return None

    async def read_between(
        self,
        topic: str,
        partition: int,
        first: int,
        end: int,
        *,
        key: bytes | None,
        within_s: float | None = None,
    ) -> list[LoggedRecord] | None:
        """The records of ``topic/partition`` from offset ``first`` up to ``end``
        (excluded) whose key is ``key``, in log order; None when the log no longer holds
        all of them (retention deleted some, or the partition is gone or shorter). Every
        record between is fetched (Kafka cannot filter by key): the caller bounds
        ``end - first``. Within ``within_s`` (the reader's timeout by default), the wait
        for another read included, or ``TimeoutError``; the broker's errors, ``KafkaError``.
        """
        if end <= first:
            return []
        async with asyncio.timeout(within_s or self._timeout_s), self._lock:
            if partition not in (await self._partitions([topic]))[topic]:
                return None
            consumer = await self._started()
            tp = TopicPartition(topic, partition)
            if (await consumer.beginning_offsets([tp]))[tp] > first:
                return None
            if (await consumer.end_offsets([tp]))[tp] < end:
                return None
            consumer.assign([tp])
            consumer.seek(tp, first)
            found: list[LoggedRecord] = []
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=500, max_records=500)
                found += [
                    _logged(topic, partition, record)
                    for record in fetched.get(tp, [])
                    if record.offset < end and record.key == key
                ]
            # A fetch whose offset retention deleted meanwhile is reset to the log's end
            # (the consumer's default): past records never seen. The log's start tells.
            if (await consumer.beginning_offsets([tp]))[tp] > first:
                return None
            return found

    async def partitions(self, *topics: str) -> dict[str, frozenset[int]]:
        """The partition numbers of each of ``topics`` (none for a topic that does not
        exist), asked of the cluster now, within the timeout (``TimeoutError``)."""
        async with asyncio.timeout(self._timeout_s):
            return await self._partitions(topics)

    async def _partitions(self, topics: Iterable[str]) -> dict[str, frozenset[int]]:
        wanted = sorted(set(topics))
        found = {topic: frozenset[int]() for topic in wanted}
        # Never created by asking (aiokafka's describe_topics allows it, and a cluster may
        # auto-create): a mistyped topic stays a topic that does not exist.
        request = MetadataRequest(wanted, allow_auto_topic_creation=False)
        response = await (await self._admin_started())._send_request(request)
        for described in response.to_object()["topics"]:
            code = described.get("error_code", 0)
            if code == UnknownTopicOrPartitionError.errno:
                continue  # no such topic: it has no partition
            if code:  # not allowed to see it, the broker busy: no answer, not "none"
                raise for_code(code)(f"describing {described.get('topic')}")
            found[described["topic"]] = frozenset(p["partition"] for p in described["partitions"])
        return found

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **consumer_options(self._connect),
                group_id=None,
                enable_auto_commit=False,
                client_id=self._client_id,
                # As the hub reads its inputs: an aborted transaction's record is no
                # original to redrive (gun_hub/runtime/strict_consumer.py).
                isolation_level="read_committed",
            )
            await start_or_close(consumer)
            self._consumer = consumer
        return self._consumer

    async def _admin_started(self) -> AIOKafkaAdminClient:
        """The admin client that describes topics (a consumer's metadata knows only the
        topics it reads), started on first use and kept."""
        async with self._admin_lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    **client_options(self._connect), client_id=self._client_id
                )
                await start_or_close(_Closable(admin))
                self._admin = admin
            return self._admin

    async def close(self) -> None:
        async with self._lock:
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None
        async with self._admin_lock:
            if self._admin is not None:
                await self._admin.close()
                self._admin = None


def _logged(topic: str, partition: int, record: ConsumerRecord[bytes, bytes]) -> LoggedRecord:
    return LoggedRecord(
        topic,
        partition,
        record.offset,
        record.key,
        record.value or b"",
        tuple(
            (str(name), bytes(value))
            for name, value in record.headers or ()
            if isinstance(value, bytes | bytearray | memoryview)
        ),
        record.timestamp,
        record.timestamp_type,
    )


@dataclass(frozen=True, slots=True)
class _Closable:
    """An admin client as ``start_or_close`` stops a client (it closes instead)."""

    admin: AIOKafkaAdminClient

    async def start(self) -> None:
        await self.admin.start()

    async def stop(self) -> None:
        await self.admin.close()
