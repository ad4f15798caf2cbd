"""The hub away longer than gun.declarations keeps records (7 days): the declarations
retention deleted before any worker read them are named, never stepped over in silence.

Each run of offsets lost is one dead letter of kind INPUT_AGED_OUT_OF_THE_LOG (source =
the first offset lost, the reason names the range) and an error line; the hub reads on
past the gap and decides what follows. Retention is simulated with delete_records on the
real broker, as tests/integration/test_the_watchdog_steps_over_what_retention_deleted.py
does. (Review stop 38, L1.)
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    header_value,
)
from gun_contract.kafka.admin import topic_partitions
from gun_hub.runtime.aged_out import INPUT_AGED_OUT
from tests.builders import declaration_xml
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.asyncio]


async def _ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def _committed_everywhere(bootstrap: str, group: str, topic: str) -> None:
    """Until the hub's group has an offset committed on every partition of ``topic``: a
    worker commits the start of each input partition it is first given, so that what
    retention deletes while the hub is away is measured from there."""
    partitions = await topic_partitions(bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(60):
            while True:
                offsets = await admin.list_consumer_group_offsets(group)
                if {tp.partition for tp in offsets if tp.topic == topic} >= set(partitions):
                    return
                await asyncio.sleep(0.5)  # polling the broker: nothing to await
    finally:
        await admin.close()


async def test_declarations_deleted_unread_while_the_hub_was_away_are_dead_lettered(
    hub_only: Pipeline,
) -> None:
    topics = hub_only.kafka.topics
    bootstrap = hub_only.kafka.bootstrap
    await hub_only.submit([declaration_xml(reference="26FRAWAY0000000001")])
    await hub_only.records(topics.requests("dgal"), expected=1)
    await _committed_everywhere(bootstrap, f"{topics.prefix}-hub", topics.declarations)
    read_before = await _ends(bootstrap, topics.declarations)

    hub_only.group.stop("hub", sig=signal.SIGTERM)  # the hub goes away
    await hub_only.submit(
        [declaration_xml(reference=f"26FRAWAY00000000{n:02d}") for n in (2, 3, 4)]
    )
    # Eight days later: retention deleted what the hub never read.
    ends = await _ends(bootstrap, topics.declarations)
    assert sum(ends.values()) == 4
    lost = {
        tp.partition: range(read_before[tp], end)
        for tp, end in ends.items()
        if end > read_before[tp]
    }
    assert sum(len(gap) for gap in lost.values()) == 3
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(end) for tp, end in ends.items() if end})
    finally:
        await admin.close()

    hub_only.start_hub()
    await hub_only.submit([declaration_xml(reference="26FRAWAY0000000005")])
    requests = await hub_only.records(topics.requests("dgal"), expected=2)
    # the hub reads on past the gap: the new one is handled
    assert sorted({r.key.decode() for r in requests if r.key}) == [
        "26FRAWAY0000000001",
        "26FRAWAY0000000005",
    ]

    letters = [
        dict(r.headers)
        for r in await hub_only.records(topics.dlq, expected=len(lost))
        if header_value(r.headers, HEADER_ERROR_KIND) == INPUT_AGED_OUT
    ]
    # One dead letter per gap, naming where it began: the three lost declarations, once.
    named = {
        int(h[HEADER_SOURCE_PARTITION]): int(h[HEADER_SOURCE_OFFSET])
        for h in letters
        if h[HEADER_SOURCE_TOPIC].decode() == topics.declarations
    }
    assert len(letters) == len(lost)
    assert named == {partition: gap.start for partition, gap in lost.items()}
    for h in letters:
        assert h[HEADER_COMPONENT] == b"hub.inputs"
        gap = lost[int(h[HEADER_SOURCE_PARTITION])]
        reason = h[HEADER_ERROR_REASON].decode()
        assert f"records {gap.start} to {gap[-1]} of {topics.declarations}/" in reason
    errors = [
        line
        for line in hub_only.hub_log().splitlines()
        if "ERROR" in line
        and topics.declarations in line
        and "deleted by the topic's retention" in line
    ]
    assert len(errors) == len(lost), errors

    # Back again: the gaps were committed past, and are not named a second time.
    hub_only.group.stop("hub", sig=signal.SIGTERM)
    hub_only.start_hub()
    await hub_only.submit([declaration_xml(reference="26FRAWAY0000000006")])
    await hub_only.records(topics.requests("dgal"), expected=3)
    again = [
        r
        for r in await hub_only.records(topics.dlq)
        if header_value(r.headers, HEADER_ERROR_KIND) == INPUT_AGED_OUT
    ]
    assert len(again) == len(lost)
