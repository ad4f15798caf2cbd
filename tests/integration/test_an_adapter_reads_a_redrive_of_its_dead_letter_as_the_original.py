"""An adapter honours a redrive of its own dead letters (ADR 0010, addendum), on the real
broker, with the DGAL adapter and the simulated TRACES.

The cause: the hub rotated its signing key for use at once and sealed a reservation with
it before the adapter had the public half. The adapter dead-letters it
(ENVELOPE_UNKNOWN_KID), as it must: it cannot tell who signed it. The operator imports the
hub's new public key into the adapter's folder and redrives: the hub republishes the
original on its topic and partition with ``gun.redrive.of`` (gun_hub/web/dead_letters.py,
done here as it does it). The adapter reads the original back from the log, finds the same
bytes, opens it as the original read again, and the partner gets the reservation, the hub
its answer. A "redrive" whose bytes are not the original's is refused
(REDRIVE_UNVERIFIED) and never reaches the partner, however well it is sealed.

A request that opened before it failed (a bug, UNHANDLED_ERROR) had its message id
remembered at its position: its redrive is that position read again, not a replay, and
it is asked once the bug is fixed.

A redrive the hub has overtaken is not asked (ADR 0010, addendum 2): a reservation
redriven after its declaration's deletion was answered is dead-lettered
REDRIVE_SUPERSEDED, and the partner holds nothing; a write-off with only other
declarations' records between is applied.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from adapters.base.certex import CertexHttpPartner
from adapters.base.runner import AdapterRunner
from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    SourcePosition,
    header_value,
)
from gun_contract.envelope import ContentType
from gun_contract.health import CircuitStatus
from gun_contract.kafka.client import ClientConfig
from gun_contract.kafka.log_reader import LogReader
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
)
from gun_contract.model.verdicts import Verdict
from gun_contract.request_refusals import REDRIVE_SUPERSEDED
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings
from gun_hub.ops.dead_letters import DeadLetterId
from gun_hub.pipeline.redrive import REDRIVE_UNVERIFIED, not_redrivable, redrive_headers
from tests.adapter_fixtures import partner_request, running_adapter
from tests.conftest import KafkaEnv, envelope_of
from tests.partner_fixtures import RunningPartner, partner_client

pytestmark = pytest.mark.broker

REFERENCE = "26FRADR00000000001"
DOCUMENT = "CHEDP.FR.2026.0001234"
UNKNOWN_KID = "ENVELOPE_UNKNOWN_KID"


class FixableClient:
    """The adapter's partner client, with a bug (it raises) until a release fixes it."""

    def __init__(self, client: CertexHttpPartner) -> None:
        self._client = client
        self.broken = False

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        if self.broken:
            raise RuntimeError("a bug in the partner client")
        return await self._client.answer(request)

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        return self._client.may_still_apply(request)

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        self._client.sent_before(request, accepted)

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        return self._client.accepted_calls(request)

    async def close(self) -> None:
        await self._client.close()

    @property
    def circuit_state(self) -> CircuitStatus:
        return self._client.circuit_state


@dataclass
class Stand:
    """The DGAL adapter with a keys folder of its own, behind on the hub's keys."""

    kafka: KafkaEnv
    adapter: AdapterRunner
    adapter_keys: Path
    hub_keys: Path
    client: FixableClient

    @property
    def requests(self) -> str:
        return self.kafka.topics.requests("dgal")

    def hub_envelope(self) -> JoseEnvelope:
        """The hub's, with its newest (rotated) signing key."""
        return envelope_of(HUB_PARTY, self.kafka.topics, self.hub_keys)

    def sealed_by_the_hub(self, request: AuthorityRequest, envelope: JoseEnvelope) -> bytes:
        return envelope.seal(
            request.model_dump_json().encode(),
            recipient="dgal",
            topic=self.requests,
            content_type=ContentType.JSON,
        )

    async def the_answer(self) -> tuple[ConsumerRecord[bytes, bytes], AuthorityResponse]:
        """The one answer on the adapter's response topic, and what it says, opened as
        the hub opens it."""
        async with Reader(self.kafka, self.kafka.topics.responses("dgal")) as responses:
            [answer] = await responses.until(1)
        opened = self.hub_envelope().open(answer.value or b"", topic=answer.topic)
        return answer, AuthorityResponse.model_validate_json(opened.payload)

    def fix_the_cause(self) -> None:
        """The adapter's operator imports the hub's public keys, as the hub exported them
        (`gun-hub keys export-public` / `import-public --party hub`)."""
        exported = KeystoreFolder(self.hub_keys).export_public(HUB_PARTY)
        report = KeystoreFolder(self.adapter_keys).import_public(
            exported, party=HUB_PARTY, source="hub"
        )
        assert report.added, "the hub's new keys were not imported"


