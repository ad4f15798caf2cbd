"""Replay memory across partitions: a sealed declaration copied onto another partition of
``gun.declarations`` is refused as a replay by the real hub on the real broker."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRREPLAY00000001"


async def test_a_sealed_declaration_copied_onto_another_partition_is_a_replay(
    hub_only: Pipeline,
) -> None:
    topics = hub_only.kafka.topics
    sealed = hub_only.seal(
        declaration_xml(
            reference=REFERENCE, items=(goods_item(1, (document("Y900", "EX-1", None, None),)),)
        )
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=hub_only.kafka.bootstrap, max_request_size=16 * 1024 * 1024
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.declarations, sealed, key=REFERENCE.encode(), partition=0
        )
        await hub_only.decisions(1, settle_s=0.5)
        # The same bytes, the same key, another partition named by the replayer.
        await producer.send_and_wait(
            topics.declarations, sealed, key=REFERENCE.encode(), partition=1
        )
    finally:
        await producer.stop()

    for _ in range(30):
        if await hub_only.records(topics.dlq):
            break
        # Whatever the copy caused instead, as the failure.
        statuses = await hub_only.records(topics.status, expected=1)
        assert [r.value for r in statuses if r.partition == 1] == []
    # Refused as a replay and dead-lettered where it arrived...
    [dead] = await hub_only.records(topics.dlq, expected=1)
    assert (dead.value, dead.partition) == (sealed, 1)
    assert header_value(list(dead.headers), HEADER_ERROR_KIND) == "ENVELOPE_REPLAY"
    # ...so it never became a case of its own: every status of the reference comes from
    # the original's partition (the hub writes on the partition a declaration arrived on).
    statuses = await hub_only.records(topics.status, expected=1)
    assert {r.partition for r in statuses if r.key == REFERENCE.encode()} == {0}
