"""A case value that does not open on the cases changelog stops neither its reference nor
its partition (review stop 40-F, F3; ADR 0022).

The reviewer's reproduction, on the real broker: version 1 of a reference decided, the hub
stopped, random bytes written under the reference's key on every partition of
``<app_id>-cases-changelog`` (anyone may, on the plain profile; the hub principal on the
secured one), the hub started again (recovery restores them into the ``cases`` table),
then version 2 sent. The intake agent met ``StateUnreadable``, retried for 30 s, crashed,
was restarted by faust, and again at every start; version 2 was never decided nor
dead-lettered and the partition's committed offset never moved again. Now version 2 is
refused (``STATE_UNREADABLE``) with a dead letter naming the reference, version 3 is
decided as ever, and the hub's group commits every declaration read.

A value sealed with a state key id the worker does not hold (rotated by another worker,
not deployed here) is no record's fault: the worker stops, exit non-zero, naming the key
id, instead of crash-looping its agent in a live, ready process.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_REFERENCE,
    header_value,
)
from gun_contract.kafka.admin import topic_partitions
from gun_contract.model.verdicts import Outcome
from gun_contract.security.keystore import StateKey
from gun_contract.security.state_cipher import StateCipher
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRUNREADABLE0001"


def exempt(version: int) -> bytes:
    """Decided at once (no partner asked): the test needs no adapter."""
    return declaration_xml(
        reference=REFERENCE,
        version=version,
        items=(goods_item(1, (document("Y900", "EXEMPT-1", None, None),)),),
    )


async def write_under_the_reference(pipeline: Pipeline, value: bytes) -> None:
    """``value`` under the reference's key on every partition of the cases changelog."""
    topic = f"{pipeline.kafka.env()['GUN_HUB_HUB__APP_ID']}-cases-changelog"
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap)
    await producer.start()
    try:
        for partition in await producer.partitions_for(topic):
            await producer.send_and_wait(topic, value, key=REFERENCE.encode(), partition=partition)
    finally:
        await producer.stop()


async def everything_committed(pipeline: Pipeline) -> None:
    """Until the hub's group has committed every declarations partition to its end: the
    partition of the refused version moved on (a committed offset behind it was the
    finding's lasting harm)."""
    topics = pipeline.kafka.topics
    group = f"{topics.prefix}-hub"
    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.kafka.bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap)
    await consumer.start()
    await admin.start()
    try:
        partitions = [
            TopicPartition(topics.declarations, p)
            for p in await topic_partitions(pipeline.kafka.bootstrap, topics.declarations)
        ]
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(60):
            while True:
                pipeline.group.check_alive()
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {tp: offsets[tp].offset for tp in partitions if tp in offsets}
                if all(committed.get(tp, -1) >= end for tp, end in ends.items() if end > 0):
                    return
                await asyncio.sleep(0.5)  # polling the broker's commits: nothing to await
    finally:
        await admin.close()
        await consumer.stop()


async def test_a_case_that_does_not_open_is_refused_and_its_partition_moves_on(
    hub_only: Pipeline,
) -> None:
    await hub_only.submit([exempt(1)])
    [first] = await hub_only.decisions(1)
    assert (first.decision.version, first.decision.outcome) == (1, Outcome.RELEASE)

    hub_only.group.stop("hub", sig=signal.SIGTERM)
    await write_under_the_reference(hub_only, b"\x00" + os.urandom(63))
    hub_only.start_hub()  # recovery restores the garbage into the cases table

    await hub_only.submit([exempt(2)])
    dead = await hub_only.records(hub_only.kafka.topics.dlq, expected=1)
    assert [
        (
            header_value(list(r.headers), HEADER_ERROR_KIND),
            header_value(list(r.headers), HEADER_REFERENCE),
            header_value(list(r.headers), HEADER_COMPONENT),
        )
        for r in dead
    ] == [(STATE_UNREADABLE, REFERENCE, "hub.intake")]
    await hub_only.submit([exempt(3)])

    decided = await hub_only.decisions(3)
    assert [(d.decision.version, d.decision.outcome) for d in decided] == [
        (1, Outcome.RELEASE),
        (2, Outcome.REFUSE),
        (3, Outcome.RELEASE),
    ]
    assert [reason.code for reason in decided[1].decision.reasons] == [STATE_UNREADABLE]
    await everything_committed(hub_only)
    log = hub_only.hub_log()
    assert "Crashed reason" not in log
    assert "handled again in" not in log  # never retried as the worker's fault


async def test_a_case_sealed_with_a_state_key_the_worker_lacks_stops_the_worker_naming_it(
    hub_only: Pipeline,
) -> None:
    await hub_only.submit([exempt(1)])
    await hub_only.decisions(1)
    hub_only.group.stop("hub", sig=signal.SIGTERM)
    kid = "hub-state-20990101T000000-abcdef"  # a rotation this worker was not given
    rotated = StateCipher.of([StateKey(kid, os.urandom(32))])
    await write_under_the_reference(
        hub_only, rotated.seal("cases", REFERENCE, b'{"reference":"' + REFERENCE.encode() + b'"}')
    )
    hub_only.start_hub()
    hub = hub_only.group.children["hub"].process

    await hub_only.submit([exempt(2)])
    # Retried for about 20 s first (the key may be on its way), then it stops.
    assert await asyncio.to_thread(hub.wait, 120) != 0
    log = hub_only.hub_log()
    assert f"deploy the state key {kid!r}" in log
    assert "Traceback" not in log  # an expected end, said in a sentence (stop 41)
    assert "Restarting dead" not in log  # the agent was not restarted in a live worker
    dead = await hub_only.records(hub_only.kafka.topics.dlq)
    assert [header_value(list(r.headers), HEADER_ERROR_KIND) for r in dead] == []
