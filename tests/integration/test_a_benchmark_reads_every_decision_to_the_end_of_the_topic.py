"""The benchmarks' final read of the decisions topic, on a real broker (review stop 37, T11).

Decisions written as the hub writes them (sealed, in transactions), one copied, one in a
transaction that is aborted: the final read reaches the topic's end offsets (past the
transaction markers, which move a partition's end without a record), counts the copy as
a duplicate, and never sees the aborted one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from benchmarks.decision_books import books_of_the_run
from gun_contract.envelope import ContentType
from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.replay import NoReplayMemory
from gun_hub.xml.decision_codec import encode_decision
from tests.conftest import KafkaEnv

pytestmark = pytest.mark.broker


def sealed(kafka_env: KafkaEnv, reference: str, version: int = 1) -> bytes:
    decision = Decision(
        reference=reference,
        version=version,
        outcome=Outcome.RELEASE,
        decided_at=datetime.now(UTC),
    )
    return kafka_env.envelope("hub").seal(
        encode_decision(decision),
        recipient="clearance",
        topic=kafka_env.topics.decisions,
        content_type=ContentType.XML,
    )


async def test_the_final_read_reaches_the_end_and_counts_a_copy_but_not_an_aborted_one(
    kafka_env: KafkaEnv,
) -> None:
    topic = kafka_env.topics.decisions
    a_v1 = sealed(kafka_env, "26FRBOOKS000000001")
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_env.bootstrap, transactional_id=f"{kafka_env.prefix}-books"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, a_v1, key=b"26FRBOOKS000000001")
            await producer.send(topic, sealed(kafka_env, "26FRBOOKS000000002"), key=b"B")
            await producer.send(topic, sealed(kafka_env, "26FRBOOKS000000001", 2), key=b"A2")
        async with producer.transaction():
            # The same record written again (what a retried publication leaves).
            await producer.send(topic, a_v1, key=b"26FRBOOKS000000001")
        await producer.begin_transaction()
        await producer.send(topic, sealed(kafka_env, "26FRBOOKS000000003"), key=b"C")
        await producer.abort_transaction()
    finally:
        await producer.stop()

    clearance = JoseEnvelope(
        PartyKeys.load(kafka_env.keys_dir, "clearance"),
        Entitlements.from_registry(kafka_env.topics),
        NoReplayMemory(),
    )
    books = await books_of_the_run(kafka_env.bootstrap, topic, clearance, timeout_s=60)

    assert books["read_to_end"] is True
    assert books["unreadable"] == 0
    assert (books["decisions"], books["versions"]) == (4, 3)  # C's was aborted: never read
    assert books["duplicate_decisions"] == 1
    assert books["examples"] == ["26FRBOOKS000000001 v1: 2 decisions"]
