"""The adapter tells its replay memory each partition's confirmed commit point, in broker
time, and that alone moves the partition's clock: held at a pending operation, the clock
stays at that operation's request however far the replica reads ahead.

The real DGAL adapter on the real broker (LogAppendTime request topics), a real partner
simulator over HTTP; the conformance harness plays the hub. Review stop 38, L3's rest:
the memory forgot by how far each partition was *read*, so after a rebalance or restart
that had a partition read again from its held commit, a copy judged a replay there had
been forgotten and was a first sighting (asked of the partner again). Unit tests of the
rule: tests/unit/test_a_reader_forgets_a_message_id_only_past_its_partitions_commit.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.base import load_adapter
from adapters.base.runner import AdapterRunner
from adapters.conformance.harness import Harness, Quote
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Verdict
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.replay import SqliteReplayGuard
from gun_contract.settings import AdapterSettings
from tests.adapter_fixtures import running_adapter
from tests.conftest import PARTITIONS, KafkaEnv
from tests.integration.test_adapter_replicas_keep_the_ledger_exact import (
    Unreachable,
    on_the_same_partition,
    until,
    until_owned,
)
from tests.partner_fixtures import RunningPartner

pytestmark = pytest.mark.broker


class RecordedMemory(SqliteReplayGuard):
    """The adapter's SQLite replay memory, keeping what each commit told it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, keep_after_expiry_s=300, partitions=PARTITIONS)
        self.told: dict[int, list[float]] = defaultdict(list)

    def committed(self, topic: str, partition: int, readable_from: float) -> None:
        self.told[partition].append(readable_from)
        super().committed(topic, partition, readable_from)


@asynccontextmanager
async def adapter_remembering(
    kafka_env: KafkaEnv, partner: RunningPartner, blocked: set[str], memory: RecordedMemory
) -> AsyncIterator[AdapterRunner]:
    settings = kafka_env.settings()
    settings.adapter = AdapterSettings(
        partner_url=partner.url,
        partner_timeout_s=1,
        retry_attempts=2,
        circuit_failure_threshold=2,
        circuit_reset_s=1,
        replay_interval_s=0.5,
        replica_id="a",
        commit_interval_s=0.1,
    )
    envelope = JoseEnvelope(
        PartyKeys.load(kafka_env.keys_dir, "dgal"),
        Entitlements.from_registry(kafka_env.topics),
        memory,
    )
    async with running_adapter(
        "dgal",
        settings,
        kafka_env.topics,
        envelope,
        Unreachable(load_adapter("dgal").partner(settings.adapter), blocked),
        replay_memory=memory,
    ) as runner:
        yield runner


async def broker_times(kafka_env: KafkaEnv, partition: int) -> dict[int, float]:
    """Offset -> LogAppendTime (seconds) of every request on ``partition``."""
    tp = TopicPartition(kafka_env.topics.requests("dgal"), partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_env.bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        times: dict[int, float] = {}
        while len(times) < end:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                times[record.offset] = record.timestamp / 1000.0
        return times
    finally:
        await consumer.stop()


async def test_a_partitions_clock_stays_at_its_held_commit_while_the_adapter_reads_ahead(
    kafka_env: KafkaEnv, partner: RunningPartner, hub: Harness, tmp_path: Path
) -> None:
    memory = RecordedMemory(tmp_path / "replay.sqlite")
    blocked: set[str] = set()
    doc, doc_y = await hub.seed("held"), await hub.seed("read-ahead")
    async with adapter_remembering(kafka_env, partner, blocked, memory) as adapter:
        await until_owned([adapter])
        reservation = hub.request(Operation.RESERVE, [Quote(doc, "60")])
        assert (await hub.ask(reservation)).answers[0].verdict is Verdict.VALID
        # The partner is down for this declaration: its write-off is queued, and holds
        # its partition's commit.
        blocked.add(reservation.reference)
        write_off = hub.request(
            Operation.WRITE_OFF,
            [Quote(doc, None, line=None, unit=None)],
            reference=reservation.reference,
        )
        assert (await hub.ask(write_off)).answers[0].verdict is Verdict.UNAVAILABLE
        [(partition, held_at)] = adapter.pending.oldest_offsets().items()
        # The replica reads ahead on that partition: another declaration, answered.
        reference_y = on_the_same_partition(hub, reservation.reference)
        later = hub.request(Operation.RESERVE, [Quote(doc_y, "5")], reference=reference_y)
        assert (await hub.ask(later)).answers[0].verdict is Verdict.VALID
        times = await broker_times(kafka_env, partition)
        last = max(times)
        assert last > held_at  # read ahead of the held commit
        # Handled up to the end, and that committed (the commit says how far it answered).
        await until(
            lambda: (
                adapter.ownership.next_offset(partition) == last + 1
                and not adapter.ownership.to_commit()
            ),
            timeout_s=30,
        )
        # Every commit since the write-off was queued told the write-off's broker time,
        # never a later one: the partition can be read again from there.
        assert memory.told[partition][-1] == times[held_at]
        assert max(memory.told[partition]) <= times[held_at]

        # The partner is back: the write-off is replayed, the commit moves to the end,
        # and the clock with it (the latest record read before the commit).
        blocked.clear()
        await until(lambda: len(adapter.pending) == 0, timeout_s=30)
        await until(lambda: memory.told[partition][-1] == times[last], timeout_s=30)