def keys_apart(kafka_env: KafkaEnv, work: Path) -> tuple[Path, Path]:
    """The adapter's folder (its own private keys, everyone's public ones) and the hub's,
    whose signing key is rotated there, for use at once, and nowhere else."""
    adapter_keys = work / "adapter-keys"
    shutil.copytree(kafka_env.keys_dir, adapter_keys)
    for private in adapter_keys.glob("*.jwk"):
        if not private.name.startswith("dgal"):
            private.unlink()
    hub_keys = work / "hub-keys"
    shutil.copytree(kafka_env.keys_dir, hub_keys)
    KeystoreFolder(hub_keys).rotate(HUB_PARTY, use_from=datetime.now(UTC))
    return adapter_keys, hub_keys


@pytest.fixture
async def stand(
    kafka_env: KafkaEnv, partner: RunningPartner, tmp_path: Path
) -> AsyncIterator[Stand]:
    adapter_keys, hub_keys = keys_apart(kafka_env, tmp_path)
    settings = kafka_env.settings()
    settings.security = SecuritySettings(keys_dir=adapter_keys, state_dir=kafka_env.state_dir)
    settings.adapter = AdapterSettings(partner_url=partner.url, partner_timeout_s=2)
    client = FixableClient(partner_client(partner.url, partner_timeout_s=2))
    async with running_adapter(
        "dgal",
        settings,
        kafka_env.topics,
        envelope_of("dgal", kafka_env.topics, adapter_keys),
        partner=client,
    ) as runner:
        yield Stand(kafka_env, runner, adapter_keys, hub_keys, client)


async def publish(
    kafka_env: KafkaEnv,
    topic: str,
    key: bytes,
    value: bytes,
    *,
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> SourcePosition:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_env.bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic, value, key=key, partition=partition, headers=headers
        )
    finally:
        await producer.stop()
    return SourcePosition(topic, sent.partition, sent.offset, key)


class Reader:
    """Every record of ``topics`` from their start, as they come."""

    def __init__(self, kafka_env: KafkaEnv, *topics: str) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=kafka_env.bootstrap, auto_offset_reset="earliest"
        )
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def __aenter__(self) -> Reader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def until(self, count: int, within_s: float = 60) -> list[ConsumerRecord[bytes, bytes]]:
        async with asyncio.timeout(within_s):
            while len(self.records) < count:
                for batch in (await self._consumer.getmany(timeout_ms=200)).values():
                    self.records += batch
        return self.records


async def redrive_as_the_hub_does(
    kafka_env: KafkaEnv, dead_letter: ConsumerRecord[bytes, bytes]
) -> SourcePosition:
    """What `gun-hub dlq redrive` has the hub do (gun_hub/web/dead_letters.py): read the
    original back where the dead letter says it is, and republish it there, as it is,
    naming its position."""
    headers = list(dead_letter.headers)
    origin = SourcePosition(
        header_value(headers, HEADER_SOURCE_TOPIC) or "",
        int(header_value(headers, HEADER_SOURCE_PARTITION) or -1),
        int(header_value(headers, HEADER_SOURCE_OFFSET) or -1),
    )
    reader = LogReader(ClientConfig(kafka_env.bootstrap))
    try:
        original = await reader.read(origin.topic, origin.partition, origin.offset)
    finally:
        await reader.close()
    assert original is not None
    assert original.value == dead_letter.value, "the dead letter kept the original's bytes"
    return await publish(
        kafka_env,
        original.topic,
        original.key or b"",
        original.value,
        partition=original.partition,
        headers=redrive_headers(origin, DeadLetterId(dead_letter.partition, dead_letter.offset)),
    )


def kinds(records: list[ConsumerRecord[bytes, bytes]]) -> list[str | None]:
    return [header_value(list(r.headers), HEADER_ERROR_KIND) for r in records]


