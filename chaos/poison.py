"""Poisoned records for every topic a party may write (declarations, requests.*,
responses.*, dlq, ops.health): garbage, nested brackets that blow a recursive parser,
fake envelopes, XML bombs, replays of real records and envelopes sealed by the wrong
party. No poisoned declaration carries a readable reference, so none is owed a decision.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gun_contract.envelope import ContentType
from gun_contract.kafka.admin import topic_partitions
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import TopicRegistry


@dataclass(frozen=True, slots=True)
class Poison:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    what: str = ""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def generic(rng: random.Random) -> list[tuple[str, bytes]]:
    nested = b"[" * 2700 + b"]" * 2700
    return [
        ("empty", b""),
        ("random bytes", rng.randbytes(512)),
        ("nested JSON brackets", nested),
        ("nested braces", b'{"a":' * 3000),
        ("not UTF-8", b"\xff\xfe\xfd" * 100),
        ("fake JWE, nested header", b".".join([_b64(b'{"a":' + nested + b"}"), *[b"x"] * 4])),
        ("fake JWS, nested header", b".".join([_b64(nested), b"e30", b"sig"])),
        (
            "JWE for an unknown key",
            b".".join(
                [
                    _b64(b'{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"nobody-enc-1"}'),
                    _b64(rng.randbytes(40)),
                    _b64(rng.randbytes(12)),
                    _b64(rng.randbytes(64)),
                    _b64(rng.randbytes(16)),
                ]
            ),
        ),
        ("'none' algorithm", b".".join([_b64(b'{"alg":"none"}'), _b64(b"{}"), b""])),
        ("300 kB of noise", rng.randbytes(300 * 1024)),
    ]


DECLARATION_POISON = [
    (
        "billion laughs",
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            b'<!ENTITY %s "%s">' % (chr(98 + i).encode(), (b"&" + chr(97 + i).encode() + b";") * 10)
            for i in range(8)
        )
        + b']><Declaration xmlns="urn:gun-hub:declaration:v1">&i;</Declaration>',
    ),
    (
        "external entity",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Declaration xmlns="urn:gun-hub:declaration:v1">&x;</Declaration>',
    ),
    ("20000 nested elements", b"<a>" * 20000 + b"</a>" * 20000),
    ("no reference", b'<Declaration xmlns="urn:gun-hub:declaration:v1"><Version>1</Version>'),
    ("JSON, not XML", b'{"Reference": null}'),
]
HEALTH_POISON = [
    ("not JSON", b"not json at all"),
    ("wrong shape", b'{"authority": 5, "circuit": [], "at": "yesterday"}'),
]


async def _a_real_record(bootstrap: str, topic: str) -> tuple[bytes | None, bytes] | None:
    """The first record of ``topic`` (to replay it), if any."""
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        batches = await consumer.getmany(timeout_ms=3000, max_records=1)
        for records in batches.values():
            for record in records:
                return record.key, record.value or b""
        return None
    finally:
        await consumer.stop()


def _forged(keys_dir: Path, topics: TopicRegistry, party: str, topic: str, recipient: str) -> bytes:
    """A well-formed envelope sealed by a party that may not write ``topic``."""
    envelope = JoseEnvelope(
        PartyKeys.load(keys_dir, party),
        Entitlements.from_registry(topics),
        MemoryReplayGuard(),
    )
    payload = json.dumps({"reference": "26FRFORGED0001", "version": 1, "answers": []}).encode()
    return envelope.seal(payload, recipient=recipient, topic=topic, content_type=ContentType.JSON)


async def poison_batch(
    bootstrap: str,
    topics: TopicRegistry,
    keys_dir: Path,
    rng: random.Random,
    live_keys: list[bytes],
) -> list[Poison]:
    """Build one batch of poisoned records for every party-writable topic."""

    def key() -> bytes | None:
        return rng.choice([None, b"", rng.randbytes(8), rng.choice(live_keys or [b"x"])])

    batch: list[Poison] = []
    targets = [topics.declarations, topics.dlq, topics.ops_health]
    for authority in topics.authorities:
        targets += [topics.requests(authority), topics.responses(authority)]
    for topic in targets:
        values = generic(rng)
        if topic == topics.declarations:
            values += DECLARATION_POISON
        if topic == topics.ops_health:
            values += HEALTH_POISON
        for what, value in values:
            headers: tuple[tuple[str, bytes], ...] = ()
            if topic == topics.dlq:
                headers = (("error.kind", b"\xff\xfe"), ("x-chaos", b"y" * 1000))
            batch.append(Poison(topic, key(), value, headers, what))
    for authority in topics.authorities:
        for topic in (topics.requests(authority), topics.responses(authority)):
            real = await _a_real_record(bootstrap, topic)
            if real is not None:
                batch.append(Poison(topic, real[0], real[1], (), "replay of a real record"))
        other = next(a for a in topics.authorities if a != authority)
        batch.append(
            Poison(
                topics.responses(authority),
                rng.choice(live_keys or [b"x"]),
                _forged(keys_dir, topics, other, topics.responses(authority), "hub"),
                (),
                f"answer sealed by {other}",
            )
        )
        batch.append(
            Poison(
                topics.requests(authority),
                rng.choice(live_keys or [b"x"]),
                _forged(keys_dir, topics, "clearance", topics.requests(authority), authority),
                (),
                "request sealed by the clearance system",
            )
        )
    return batch


async def send_poison(bootstrap: str, batch: list[Poison]) -> dict[str, int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024, request_timeout_ms=60_000
    )
    await producer.start()
    sent: dict[str, int] = {}
    try:
        for record in batch:
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            sent[record.topic] = sent.get(record.topic, 0) + 1
    finally:
        await producer.stop()
    return sent
