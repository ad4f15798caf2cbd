"""Security over the real broker: audit verification, tampering, interoperability."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaProducer
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from gun_contract.envelope import ContentType
from gun_contract.kafka.admin import ensure_topics
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.topics import topic_registry
from gun_hub.pipeline.audit_keeper import WRITTEN_BY_THE_HUB
from gun_hub.security.own_dead_letters import HEADER_VOUCHED
from gun_hub.xml.decision_codec import DecisionCodec
from gun_tools.clearance_stand_in import DecisionReader
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import PARTITIONS
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


def audit_verify(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gun_hub", "audit", "verify", *args],
        env={**os.environ, **pipeline.kafka.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def decide_some(pipeline: Pipeline, count: int) -> None:
    await pipeline.submit(
        [
            declaration_xml(
                reference=f"26FRAUDIT{n:09d}",
                items=(goods_item(1, (document("Y900", f"EX-{n}", None, None),)),),
            )
            for n in range(count)
        ]
    )
    await pipeline.decisions(count, settle_s=0.5)


async def test_the_audit_of_a_real_run_verifies_and_one_flipped_byte_is_caught(
    hub_only: Pipeline,
) -> None:
    await decide_some(hub_only, 12)
    audit = await hub_only.records(hub_only.kafka.topics.audit, expected=12)

    intact = audit_verify(hub_only)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "12 DECISION" in intact.stdout
    assert "audit trail intact" in intact.stdout

    # Copy the trail to a topic of its own, one byte of one record flipped.
    copy = topic_registry(f"{hub_only.kafka.prefix}x", [])
    await ensure_topics(hub_only.kafka.bootstrap, copy, PARTITIONS, 1)
    # The trail interleaves decisions with checkpoints the keeper's timer appends: the
    # victim is a decision's entry, wherever the checkpoints fell.
    victim = [r for r in audit if b'"RELEASE"' in (r.value or b"")][5]
    producer = AIOKafkaProducer(bootstrap_servers=hub_only.kafka.bootstrap)
    await producer.start()
    try:
        for record in audit:
            value = record.value or b""
            if record is victim:
                flipped = bytearray(value)
                flipped[value.index(b'"RELEASE"') + 1] ^= 0x01
                value = bytes(flipped)
            await producer.send_and_wait(copy.audit, value, partition=record.partition)
    finally:
        await producer.stop()

    broken = audit_verify(hub_only, "--topic", copy.audit)
    assert broken.returncode == 1
    assert f"first broken link at partition {victim.partition}" in broken.stdout
    assert "altered" in broken.stdout


async def test_a_decision_is_verified_and_decrypted_by_another_jose_library(
    hub_only: Pipeline,
) -> None:
    await hub_only.submit(
        [
            declaration_xml(
                reference="26FRINTEROP0000001",
                items=(goods_item(1, (document("Y900", "EX-1", None, None),)),),
            )
        ]
    )
    [record] = await hub_only.records(hub_only.kafka.topics.decisions, expected=1)
    keys_dir = hub_only.kafka.keys_dir

    clearance = json.loads((keys_dir / "clearance.jwk").read_text())
    [decryption] = [k for k in clearance["keys"] if k["use"] == "enc"]
    token = jwcrypto_jwe.JWE()
    token.deserialize(
        (record.value or b"").decode(),
        key=jwcrypto_jwk.JWK(**decryption),
    )
    assert token.jose_header["alg"] == "ECDH-ES+A256KW"
    assert token.jose_header["enc"] == "A256GCM"

    jwks = json.loads((keys_dir / "jwks.json").read_text())
    signed = jwcrypto_jws.JWS()
    signed.deserialize(token.payload.decode())
    kid = signed.jose_header["kid"]
    [public] = [
        {k: v for k, v in key.items() if k not in ("party", "status", "created")}
        for key in jwks["keys"]
        if key["kid"] == kid
    ]
    assert [k["party"] for k in jwks["keys"] if k["kid"] == kid] == ["hub"]
    signed.allowed_algs = ["ES256"]
    signed.verify(jwcrypto_jwk.JWK(**public))
    header = signed.jose_header
    assert (header["iss"], header["aud"], header["topic"], header["cty"]) == (
        "hub",
        "clearance",
        hub_only.kafka.topics.decisions,
        "application/xml",
    )
    decision = DecisionCodec().decode(signed.payload)
    assert decision.reference == "26FRINTEROP0000001"


async def test_a_forged_decision_is_refused_and_dead_lettered_by_the_clearance_reader(
    hub_only: Pipeline,
) -> None:
    # DGAL's adapter, properly keyed, tries to publish a decision: it is not entitled to.
    topics = hub_only.kafka.topics
    forged = hub_only.kafka.envelope("dgal").seal(
        b"<Decision/>", recipient="clearance", topic=topics.decisions, content_type=ContentType.XML
    )
    producer = AIOKafkaProducer(bootstrap_servers=hub_only.kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.decisions, forged, key=b"26FRFORGED00000001")
    finally:
        await producer.stop()

    reader = DecisionReader(
        hub_only.kafka.bootstrap,
        topics.decisions,
        hub_only.kafka.envelope("clearance"),
        dlq_topic=topics.dlq,
    )
    await reader.start(from_beginning=True)
    try:
        received = await reader.collect(expected=1, timeout_s=3)
    finally:
        await reader.stop()

    assert received == []
    assert [r.kind.value for r in reader.rejected] == ["ENVELOPE_NOT_ENTITLED"]
    [dead] = await hub_only.records(topics.dlq, expected=1)
    assert dead.value == forged
    assert header_value(list(dead.headers), HEADER_ERROR_KIND) == "ENVELOPE_NOT_ENTITLED"
    # The hub's audit keeper turns that dead letter into an audit entry.
    # (The chain's first link is followed by a checkpoint: a worker signs a partition's
    # head as soon as it writes to it.)
    audited = [json.loads(r.value or b"") for r in await hub_only.records(topics.audit, 1)]
    [entry] = [e for e in audited if e["kind"] == "SECURITY_REJECTION"]
    assert (entry["kind"], entry["component"]) == ("SECURITY_REJECTION", "clearance.reader")


async def test_the_hubs_own_security_dead_letter_is_vouched_for_and_chained_as_its(
    hub_only: Pipeline,
) -> None:
    """A declaration sealed by a party not entitled to send one: the hub dead-letters it
    with a seal of its own (security/own_dead_letters.py), and the audit keeper chains it
    as the hub's rejection, which no flood of anybody's reports leaves out."""
    topics = hub_only.kafka.topics
    forged = hub_only.kafka.envelope("dgal").seal(
        declaration_xml(),
        recipient=HUB_PARTY,
        topic=topics.declarations,
        content_type=ContentType.XML,
    )
    await hub_only.send_sealed([(b"26FR000690I0000012", forged)])
    [dead] = await hub_only.records(topics.dlq, expected=1)
    assert dict(dead.headers).get(HEADER_VOUCHED), "the hub's dead letter carries its seal"
    audited = [json.loads(r.value or b"") for r in await hub_only.records(topics.audit, 1)]
    [entry] = [e for e in audited if e["kind"] == "SECURITY_REJECTION"]
    assert (entry["component"], entry["reason"]) == ("hub.intake", WRITTEN_BY_THE_HUB)