async def test_a_request_dead_lettered_for_a_key_imported_late_is_redriven_and_answered(
    stand: Stand, partner: RunningPartner
) -> None:
    kafka = stand.kafka
    request = partner_request(Operation.RESERVE, reference=REFERENCE, quantity="250")
    sealed = stand.sealed_by_the_hub(request, stand.hub_envelope())
    origin = await publish(kafka, stand.requests, REFERENCE.encode(), sealed)

    async with Reader(kafka, kafka.topics.dlq) as dead_letters:
        [dead] = await dead_letters.until(1)
    headers = list(dead.headers)
    assert kinds([dead]) == [UNKNOWN_KID]
    assert header_value(headers, HEADER_COMPONENT) == "adapter.dgal"
    assert int(header_value(headers, HEADER_SOURCE_OFFSET) or -1) == origin.offset
    # The desk lists it as one that can be redriven.
    assert not_redrivable("adapter.dgal", stand.requests, kafka.topics, UNKNOWN_KID) is None
    assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(0)

    stand.fix_the_cause()
    redrive = await redrive_as_the_hub_does(kafka, dead)
    assert redrive.offset > origin.offset

    answer, response = await stand.the_answer()
    assert (response.request_id, [a.verdict for a in response.answers]) == (
        request.request_id,
        [Verdict.VALID],
    )
    assert answer.partition == origin.partition
    assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(250)


async def test_a_redrive_whose_bytes_are_not_the_originals_is_refused_and_never_asked(
    stand: Stand, partner: RunningPartner
) -> None:
    kafka = stand.kafka
    request = partner_request(Operation.RESERVE, reference=REFERENCE, quantity="250")
    sealed = stand.sealed_by_the_hub(request, stand.hub_envelope())
    origin = await publish(kafka, stand.requests, REFERENCE.encode(), sealed)
    async with Reader(kafka, kafka.topics.dlq) as dead_letters:
        [dead] = await dead_letters.until(1)
        stand.fix_the_cause()

        # A later version's reservation, sealed with a hub key the adapter now knows (it
        # would open and be asked), claiming to be the dead letter's original.
        forged_request = partner_request(
            Operation.RESERVE, reference=REFERENCE, version=2, quantity="900"
        )
        forged = stand.sealed_by_the_hub(forged_request, stand.hub_envelope())
        forgery = await publish(
            kafka,
            origin.topic,
            REFERENCE.encode(),
            forged,
            partition=origin.partition,
            headers=redrive_headers(origin, DeadLetterId(dead.partition, dead.offset)),
        )
        [_, refused] = await dead_letters.until(2)

    headers = list(refused.headers)
    assert kinds([refused]) == [REDRIVE_UNVERIFIED]
    assert header_value(headers, HEADER_COMPONENT) == "adapter.dgal"
    assert int(header_value(headers, HEADER_SOURCE_OFFSET) or -1) == forgery.offset
    assert refused.value == forged
    # A redrive's own refusal is not redrivable: it would have the forgery read as itself.
    assert not_redrivable("adapter.dgal", stand.requests, kafka.topics, REDRIVE_UNVERIFIED)

    # The genuine redrive afterwards is answered; the forgery never reached the partner.
    await redrive_as_the_hub_does(kafka, dead)
    _, response = await stand.the_answer()
    assert response.request_id == request.request_id
    assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(250)


async def test_a_request_that_opened_before_a_bug_failed_it_is_asked_once_redriven(
    stand: Stand, partner: RunningPartner
) -> None:
    kafka = stand.kafka
    stand.fix_the_cause()  # only the bug is at fault here
    stand.client.broken = True
    request = partner_request(Operation.RESERVE, reference=REFERENCE, quantity="250")
    sealed = stand.sealed_by_the_hub(request, stand.hub_envelope())
    await publish(kafka, stand.requests, REFERENCE.encode(), sealed)
    async with Reader(kafka, kafka.topics.dlq) as dead_letters:
        [dead] = await dead_letters.until(1)
    assert kinds([dead]) == ["UNHANDLED_ERROR"]
    assert not_redrivable("adapter.dgal", stand.requests, kafka.topics, "UNHANDLED_ERROR") is None

    stand.client.broken = False  # the release that fixes it
    await redrive_as_the_hub_does(kafka, dead)
    _, response = await stand.the_answer()
    assert response.request_id == request.request_id
    assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(250)


