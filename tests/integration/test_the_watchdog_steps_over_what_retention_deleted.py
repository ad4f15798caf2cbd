"""A worker back after its topics' retention deleted records it had not committed past
(the hub down longer than the claims and deadlines topics keep records: one day) steps
over them: the offset watchdog learns from the broker that they hold nothing
(gun_hub/runtime/watchdog.py).

Found by review in stop 30 (this test first): the watchdog's probe sought to the
committed offset, below the log's start; aiokafka reset the probe to the log's end, it
found no record at all, and the commit point stayed below the log start for ever (every
record handled since held in memory, the partition's declarations waiting behind it).
"""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from faust.types import TP

from gun_hub.runtime.watchdog import OffsetWatchdog
from tests.integration.seeded_topics import seeded_topic

pytestmark = pytest.mark.broker


async def _delete_before(bootstrap: str, topic: str, offset: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(offset)})
    finally:
        await admin.close()


async def test_records_deleted_by_retention_are_known_to_hold_nothing(
    kafka_bootstrap: str,
) -> None:
    topic = await seeded_topic(kafka_bootstrap, "retained", 30)
    await _delete_before(kafka_bootstrap, topic, 20)  # what retention deleted
    watchdog = OffsetWatchdog(lambda: None, kafka_bootstrap, {topic}, 4.0)
    try:
        present, covered = await watchdog._present(TP(topic, 0), 5, 30)
    finally:
        await watchdog.stop()
    assert present == set(range(20, 30))
    assert covered == 30  # 5 to 19 hold nothing: the look went through them
