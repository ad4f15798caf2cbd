"""A deadline entry that does not read, restored from the open-cases changelog, leaves no
case undecided (review stop 40, open item 1).

On the real broker: a version waits for a partner that never answers, the hub is stopped,
bytes that are no deadline are written under the reference's key on every partition of
``<app_id>-open-cases-changelog`` (anyone may, on the plain profile), and the hub started
again: recovery restores them in the place of the case's deadline. The deadline timer
skipped such an entry, so nothing ever ticked the case: it was never decided. Now the
timer ticks it on each partition holding it, the handler of the case's partition puts the
case's own deadline back (elsewhere it removes the entry: no case there) and dead-letters
the tick STATE_UNREADABLE, and the case is decided at its deadline. (Stop 41's version
failed when the case's partition was not the last to handle its tick: the timer, reading
outside any event, then looked for the deadline put back on the partition where the
entry had just been removed: tests/unit/test_each_partitions_deadline_entry_is_looked_at.py.)
"""

from __future__ import annotations

import signal

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_REFERENCE,
    header_value,
)
from gun_contract.model.verdicts import Outcome
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE
from tests.builders import declaration_xml
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRNODEADLINE0001"
NOT_A_DEADLINE = bytes(range(0x80, 0xC0))


async def write_under_the_reference(pipeline: Pipeline, value: bytes) -> int:
    """``value`` under the reference's key on every partition of the open-cases
    changelog; how many partitions."""
    topic = f"{pipeline.kafka.env()['GUN_HUB_HUB__APP_ID']}-open-cases-changelog"
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap)
    await producer.start()
    try:
        partitions = await producer.partitions_for(topic)
        for partition in partitions:
            await producer.send_and_wait(topic, value, key=REFERENCE.encode(), partition=partition)
    finally:
        await producer.stop()
    return len(partitions)


async def test_a_case_whose_deadline_entry_does_not_read_is_decided_at_its_deadline(
    silent_hub: Pipeline,
) -> None:
    topics = silent_hub.kafka.topics
    await silent_hub.submit([declaration_xml(reference=REFERENCE)])
    await silent_hub.records(topics.requests("dgal"), expected=1)  # its case is open
    silent_hub.group.stop("hub", sig=signal.SIGTERM)
    partitions = await write_under_the_reference(silent_hub, NOT_A_DEADLINE)
    silent_hub.start_hub()  # recovery restores the bytes in the place of its deadline

    [decided] = await silent_hub.decisions(1)
    assert (decided.decision.reference, decided.decision.outcome) == (
        REFERENCE,
        Outcome.CONTROL_DOCUMENTARY,
    )
    assert "DEADLINE" in [reason.code for reason in decided.decision.reasons]
    dead = await silent_hub.records(topics.dlq, expected=partitions)
    assert [
        (
            header_value(list(r.headers), HEADER_ERROR_KIND),
            header_value(list(r.headers), HEADER_REFERENCE),
            header_value(list(r.headers), HEADER_COMPONENT),
        )
        for r in dead
    ] == [(STATE_UNREADABLE, REFERENCE, "hub.deadlines")] * partitions