async def test_a_reservation_redriven_after_its_declarations_deletion_is_not_applied(
    stand: Stand, partner: RunningPartner
) -> None:
    """The reservation never reached the partner (ENVELOPE_UNKNOWN_KID); the hub decided
    meanwhile and deleted version 1, which the partner answered "nothing to delete". The
    operator then redrives the reservation: applied, the partner would hold the quantity
    for ever (its version guard lets a same-version reservation through after its
    deletion). The adapter reads what its declaration was sent between the original and
    the redrive, finds the deletion, and dead-letters the redrive as superseded, naming it.
    """
    kafka = stand.kafka
    responses = kafka.topics.responses("dgal")
    reservation = partner_request(Operation.RESERVE, reference=REFERENCE, quantity="250")
    sealed = stand.sealed_by_the_hub(reservation, stand.hub_envelope())
    origin = await publish(kafka, stand.requests, REFERENCE.encode(), sealed)

    async with Reader(kafka, kafka.topics.dlq, responses) as out:
        [dead] = await out.until(1)
        assert kinds([dead]) == [UNKNOWN_KID]
        # The keys imported, the hub's deletion of version 1 (the declaration refused) is
        # read and answered: the partner holds nothing for it.
        stand.fix_the_cause()
        deletion = partner_request(Operation.DELETE, reference=REFERENCE, quantity=None)
        deleted = await publish(
            kafka,
            stand.requests,
            REFERENCE.encode(),
            stand.sealed_by_the_hub(deletion, stand.hub_envelope()),
            partition=origin.partition,
        )
        [_, answered] = await out.until(2)
        assert answered.topic == responses
        assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(0)

        redrive = await redrive_as_the_hub_does(kafka, dead)
        [*_, outcome] = await out.until(3)

    assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(0), (
        "the partner holds the redriven reservation of a deleted declaration"
    )
    assert (outcome.topic, kinds([outcome])) == (kafka.topics.dlq, [REDRIVE_SUPERSEDED])
    headers = list(outcome.headers)
    assert header_value(headers, HEADER_COMPONENT) == "adapter.dgal"
    # About the original, as every dead letter of a redrive; naming the deletion.
    assert int(header_value(headers, HEADER_SOURCE_OFFSET) or -1) == origin.offset
    reason = header_value(headers, HEADER_ERROR_REASON) or ""
    assert deleted.describe() in reason
    assert "DELETE" in reason
    assert redrive.describe() in reason
    why = not_redrivable("adapter.dgal", stand.requests, kafka.topics, REDRIVE_SUPERSEDED)
    assert why is not None


async def test_a_write_off_redriven_with_only_other_declarations_between_is_applied(
    stand: Stand, partner: RunningPartner
) -> None:
    """A write-off a bug failed (UNHANDLED_ERROR), redriven once the bug is fixed: between
    the original and the redrive its partition holds another declaration's reservation
    only, and its own declaration nothing later. It is applied, as before."""
    kafka = stand.kafka
    responses = kafka.topics.responses("dgal")
    stand.fix_the_cause()  # only the bug is at fault here
    envelope = stand.hub_envelope()
    reservation = partner_request(Operation.RESERVE, reference=REFERENCE, quantity="250")
    reserved = await publish(
        kafka, stand.requests, REFERENCE.encode(), stand.sealed_by_the_hub(reservation, envelope)
    )
    async with Reader(kafka, kafka.topics.dlq, responses) as out:
        await out.until(1)
        assert partner.store.balances(DOCUMENT)[0].reserved == Decimal(250)

        stand.client.broken = True
        write_off = partner_request(Operation.WRITE_OFF, reference=REFERENCE, quantity=None)
        await publish(
            kafka,
            stand.requests,
            REFERENCE.encode(),
            stand.sealed_by_the_hub(write_off, envelope),
            partition=reserved.partition,
        )
        [_, dead] = await out.until(2)
        assert kinds([dead]) == ["UNHANDLED_ERROR"]
        stand.client.broken = False  # the release that fixes it

        other = partner_request(Operation.RESERVE, reference="26FRADR00000000002", quantity="100")
        await publish(
            kafka,
            stand.requests,
            other.reference.encode(),
            stand.sealed_by_the_hub(other, envelope),
            partition=reserved.partition,
        )
        await out.until(3)
        await redrive_as_the_hub_does(kafka, dead)
        [*_, outcome] = await out.until(4)

    assert outcome.topic == responses
    opened = envelope.open(outcome.value or b"", topic=outcome.topic)
    assert AuthorityResponse.model_validate_json(opened.payload).request_id == write_off.request_id
    line = partner.store.balances(DOCUMENT)[0]
    assert (line.reserved, line.written_off) == (Decimal(100), Decimal(250))
