"""On the real broker: a group whose commit retention left below the log start lags by what
the log still holds, and what was deleted before it read it is counted apart (carried
defect "lag below the log's start").

The broker keeps a group's commit as it was when retention moves the log start past it
(a consumer stopped longer than the topic's retention): ``end - committed`` then counts
records nobody can read any more. ``delete_records`` moves the log start as retention
does.
"""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops.lag_monitor import LagMonitor, WatchedGroup
from tests.integration.seeded_topics import seeded_topic
from tests.integration.test_the_lag_monitor_dates_the_oldest_unread_record import commit

pytestmark = pytest.mark.broker


async def delete_before(bootstrap: str, tp: TopicPartition, offset: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(offset)})
    finally:
        await admin.close()


async def test_a_commit_below_the_log_start_lags_by_what_is_left_and_names_the_loss(
    kafka_bootstrap: str,
) -> None:
    topic = await seeded_topic(kafka_bootstrap, "lost-below-start", 10)
    tp = TopicPartition(topic, 0)
    await commit(kafka_bootstrap, f"{topic}-stopped", tp, 2)  # read 2, then stopped
    await commit(kafka_bootstrap, f"{topic}-reading", tp, 8)
    await delete_before(kafka_bootstrap, tp, 6)  # retention deletes records 0 to 5
    monitor = LagMonitor(
        ClientConfig(kafka_bootstrap),
        [
            WatchedGroup(f"{topic}-stopped", (topic,)),
            WatchedGroup(f"{topic}-reading", (topic,)),
            WatchedGroup(f"{topic}-never", (topic,)),  # never committed
        ],
        dating_timeout_s=30,
    )
    await monitor.start()
    try:
        measured = await monitor.measure()
    finally:
        await monitor.stop()
    by_group = {
        p.group.removeprefix(f"{topic}-"): (p.committed, p.log_start, p.end, p.lag, p.lost)
        for p in measured.partitions
    }
    assert by_group == {
        "stopped": (2, 6, 10, 4, 4),  # 4 left to read, 4 deleted unread: not 8 of lag
        "reading": (8, 6, 10, 2, 0),
        "never": (None, 6, 10, 4, 0),
    }
    assert {g.group.removeprefix(f"{topic}-"): (g.lag, g.lost) for g in measured.groups} == {
        "stopped": (4, 4),
        "reading": (2, 0),
        "never": (4, 0),
    }
    # Its oldest unread record is the log start's, the first it can still read.
    [unread] = [u for u in measured.unread if u.group == f"{topic}-stopped"]
    assert unread.offset == 6
